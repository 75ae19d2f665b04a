"""ORDER BY / LIMIT / OFFSET: on bounded input Flink's batch answer (sorted, emitted at the
end; compared row for row with DuckDB in PostgreSQL's NULL order); LIMIT without ORDER BY
gives that many rows of the result and ends an unbounded job by itself; ORDER BY … LIMIT
over an unbounded input is a top-N changelog that folds to the batch answer."""

from __future__ import annotations

import collections

import pyarrow.parquet as pq
import pytest

from caudal.errors import PlanError
from caudal.job import compile_sql
from caudal.sql import order_limit
from tests.changelog_helpers import fold, run_changelog
from tests.conftest import make_bids, run_cli
from tests.helpers import normalized_rows, run_to_table

DDL = "CREATE TABLE bids WITH (connector = 'filesystem', path = '{path}');"

SORTED = [
    "SELECT auction, price, bidder FROM bids ORDER BY price DESC, auction, bidder, date_time "
    "LIMIT 20 OFFSET 3",
    "SELECT auction, price, channel FROM bids WHERE auction < 1003 ORDER BY channel NULLS "
    "FIRST, price, bidder, date_time",
    # over an updating result (a bounded GROUP BY), ORDER BY an aggregate not selected
    "SELECT auction FROM bids GROUP BY auction ORDER BY count(*) DESC, auction LIMIT 7",
    "SELECT channel, count(*) AS n FROM bids GROUP BY channel ORDER BY 2 DESC, 1",
    "SELECT auction AS a, price FROM bids WHERE price > 9900 UNION ALL SELECT bidder, price "
    "FROM bids WHERE price < -45 ORDER BY a, price LIMIT 12",
    "SELECT auction, bidder FROM bids ORDER BY auction * 7 % 11, bidder DESC, date_time "
    "LIMIT 9",
    "SELECT auction, bidder FROM bids ORDER BY bidder, auction, date_time OFFSET 5 ROWS "
    "FETCH NEXT 4 ROWS ONLY",
]


@pytest.fixture(scope="module")
def bids_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("order") / "bids.parquet"
    table = make_bids(4000, seed=21)
    pq.write_table(table, path, row_group_size=300)
    return path, table


def _duck(duck, table, query):
    duck.execute("SET default_null_order = 'nulls_last_on_asc_first_on_desc'")
    duck.register("bids", table)
    return duck.sql(query).to_arrow_table()


@pytest.mark.parametrize("parallelism", [1, 2])
@pytest.mark.parametrize("query", SORTED)
def test_order_by_on_bounded_input_equals_duckdb_in_order(tmp_path, duck, bids_file, query,
                                                          parallelism):
    path, table = bids_file
    got = run_to_table(DDL.format(path=path), query, tmp_path / "out",
                       parallelism=parallelism, batch_rows=500)
    expected = _duck(duck, table, query)
    assert got.num_rows == expected.num_rows
    assert got.to_pylist() == expected.rename_columns(got.column_names).to_pylist()


@pytest.mark.parametrize("parallelism", [1, 2])
@pytest.mark.parametrize("query", [
    "SELECT auction, price FROM bids WHERE price > 5000 LIMIT 25",
    "SELECT * FROM bids LIMIT 3 OFFSET 10",
    "SELECT auction, price FROM bids WHERE price > 9990 LIMIT 1000",  # fewer rows than n
])
def test_limit_without_order_is_a_subset_of_the_result(tmp_path, duck, bids_file, query,
                                                       parallelism):
    path, table = bids_file
    got = run_to_table(DDL.format(path=path), query, tmp_path / "out",
                       parallelism=parallelism, batch_rows=300)
    full = _duck(duck, table, query.split(" LIMIT ")[0])
    limit = int(query.split(" LIMIT ")[1].split()[0])
    offset = int(query.split(" OFFSET ")[1]) if " OFFSET " in query else 0
    assert (got.num_rows if got is not None else 0) == min(limit, max(0, full.num_rows
                                                                         - offset))
    have = collections.Counter(normalized_rows(full))
    for row in normalized_rows(got):
        assert have[row] > 0
        have[row] -= 1


@pytest.mark.parametrize("parallelism", [1, 2])
@pytest.mark.parametrize("query", [
    "SELECT auction, price, bidder FROM bids ORDER BY price DESC, auction, bidder, date_time "
    "LIMIT 15",
    "SELECT auction, price, bidder FROM bids ORDER BY price, auction DESC, bidder, date_time "
    "LIMIT 10 OFFSET 4",
    "SELECT auction, count(*) AS n FROM bids GROUP BY auction ORDER BY n DESC, auction "
    "LIMIT 5",
])
def test_order_limit_on_unbounded_input_is_a_top_n(tmp_path, duck, bids_file, monkeypatch,
                                                   query, parallelism):
    """The top-N plan of an unbounded input, run on a file (the planner told the input is
    unbounded): its changelog folds to the batch answer."""
    monkeypatch.setattr(order_limit, "_bounded", lambda node: False)
    path, table = bids_file
    changes = run_changelog(DDL.format(path=path), query, tmp_path / "out",
                            parallelism=parallelism, settings="SET updating_flush = '0';",
                            batch_rows=400)
    assert set(changes.column("_op").to_pylist()) & {-1, -2}  # rows left the top N
    expected = _duck(duck, table, query)
    assert normalized_rows(fold(changes)) == normalized_rows(expected)


@pytest.mark.parametrize("parallelism", [1, 2])
@pytest.mark.parametrize("query", [
    "SELECT auction, price, date_time FROM bids WHERE price > 3000 ORDER BY date_time, "
    "price DESC, auction, bidder",
    "SELECT auction, bidder, date_time FROM bids ORDER BY date_time, bidder, auction, price "
    "LIMIT 30 OFFSET 2",
])
def test_order_by_event_time_on_unbounded_input_sorts_as_the_watermark_passes(
        tmp_path, duck, bids_file, monkeypatch, query, parallelism):
    """Flink's sort on a time attribute: append-only, in order (the file's event times
    grow, so no row is late)."""
    monkeypatch.setattr(order_limit, "_bounded", lambda node: False)
    path, table = bids_file
    ddl = DDL.format(path=path).replace("');", "', event_time_field = 'date_time');")
    plan = compile_sql(f"{ddl}\n{query};").job.outputs[0].plan
    assert not plan.input.updating
    got = run_to_table(ddl, query, tmp_path / "out", parallelism=parallelism, batch_rows=300)
    expected = _duck(duck, table, query)
    assert got.to_pylist() == expected.rename_columns(got.column_names).to_pylist()


def test_limit_preview_of_an_unbounded_stream_ends_by_itself(tmp_path):
    job = tmp_path / "job.sql"
    job.write_text("CREATE TABLE bids WITH (connector = 'nexmark', table = 'bid');\n"
                   "SELECT auction, price FROM bids LIMIT 10;\n")
    ordered = tmp_path / "ordered.sql"  # ORDER BY event time: sorted, then the first 10
    ordered.write_text("CREATE TABLE bids WITH (connector = 'nexmark', table = 'bid');\n"
                       "SELECT auction, price FROM bids ORDER BY date_time LIMIT 10;\n")
    for script, parallelism in ((job, "1"), (job, "2"), (ordered, "2")):
        result = run_cli("run", str(script), "--parallelism", parallelism, timeout=60)
        assert result.returncode == 0, result.stderr
        lines = [x for x in result.stdout.splitlines() if x.strip()]
        assert lines[0].split() == ["auction", "price"] and len(lines) == 11


UNBOUNDED = "CREATE TABLE bids WITH (connector = 'nexmark', table = 'bid');"


@pytest.mark.parametrize("query,message", [
    ("SELECT * FROM bids ORDER BY price", "ORDER BY over an unbounded input needs LIMIT"),
    ("SELECT * FROM bids ORDER BY date_time DESC",
     "ORDER BY over an unbounded input needs LIMIT"),
    ("SELECT auction, count(*) FROM bids GROUP BY auction LIMIT 3",
     "LIMIT without ORDER BY over an updating result"),
    ("SELECT DISTINCT auction FROM bids ORDER BY price LIMIT 3",
     "ORDER BY expressions must appear in the SELECT list"),
    ("SELECT auction FROM bids UNION ALL SELECT bidder FROM bids ORDER BY auction + 1 "
     "LIMIT 3", "ORDER BY of a UNION"),
    ("SELECT auction FROM bids LIMIT -1", "LIMIT takes a whole number"),
])
def test_order_limit_errors(query, message):
    with pytest.raises(PlanError) as err:
        compile_sql(f"{UNBOUNDED}\n{query};")
    text = str(err.value)
    assert message in text and "line 2, column" in text
