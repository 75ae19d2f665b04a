"""Incremental state: deltas (upserts, deletes, expiry) folded onto a base give exactly the
state a dict model gives, nulls in keys included."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq
from hypothesis import given, settings
from hypothesis import strategies as st

from caudal.state.incremental import (
    LazyPart,
    StateDelta,
    apply_delta,
    fold_chain,
    fold_chain_pieces,
    key_membership,
    merge_deltas,
    merge_plan,
    merged_pieces,
)

SCHEMA = pa.schema([("k", pa.int64()), ("s", pa.string()), ("v", pa.int64())])


def _table(rows: dict) -> pa.Table:
    keys = list(rows)
    return pa.table({"k": [k[0] for k in keys], "s": [k[1] for k in keys],
                     "v": [rows[k] for k in keys]}, schema=SCHEMA)


def _as_dict(table: pa.Table) -> dict:
    return {(k, s): v for k, s, v in zip(*(table.column(c).to_pylist() for c in "ksv"))}


def test_delta_replaces_deletes_and_expires():
    base = _table({(1, "a"): 10, (2, None): 20, (3, "c"): 30, (None, None): 40})
    delta = StateDelta(["k", "s"], upserts=_table({(2, None): 21, (5, "e"): 50}),
                       deletes=pa.table({"k": pa.array([None, 3], pa.int64()),
                                         "s": pa.array([None, "c"])}),
                       expire=("v", 15))
    out = apply_delta(base, delta.encode(), ["k", "s"], delta.expire)
    assert _as_dict(out) == {(2, None): 21, (5, "e"): 50}


def test_chain_of_deltas_from_nothing():
    d1 = StateDelta(["k", "s"], upserts=_table({(1, "a"): 1}))
    d2 = StateDelta(["k", "s"], deletes=pa.table({"k": pa.array([1], pa.int64()),
                                                  "s": ["a"]}))
    d3 = StateDelta(["k", "s"], upserts=_table({(2, "b"): 2}))
    parts = [(d.encode(), "delta", d.key, d.expire) for d in (d1, d2, d3)]
    assert _as_dict(fold_chain(parts)) == {(2, "b"): 2}


keys = st.tuples(st.one_of(st.none(), st.integers(0, 5)),
                 st.one_of(st.none(), st.sampled_from(["a", "b"])))
steps = st.lists(st.tuples(st.dictionaries(keys, st.integers(0, 100), max_size=6),
                           st.lists(keys, max_size=4)), min_size=1, max_size=6)


@settings(max_examples=60, deadline=None)
@given(st.dictionaries(keys, st.integers(0, 100), max_size=8), steps)
def test_fold_matches_a_dict_model(base, history):
    model = dict(base)
    parts = [(_table(base), "full", (), None)]
    for upserts, deletes in history:
        deletes = [k for k in deletes if k not in upserts]
        for k in deletes:
            model.pop(k, None)
        model.update(upserts)
        delete_table = pa.table({"k": pa.array([k[0] for k in deletes], pa.int64()),
                                 "s": pa.array([k[1] for k in deletes], pa.string())})
        d = StateDelta(["k", "s"], upserts=_table(upserts), deletes=delete_table)
        parts.append((d.encode(SCHEMA), "delta", ("k", "s"), None))
    assert _as_dict(fold_chain(parts)) == model


expiring = st.lists(st.tuples(st.dictionaries(keys, st.integers(0, 100), max_size=6),
                              st.lists(keys, max_size=4),
                              st.one_of(st.none(), st.integers(0, 100))),
                    min_size=1, max_size=7)


@settings(max_examples=80, deadline=None)
@given(st.dictionaries(keys, st.integers(0, 100), max_size=8), expiring, st.data())
def test_merged_deltas_fold_like_one_by_one(base, history, data):
    """Deltas with expiries (thresholds going up and down), folded one by one against a
    dict model, equal the chain folded at once and the chain with a run of its deltas
    merged by compaction (merge_deltas) into one file."""
    model = dict(base)
    parts = [(_table(base), "full", ("k", "s"), None)]
    for upserts, deletes, expire in history:
        deletes = [k for k in deletes if k not in upserts]
        for k in deletes:
            model.pop(k, None)
        if expire is not None:   # older rows only: this delta's upserts stay
            model = {k: v for k, v in model.items() if v is None or v >= expire}
        model.update(upserts)
        delete_table = pa.table({"k": pa.array([k[0] for k in deletes], pa.int64()),
                                 "s": pa.array([k[1] for k in deletes], pa.string())})
        d = StateDelta(["k", "s"], upserts=_table(upserts) if upserts else None,
                       deletes=delete_table, expire=("v", expire) if expire is not None
                       else None)
        parts.append((d.encode(SCHEMA) if not upserts else d.encode(), "delta", ("k", "s"),
                      d.expire))
    assert _as_dict(fold_chain(parts)) == model
    one_by_one = parts[0][0]
    for table, _, key, expire in parts[1:]:
        one_by_one = apply_delta(one_by_one, table, key, expire)
    assert _as_dict(one_by_one) == model
    start = data.draw(st.integers(1, len(parts) - 1))
    end = data.draw(st.integers(start + 1, len(parts)))
    merged, expire = merge_deltas(parts[start:end])
    compacted = [*parts[:start], (merged, "delta", ("k", "s"), [list(e) for e in expire]),
                 *parts[end:]]
    assert _as_dict(fold_chain(compacted)) == model
    # as a compaction does it: from Parquet files, a row group (of 2 rows) at a time
    lazy = [_lazy(table, kind, key, expire) for table, kind, key, expire in parts]
    plan, expire = merge_plan(lazy[start:end])
    schema = pa.unify_schemas([p.schema for p in lazy[start:end]])
    pieces = list(merged_pieces(lazy[start:end], plan, schema))
    merged = pa.concat_tables(pieces) if pieces else schema.empty_table()
    assert merged.schema.equals(schema)
    compacted = [*parts[:start], (merged, "delta", ("k", "s"), [list(e) for e in expire]),
                 *parts[end:]]
    assert _as_dict(fold_chain(compacted)) == model
    folded = list(fold_chain_pieces(lazy[0].schema, lazy[0].groups(), lazy[1:]))
    assert all(p.schema.equals(lazy[0].schema) for p in folded)
    assert _as_dict(pa.concat_tables(folded) if folded else SCHEMA.empty_table()) == model


def _lazy(table: pa.Table, kind: str, key, expire) -> LazyPart:
    """A chain file as a compaction reads it: Parquet, in row groups of two rows."""
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink, row_group_size=2)
    return LazyPart(pq.ParquetFile(pa.BufferReader(sink.getvalue())), kind, key, expire)


pairs = st.lists(st.tuples(st.integers(-(1 << 33), 1 << 33) | st.integers(-3, 3),
                           st.one_of(st.none(), st.integers(-3, 3))), max_size=12)


@settings(max_examples=80, deadline=None)
@given(pairs, pairs)
def test_key_membership_of_two_columns(base, keys):
    """Two integer key columns (a window's pane and a key): packed into one int64 when they
    fit 32 bits, joined otherwise; either way exactly the rows whose pair is among keys."""
    def table(rows):
        return pa.table({"p": pa.array([r[0] for r in rows], pa.int64()),
                         "k": pa.array([r[1] for r in rows], pa.int64())})

    wanted = set(keys)
    mask = key_membership(table(base), table(keys), ["p", "k"])
    assert mask.tolist() == [row in wanted for row in base]
