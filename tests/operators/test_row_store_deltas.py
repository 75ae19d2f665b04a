"""Incremental snapshots of the row stores of the updating join and the updating top-N
(state.incremental.RowChanges): random appends, removals (prefixes and arbitrary rows),
counters changed in place and checkpoints, each snapshot written through the checkpoint's
chains (Parquet files, tier merges and folds as a run makes them) and the chain read back and
folded: always the state a whole snapshot would hold at that moment, and restoring it gives
the same live rows. Text columns that stop being dictionary-encoded mid-chain included."""

from __future__ import annotations

import shutil
import tempfile
from unittest import mock

import numpy as np
import pyarrow as pa
from hypothesis import given, settings
from hypothesis import strategies as st

from caudal.checkpoint.chains import StateChains
from caudal.checkpoint.storage import CheckpointStorage
from caudal.operators import compact_rows
from caudal.operators.base import OperatorContext
from caudal.operators.join_side import JoinSide
from caudal.operators.keyed_tables import tag_key_groups
from caudal.operators.updating_rank import UpdatingRank
from caudal.plan.changelog import OP, OP_TYPE
from caudal.state import incremental
from caudal.state.incremental import ROW_ID, RowChanges, StateDelta, fold_chain
from caudal.state.rescale import KEY_GROUP

SCHEMA = pa.schema([("k", pa.int64()), ("v", pa.int64()), ("s", pa.string()),
                    ("t", pa.string())])
COUNTERS = {"_n": 0, "_m": 1}
MKG = 128


def _decoded(table: pa.Table) -> list[tuple]:
    """Rows as sorted tuples, dictionary columns decoded, row ids left out."""
    if ROW_ID in table.column_names:
        table = table.drop_columns([ROW_ID])
    columns = sorted(table.column_names)
    arrays = [table.column(c) for c in columns]
    arrays = [a.cast(a.type.value_type) if pa.types.is_dictionary(a.type) else a
              for a in arrays]
    return sorted(zip(*(a.to_pylist() for a in arrays)), key=repr)


class _Chain:
    """One state table's chain in a checkpoint directory of its own (compactions run
    inline, as soon as the chain asks for one)."""

    def __init__(self) -> None:
        self.dir = tempfile.mkdtemp(prefix="caudal-rowdelta-")
        self.storage = CheckpointStorage(self.dir, sync=False)
        self.chains = StateChains(self.storage, background=False, log=lambda m: None)
        self.epoch = 0
        self.deltas = 0

    def write(self, value: pa.Table | StateDelta) -> pa.Table:
        """Write a snapshot; the chain's files read back and folded."""
        self.epoch += 1
        self.deltas += isinstance(value, StateDelta)
        files = self.chains.write(self.epoch, (0, 0, 0, "rows"), value, lambda: "no chain")
        return fold_chain([(self.storage.read_table(f.file), f.kind, f.key, f.expire)
                           for f in files])

    def close(self) -> None:
        self.chains.close()
        shutil.rmtree(self.dir, ignore_errors=True)


def _whole(tracker_owner, snap):
    """What ``snap()`` returns without a baseline (a whole table); the tracker put back."""
    saved = tracker_owner.changes
    tracker_owner.changes = RowChanges(saved.key if not saved.numbered else None)
    try:
        return snap()
    finally:
        tracker_owner.changes = saved


_row = st.tuples(st.integers(0, 6), st.one_of(st.none(), st.integers(-3, 1 << 40)),
                 st.one_of(st.none(), st.sampled_from(["a", "b", "web", "ünï"])),
                 st.booleans())
_step = st.one_of(
    st.tuples(st.just("append"), st.lists(_row, min_size=1, max_size=25)),
    st.tuples(st.just("count"), st.lists(st.tuples(st.integers(0, 500), st.integers(-2, 2)),
                                         max_size=8)),
    st.tuples(st.just("prefix"), st.integers(0, 30)),
    st.tuples(st.just("keep"), st.lists(st.booleans(), min_size=1, max_size=60)),
    st.tuples(st.just("snap"), st.none()))


@settings(max_examples=60, deadline=None)
@given(st.lists(_step, min_size=1, max_size=45), st.sampled_from([6, 1 << 16]))
def test_join_side_chain_folds_to_the_whole_state(steps, probation):
    """Any history of a join side's rows and counters with checkpoints: the chain written
    so far folds to the rows and counters a whole snapshot takes, and a side loaded from it
    holds the same rows. ``probation`` 6: text of distinct values stops being
    dictionary-encoded after a few rows, mid-chain (the next snapshot is whole again)."""
    chain = _Chain()
    made = 0
    try:
        # (every snapshot after the first a delta, however much changed)
        with mock.patch.object(compact_rows, "DICTIONARY_PROBATION", probation), \
                mock.patch.object(incremental, "WHOLE_SHARE", float("inf")):
            side = JoinSide(SCHEMA, ["k"], COUNTERS, dict(COUNTERS))
            tag = lambda t: tag_key_groups(t, ["k"], MKG)  # noqa: E731
            for kind, arg in [*steps, ("snap", None)]:
                n = side.size
                if kind == "append":
                    rows = pa.table({"k": [r[0] for r in arg], "v": [r[1] for r in arg],
                                     "s": [r[2] for r in arg],
                                     "t": [None if r[3] else f"x{made + i}"
                                           for i, r in enumerate(arg)]}, schema=SCHEMA)
                    made += len(arg)
                    side.append(rows, _n=np.arange(len(arg), dtype=np.int64) % 3)
                elif kind == "count" and n:
                    for at, d in arg:
                        side["_n"][at % n] += d
                        side["_m"] = side["_m"] + (np.arange(n) == (at * 7) % n) * d
                elif kind == "prefix" and n:
                    mask = np.ones(n, dtype=bool)
                    mask[:min(arg, n)] = False
                    side.keep(mask)
                elif kind == "keep" and n:
                    side.keep(np.resize(np.asarray(arg, dtype=bool), n))
                elif kind == "snap":
                    whole = _whole(side, lambda: side.snapshot(tag))
                    folded = chain.write(side.snapshot(tag))
                    assert _decoded(folded) == _decoded(whole)
                    again = JoinSide(SCHEMA, ["k"], COUNTERS, dict(COUNTERS))
                    again.load(folded.drop_columns([KEY_GROUP]))
                    expect = side.store.table()
                    got = again.store.table()
                    for name in COUNTERS:
                        expect = expect.append_column(name, pa.array(side[name]))
                        got = got.append_column(name, pa.array(again[name]))
                    assert _decoded(got) == _decoded(expect)
    finally:
        chain.close()


RANKED = pa.schema([("k", pa.int64()), ("v", pa.int64()), ("s", pa.string())])
OUT = pa.schema(list(RANKED) + [pa.field("rn", pa.int64())])

_batch = st.lists(st.tuples(st.integers(0, 5), st.integers(0, 1000),
                            st.sampled_from(["a", "b", None]), st.booleans()),
                  min_size=1, max_size=40)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(_batch, st.sampled_from(["flush", "snap", "both", "none"])),
                min_size=1, max_size=25),
       st.booleans(), st.integers(1, 4))
def test_top_n_chain_folds_to_the_whole_state(steps, changelog, limit):
    """Top-N rows put and dropped at flushes (over a changelog: retractions too), with
    checkpoints in between: the chain folds to what a whole snapshot holds."""
    op = UpdatingRank(["k"], [("v", True, False)], "row_number", limit, RANKED, OUT,
                      updating_input=changelog, flush_us=10**12)
    op.open(OperatorContext(subtask=0, parallelism=1))
    chain = _Chain()
    sent: list[tuple] = []
    with mock.patch.object(incremental, "WHOLE_SHARE", float("inf")):
        _top_n_steps(op, chain, steps, changelog, sent)


def _top_n_steps(op, chain, steps, changelog, sent) -> None:
    try:
        for rows, action in steps:
            arrays = [pa.array([r[0] for r in rows], pa.int64()),
                      pa.array([r[1] for r in rows], pa.int64()),
                      pa.array([r[2] for r in rows], pa.string())]
            names = RANKED.names
            if changelog:
                # a row flagged True retracts one sent before (when there is one)
                ops, values = [], []
                for r in rows:
                    if r[3] and sent:
                        values.append(sent.pop(r[1] % len(sent)))
                        ops.append(-1)
                    else:
                        values.append(r[:3])
                        sent.append(r[:3])
                        ops.append(1)
                arrays = [pa.array([v[i] for v in values], t.type)
                          for i, t in enumerate(RANKED)]
                arrays.append(pa.array(ops, OP_TYPE))
                names = [*names, OP]
            op.process(pa.record_batch(arrays, names=names))
            if action in ("flush", "both"):
                op.flush()
            if action in ("snap", "both"):
                whole = _whole(op.state, lambda: op.state.snapshot(MKG))["rows"]
                folded = chain.write(op.state.snapshot(MKG)["rows"])
                assert _decoded(folded) == _decoded(whole)
        # (a whole table first, then deltas: the dictionary of text never stops paying)
        assert chain.deltas == max(0, sum(a in ("snap", "both") for _, a in steps) - 1)
    finally:
        chain.close()


@mock.patch.object(incremental, "WHOLE_SHARE", float("inf"))
def test_snapshot_of_an_older_version_restores():
    """A whole snapshot as versions before row ids wrote it (no ``_rid`` column) restores,
    and the restored join then snapshots whole, then in deltas."""
    from caudal.operators.updating_join import UpdatingJoin

    left = pa.schema([("k", pa.int64()), ("s", pa.string())])
    right = pa.schema([("k", pa.int64()), ("x", pa.int64())])
    out = pa.schema([("k", pa.int64()), ("s", pa.string()), ("k_r", pa.int64()),
                     ("x", pa.int64())])

    def join() -> UpdatingJoin:
        op = UpdatingJoin("left", left, right, ["k"], ["k"], {"k": "k_r"}, out)
        op.open(OperatorContext(subtask=0, parallelism=1))
        return op

    def batch(keys: list[int], schema: pa.Schema) -> pa.RecordBatch:
        other = pa.array([f"s{k}" for k in keys]) if schema is left else pa.array(keys)
        return pa.record_batch([pa.array(keys, pa.int64()), other], schema=schema)

    op = join()
    op.process(batch([1, 2, 3], left), 0)
    op.process(batch([2], right), 1)
    old = {name: table.drop_columns([ROW_ID]) for name, table in op.snapshot(1).items()}
    again = join()
    again.restore(old)
    assert again.state_rows() == op.state_rows() == 4
    assert all(isinstance(v, pa.Table) for v in again.snapshot(2).values())
    again.process(batch([3], right), 1)   # a padded row retracted: a counter changes
    delta = again.snapshot(3)["left"]
    assert isinstance(delta, StateDelta)
    assert delta.upserts.column("s").cast(pa.string()).to_pylist() == ["s3"]
    assert delta.upserts.column("_n").to_pylist() == [1]


def test_a_delta_of_most_rows_is_written_whole():
    """A snapshot that replaces or removes rows and would name more than ``WHOLE_SHARE``
    of the rows is the whole table (a new baseline); one that only appends is a delta
    however large; a small change after a whole table is a delta again."""
    side = JoinSide(SCHEMA, ["k"], COUNTERS, dict(COUNTERS))

    def rows(n: int, start: int) -> pa.Table:
        keys = list(range(start, start + n))
        return pa.table({"k": keys, "v": keys, "s": ["a"] * n, "t": ["b"] * n}, schema=SCHEMA)

    tag = lambda t: tag_key_groups(t, ["k"], MKG)  # noqa: E731
    side.append(rows(100, 0))
    assert isinstance(side.snapshot(tag), pa.Table)
    side.append(rows(100, 100))            # as many rows again, appended only: a delta
    assert isinstance(side.snapshot(tag), StateDelta)
    side.append(rows(10, 200))
    side["_n"][3] += 1                     # one row replaced: 11 of 210 rows named
    delta = side.snapshot(tag)
    assert isinstance(delta, StateDelta) and delta.upserts.num_rows == 11
    assert delta.upserts.column(ROW_ID).to_pylist() == [3, *range(200, 210)]
    side["_n"][:60] += 1                   # 60 of 210 rows replaced: whole
    assert isinstance(side.snapshot(tag), pa.Table)
    side.keep(np.arange(side.size) >= 5)   # 5 removed: a delta again
    delta = side.snapshot(tag)
    assert isinstance(delta, StateDelta) and delta.deletes.num_rows == 5
