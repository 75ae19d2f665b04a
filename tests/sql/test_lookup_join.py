"""Lookup joins: ``JOIN t FOR SYSTEM_TIME AS OF s.p_time`` against a bounded table, read
whole by each subtask; the result equals DuckDB's join at parallelism 1 and 2."""

from __future__ import annotations

from pathlib import Path

import pytest

from caudal.bench.events import generate
from caudal.errors import PlanError
from caudal.job import compile_sql, explain_sql
from tests.changelog_helpers import fold, run_changelog

BIDS = ("CREATE TABLE bids WITH (connector = 'nexmark', table = 'bid', events = '5000', "
        "pace = 'false');")


def _side(tmp_path: Path, header: bool, twice: bool = False) -> str:
    """``twice``: every key has two rows (no unique key: the general hash join path)."""
    path = tmp_path / "side.csv"
    rows = "".join(f"{i},name{i}\n" for i in range(0, 1000, 3))  # keys 0, 3, 6, …
    if twice:
        rows += "".join(f"{i},other{i}\n" for i in range(0, 1000, 3))
    path.write_text(("key,value\n" if header else "") + rows)
    option = "" if header else ", 'csv.header' = 'false'"
    return (f"CREATE TABLE side (key BIGINT, `value` VARCHAR) WITH ('connector' = "
            f"'filesystem', 'path' = '{path}', 'format' = 'csv'{option});")


@pytest.mark.parametrize("twice", [False, True])
@pytest.mark.parametrize("parallelism", [1, 2])
@pytest.mark.parametrize("kind", ["JOIN", "LEFT JOIN"])
def test_lookup_join_equals_duckdb(tmp_path, duck, parallelism, kind, twice):
    ddl = BIDS + _side(tmp_path, header=parallelism == 1, twice=twice)
    select = (f"SELECT B.auction, B.price, S.`value` FROM (SELECT *, PROCTIME() AS p_time "
              f"FROM bids) B {kind} side FOR SYSTEM_TIME AS OF B.p_time AS S "
              f"ON mod(B.auction, 1000) = S.key AND S.key > 10")
    got = fold(run_changelog(ddl, select, tmp_path / "out", parallelism=parallelism))
    duck.execute(f"CREATE TABLE side AS SELECT * FROM read_csv('{tmp_path}/side.csv', "
                 f"header = {str(parallelism == 1).lower()}, "
                 "columns = {'key': 'BIGINT', 'value': 'VARCHAR'})")
    bids = generate("bid", 5000, 100_000, 0, ["auction", "price"])
    expected = duck.sql(f"SELECT B.auction, B.price, S.value FROM bids B {kind} side S "
                        "ON B.auction % 1000 = S.key AND S.key > 10").to_arrow_table()
    assert bids.num_rows and got.num_rows
    assert sorted(got.to_pylist(), key=repr) == sorted(expected.to_pylist(), key=repr)
    plan = explain_sql(ddl + f"SELECT * FROM ({select});", parallelism)
    assert "LookupJoin" in plan and "UpdatingJoin" not in plan


@pytest.mark.parametrize("select, message", [
    ("SELECT * FROM bids B JOIN side FOR SYSTEM_TIME AS OF B.date_time AS S "
     "ON B.auction = S.key", "needs a versioned table with event time"),
    ("SELECT * FROM (SELECT *, PROCTIME() AS p FROM bids) B JOIN side FOR SYSTEM_TIME AS OF "
     "B.p AS S ON B.auction > S.key", "needs an equality"),
    ("SELECT * FROM (SELECT *, PROCTIME() AS p FROM bids) B FULL JOIN side FOR SYSTEM_TIME "
     "AS OF B.p AS S ON B.auction = S.key", "inner or LEFT"),
    ("SELECT * FROM (SELECT *, PROCTIME() AS p FROM bids) B JOIN bids FOR SYSTEM_TIME AS OF "
     "B.p AS S ON B.auction = S.auction", "bounded connector"),
])
def test_refused_lookup_joins(tmp_path, select, message):
    with pytest.raises(PlanError, match=message):
        compile_sql(BIDS + _side(tmp_path, header=True) + select + ";")
