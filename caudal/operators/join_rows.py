"""What every join operator does with rows: find the pairs with equal keys (a Polars hash
join that returns row numbers), check the residual condition on the candidate pairs, and
build output rows (left columns, then right columns under their joined names; NULL for the
missing side of an outer row). All of it per batch, with index arrays, never per row.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa

from caudal import compute as pc

if TYPE_CHECKING:
    import polars as pl

from caudal.operators.compact_rows import _fixed_dtype, fixed_values
from caudal.operators.key_index import _integer_like
from caudal.operators.keyed_tables import as_array, from_numpy, positional, take_or_null
from caudal.plan.compile import compile_expr, evaluate
from caudal.plan.expressions import Call, Column, Expr, conjuncts

#: comparisons a residual condition is checked with in NumPy (``_integer_terms``)
_COMPARE = {"lt": np.less, "lte": np.less_equal, "gt": np.greater,
            "gte": np.greater_equal, "eq": np.equal, "neq": np.not_equal}


def match(probe: pa.Table | pa.RecordBatch, probe_keys: Sequence[str],
          build: pa.Table | pl.DataFrame, build_keys: Sequence[str],
          nulls_equal: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Row numbers ``(probe_rows, build_rows)`` of every pair with equal keys (NULL matches
    nothing, as SQL ``=``; NULL matches NULL with ``nulls_equal``, as INTERSECT / EXCEPT
    compare rows). Without keys every pair matches (a cross product).
    ``build`` may be a Polars frame of the key columns already (``_k0, _k1, …``)."""
    import polars as pl  # late: a lookup join on a unique key never needs Polars

    n = probe.num_rows
    m = build.height if isinstance(build, pl.DataFrame) else build.num_rows
    if n == 0 or m == 0:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty
    if not probe_keys:
        return np.repeat(np.arange(n), m), np.tile(np.arange(m), n)
    left = positional(probe, probe_keys).with_row_index("_l")
    right = build if isinstance(build, pl.DataFrame) else positional(build, build_keys)
    right = right.with_row_index("_r")
    names = [f"_k{i}" for i in range(len(probe_keys))]
    joined = left.join(right, on=names, how="inner", nulls_equal=nulls_equal).select("_l",
                                                                                     "_r")
    return (joined["_l"].to_numpy().astype(np.int64, copy=False),
            joined["_r"].to_numpy().astype(np.int64, copy=False))


class JoinLayout:
    """The joined row of a join operator: names, residual condition and output columns."""

    def __init__(self, left_schema: pa.Schema, right_schema: pa.Schema,
                 right_rename: dict[str, str], output_schema: pa.Schema,
                 residual: Expr | None):
        self.left_schema = left_schema
        self.right_schema = right_schema
        self.right_names = [right_rename.get(n, n) for n in right_schema.names]
        self.output_schema = output_schema
        self.residual = residual
        self._residual = compile_expr(residual) if residual is not None else None
        #: each output column's side (0 left, 1 right) and position there (``beside``)
        self._sides: list[tuple[int, int]] | None = None
        self.joined_schema = pa.schema(list(left_schema) + [
            pa.field(n, f.type) for n, f in zip(self.right_names, right_schema)])
        #: the residual as comparisons of integer-like columns, checked in NumPy
        self._terms = _integer_terms(residual, self.joined_schema) \
            if residual is not None else None

    def pairs(self, left: pa.Table, right: pa.Table, li: np.ndarray,
              ri: np.ndarray) -> pa.Table:
        """Joined rows ``left[li[k]] ++ right[ri[k]]`` (an index < 0 gives NULLs). When every
        row of a side comes once and in order (a lookup join where each row found its one
        match, or rows taken from a join's state for these pairs), that side's columns are
        kept as they are instead of copied."""
        columns = [c if _in_order(li, left.num_rows) else take_or_null(c, li)
                   for c in left.columns]
        columns += [c if _in_order(ri, right.num_rows) else take_or_null(c, ri)
                    for c in right.columns]
        return pa.Table.from_arrays(columns, schema=self.joined_schema)

    def beside(self, left: pa.Table, right: pa.Table, at: np.ndarray) -> pa.Table:
        """The output rows (no residual) of ``left[i] ++ right[at[i]]`` for every left row in
        order (``at[i] < 0`` gives NULLs): the left columns as they are, one take of each
        right column the output keeps (only those)."""
        if self._sides is None:
            names = {n: (0, i) for i, n in enumerate(self.left_schema.names)}
            names.update({n: (1, i) for i, n in enumerate(self.right_names)})
            self._sides = [names[f.name] for f in self.output_schema]
        missing = at < 0
        index = from_numpy(np.where(missing, 0, at), missing) if missing.any() \
            else from_numpy(at)
        arrays = []
        for f, (side, i) in zip(self.output_schema, self._sides):
            if side == 0:
                col = left.column(i)
            else:
                col = pc.take(as_array(right.column(i)), index)
            arrays.append(col if col.type.equals(f.type) else pc.cast(col, f.type))
        return pa.Table.from_arrays(arrays, schema=self.output_schema)

    def accept(self, joined: pa.Table) -> np.ndarray:
        """Which joined rows satisfy the residual condition (NULL counts as false)."""
        if self._residual is None or joined.num_rows == 0:
            return np.ones(joined.num_rows, dtype=bool)
        batch = joined.combine_chunks().to_batches()[0] if joined.num_rows else None
        mask = evaluate(self._residual, batch, pa.bool_())
        return pc.fill_null(mask, False).to_numpy(zero_copy_only=False)

    def matching(self, left: pa.Table, right: pa.Table, li: np.ndarray, ri: np.ndarray
                 ) -> tuple[np.ndarray, np.ndarray, pa.Table]:
        """The key-equal pairs that also satisfy the residual, and their joined rows."""
        joined = self.pairs(left, right, li, ri)
        if self._residual is None:
            return li, ri, joined
        ok = self.accept(joined)
        if ok.all():
            return li, ri, joined
        return li[ok], ri[ok], pc.filter(joined, from_numpy(ok))

    def _own_names(self, side: int, joined: Sequence[str]) -> list[str]:
        """The columns of input ``side`` (its own names) whose joined names are ``joined``."""
        schema = self.left_schema if side == 0 else self.right_schema
        names = schema.names if side == 0 else self.right_names
        wanted = set(joined)
        return [own for own, name in zip(schema.names, names) if name in wanted]

    def _side_table(self, side: int, columns: pa.Table) -> pa.Table:
        """Columns of input ``side`` under their joined names."""
        if side == 0:
            return columns
        rename = dict(zip(self.right_schema.names, self.right_names))
        return columns.rename_columns([rename[n] for n in columns.column_names])

    def _numeric_accept(self, side: int, rows: pa.Table,
                        numbers: Callable[[str, np.ndarray], Any],
                        pi: np.ndarray, oi: np.ndarray) -> np.ndarray | None:
        """Which candidate pairs satisfy a residual of integer-like comparisons
        (``_integer_terms``), computed on the columns' NumPy values: no Arrow arrays taken
        and no expression evaluated. A comparison with a NULL is not satisfied (as
        ``accept``). None when the residual is not of that form."""
        if self._terms is None:
            return None
        left = set(self.left_schema.names)
        probe_names = self.left_schema.names if side == 0 else self.right_names
        own = dict(zip(self.right_names, self.right_schema.names))
        got: dict[str, tuple[np.ndarray, np.ndarray | None]] = {}
        for name, dtype in {n: d for _, a, b, d in self._terms for n in (a, b)}.items():
            if name in probe_names:
                column = as_array(rows.column(name if side == 0 else own[name]))
                if column.type != self.joined_schema.field(name).type:
                    return None
                values = fixed_values(column, dtype)[pi]
                valid = column.is_valid().to_numpy(zero_copy_only=False)[pi] \
                    if column.null_count else None
                got[name] = (values, valid)
            else:
                values, nulls = numbers(name if name in left else own[name], oi)
                got[name] = (values, None if nulls is None else ~nulls)
        ok = np.ones(len(pi), dtype=bool)
        for compare, a, b, _ in self._terms:
            (va, ma), (vb, mb) = got[a], got[b]
            ok &= compare(va, vb)
            for valid in (ma, mb):
                if valid is not None:
                    ok &= valid
        return ok

    def checked(self, side: int, rows: pa.Table, stored: Callable[..., pa.Table],
                pi: np.ndarray, oi: np.ndarray,
                numbers: Callable[[str, np.ndarray], Any] | None = None
                ) -> tuple[np.ndarray, np.ndarray, pa.Table]:
        """``probed`` taking the stored side's columns as they are needed: the residual's
        columns of the candidate pairs first, then the output's columns of the pairs that
        satisfy it (``stored(index, names)``: stored rows' columns). Columns are taken for
        the pairs kept, never taken whole and filtered, and columns neither reads are not
        taken at all. The joined rows hold the output's columns. A residual of comparisons
        of integer-like columns is checked on NumPy values (``numbers(name, index)``: a
        stored column's values and NULL mask, as ``CompactRows.integers``)."""
        o = 1 - side
        read = self.residual.columns() if self.residual is not None else set()
        if self._residual is not None and not read:   # (a condition of no column)
            return self.probed(side, rows, stored(oi, None), pi, oi)
        ok = self._numeric_accept(side, rows, numbers, pi, oi) \
            if read and len(pi) and numbers is not None else None
        if ok is not None:
            if not ok.all():
                pi, oi = pi[ok], oi[ok]
        elif read and len(pi):
            parts = [take_or_null(rows.column(n), pi) for n in self._own_names(side, read)]
            probe = pa.Table.from_arrays(parts, names=self._own_names(side, read))
            joined = _beside(self._side_table(side, probe), self._side_table(
                o, stored(oi, self._own_names(o, read))))
            ok = self.accept(joined)
            if not ok.all():
                pi, oi = pi[ok], oi[ok]
        out = self.output_schema.names
        probe_names = self._own_names(side, out)
        probe = pa.Table.from_arrays([take_or_null(rows.column(n), pi) for n in probe_names],
                                     names=probe_names)
        joined = _beside(self._side_table(side, probe),
                         self._side_table(o, stored(oi, self._own_names(o, out))))
        return pi, oi, joined

    def probed(self, side: int, rows: pa.Table, partners: pa.Table, pi: np.ndarray,
               oi: np.ndarray) -> tuple[np.ndarray, np.ndarray, pa.Table]:
        """``matching`` for a batch of input ``side`` probing the other side's store: the
        pairs ``rows[pi[k]]`` with ``partners[k]`` (the stored rows ``oi[k]``, taken once in
        pair order, so their columns are used as they are) that satisfy the residual, as
        ``(probe rows, stored rows, joined rows)``."""
        at = np.arange(len(oi))
        if side == 0:
            li, ri, joined = self.matching(rows, partners, pi, at)
            return li, oi[ri], joined
        li, ri, joined = self.matching(partners, rows, at, pi)
        return ri, oi[li], joined

    def output(self, joined: pa.Table) -> pa.Table:
        """The output columns of joined rows, in the output schema."""
        arrays = []
        for f in self.output_schema:
            col = joined.column(f.name)
            if not col.type.equals(f.type):
                col = pc.cast(col, f.type)
            arrays.append(col)
        return pa.Table.from_arrays(arrays, schema=self.output_schema)

    def padded(self, rows: pa.Table, side: int) -> pa.Table:
        """Output rows for rows of one side without a partner (the other side NULL)."""
        n = rows.num_rows
        if side == 0:
            empty = self.right_schema.empty_table()
            joined = self.pairs(rows, empty, np.arange(n), np.full(n, -1, dtype=np.int64))
        else:
            empty = self.left_schema.empty_table()
            joined = self.pairs(empty, rows, np.full(n, -1, dtype=np.int64), np.arange(n))
        return self.output(joined)


def _integer_terms(residual: Expr, joined: pa.Schema
                   ) -> list[tuple[Any, str, str, np.dtype]] | None:
    """A residual that is a conjunction of comparisons of two columns of one
    integer-like type (integers but uint64, timestamps, dates, times, durations: the
    interval join's ``b.t BETWEEN a.t AND a.expires``) as ``(NumPy comparison, column,
    column, dtype)`` terms; None for any other condition (floats too: NaN orders
    differently in SQL)."""
    terms = []
    for term in conjuncts(residual):
        if not (isinstance(term, Call) and term.func in _COMPARE and len(term.args) == 2
                and all(isinstance(a, Column) and a.name in joined.names for a in term.args)):
            return None
        a, b = term.args
        t = joined.field(a.name).type
        dtype = _fixed_dtype(t)
        if dtype is None or not _integer_like(t) or not t.equals(joined.field(b.name).type):
            return None
        terms.append((_COMPARE[term.func], a.name, b.name, dtype))
    return terms


def _beside(a: pa.Table, b: pa.Table) -> pa.Table:
    """Two tables of the same rows as one (their columns side by side)."""
    return pa.Table.from_arrays([*a.columns, *b.columns],
                                names=[*a.column_names, *b.column_names])


def _in_order(index: np.ndarray, n: int) -> bool:
    """Whether ``index`` is 0, 1, …, n - 1."""
    return len(index) == n and (n == 0 or (
        index[0] == 0 and index[-1] == n - 1 and bool((np.diff(index) == 1).all())))


def repeat_rows(table: pa.Table, counts: np.ndarray) -> pa.Table:
    """Each row repeated ``counts[i]`` times (multiplicities of a multiset)."""
    if len(counts) and (counts == 1).all():
        return table
    return table.take(pa.array(np.repeat(np.arange(len(counts)), counts)))


def _appended(current: np.ndarray, more: np.ndarray) -> np.ndarray:
    """``current`` followed by ``more``, amortized: ``current`` is a view into a buffer
    with room after it, grown by doubling, so appending a batch costs the batch, not the
    whole state (a state of N rows appended in batches would otherwise copy O(N^2))."""
    n, k = len(current), len(more)
    base = current.base
    if isinstance(base, np.ndarray) and base.ndim == 1 and base.dtype == current.dtype \
            and current.flags.c_contiguous and n:
        start = (current.ctypes.data - base.ctypes.data) // current.itemsize
        if 0 <= start and start + n + k <= len(base) and \
                current.ctypes.data == base[start:].ctypes.data:
            base[start + n:start + n + k] = more
            return base[start:start + n + k]
    grown = np.empty(max(2 * (n + k), 1024), dtype=current.dtype)
    grown[:n] = current
    grown[n:n + k] = more
    return grown[:n + k]


class SideState:
    """The stored rows of one join input, with per-row counters as NumPy columns
    (``counters``: name -> dtype), and the Polars frame of their keys kept in step."""

    #: merge the table's chunks once it has this many
    MAX_CHUNKS = 64

    def __init__(self, schema: pa.Schema, keys: Sequence[str], counters: dict[str, Any]):
        self.schema = schema
        self.keys = list(keys)
        self.counters = dict(counters)
        self.rows: pa.Table = schema.empty_table()
        self.values: dict[str, np.ndarray] = {n: np.zeros(0, dtype=t)
                                              for n, t in self.counters.items()}
        self._frame: pl.DataFrame | None = None

    @property
    def size(self) -> int:
        return self.rows.num_rows

    def __getitem__(self, name: str) -> np.ndarray:
        return self.values[name]

    def __setitem__(self, name: str, value: np.ndarray) -> None:
        self.values[name] = value

    def build(self) -> pa.Table | pl.DataFrame:
        """What ``match`` probes: the key frame (or the rows, for a keyless join)."""
        if not self.keys:
            return self.rows
        if self._frame is None:
            self._frame = positional(self.rows, self.keys)
        return self._frame

    def append(self, rows: pa.Table, **values: np.ndarray) -> None:
        if rows.num_rows == 0:
            return
        if self._frame is not None and self.keys:
            import polars as pl

            self._frame = pl.concat([self._frame, positional(rows, self.keys)], rechunk=False)
        rows = rows.select(self.schema.names)
        if not rows.schema.equals(self.schema):
            rows = rows.cast(self.schema)
        self.rows = pa.concat_tables([self.rows, rows]) if self.size else rows
        if self.rows.num_columns and self.rows.column(0).num_chunks > self.MAX_CHUNKS:
            self.rows = self.rows.combine_chunks()
            self._frame = None
        for name, dtype in self.counters.items():
            value = values.get(name)
            if value is None:
                value = np.zeros(rows.num_rows, dtype=dtype)
            self.values[name] = _appended(self.values[name], value.astype(dtype, copy=False))

    def keep(self, mask: np.ndarray) -> None:
        """Keep only the rows where ``mask`` is True."""
        if mask.all():
            return
        first = int(np.argmax(mask)) if mask.any() else len(mask)
        if mask[first:].all():
            # rows arrive roughly in time order, so what expires is usually a prefix: a
            # zero-copy slice instead of a filter that copies the whole state (strings too)
            self.rows = self.rows.slice(first)
            if self._frame is not None:
                self._frame = self._frame.slice(first)
            for name in self.values:
                self.values[name] = self.values[name][first:]
            return
        self.rows = self.rows.filter(pa.array(mask))
        if self._frame is not None:
            import polars as pl

            self._frame = self._frame.filter(pl.Series(mask))
        for name in self.values:
            self.values[name] = self.values[name][mask]

    def take(self, mask: np.ndarray) -> pa.Table:
        return self.rows.filter(pa.array(mask))

    def table(self) -> pa.Table:
        """The state as one table (rows and counters), for a snapshot. The counters are
        copied: ``pa.array`` over a NumPy array shares its buffer, and the counters change in
        place (``+=``) while the checkpoint writer is still reading the snapshot."""
        table = self.rows
        for name, value in self.values.items():
            table = table.append_column(name, pa.array(value.copy()))
        return table

    def load(self, table: pa.Table | None) -> None:
        self._frame = None
        if table is None or table.num_rows == 0:
            self.rows = self.schema.empty_table()
            self.values = {n: np.zeros(0, dtype=t) for n, t in self.counters.items()}
            return
        self.rows = table.select(self.schema.names).cast(self.schema).combine_chunks()
        self.values = {n: table.column(n).to_numpy(zero_copy_only=False).astype(t)
                       for n, t in self.counters.items()}
