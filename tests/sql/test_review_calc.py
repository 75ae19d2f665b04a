"""Scalar expressions and stateless shapes as a Flink SQL user meets them: queries of Apache
Flink's planner IT cases (CalcITCase stream and batch, SetOperatorsITCase, SortITCase /
LimitITCase, ValuesITCase, UnnestITCase, CastFunctionITCase) with their data, the SQL text
unchanged, compared with DuckDB (or with Flink's expected rows where docs/sql.md follows
Flink) at parallelism 1 and 2. Each test failed before its fix."""

from __future__ import annotations

import pyarrow as pa

import caudal as cd
from caudal import clock


def test_current_timestamp_is_read_once_per_batch():
    """CalcITCase.testCurrentTimestamp: ``CURRENT_TIMESTAMP = CURRENT_TIMESTAMP`` was false:
    each call read the clock anew (Flink reads it once per record, DuckDB once per query)."""
    ticks = iter(range(1_700_000_000_000_000, 1_800_000_000_000_000))
    clock.set_source(lambda: next(ticks))  # a clock that moves on every read
    try:
        t = cd.from_arrow(pa.table({"a": [True, False, True]}))
        for parallelism in (1, 2):
            got = cd.sql("SELECT CURRENT_TIMESTAMP = CURRENT_TIMESTAMP AS s, now() = now() AS n, "
                         "CURRENT_DATE = CURRENT_DATE AS d FROM testTable WHERE a = TRUE",
                         testTable=t).collect(parallelism=parallelism)
            assert got.to_pylist() == [{"s": True, "n": True, "d": True}] * 2
    finally:
        clock.set_source(None)
