"""Review of the day's SQL and plan changes (set operations, quantified subqueries, UNNEST,
ROW, casts, date functions, OVER, top-N bounds, window filters), attacked with NULLs, empty
inputs, nested types and parallelism 2. Each test failed before its fix."""

from __future__ import annotations

import pytest

import caudal as cd
from caudal.errors import PlanError

_NESTED = "SELECT [1, 2] AS l, {'x': 1} AS r"


@pytest.mark.parametrize("query", [
    "SELECT l FROM t INTERSECT ALL SELECT l FROM t",
    "SELECT r FROM t EXCEPT ALL SELECT r FROM t",
])
def test_intersect_all_of_nested_columns_is_refused_in_one_line(query):
    """INTERSECT ALL / EXCEPT ALL count copies by grouping on every column; an array or ROW
    column stopped the job at its first row with Arrow's 'Keys of type list<…>' (INTERSECT
    and UNION refuse it when planning, as GROUP BY one)."""
    import duckdb

    t = cd.from_arrow(duckdb.sql(_NESTED).to_arrow_table())
    with pytest.raises(PlanError, match=r"distinct rows with a (INT\[\]|STRUCT)"):
        cd.sql(query, t=t).collect()
