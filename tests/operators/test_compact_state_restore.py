"""The compact state of the updating join and the updating top-N (CompactRows: narrowed
integers, text as dictionary codes or plain) through a snapshot and a restore at another
parallelism: over random inputs (hypothesis: NULLs, text of few and of many distinct values,
ids far apart), a run snapshotted mid-stream and restored into 1, 2 or 3 subtasks emits what
an uninterrupted run emits."""

from __future__ import annotations

from unittest import mock

import numpy as np
import pyarrow as pa
from hypothesis import given, settings
from hypothesis import strategies as st

from caudal.operators.base import OperatorContext
from caudal.operators.updating_join import UpdatingJoin
from caudal.operators.updating_rank import UpdatingRank
from caudal.plan.changelog import OP
from caudal.state import incremental
from caudal.state.key_groups import split_by_subtask
from caudal.state.rescale import concat_states
from tests.changelog_helpers import fold
from tests.helpers import normalized_rows
from tests.operators.test_over_rank_restore import BASE, TS
from tests.operators.test_row_store_deltas import _Chain

BIDS = pa.schema([("k", pa.int64()), ("v", pa.int64()), ("ts", TS), ("channel", pa.string()),
                  ("extra", pa.string())])
AUCTIONS = pa.schema([("k", pa.int64()), ("item", pa.string()), ("seller", pa.int64())])
JOINED = pa.schema(list(BIDS) + [pa.field("k_a", pa.int64()), pa.field("item", pa.string()),
                                 pa.field("seller", pa.int64())])

_ROWS = st.lists(st.tuples(st.integers(0, 9), st.one_of(st.none(), st.integers(-5, 10**6)),
                           st.one_of(st.none(), st.sampled_from(["web", "app", "", "ünï"])),
                           st.booleans()), min_size=1, max_size=120)


def _bids(rows: list[tuple], far: bool, size: int) -> list[pa.RecordBatch]:
    n = len(rows)
    table = pa.table({
        "k": pa.array([(1 << 50 if far else 0) + r[0] for r in rows], pa.int64()),
        "v": pa.array([r[1] for r in rows], pa.int64()),
        "ts": pa.array(BASE + np.arange(n, dtype=np.int64) * 1000).view(TS),
        "channel": pa.array([r[2] for r in rows], pa.string()),
        "extra": pa.array([None if r[3] else f"extra {i}" for i, r in enumerate(rows)]),
    }, schema=BIDS)
    return table.to_batches(max_chunksize=size)


def _auctions(ids: list[int], far: bool) -> pa.RecordBatch:
    return pa.record_batch([
        pa.array([(1 << 50 if far else 0) + i for i in ids], pa.int64()),
        pa.array([f"item {i % 3}" if i % 4 else None for i in ids], pa.string()),
        pa.array([-(1 << 62) + i for i in ids], pa.int64())], schema=AUCTIONS)


def _run(factory, items: list[tuple[int, pa.RecordBatch]], split: int | None, old_p: int,
         new_p: int, drop: tuple[str, ...] = (), every: int | None = None) -> list[tuple]:
    """``items`` (input, batch) into ``old_p`` subtasks of ``factory()``, snapshot after
    ``split`` and restore into ``new_p`` for the rest (None: no snapshot); the folded output
    without the columns ``drop`` (what the plan projects away). ``every``: snapshots also
    after every that many items before ``split``, each written to a checkpoint chain per
    subtask (a whole table, then deltas: tests.operators.test_row_store_deltas), and the
    state restored is those chains folded."""
    emitted: list[pa.RecordBatch] = []

    def start(p: int) -> list:
        ops = []
        for i in range(p):
            op = factory()
            op.open(OperatorContext(subtask=i, parallelism=p))
            ops.append(op)
        return ops

    def feed(ops: list, part: list[tuple[int, pa.RecordBatch]]) -> None:
        for side, batch in part:
            for target, piece in split_by_subtask(batch, ["k"], len(ops)):
                emitted.extend(ops[target].process(piece, side))

    ops = start(old_p)
    if split is None:
        feed(ops, items)
    else:
        chains: dict[tuple[int, str], _Chain] = {}
        done = 0
        # (every snapshot after the first a delta, however much changed)
        deltas = mock.patch.object(incremental, "WHOLE_SHARE", float("inf"))
        deltas.start()
        try:
            for stop in [*range(every or split + 1, split, every or 1), split]:
                feed(ops, items[done:stop])
                done = stop
                snaps = [op.snapshot(1) for op in ops]
                if every is not None:   # through chains: what a restore reads is folded
                    snaps = [{n: chains.setdefault((i, n), _Chain()).write(v)
                              for n, v in snap.items()} for i, snap in enumerate(snaps)]
        finally:
            deltas.stop()
            for c in chains.values():
                c.close()
        names = {n for snap in snaps for n in snap}
        state = {n: concat_states([snap[n] for snap in snaps if n in snap]) for n in names}
        ops = start(new_p)
        for op in ops:
            op.restore(state)
        feed(ops, items[split:])
    for op in ops:
        emitted.extend(op.on_end())
    batches = [b for b in emitted if b.num_rows]
    if not batches:
        return []
    table = pa.Table.from_batches(batches).drop_columns(list(drop))
    return normalized_rows(fold(table) if OP in table.column_names else table)


@settings(max_examples=40, deadline=None)
@given(rows=_ROWS, ids=st.lists(st.integers(0, 11), unique=True, max_size=10),
       far=st.booleans(), kind=st.sampled_from(["inner", "left", "full"]),
       size=st.integers(3, 30), cut=st.floats(0, 1), ps=st.sampled_from([(1, 2), (2, 1),
                                                                         (2, 3), (1, 1)]),
       every=st.sampled_from([None, 1, 2]))
def test_join_restored_at_another_parallelism(rows, ids, far, kind, size, cut, ps, every):
    bids = _bids(rows, far, size)
    auctions = _auctions(ids, far)
    half = auctions.num_rows // 2
    items = [(0, b) for b in bids]
    items.insert(len(items) // 2, (1, auctions.slice(0, half)))
    items.append((1, auctions.slice(half)))
    split = int(cut * len(items))
    def factory() -> UpdatingJoin:
        return UpdatingJoin(kind, BIDS, AUCTIONS, ["k"], ["k"], {"k": "k_a"}, JOINED)

    assert _run(factory, items, split, *ps, every=every) == _run(factory, items, None, 1, 1)


@settings(max_examples=40, deadline=None)
@given(rows=_ROWS, far=st.booleans(), limit=st.integers(1, 3), rank_used=st.booleans(),
       size=st.integers(3, 30), cut=st.floats(0, 1),
       ps=st.sampled_from([(1, 2), (2, 1), (2, 3), (1, 1)]), every=st.sampled_from([None, 1, 2]))
def test_top_n_restored_at_another_parallelism(rows, far, limit, rank_used, size, cut, ps,
                                               every):
    batches = _bids(rows, far, size)
    out = BIDS.append(pa.field("__rank", pa.int64()))

    def factory() -> UpdatingRank:
        # ORDER BY v DESC NULLS LAST (ties: arrival), flushed after every batch
        return UpdatingRank(["k"], [("v", True, False)], "row_number", limit, BIDS, out,
                            rank_used=rank_used, flush_us=0)

    split = int(cut * len(batches))
    items = [(0, b) for b in batches]
    # without the rank selected the plan projects it away (rows pair up without it)
    drop = () if rank_used else ("__rank",)
    assert _run(factory, items, split, *ps, drop=drop, every=every) == \
        _run(factory, items, None, 1, 1, drop=drop)
