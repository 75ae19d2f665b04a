"""DuckDB's unsigned integer types in DDL and CAST (UTINYINT, USMALLINT, UINTEGER, UBIGINT):
read from a file as declared, equal to DuckDB's answer, and named the same way in messages
(they were printed as "UUINT64", a name nothing accepts, and refused in DDL)."""

from __future__ import annotations

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from caudal.errors import PlanError
from caudal.job import run_sql
from caudal.types import ACCEPTED, sql_name


def test_declared_unsigned_columns_read_as_declared_and_equal_duckdb(tmp_path):
    path = tmp_path / "u.csv"
    path.write_text("k,v,w,x\n18446744073709551615,4294967295,255,65535\n3,0,1,2\n")
    out = tmp_path / "out"
    run_sql(f"""
        CREATE TABLE t (k UBIGINT, v UINTEGER, w UTINYINT, x USMALLINT)
            WITH (connector = 'filesystem', path = '{path}', format = 'csv');
        CREATE TABLE o WITH (connector = 'filesystem', path = '{out}', format = 'parquet');
        INSERT INTO o SELECT k, v, w, x FROM t WHERE x > 2""")
    got = pq.read_table(out)
    assert got.schema.field("k").type == pa.uint64()
    assert got.schema.field("w").type == pa.uint8()
    want = duckdb.sql(f"SELECT k, v, w, x FROM read_csv('{path}', columns = "
                      "{'k': 'UBIGINT', 'v': 'UINTEGER', 'w': 'UTINYINT', 'x': 'USMALLINT'}) "
                      "WHERE x > 2").fetchall()
    assert [tuple(r.values()) for r in got.to_pylist()] == want


@pytest.mark.parametrize("t, name", [(pa.uint8(), "UTINYINT"), (pa.uint16(), "USMALLINT"),
                                     (pa.uint32(), "UINTEGER"), (pa.uint64(), "UBIGINT")])
def test_messages_name_unsigned_types_as_the_ddl_accepts_them(t, name):
    assert sql_name(t) == name and name in ACCEPTED


def test_an_unknown_type_is_still_refused_with_the_accepted_list(tmp_path):
    with pytest.raises(PlanError, match="unsupported type UNUMBER.*UBIGINT"):
        run_sql(f"CREATE TABLE t (k UNUMBER) WITH (connector = 'filesystem', "
                f"path = '{tmp_path}/x.csv', format = 'csv'); SELECT k FROM t")
