"""Statements as Flink's documentation writes them: ``EXECUTE STATEMENT SET BEGIN … END;``
(and the SQL client's ``BEGIN STATEMENT SET; … END;``) run their INSERTs as one job, as
every caudal script does; MATCH_RECOGNIZE and LATERAL TABLE are refused by name, in one
line, not as a syntax error inside them."""

from __future__ import annotations

import pyarrow.parquet as pq
import pytest

from caudal.errors import SqlSyntaxError
from caudal.job import compile_sql, run_sql
from tests.conftest import make_bids
from tests.helpers import normalized_rows, read_committed

SOURCE = ("CREATE TABLE bids WITH (connector = 'filesystem', path = '{path}', "
          "event_time_field = 'date_time');")


@pytest.fixture(scope="module")
def bids_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("stmtset") / "bids.parquet"
    table = make_bids(1500, seed=5)
    pq.write_table(table, path, row_group_size=300)
    return path, table


@pytest.mark.parametrize("parallelism", [1, 2])
@pytest.mark.parametrize("opening,closing", [("EXECUTE STATEMENT SET\nBEGIN", "END;"),
                                             ("BEGIN STATEMENT SET;", "END;")])
def test_statement_set_runs_its_inserts_as_one_job(tmp_path, duck, bids_file, parallelism,
                                                   opening, closing):
    path, table = bids_file
    sinks = {name: tmp_path / name for name in ("cheap", "dear")}
    ddl = "\n".join(f"CREATE TABLE {name} WITH (connector = 'filesystem', path = '{out}', "
                    "format = 'parquet');" for name, out in sinks.items())
    script = f"""{SOURCE.format(path=path)}
{ddl}
{opening}
  INSERT INTO cheap SELECT auction, price FROM bids WHERE price < 100;
  INSERT INTO dear SELECT auction, price FROM bids WHERE price >= 9000;
{closing}
"""
    assert len(compile_sql(script).job.outputs) == 2
    run_sql(script, parallelism=parallelism)
    duck.register("bids", table)
    for name, cond in (("cheap", "price < 100"), ("dear", "price >= 9000")):
        expected = duck.sql(f"SELECT auction, price FROM bids WHERE {cond}").to_arrow_table()
        assert normalized_rows(read_committed(sinks[name])) == normalized_rows(expected)


@pytest.mark.parametrize("query,message,col", [
    ("SELECT * FROM bids MATCH_RECOGNIZE (PARTITION BY auction ORDER BY date_time "
     "MEASURES A.price AS p PATTERN (A B) DEFINE B AS B.price > A.price)",
     "MATCH_RECOGNIZE (pattern matching) is not supported", 20),
    ("SELECT auction, s FROM bids, LATERAL TABLE(split(channel)) AS T(s)",
     "LATERAL TABLE(f(…)) (table functions) is not supported", 30),
])
def test_flink_features_refused_by_name(bids_file, query, message, col):
    path, _ = bids_file
    with pytest.raises(SqlSyntaxError) as info:
        compile_sql(f"{SOURCE.format(path=path)}\n{query};")
    text = str(info.value)
    assert message in text and "\n" not in text
    assert (info.value.line, info.value.col) == (2, col)
