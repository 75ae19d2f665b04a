"""Arrow tables with a fixed-size list or a map column: a fixed-size list is a ``type[]`` like
any list, and grouping by, or min/max of, a map or a fixed-size list is refused at planning
in one line, as for structs and lists (they crashed in the running job with Arrow's
"Keys of type fixed_size_list<...>" / "no kernel matching input types")."""

from __future__ import annotations

import duckdb
import pyarrow as pa
import pytest

import caudal as cd
from caudal.errors import PlanError

COLUMNS = {
    "fsl": pa.array([[1, 2], [3, 4], None, [1, 2]], pa.list_(pa.int64(), 2)),
    "map": pa.array([[("a", 1)], [], None, [("a", 1)]], pa.map_(pa.string(), pa.int64())),
}


@pytest.mark.parametrize("kind", sorted(COLUMNS))
def test_rows_pass_through_as_duckdb_gives_them(kind):
    t = pa.table({"c": COLUMNS[kind], "id": [0, 1, 2, 3]})
    got = cd.sql("SELECT id, c FROM b", b=cd.from_arrow(t)).collect()
    want = duckdb.sql("SELECT id, c FROM t").to_arrow_table()
    assert sorted(map(str, got.to_pylist())) == sorted(map(str, want.to_pylist()))


@pytest.mark.parametrize("query,message", [
    ("SELECT c, count(*) AS n FROM b GROUP BY c", "GROUP BY a .* value is not supported"),
    ("SELECT max(c) AS m FROM b", r"max\(\) takes a scalar value"),
    ("SELECT k, min(c) AS m FROM b GROUP BY k", r"min\(\) takes a scalar value"),
])
@pytest.mark.parametrize("kind", sorted(COLUMNS))
def test_grouping_by_or_ordering_them_is_refused_when_planning(kind, query, message):
    t = pa.table({"c": COLUMNS[kind], "k": [0, 1, 0, 1]})
    with pytest.raises(PlanError, match=message):
        cd.sql(query, b=cd.from_arrow(t)).collect()
