"""From the outside: dates, times, durations, timestamps and unsigned integers as GROUP BY
keys, SELECT DISTINCT columns and count(DISTINCT …) arguments, over many batches, at
parallelism 1 and 2, give DuckDB's answer. GROUP BY a DATE failed ("Unsupported cast from
date32[day] to int64": the key index took every integer-like type as castable to int64),
and so did count(DISTINCT) of a DATE or of an unsigned value past 2^63 once two batches'
sets were merged."""

from __future__ import annotations

import datetime as dt

import duckdb
import pyarrow as pa
import pytest

import caudal as cd
from caudal.errors import PlanError

N = 60
COLUMNS = {
    "d": pa.array([None if i % 11 == 0 else dt.date(1969, 12, 25) + dt.timedelta(days=i % 13)
                   for i in range(N)], pa.date32()),
    "tm": pa.array([None if i % 7 == 0 else dt.time(i % 5, 59, 59, 999_999)
                    for i in range(N)], pa.time64("us")),
    "ts": pa.array([None if i % 9 == 0 else dt.datetime(1969, 12, 31, 23, 59, 59 - i % 4)
                    for i in range(N)], pa.timestamp("us", tz="UTC")),
    "u64": pa.array([None if i % 8 == 0 else [2**64 - 1, 2**63, 0, 5][i % 4]
                     for i in range(N)], pa.uint64()),
    "u32": pa.array([[2**32 - 1, 2**31, 0, 7][i % 4] for i in range(N)], pa.uint32()),
    "i16": pa.array([[-32768, 32767, 0, -1][i % 4] for i in range(N)], pa.int16()),
}
TABLE = pa.table({"k": pa.array([i % 3 for i in range(N)], pa.int64()), **COLUMNS})
QUERIES = ["SELECT {c}, count(*) AS n, max(k) AS m FROM t GROUP BY {c}",
           "SELECT DISTINCT {c} FROM t",
           "SELECT k, count(DISTINCT {c}) AS n FROM t GROUP BY k",
           "SELECT k, {c}, count(*) AS n FROM t GROUP BY k, {c}"]


def _rows(table: pa.Table) -> list[tuple]:
    return sorted((tuple(r.values()) for r in table.to_pylist()), key=repr)


@pytest.mark.parametrize("parallelism", [1, 2])
@pytest.mark.parametrize("query", QUERIES)
@pytest.mark.parametrize("column", sorted(COLUMNS))
def test_temporal_and_unsigned_keys_match_duckdb(column, query, parallelism):
    sql = query.format(c=column)
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    t = TABLE  # noqa: F841 - read by DuckDB's replacement scan
    want = _rows(con.sql(sql).to_arrow_table())
    got = cd.sql(sql, t=cd.from_arrow(TABLE)).collect(parallelism=parallelism, batch_rows=7)
    assert _rows(got) == want


NESTED = pa.table({"k": [1, 1, 2], "st": pa.array([{"a": 1}, {"a": 1}, None],
                                                   pa.struct([("a", pa.int64())])),
                   "l": pa.array([[1], [1], None], pa.list_(pa.int64()))})


@pytest.mark.parametrize("sql,words", [
    ("SELECT k, count(DISTINCT st) AS c FROM t GROUP BY k", "count(DISTINCT …) of a STRUCT"),
    ("SELECT k, count(DISTINCT l) AS c FROM t GROUP BY k", "count(DISTINCT …) of a BIGINT[]"),
    ("SELECT DISTINCT st FROM t", "distinct rows with a STRUCT"),
    ("SELECT l FROM t UNION SELECT l FROM t", "distinct rows with a BIGINT[]")])
def test_distinct_of_nested_values_is_refused_when_planned(sql, words):
    """No hash kernel keys by structs or lists: these failed at the first row
    (ArrowNotImplementedError: Keys of type struct), as GROUP BY one is refused."""
    with pytest.raises(PlanError) as e:
        cd.sql(sql, t=cd.from_arrow(NESTED)).collect()
    assert words in str(e.value)
    assert "not supported" in str(e.value)
