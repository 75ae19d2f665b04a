"""Deeply nested expressions plan in time linear in their size, and answer as DuckDB.

``translate`` rendered each node's subtree (``node.sql()``: a copy and a rendering of all of
it) to name its source text, found its position by walking its subtree, folded constants by
walking it again, and a GROUP BY's lookup rendered it once more: planning cost the tree's
size times its depth (a 150-deep chain of ``+`` took ~16 s of CPU, the slow expression
fuzzer > 300 s), and Python's recursion limit refused ~190 nested operators and ~25 nested
calls with a RecursionError's traceback. Now each node is rendered and placed once
(caudal.sql.rendering), and an expression nested past what parsing can take is refused in
one line."""

from __future__ import annotations

import time

import duckdb
import pyarrow as pa
import pytest

import caudal as cd
from caudal.errors import PlanError

TABLE = pa.table({"k": [1, 1, 2, 3], "x": [1, -2, 3, 40]})


def _nested(depth: int) -> str:
    """Calls, parentheses and operators nested ``depth`` deep."""
    e = "x"
    for i in range(depth):
        e = f"abs({e} - {i % 5})" if i % 3 == 0 else f"({e} + {i % 7})" if i % 3 == 1 \
            else f"{e} * 1"
    return e


def _chain(depth: int) -> str:
    """``x + 1 + 2 - 3 …``: one operator's chain, ``depth`` deep."""
    return "x" + "".join(f" {'+-'[i % 2]} {i % 9}" for i in range(depth))


def _plan_seconds(sql: str) -> float:
    start = time.process_time()
    cd.sql(sql, t=cd.from_arrow(TABLE)).explain()
    return time.process_time() - start


def _rows(sql: str) -> list[tuple]:
    got = cd.sql(sql, t=cd.from_arrow(TABLE)).collect()
    return sorted(tuple(r.values()) for r in got.to_pylist())


def _duck(sql: str) -> list[tuple]:
    t = TABLE  # noqa: F841 - read by DuckDB's replacement scan
    return sorted(tuple(r) for r in duckdb.connect().sql(sql).fetchall())


@pytest.fixture(scope="module", autouse=True)
def _warm():
    """The first plan of a process imports modules: not what is measured."""
    _plan_seconds("SELECT abs(x) + 1 AS v FROM t WHERE x > 0")


@pytest.mark.parametrize("shape", [_nested, _chain])
def test_a_200_deep_expression_plans_in_under_2_seconds(shape):
    e = shape(200)
    conditions = " AND ".join(f"x <> {i}" for i in range(200))
    for sql in (f"SELECT k, {e} AS v FROM t",
                f"SELECT k, x FROM t WHERE {conditions}",
                f"SELECT k, sum({e}) AS s, count(*) AS n FROM t GROUP BY k",
                f"SELECT {e} AS g, count(*) AS n FROM t GROUP BY {e}"):
        seconds = _plan_seconds(sql)
        assert seconds < 2.0, (seconds, sql[:80])
    assert _rows(sql) == _duck(sql)


def test_planning_grows_linearly():
    """Twice as deep plans in about twice the time (was four times)."""
    shallow = min(_plan_seconds(f"SELECT {_chain(100)} AS v FROM t") for _ in range(2))
    deep = min(_plan_seconds(f"SELECT {_chain(400)} AS v FROM t") for _ in range(2))
    assert deep < 8 * shallow + 0.2, (shallow, deep)


def test_nesting_past_the_limit_is_refused_in_one_line():
    with pytest.raises(PlanError, match="nested too deeply") as caught:
        _rows(f"SELECT {_nested(3000)} AS v FROM t")
    assert "\n" not in str(caught.value)
