"""Snapshots of the updating top-N and the OVER aggregates: a run snapshotted mid-stream and
restored at another parallelism (2 -> 3: each new subtask keeps its key groups of the
concatenated old tables, rows waiting for a flush or a watermark included) emits exactly what
an uninterrupted run emits."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pyarrow as pa
import pytest

from caudal.operators.base import OperatorContext
from caudal.operators.over_aggregate import OverAggregate
from caudal.operators.updating_over import UpdatingOver
from caudal.operators.updating_rank import UpdatingRank
from caudal.plan.aggregates import AggCall
from caudal.plan.changelog import OP, OP_TYPE
from caudal.plan.over_nodes import Frame
from caudal.state.key_groups import split_by_subtask
from caudal.state.rescale import concat_states
from tests.changelog_helpers import fold
from tests.helpers import normalized_rows

TS = pa.timestamp("us", tz="UTC")
BASE = int(dt.datetime(2026, 1, 1, tzinfo=dt.UTC).timestamp() * 1_000_000)
SCHEMA = pa.schema([("k", pa.int64()), ("v", pa.int64()), ("ts", TS)])
NEVER = 10**12  # a flush interval no test reaches: rows wait in the snapshot


def _batches(rng, n: int, changelog: bool) -> list[pa.RecordBatch]:
    k = rng.integers(0, 9, n)
    v = rng.permutation(n).astype(np.int64)  # unique: no ties to break
    ts = BASE + np.arange(n, dtype=np.int64) * 1000
    out = []
    for start in range(0, n, 40):
        sl = slice(start, start + 40)
        arrays = [pa.array(k[sl]), pa.array(v[sl]), pa.array(ts[sl]).view(TS)]
        if changelog:
            arrays.append(pa.array(np.ones(len(k[sl]), np.int8), OP_TYPE))
        out.append(pa.record_batch(arrays, names=SCHEMA.names + ([OP] if changelog else [])))
    if changelog:  # retract two early batches again, late in the stream
        for b in (out[1], out[3]):
            out.append(b.set_column(3, OP, pa.array(np.full(b.num_rows, -1, np.int8),
                                                    OP_TYPE)))
    return out


def _run(factory, batches, split: int | None, old_p: int, new_p: int) -> pa.Table:
    """Feed ``batches`` to ``old_p`` subtasks (a watermark after each batch), snapshot after
    ``split`` and restore into ``new_p`` subtasks for the rest (None: no snapshot)."""
    emitted: list[pa.RecordBatch] = []

    def start(p):
        ops = []
        for i in range(p):
            op = factory()
            op.open(OperatorContext(subtask=i, parallelism=p))
            ops.append(op)
        return ops

    def feed(ops, items):
        for batch in items:
            for target, part in split_by_subtask(batch, ["k"], len(ops)):
                emitted.extend(ops[target].process(part))
            mark = int(pa.compute.max(batch.column("ts").cast(pa.int64())).as_py())
            for op in ops:
                emitted.extend(op.on_watermark(mark))

    ops = start(old_p)
    if split is None:
        feed(ops, batches)
    else:
        feed(ops, batches[:split])
        snaps = [op.snapshot(1) for op in ops]
        names = {n for s in snaps for n in s}
        state = {n: concat_states([s[n] for s in snaps if n in s]) for n in names}
        ops = start(new_p)
        for op in ops:
            op.restore(state)
        feed(ops, batches[split:])
    for op in ops:
        emitted.extend(op.on_watermark(2**62))
        emitted.extend(op.on_end())
    table = pa.Table.from_batches([b for b in emitted if b.num_rows])
    return fold(table) if OP in table.column_names else table


def _rank(function: str, rank_used: bool, updating: bool, flush_us: int, limit: int = 3):
    out = SCHEMA.append(pa.field("__rank", pa.int64()))
    return lambda: UpdatingRank(["k"], [("v", True, False)], function, limit, SCHEMA, out,
                                rank_used=rank_used, updating_input=updating,
                                flush_us=flush_us)


_CALLS = [AggCall("sum", ("v",), pa.int64()), AggCall("count", (), pa.int64()),
          AggCall("max", ("v",), pa.int64()), AggCall("avg", ("v",), pa.float64())]
_OUT = pa.schema(list(SCHEMA) + [pa.field(f"__over{i}", c.dtype) for i, c in enumerate(_CALLS)])


def _over(frame: Frame):
    return lambda: OverAggregate(["k"], [("ts", False, False)], frame, _CALLS, SCHEMA, _OUT,
                                 "ts")


def _updating_over(frame: Frame, flush_us: int):
    return lambda: UpdatingOver(["k"], [("v", False, False)], frame, _CALLS, SCHEMA, _OUT,
                                flush_us=flush_us)


CASES = {
    "top-n, rank emitted": (_rank("row_number", True, False, 0), False),
    "top-n, rows waiting for a flush": (_rank("row_number", False, False, NEVER), False),
    # a deduplication: operators.top_one's slots, rebuilt from the restored rows
    "top-1": (_rank("row_number", False, False, 0, limit=1), False),
    "top-1, rows waiting for a flush": (_rank("row_number", True, False, NEVER, limit=1), False),
    "rank over a changelog": (_rank("rank", True, True, 0), True),
    "dense rank over a changelog, waiting": (_rank("dense_rank", True, True, NEVER), True),
    "over rows 2": (_over(Frame("rows", 2)), False),
    "over rows unbounded": (_over(Frame("rows", None)), False),
    "over range 5ms": (_over(Frame("range", 5000)), False),
    "over a changelog": (_updating_over(Frame("rows", 3), 0), True),
    "over a changelog, waiting": (_updating_over(Frame("partition"), NEVER), True),
}


@pytest.mark.parametrize("case", list(CASES))
def test_restore_with_rescaling_gives_the_uninterrupted_result(case):
    factory, changelog = CASES[case]
    batches = _batches(np.random.default_rng(5), 600, changelog)
    expected = _run(factory, batches, None, 1, 1)
    assert expected.num_rows
    for split, old_p, new_p in ((7, 2, 3), (12, 3, 1)):
        got = _run(factory, batches, split, old_p, new_p)
        assert normalized_rows(got) == normalized_rows(expected), (split, old_p, new_p)
