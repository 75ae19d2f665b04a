"""A compact columnar store for the rows an operator keeps across batches (the rows of an
updating join's sides, the top N rows of an updating top-N).

Keeping the input's Arrow tables as they arrive costs more than the rows: each batch's text
is its own buffers, a table of many chunks must be combined (a copy of the whole state) before
Arrow can ``take`` from it (``ChunkedArray.take`` concatenates first), and text columns with
few distinct values (a channel, a url) repeat the same bytes in every row. Here each column is
kept in the form that costs least:

* fixed-width values (integers, floats, timestamps, dates, times, durations, booleans) in one
  growing NumPy buffer (plus a validity array once a NULL arrives); appends write past the end
  (the buffer doubles, so appending costs the batch, not the state). 64-bit integers (and
  timestamps, durations) are kept as their difference from the first value, in the narrowest
  of int8/16/32/64 that holds every difference so far (ids, prices and a stream's timestamps
  over half an hour of microseconds fit in 32 bits); a value outside widens the buffer once;
* text and binary while a dictionary pays (once the column has ``DICTIONARY_PROBATION``
  rows, its codes and dictionary take at most ``DICTIONARY_SHARE`` of the bytes the values
  take plain, and it has at most ``DICTIONARY_MAX`` values): an int32 code per row into one
  dictionary of the distinct values, which grows as new ones arrive. A column whose values
  turn out mostly distinct is decoded once and kept plain;
* anything else (and text with many distinct values) as the Arrow arrays that arrived,
  taken from chunk by chunk so no whole-state copy is ever made.

Every read (``take``, ``table``) returns plain Arrow arrays of the declared types, in new
memory or immutable Arrow arrays: what leaves never shares a buffer that is written later.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pyarrow as pa

from caudal import compute as pc
from caudal.operators.keyed_tables import from_numpy
from caudal.operators.text_hashes import HashedLookup

#: a text column stays dictionary-encoded while its codes and dictionary take at most this
#: share of the bytes of its values kept plain (checked once it holds
#: ``DICTIONARY_PROBATION`` rows), and its dictionary at most ``DICTIONARY_MAX`` values
#: (each batch looks its distinct values up in the dictionary: a hash of all of it)
DICTIONARY_SHARE = 0.5
DICTIONARY_PROBATION = 1 << 16
DICTIONARY_MAX = 1 << 18
#: plain columns merge runs of small chunks into chunks of about this many rows
_CHUNK_ROWS = 1 << 16
#: a dictionary column looks its appended values up once they are this many rows per value
#: of its dictionary (or ``_CHUNK_ROWS``, or ``_PENDING_BYTES`` of values), whichever is
#: more rows (bytes: first): building the lookup's set costs about ten probes per value
_PENDING_PER_VALUE = 16
_PENDING_BYTES = 16 << 20


def _fixed_dtype(t: pa.DataType) -> np.dtype | None:
    """The NumPy dtype of a fixed-width Arrow type's values buffer, or None."""
    if pa.types.is_boolean(t):
        return np.dtype(np.bool_)
    if pa.types.is_integer(t) or pa.types.is_floating(t):
        return np.dtype(t.to_pandas_dtype())
    if pa.types.is_timestamp(t) or pa.types.is_duration(t) or pa.types.is_date64(t) or \
            pa.types.is_time64(t):
        return np.dtype(np.int64)
    if pa.types.is_date32(t) or pa.types.is_time32(t):
        return np.dtype(np.int32)
    return None


def fixed_values(a: pa.Array, dtype: np.dtype) -> np.ndarray:
    """The values buffer of a fixed-width (not boolean) Arrow array as NumPy ``dtype``, a
    view without a copy (the values under NULLs are whatever the buffer holds)."""
    buf = a.buffers()[1]
    if buf is None:
        return np.zeros(len(a), dtype=dtype)
    return np.frombuffer(buf, dtype=dtype, count=a.offset + len(a))[a.offset:]


def _is_text(t: pa.DataType) -> bool:
    return pa.types.is_string(t) or pa.types.is_large_string(t) or \
        pa.types.is_binary(t) or pa.types.is_large_binary(t)


def _value_bytes(a: pa.Array | pa.ChunkedArray) -> int:
    """Bytes of the values of a text or binary column (those under NULLs included: a
    size estimate), from its offsets: two reads a chunk, where summing the lengths makes
    an array of them."""
    total = 0
    for c in (a.chunks if isinstance(a, pa.ChunkedArray) else [a]):
        if len(c):
            large = pa.types.is_large_string(c.type) or pa.types.is_large_binary(c.type)
            offsets = np.frombuffer(c.buffers()[1], dtype=np.int64 if large else np.int32,
                                    count=c.offset + len(c) + 1)
            total += int(offsets[-1]) - int(offsets[c.offset])
    return total


def _chunk_masks(column: pa.ChunkedArray, keep: np.ndarray | None
                 ) -> list[np.ndarray | None]:
    """``keep`` (a mask over a column's rows, or None) cut to each of its chunks."""
    if keep is None:
        return [None] * column.num_chunks
    out, start = [], 0
    for c in column.chunks:
        out.append(keep[start:start + len(c)])
        start += len(c)
    return out


def _one_array(a: pa.Array | pa.ChunkedArray) -> pa.Array:
    if isinstance(a, pa.ChunkedArray):
        if a.num_chunks == 1:
            return a.chunk(0)
        return pa.concat_arrays(a.chunks) if a.num_chunks else pa.array([], a.type)
    return a


class Growing:
    """A NumPy array grown by appends, doubling its capacity (pages not yet written are not
    resident, so the spare capacity costs address space, not memory)."""

    def __init__(self, dtype: np.dtype, values: np.ndarray | None = None):
        self.buf = np.empty(0, dtype=dtype) if values is None else values
        self.n = len(self.buf)

    @property
    def values(self) -> np.ndarray:
        return self.buf[:self.n]

    def grow(self, k: int) -> np.ndarray:
        """``k`` more values, returned to be written in place (``extend`` without a copy of
        what the caller computes)."""
        if self.n + k > len(self.buf):
            grown = np.empty(max(2 * (self.n + k), 1024), dtype=self.buf.dtype)
            grown[:self.n] = self.buf[:self.n]
            self.buf = grown
        self.n += k
        return self.buf[self.n - k:self.n]

    def extend(self, more: np.ndarray) -> None:
        self.grow(len(more))[:] = more

    def reserve(self, k: int) -> None:
        """Room for exactly ``k`` more values (a restore that knows its row count grows the
        buffer once instead of doubling it, each doubling a copy of all of it)."""
        if self.n + k > len(self.buf):
            grown = np.empty(self.n + k, dtype=self.buf.dtype)
            grown[:self.n] = self.buf[:self.n]
            self.buf = grown

    def reset(self, values: np.ndarray) -> None:
        self.buf, self.n = values, len(values)


_NARROW = (np.dtype(np.int8), np.dtype(np.int16), np.dtype(np.int32), np.dtype(np.int64))


class _Fixed:
    """Fixed-width values in a NumPy buffer, NULLs in a bool array (None while there are
    none). ``narrow``: int64 values kept as ``value - base`` in the narrowest dtype."""

    def __init__(self, type: pa.DataType, dtype: np.dtype, narrow: bool = False):
        self.type = type
        self.dtype = dtype  # the Arrow values' dtype
        self.narrow = narrow and dtype == np.dtype(np.int64)
        self.base: int | None = None
        self.data = Growing(_NARROW[0] if self.narrow else dtype)
        self.valid: Growing | None = None

    def nbytes(self) -> int:
        return self.data.n * self.data.buf.itemsize + (self.valid.n if self.valid else 0)

    def _numpy(self, a: pa.Array) -> np.ndarray:
        if pa.types.is_boolean(self.type):
            return pc.fill_null(a, False).to_numpy(zero_copy_only=False)
        return fixed_values(a, self.dtype)

    def _fitted(self, values: np.ndarray, valid: np.ndarray | None) -> np.ndarray:
        """The values to store less ``base`` (set by the first values), the buffer widened
        if a difference needs it (the value under a NULL is whatever it is: replaced by
        ``base`` so it fits)."""
        if not self.narrow or not len(values):
            return values
        if valid is not None and not valid.all():
            values = np.where(valid, values, self.base if self.base is not None else 0)
        lo, hi = int(values.min()), int(values.max())
        if self.base is None:
            self.base = lo
        lo, hi = lo - self.base, hi - self.base
        dtype = self.data.buf.dtype
        if lo < np.iinfo(dtype).min or hi > np.iinfo(dtype).max:
            for wider in _NARROW:
                info = np.iinfo(wider)
                if info.min <= lo and hi <= info.max:
                    break
            else:  # the difference overflows int64: keep the values themselves
                self._rebase(0)
                return values
            grown = np.empty(max(len(self.data.buf), 1024), dtype=wider)
            grown[:self.data.n] = self.data.values
            self.data.buf = grown
        return values

    def _rebase(self, base: int) -> None:
        """Store the values as differences from ``base`` in int64 (a last resort)."""
        old = self.data.values.astype(np.int64) + np.int64(self.base or 0) - np.int64(base)
        self.data = Growing(np.dtype(np.int64))
        self.data.extend(old)
        self.base = base

    def _decoded(self, stored: np.ndarray) -> np.ndarray:
        if not self.narrow:
            return stored
        return stored.astype(np.int64) + np.int64(self.base or 0)

    def append(self, a: pa.Array, keep: np.ndarray | None = None) -> None:
        """The values of ``a`` (those where ``keep`` is True): gathered straight from its
        buffer, never a filtered copy of the Arrow array first."""
        n0 = self.data.n
        valid = pc.is_valid(a).to_numpy(zero_copy_only=False) if a.null_count else None
        values = self._numpy(a)
        if keep is not None:
            values = values[keep]
            valid = valid[keep] if valid is not None else None
        if self.narrow and len(values):
            values = self._fitted(values, valid)  # may replace self.data
            # the differences written straight into the buffer, in range: no wrap-around
            np.subtract(values, np.int64(self.base), out=self.data.grow(len(values)),
                        casting="unsafe")
        else:
            self.data.extend(values)
        if valid is not None:
            if self.valid is None:
                self.valid = Growing(np.dtype(np.bool_))
                self.valid.extend(np.ones(n0, dtype=bool))
            self.valid.extend(valid)
        elif self.valid is not None:
            self.valid.extend(np.ones(len(values), dtype=bool))

    def reserve(self, chunks: Sequence[pa.Array]) -> None:
        """Before appending ``chunks``: the buffers sized for all of them at once, and
        narrowed int64 values widened once to what all of them need (their smallest value
        the base, if it is not set yet) instead of chunk after chunk."""
        k = sum(len(c) for c in chunks)
        if self.narrow:
            lo, hi = [], []
            for c in chunks:
                values = self._numpy(c)
                if c.null_count:
                    values = values[pc.is_valid(c).to_numpy(zero_copy_only=False)]
                if len(values):
                    lo.append(int(values.min()))
                    hi.append(int(values.max()))
            if lo:
                self._fitted(np.array([min(lo), max(hi)], dtype=np.int64), None)
        self.data.reserve(k)
        if self.valid is not None or any(c.null_count for c in chunks):
            if self.valid is None:
                self.valid = Growing(np.dtype(np.bool_))
                self.valid.extend(np.ones(self.data.n, dtype=bool))
            self.valid.reserve(k)

    def _array(self, values: np.ndarray, valid: np.ndarray | None) -> pa.Array:
        values = np.ascontiguousarray(values)
        nulls = 0
        bitmap = None
        if valid is not None and not valid.all():
            nulls = int(len(valid) - np.count_nonzero(valid))
            bitmap = pa.py_buffer(np.packbits(valid, bitorder="little"))
        if pa.types.is_boolean(self.type):
            data = pa.py_buffer(np.packbits(values, bitorder="little"))
        else:
            data = pa.py_buffer(values)
        return pa.Array.from_buffers(self.type, len(values), [bitmap, data], nulls)

    def take(self, index: np.ndarray, missing: np.ndarray | None) -> pa.Array:
        values = self._decoded(self.data.values[index])  # fancy indexing copies
        valid = self.valid.values[index] if self.valid is not None else None
        if missing is not None:
            valid = ~missing if valid is None else valid & ~missing
        return self._array(values, valid)

    def keep(self, mask: np.ndarray | slice) -> None:
        self.data.reset(self.data.values[mask])
        if self.valid is not None:
            self.valid.reset(self.valid.values[mask])

    def whole(self) -> pa.Array:
        values = self.data.values
        return self._array(self._decoded(values) if self.narrow else values.copy(),
                           self.valid.values.copy() if self.valid is not None else None)

    def view(self) -> pa.Array:
        # rows already written are never written again (appends go past them, ``keep``
        # makes new arrays), so a view stays valid while the caller holds it
        if self.narrow:
            return self.whole()
        return self._array(self.data.values,
                           self.valid.values if self.valid is not None else None)


class _Plain:
    """The Arrow arrays as they arrived (runs of small ones merged), taken chunk by chunk."""

    def __init__(self, type: pa.DataType):
        self.type = type
        self.chunks: list[pa.Array] = []
        self.starts = np.zeros(1, dtype=np.int64)  # chunk i is rows starts[i]:starts[i+1]

    def nbytes(self) -> int:
        return sum(c.nbytes for c in self.chunks)

    def _reset(self, chunks: list[pa.Array]) -> None:
        self.chunks = [c for c in chunks if len(c)]
        self.starts = np.concatenate([[0], np.cumsum([len(c) for c in self.chunks])]).astype(
            np.int64)

    def append(self, a: pa.Array) -> None:
        if not len(a):
            return
        chunks = self.chunks
        # small arrays (a trickle of small batches) are merged with the small ones before
        # them, so the chunk count stays about rows / _CHUNK_ROWS
        if chunks and len(chunks[-1]) + len(a) <= _CHUNK_ROWS:
            last = chunks.pop()
            self.starts = self.starts[:-1]
            a = pa.concat_arrays([last, a])
        chunks.append(a)
        self.starts = np.append(self.starts, self.starts[-1] + len(a))

    def take(self, index: np.ndarray, missing: np.ndarray | None) -> pa.Array:
        if not self.chunks or not len(index):
            return pa.nulls(len(index), self.type)
        if len(self.chunks) == 1:
            return _take(self.chunks[0], index, missing)
        chunk = np.searchsorted(self.starts, index, side="right") - 1
        order = np.argsort(chunk, kind="stable")
        bounds = np.searchsorted(chunk[order], np.arange(len(self.chunks) + 1))
        pieces = []
        for c in np.flatnonzero(np.diff(bounds)):  # one step per chunk, not per row
            rows = order[bounds[c]:bounds[c + 1]]
            pieces.append(pc.take(self.chunks[c], from_numpy(index[rows] - self.starts[c])))
        grouped = pa.concat_arrays(pieces) if len(pieces) > 1 else pieces[0]
        back = np.empty(len(index), dtype=np.int64)
        back[order] = np.arange(len(index))
        return _take(grouped, back, missing)

    def keep(self, mask: np.ndarray | slice) -> None:
        if isinstance(mask, slice):
            first = mask.start or 0
            chunks = []
            for c, start in zip(self.chunks, self.starts):
                if start + len(c) > first:
                    chunks.append(c.slice(max(first - int(start), 0)))
            self._reset(chunks)
            return
        self._reset([pc.filter(c, pa.array(mask[s:s + len(c)]))
                     for c, s in zip(self.chunks, self.starts[:-1])])

    def whole(self) -> pa.Array | pa.ChunkedArray:
        # immutable Arrow arrays: a snapshot may share them
        return pa.chunked_array(self.chunks, self.type)

    view = whole


def _take(a: pa.Array, index: np.ndarray, missing: np.ndarray | None) -> pa.Array:
    if missing is None:
        return pc.take(a, from_numpy(index))
    return pc.take(a, from_numpy(index, missing))


class _Dictionary:
    """Text as int32 codes (-1 for NULL) into one dictionary of the distinct values."""

    def __init__(self, type: pa.DataType):
        self.type = type
        self.codes = Growing(np.dtype(np.int32))
        self.dictionary: pa.Array = pa.array([], type)
        #: bytes the rows' values would take plain (offsets and data), for ``pays``
        self.plain_bytes = 0
        #: values appended but not yet looked up in the dictionary (``_flush``), after the
        #: rows that have codes; their rows and bytes
        self.pending: list[pa.Array] = []
        self.pending_rows = self.pending_bytes = 0
        #: the dictionary's values by hash (text_hashes), made at the first lookup
        self._hashed: HashedLookup | None = None

    @property
    def rows(self) -> int:
        return self.codes.n + self.pending_rows

    def nbytes(self) -> int:
        self._flush()
        return self.codes.n * 4 + self.dictionary.nbytes

    def pays(self) -> bool:
        """Whether the dictionary still saves memory (see the module doc), judged on the
        rows that have codes (values still pending are judged when they get theirs)."""
        if len(self.dictionary) > DICTIONARY_MAX:
            return False
        return self.codes.n < DICTIONARY_PROBATION or \
            self.codes.n * 4 + self.dictionary.nbytes <= DICTIONARY_SHARE * self.plain_bytes

    def append(self, a: pa.Array) -> None:
        """Values, or a dictionary array of them (a snapshot's column) taken as it is.

        Once the dictionary has proved itself (``DICTIONARY_PROBATION`` rows), plain values
        wait in ``pending`` and are looked up in it many batches at a time (``_flush``):
        a lookup hashes the whole dictionary into a set before it probes (Arrow keeps no
        set between calls), which for each 64 K-row batch of Nexmark bids cost more than
        the probe itself (q20: 60 % of the join's CPU was that lookup)."""
        if len(self.dictionary) and not pa.types.is_dictionary(a.type) and \
                a.null_count < len(a) and self.codes.n >= DICTIONARY_PROBATION:
            self.pending.append(a)
            self.pending_rows += len(a)
            self.pending_bytes += a.nbytes
            if self.pending_rows >= max(_PENDING_PER_VALUE * len(self.dictionary),
                                        _CHUNK_ROWS) or self.pending_bytes >= _PENDING_BYTES:
                self._flush()
            return
        self._flush()
        if a.null_count == len(a):
            self.plain_bytes += 4 * len(a)
            self.codes.extend(np.full(len(a), -1, dtype=np.int32))
            return
        if len(self.dictionary) and not pa.types.is_dictionary(a.type):
            self._append_known(a)
            return
        encoded = a if pa.types.is_dictionary(a.type) else pc.dictionary_encode(a)
        local = encoded.dictionary
        lengths = pc.binary_length(local).to_numpy(zero_copy_only=False)
        used = pc.value_counts(encoded.indices.drop_null())
        self.plain_bytes += 4 * len(a) + int(np.dot(
            lengths[used.field("values").to_numpy(zero_copy_only=False)],
            used.field("counts").to_numpy(zero_copy_only=False)))
        mapping = self._mapping(local)
        indices = encoded.indices
        if indices.null_count:
            local_codes = pc.fill_null(indices, -1).to_numpy(zero_copy_only=False)
            codes = np.where(local_codes < 0, -1, mapping[np.maximum(local_codes, 0)])
        else:
            codes = mapping[indices.to_numpy(zero_copy_only=False)]
        self.codes.extend(codes.astype(np.int32, copy=False))

    def _mapping(self, local: pa.Array) -> np.ndarray:
        """The codes in this column's dictionary of the values of ``local`` (a dictionary
        of distinct values), those it lacks added to it."""
        if not len(self.dictionary):
            self.dictionary = local
            return np.arange(len(local), dtype=np.int32)
        at = pc.index_in(local, value_set=self.dictionary)
        mapping = pc.fill_null(at, -1).to_numpy(zero_copy_only=False).astype(np.int32)
        new = mapping < 0
        if new.any():
            mapping[new] = len(self.dictionary) + np.arange(int(new.sum()), dtype=np.int32)
            self.dictionary = pa.concat_arrays([self.dictionary,
                                                pc.filter(local, pa.array(new))])
        return mapping

    def extend_encoded(self, column: pa.ChunkedArray,
                       keep: Sequence[np.ndarray | None] | None = None) -> None:
        """``append`` of every chunk of a dictionary column (a restored snapshot's: each
        Parquet row group has a dictionary of its own, mostly equal to the one before) at
        once: each run of chunks with equal dictionaries looked up in this column's once
        (comparing a dictionary with the previous one is a memcmp; hashing it, as unifying
        the chunks' dictionaries does, cost most of a restore), each chunk's codes mapped
        through that into a buffer grown once; the plain size counted from the codes (a
        ``bincount``, where ``append`` hashes every row). ``keep``: per chunk, the rows
        to take (None: all)."""
        self._flush()
        masks = keep if keep is not None else [None] * column.num_chunks
        chunks = [(c, m) for c, m in zip(column.chunks, masks)
                  if len(c) and (m is None or m.any())]
        sizes = [len(c) if m is None else int(np.count_nonzero(m)) for c, m in chunks]
        self.codes.reserve(sum(sizes))
        local: pa.Array | None = None
        mapping = used = np.zeros(0, dtype=np.int64)
        for (c, m), size in zip(chunks, sizes):
            out = self.codes.grow(size)
            self.plain_bytes += 4 * size
            if c.null_count == len(c):
                out[:] = -1
                continue
            if local is None or len(c.dictionary) != len(local) or \
                    not c.dictionary.equals(local):
                self._count_plain(local, used)
                local = c.dictionary
                mapping = self._mapping(local)
                used = np.zeros(len(local), dtype=np.int64)
            indices = c.indices
            if indices.null_count:
                local_codes = pc.fill_null(indices, -1).to_numpy(zero_copy_only=False)
                if m is not None:
                    local_codes = local_codes[m]
                valid = local_codes >= 0
                np.copyto(out, np.where(valid, mapping[np.maximum(local_codes, 0)], -1),
                          casting="unsafe")
                used += np.bincount(local_codes[valid], minlength=len(local))
            else:
                local_codes = indices.to_numpy(zero_copy_only=False)
                if m is not None:
                    local_codes = local_codes[m]
                np.take(mapping, local_codes, out=out)
                used += np.bincount(local_codes, minlength=len(local))
        self._count_plain(local, used)

    def _count_plain(self, local: pa.Array | None, used: np.ndarray) -> None:
        """Add the bytes of ``local``'s values, each ``used`` times, to ``plain_bytes``."""
        if local is not None and len(local):
            lengths = pc.binary_length(local).to_numpy(zero_copy_only=False)
            self.plain_bytes += int(np.dot(lengths.astype(np.int64), used))

    def _flush(self) -> None:
        """Give the pending values their codes, all in one lookup (one set of the
        dictionary for all of them)."""
        if not self.pending:
            return
        pending = pa.chunked_array(self.pending, self.type)
        self.pending, self.pending_rows, self.pending_bytes = [], 0, 0
        self._append_known(pending)

    def _append_known(self, a: pa.Array | pa.ChunkedArray) -> None:
        """Values once the dictionary has some: each looked up in it by its hash and an
        exact compare (text_hashes: a persistent table of the dictionary's hashes, where
        ``index_in`` hashes the dictionary into a set per call and costs several times
        more a value); the values that finds no code for (new ones) by ``_index_in``."""
        self.plain_bytes += 4 * len(a) + _value_bytes(a)
        if self._hashed is None:
            self._hashed = HashedLookup()
        codes, rest = self._hashed.lookup(a, self.dictionary)
        if len(rest) == len(a):
            codes = self._index_in(a)
        elif len(rest):
            codes[rest] = self._index_in(pc.take(a, from_numpy(rest)))
        self.codes.extend(codes)

    def _index_in(self, a: pa.Array | pa.ChunkedArray) -> np.ndarray:
        """Int32 codes of ``a``'s values (-1 for NULL) by Arrow's ``index_in``, the values
        the dictionary lacks added to it in order of first appearance."""
        at = pc.index_in(a, value_set=self.dictionary)
        if at.null_count > a.null_count:   # values the dictionary lacks
            lacking = pc.and_(pc.is_null(at), pc.is_valid(a))
            new = pc.unique(pc.filter(a, lacking))
            self.dictionary = pa.concat_arrays([self.dictionary, _one_array(new)])
            at = pc.index_in(a, value_set=self.dictionary)
        out = np.empty(len(a), dtype=np.int32)
        start = 0
        for chunk in (at.chunks if isinstance(at, pa.ChunkedArray) else [at]):
            codes = pc.fill_null(chunk, -1) if chunk.null_count else chunk
            out[start:start + len(chunk)] = codes.to_numpy(zero_copy_only=False)
            start += len(chunk)
        return out

    def take(self, index: np.ndarray, missing: np.ndarray | None) -> pa.Array:
        self._flush()
        codes = self.codes.values[index]
        null = codes < 0
        if missing is not None:
            null |= missing
        if not null.any():
            return pc.take(self.dictionary, from_numpy(codes))
        return pc.take(self.dictionary, from_numpy(np.where(null, 0, codes), null))

    def encoded(self, index: np.ndarray | None, used: bool = False) -> pa.DictionaryArray:
        """Rows ``index`` (all) as a dictionary array: the codes copied, the dictionary
        shared (an Arrow array this column replaces when it grows, never changes), or with
        ``used`` cut to the values these rows use (a few rows of a checkpoint's delta do
        not write the whole dictionary again)."""
        self._flush()
        codes = self.codes.values.copy() if index is None else self.codes.values[index]
        null = codes < 0
        if used and len(self.dictionary):
            present = np.zeros(len(self.dictionary), dtype=bool)
            present[codes[~null]] = True
            if not present.all():
                renumber = (np.cumsum(present) - 1).astype(np.int32)
                codes = np.where(null, 0, renumber[np.maximum(codes, 0)])
                indices = from_numpy(codes, null) if null.any() else from_numpy(codes)
                return pa.DictionaryArray.from_arrays(
                    indices, pc.filter(self.dictionary, pa.array(present)))
        indices = from_numpy(np.where(null, 0, codes), null) if null.any() else \
            from_numpy(codes)
        return pa.DictionaryArray.from_arrays(indices, self.dictionary)

    def keep(self, mask: np.ndarray | slice) -> None:
        self._flush()
        n = self.codes.n
        self.codes.reset(self.codes.values[mask])
        self.plain_bytes = self.plain_bytes * self.codes.n // max(n, 1)

    def whole(self) -> pa.Array:
        self._flush()
        return self.take(np.arange(self.codes.n), None)

    view = whole

    def plain(self) -> _Plain:
        """The column decoded, for when the dictionary stopped paying."""
        self._flush()
        out = _Plain(self.type)
        n = self.codes.n
        for start in range(0, n, _CHUNK_ROWS * 16):
            out.append(self.take(np.arange(start, min(n, start + _CHUNK_ROWS * 16)), None))
        return out


_Column = _Fixed | _Plain | _Dictionary


def _table(arrays: list, schema: pa.Schema, rows: int) -> pa.Table:
    """A table of ``arrays``; without columns still one of ``rows`` rows (the side of a
    keyless semi join keeps no column, only how many rows it has)."""
    if arrays:
        return pa.Table.from_arrays(arrays, schema=schema)
    batch = pa.record_batch([pa.nulls(rows)], names=["_"]).select([])
    return pa.Table.from_batches([batch], schema=schema)


class CompactRows:
    """Rows of ``schema``, appended in batches, read by row number (see the module doc).
    ``dictionary``: text columns may be dictionary-encoded. Columns named in ``plain`` are
    neither dictionary-encoded nor narrowed (keys a caller ``view``s whole, at no copy)."""

    def __init__(self, schema: pa.Schema, dictionary: bool = True,
                 plain: Sequence[str] = ()):
        self.schema = schema
        self.num_rows = 0
        self.columns: list[_Column] = []
        for f in schema:
            dtype = _fixed_dtype(f.type)
            if dtype is not None:
                self.columns.append(_Fixed(f.type, dtype, narrow=f.name not in plain))
            elif dictionary and _is_text(f.type) and f.name not in plain:
                self.columns.append(_Dictionary(f.type))
            else:
                self.columns.append(_Plain(f.type))

    @property
    def nbytes(self) -> int:
        """Bytes of the kept rows (values, codes, dictionaries and Arrow chunks)."""
        return sum(c.nbytes() for c in self.columns)

    def append(self, rows: pa.Table | pa.RecordBatch) -> None:
        """Add rows (columns by name, cast to the schema's types)."""
        if rows.num_rows == 0:
            return
        for i, f in enumerate(self.schema):
            a = _one_array(rows.column(f.name))
            column = self.columns[i]
            if not a.type.equals(f.type) and not (
                    isinstance(column, _Dictionary) and pa.types.is_dictionary(a.type)
                    and a.type.value_type.equals(f.type)):
                a = pc.cast(a, f.type)
            column.append(a)
            if isinstance(column, _Dictionary) and not column.pays():
                self.columns[i] = column.plain()
        self.num_rows += rows.num_rows

    def extend(self, rows: pa.Table, keep: np.ndarray | None = None) -> None:
        """``append`` of a table of many chunks (a restored snapshot, a chain's files folded)
        a column at a time, without combining its chunks: NumPy buffers grown once to their
        final size (and narrowed once), a dictionary column's chunks mapped into the
        store's dictionary through one unified dictionary. The store then holds what
        appending the chunks one by one gives (a narrowed column's base may differ).
        ``keep``: only the rows where it is True (a restore at another parallelism keeps its
        key groups' rows), taken from the chunks as they are, not from a filtered copy."""
        if rows.num_rows == 0 or (keep is not None and not keep.any()):
            return
        for i, f in enumerate(self.schema):
            column = self.columns[i]
            chunked = rows.column(f.name)
            masks = _chunk_masks(chunked, keep)
            if isinstance(column, _Dictionary) and pa.types.is_dictionary(chunked.type) \
                    and chunked.type.value_type.equals(f.type):
                column.extend_encoded(chunked, masks)
            else:
                chunks = [(c if c.type.equals(f.type) else pc.cast(c, f.type), m)
                          for c, m in zip(chunked.chunks, masks) if len(c)]
                if isinstance(column, _Fixed):
                    column.reserve([c for c, _ in chunks])
                    for c, m in chunks:
                        column.append(c, m)
                else:
                    for c, m in chunks:
                        column.append(c if m is None else pc.filter(c, pa.array(m)))
            if isinstance(column, _Dictionary) and not column.pays():
                self.columns[i] = column.plain()
        self.num_rows += rows.num_rows if keep is None else int(np.count_nonzero(keep))

    def take(self, index: np.ndarray, names: Sequence[str] | None = None) -> pa.Table:
        """Rows ``index`` (NULLs where ``index < 0``) of the columns ``names`` (all)."""
        index = np.asarray(index, dtype=np.int64)
        missing = index < 0
        if missing.any():
            index = np.where(missing, 0, index)
            if self.num_rows == 0:
                fields = [self.schema.field(n) for n in names] if names is not None \
                    else list(self.schema)
                return _table([pa.nulls(len(index), f.type) for f in fields],
                              pa.schema(fields), len(index))
        else:
            missing = None
        picked = [(f, c) for f, c in zip(self.schema, self.columns)
                  if names is None or f.name in names]
        if names is not None:
            order = {n: i for i, n in enumerate(names)}
            picked.sort(key=lambda p: order[p[0].name])
        return _table([c.take(index, missing) for _, c in picked],
                      pa.schema([f for f, _ in picked]), len(index))

    def filter(self, mask: np.ndarray) -> pa.Table:
        """The rows where ``mask`` is True."""
        return self.take(np.flatnonzero(mask))

    def snapshot(self, mask: np.ndarray | None = None, index: np.ndarray | None = None
                 ) -> pa.Table:
        """The rows (where ``mask`` is True, or at positions ``index``) for a checkpoint, in
        new memory or immutable Arrow arrays; dictionary-encoded text stays encoded (a
        dictionary array sharing the dictionary; for ``index``, a checkpoint's delta, a
        dictionary of the values those rows use), so a snapshot costs the codes, not the
        text. ``append`` takes it back."""
        used = index is not None
        if index is None and mask is not None:
            index = np.flatnonzero(mask)
        arrays, fields = [], []
        for f, c in zip(self.schema, self.columns):
            if isinstance(c, _Dictionary):
                a = c.encoded(index, used)
            elif index is None:
                a = c.whole()
            else:
                a = c.take(index, None)
            arrays.append(a)
            fields.append(pa.field(f.name, a.type, f.nullable))
        rows = self.num_rows if index is None else len(index)
        return _table(arrays, pa.schema(fields), rows)

    def keep(self, mask: np.ndarray) -> None:
        """Keep only the rows where ``mask`` is True (a kept prefix costs no copy of text
        kept plain)."""
        if len(mask) == 0 or mask.all():
            return
        first = int(np.argmax(mask)) if mask.any() else len(mask)
        what: np.ndarray | slice = slice(first, None) if mask[first:].all() else mask
        for c in self.columns:
            c.keep(what)
        self.num_rows = int(np.count_nonzero(mask))

    def table(self) -> pa.Table:
        """Every row as one table in new memory or immutable Arrow arrays (a snapshot)."""
        return _table([c.whole() for c in self.columns], self.schema, self.num_rows)

    def view(self, names: Sequence[str] | None = None) -> pa.Table:
        """Every row of the columns ``names`` (all), fixed-width ones over the store's own
        buffers: for reading now (a lookup, a hash join's build side), not for keeping."""
        names = self.schema.names if names is None else list(names)
        return _table([self.columns[self.schema.get_field_index(n)].view() for n in names],
                      pa.schema([self.schema.field(n) for n in names]), self.num_rows)

    def fixed(self, name: str) -> bool:
        """Whether a column's ``view`` costs no copy (values in a NumPy buffer as they are)."""
        column = self.columns[self.schema.get_field_index(name)]
        return isinstance(column, _Fixed) and not column.narrow

    def integers(self, name: str, index: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """The values of a fixed-width integer-like column at rows ``index`` as int64 (0
        under a NULL) and their NULL mask (None when the column has no NULL): NumPy
        gathers from the store's buffers, no Arrow array, for a lookup that reads a few
        stored keys back many times."""
        column = self.columns[self.schema.get_field_index(name)]
        assert isinstance(column, _Fixed) and column.dtype.kind in "iu"
        values = column.data.buf[index]
        values = values.astype(np.int64) + np.int64(column.base or 0) if column.narrow \
            else values.astype(np.int64, copy=False)
        if column.valid is None:
            return values, None
        nulls = ~column.valid.buf[index]
        values[nulls] = 0
        return values, nulls
