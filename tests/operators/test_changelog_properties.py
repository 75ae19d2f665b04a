"""Property tests: random sequences of insertions and retractions, cut into random batches,
through the updating aggregate and the updating join. Folding what the operator emitted must
give the batch answer (DuckDB) over the rows that remain; retractions of rows never inserted
are counted and change nothing."""

from __future__ import annotations

import duckdb
import numpy as np
import pyarrow as pa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from caudal.operators.base import OperatorContext
from caudal.operators.updating_aggregate import UpdatingAggregate
from caudal.operators.updating_join import UpdatingJoin
from caudal.plan.aggregates import AggCall
from caudal.plan.changelog import OP, OP_TYPE
from tests.changelog_helpers import fold
from tests.helpers import normalized_rows

ROW = st.tuples(st.integers(0, 4), st.one_of(st.none(), st.integers(-3, 6)))


@st.composite
def changelog(draw, max_rows: int = 40):
    """A list of (row, op) with valid retractions (of rows present at that point), some
    corrupt ones (``corrupt=True``), and random batch boundaries."""
    present: list[tuple] = []
    events: list[tuple[tuple, int, bool]] = []
    for _ in range(draw(st.integers(1, max_rows))):
        if present and draw(st.integers(0, 2)) == 0:
            row = present.pop(draw(st.integers(0, len(present) - 1)))
            events.append((row, -1, False))
        elif draw(st.integers(0, 9)) == 0:
            row = draw(ROW)
            if row not in present:
                events.append((row, -1, True))
            else:
                present.append(row)
                events.append((row, 1, False))
        else:
            row = draw(ROW)
            present.append(row)
            events.append((row, 1, False))
    cuts = sorted(set(draw(st.lists(st.integers(1, max(1, len(events) - 1)), max_size=6))))
    return events, cuts, present


def _batches(events, cuts, schema: pa.Schema) -> list[pa.RecordBatch]:
    out = []
    bounds = [0, *cuts, len(events)]
    for a, b in zip(bounds[:-1], bounds[1:]):
        part = events[a:b]
        if not part:
            continue
        columns = [pa.array([r[i] for r, _, _ in part], f.type) for i, f in enumerate(schema)]
        ops = pa.array([op for _, op, _ in part], OP_TYPE)
        out.append(pa.RecordBatch.from_arrays([*columns, ops],
                                              schema=schema.append(pa.field(OP, OP_TYPE))))
    return out


INPUT = pa.schema([("k", pa.int64()), ("x", pa.int64())])
CALLS = [AggCall("count", (), pa.int64()), AggCall("count", ("x",), pa.int64()),
         AggCall("sum", ("x",), pa.int64()), AggCall("min", ("x",), pa.int64()),
         AggCall("max", ("x",), pa.int64()), AggCall("avg", ("x",), pa.float64()),
         AggCall("count", ("x",), pa.int64(), distinct=True),
         AggCall("var_pop", ("x",), pa.float64())]
OUT = pa.schema([("k", pa.int64()), ("n", pa.int64()), ("nx", pa.int64()), ("s", pa.int64()),
                 ("lo", pa.int64()), ("hi", pa.int64()), ("a", pa.float64()),
                 ("d", pa.int64()), ("v", pa.float64())])
REFERENCE = ("SELECT k, count(*), count(x), sum(x), min(x), max(x), avg(x), "
             "count(DISTINCT x), var_pop(x) FROM rows GROUP BY k")


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=changelog(), flush_each=st.booleans(), keyed=st.booleans())
def test_updating_aggregate_folds_to_the_remaining_rows(data, flush_each, keyed):
    events, cuts, present = data
    out_schema = OUT if keyed else pa.schema(list(OUT)[1:])
    op = UpdatingAggregate(["k"] if keyed else [], CALLS, INPUT, out_schema,
                           updating_input=True, flush_us=0 if flush_each else 10**12)
    op.open(OperatorContext())
    emitted: list[pa.RecordBatch] = []
    for batch in _batches(events, cuts, INPUT):
        emitted.extend(op.process(batch))
    emitted.extend(op.on_end())
    got = fold(pa.Table.from_batches(emitted)) if emitted else None
    con = duckdb.connect()
    con.register("rows", pa.table({"k": [r[0] for r in present],
                                   "x": [r[1] for r in present]}, schema=INPUT))
    query = REFERENCE if keyed else REFERENCE.replace("SELECT k, ", "SELECT ").replace(
        " GROUP BY k", "")
    expected = con.sql(query).to_arrow_table()
    assert normalized_rows(got) == normalized_rows(expected)
    corrupt = sum(1 for _, _, bad in events if bad)
    assert op.ctx.metrics["corrupt_retractions"] == corrupt


LEFT = pa.schema([("k", pa.int64()), ("x", pa.int64())])
RIGHT = pa.schema([("k", pa.int64()), ("y", pa.int64())])
JOINED = pa.schema([("k", pa.int64()), ("x", pa.int64()), ("k_r", pa.int64()),
                    ("y", pa.int64())])


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(left=changelog(30), right=changelog(30), kind=st.sampled_from(
    ["inner", "left", "right", "full"]), residual=st.booleans(), order=st.randoms())
def test_updating_join_folds_to_the_remaining_rows(left, right, kind, residual, order):
    from caudal.plan.expressions import Call, Column

    cond = Call(pa.bool_(), "lt", (Column(pa.int64(), "x"), Column(pa.int64(), "y"))) \
        if residual else None
    op = UpdatingJoin(kind, LEFT, RIGHT, ["k"], ["k"], {"k": "k_r"}, JOINED, cond,
                      updating_inputs=(True, True))
    op.open(OperatorContext())
    batches = [(b, 0) for b in _batches(left[0], left[1], LEFT)] + \
        [(b, 1) for b in _batches(right[0], right[1], RIGHT)]
    # interleave the two inputs randomly, keeping each input's own order
    queue = {0: [b for b, i in batches if i == 0], 1: [b for b, i in batches if i == 1]}
    emitted: list[pa.RecordBatch] = []
    while queue[0] or queue[1]:
        side = order.choice([s for s in (0, 1) if queue[s]])
        emitted.extend(op.process(queue[side].pop(0), side))
    got = fold(pa.Table.from_batches(emitted)) if emitted else None
    con = duckdb.connect()
    con.register("lrows", pa.table({"k": [r[0] for r in left[2]],
                                    "x": [r[1] for r in left[2]]}, schema=LEFT))
    con.register("rrows", pa.table({"k": [r[0] for r in right[2]],
                                    "y": [r[1] for r in right[2]]}, schema=RIGHT))
    on = "l.k = r.k" + (" AND l.x < r.y" if residual else "")
    expected = con.sql(f"SELECT l.k, l.x, r.k, r.y FROM lrows AS l {kind.upper()} JOIN "
                          f"rrows AS r ON {on}").to_arrow_table()
    assert normalized_rows(got) == normalized_rows(expected)
    corrupt = sum(1 for _, _, bad in left[0] + right[0] if bad)
    assert op.ctx.metrics["corrupt_retractions"] == corrupt
    assert all((s["_m"] > 0).all() for s in op.sides)


def test_changelog_property_helpers_are_consistent():
    events = [((1, 2), 1, False), ((1, 2), -1, False)]
    batches = _batches(events, [1], INPUT)
    assert [b.num_rows for b in batches] == [1, 1]
    assert np.array_equal(batches[1].column(OP).to_numpy(), [-1])
