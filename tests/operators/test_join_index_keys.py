"""The key -> rows index (operators.join_index) over keys that are not one integer column:
text (NULL, empty, unicode), two columns (text and integer, two integers), decimals, hashed
to a few bits so that most distinct keys collide (every collision must be dropped by the
verification), the key columns in chunks of any size, rows removed in place (``keep``), all
against a brute force model; and a JoinSide's probes against the Polars hash join."""

from __future__ import annotations

from decimal import Decimal

import numpy as np
import pyarrow as pa
from hypothesis import given, settings
from hypothesis import strategies as st

from caudal.operators.join_index import KeyRows
from caudal.operators.join_rows import match
from caudal.operators.join_side import JoinSide

_TEXT = st.one_of(st.none(), st.sampled_from(["", "a", "b", "ab", "é", "日本", "a\x00", " "]))
_INT = st.one_of(st.none(), st.integers(-3, 3))
_ROW = st.tuples(_TEXT, _INT)
_ops = st.lists(st.tuples(st.sampled_from(["append", "probe", "probe", "keep"]),
                          st.lists(_ROW, max_size=40), st.integers(0, 2**31)),
                min_size=1, max_size=20)

SCHEMAS = {
    "text": pa.schema([("s", pa.string())]),
    "large_text": pa.schema([("s", pa.large_string())]),
    "binary": pa.schema([("s", pa.binary())]),
    "text_int": pa.schema([("s", pa.string()), ("i", pa.int64())]),
    "int_int": pa.schema([("s", pa.int32()), ("i", pa.int64())]),
    "decimal": pa.schema([("s", pa.decimal128(6, 2))]),
}


def _value(name: str, t: pa.DataType, v):
    if v is None:
        return None
    if name == "s" and pa.types.is_binary(t):
        return v.encode()
    if name == "s" and pa.types.is_integer(t):
        return len(v.encode())
    if pa.types.is_decimal(t):
        return Decimal(len(v.encode())) / 4
    return v


def _table(rows: list, schema: pa.Schema, chunk: int) -> pa.Table:
    """``rows`` in chunks of ``chunk`` rows (mixed chunking of the stored and probe keys)."""
    cols = {f.name: [_value(f.name, f.type, r[j]) for r in rows]
            for j, f in enumerate(schema)}
    whole = pa.table({n: pa.array(v, schema.field(n).type) for n, v in cols.items()},
                     schema=schema)
    if whole.num_rows <= chunk:
        return whole
    return pa.concat_tables([whole.slice(i, chunk) for i in range(0, whole.num_rows, chunk)])


def _key(row: tuple, schema: pa.Schema) -> tuple | None:
    key = tuple(_value(f.name, f.type, row[j]) for j, f in enumerate(schema))
    return None if any(k is None for k in key) else key


def _pairs(pi: np.ndarray, ri: np.ndarray) -> list[tuple[int, int]]:
    return sorted(zip(pi.tolist(), ri.tolist()))


@settings(max_examples=80, deadline=None)
@given(_ops, st.sampled_from(sorted(SCHEMAS)), st.sampled_from([1, 2, 64]),
       st.integers(1, 9))
def test_hashed_pairs_equal_brute_force(ops, kind, bits, chunk):
    """A hash of 1 or 2 bits puts nearly every key in a collision with others."""
    schema = SCHEMAS[kind]
    index = KeyRows(schema.names, schema, bits=bits)
    assert index.hashed
    stored: list = []
    for op, rows, seed in ops:
        if op == "append":
            stored += rows
        elif op == "keep" and stored:
            mask = np.random.default_rng(seed).random(len(stored)) < 0.6
            stored = [r for r, m in zip(stored, mask) if m]
            index.keep(mask)
        else:
            table = _table(stored, schema, chunk)
            index.cover(table)
            probe = _table(rows, schema, chunk + 1)
            pi, ri = index.pairs(probe, schema.names,
                                 lambda at, t=table: t.take(pa.array(at)))
            keys = [_key(r, schema) for r in stored]
            expected = [(i, j) for i, r in enumerate(rows) if _key(r, schema) is not None
                        for j, k in enumerate(keys) if k == _key(r, schema)]
            assert _pairs(pi, ri) == expected


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["append", "probe", "keep"]),
                          st.lists(_INT, max_size=40), st.integers(0, 2**31)),
                min_size=1, max_size=25))
def test_integer_keys_keep_rows_in_place(ops):
    """One integer key: rows removed by ``keep`` (not a rebuild) leave the others found."""
    schema = pa.schema([("k", pa.int64())])
    index = KeyRows("k", schema)
    stored: list = []
    for op, keys, seed in ops:
        if op == "append":
            stored += keys
        elif op == "keep" and stored:
            mask = np.random.default_rng(seed).random(len(stored)) < 0.6
            stored = [k for k, m in zip(stored, mask) if m]
            index.keep(mask)
        else:
            index.cover(pa.array(stored, pa.int64()))
            pi, ri = index.pairs(pa.array(keys, pa.int64()))
            expected = [(i, j) for i, k in enumerate(keys) if k is not None
                        for j, s in enumerate(stored) if s == k]
            assert _pairs(pi, ri) == expected


@settings(max_examples=30, deadline=None)
@given(st.lists(st.tuples(st.booleans(), st.lists(_ROW, max_size=30),
                          st.one_of(st.none(), st.integers(0, 2**31))),
                min_size=1, max_size=12))
def test_join_side_text_and_two_column_probes_equal_the_hash_join(steps):
    """Sides keyed on (text, int) with rows removed now and then (a changelog's side):
    each batch probes the other through its index and through the Polars join."""
    schema = pa.schema([("s", pa.string()), ("i", pa.int64()), ("v", pa.int64())])
    sides = [JoinSide(schema, ["s", "i"], {}, {}, dictionary=d) for d in (True, False)]
    assert all(s.index is not None and s.index.hashed for s in sides)
    for which, rows, drop in steps:
        batch = pa.table({"s": pa.array([r[0] for r in rows], pa.string()),
                          "i": pa.array([r[1] for r in rows], pa.int64()),
                          "v": pa.array(range(len(rows)), pa.int64())})
        other = sides[1 - which]
        got = other.match(batch, ["s", "i"])
        expected = match(batch, ["s", "i"], other.store.view(), ["s", "i"])
        assert _pairs(*got) == _pairs(*expected)
        sides[which].append(batch)
        if drop is not None and sides[which].size:
            sides[which].keep(np.random.default_rng(drop).random(sides[which].size) < 0.7)


def test_types_indexed():
    """Floating-point keys (``-0.0 = 0.0`` with other bits) and 256-bit decimals (which
    Polars cannot hash) are not indexed; the others are, one integer-like column unhashed."""
    from caudal.operators.join_index import indexable

    assert not any(indexable(t) for t in (pa.float64(), pa.float32(), pa.decimal256(40, 2)))
    assert all(indexable(t) for t in (pa.string(), pa.large_binary(), pa.decimal128(10, 2),
                                      pa.bool_(), pa.uint64(), pa.int8(), pa.date32()))
    assert not KeyRows("k", pa.schema([("k", pa.date32())])).hashed
    assert KeyRows("k", pa.schema([("k", pa.uint64())])).hashed
