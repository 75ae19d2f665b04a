"""named_struct('a', x, 'b', y) builds a STRUCT with those fields (DataFusion's and Spark's
spelling), equal to DuckDB's struct_pack, NULL values kept as NULL fields; its fields read
back with s.field. Bad calls are refused when binding."""

from __future__ import annotations

import pyarrow as pa
import pytest

from caudal.errors import PlanError
from tests.plan.sql_eval import bind, check


def test_named_struct_equals_duckdb_struct_pack():
    check("named_struct('n', i, 'label', s)", duck_sql="struct_pack(n := i, label := s)")


def test_named_struct_type_and_field_access():
    built = bind("named_struct('start', i, 'end', f)")
    assert built.dtype == pa.struct([("start", bind("i").dtype), ("end", bind("f").dtype)])
    check("(named_struct('a', i, 'b', s)).b", duck_sql="s")


@pytest.mark.parametrize("sql,message", [
    ("named_struct('a')", "pairs of a field name and a value"),
    ("named_struct('a', i, 'A', s)", "field names must differ"),
    ("named_struct(s, i)", "field name"),
])
def test_bad_named_struct_calls_are_refused(sql, message):
    with pytest.raises(PlanError) as raised:
        bind(sql)
    assert message in str(raised.value)
