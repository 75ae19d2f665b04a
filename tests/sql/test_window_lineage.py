"""Window bounds keep their window through renames: a GROUP BY of both bounds of an upstream
window aggregate is a window aggregate over the same windows (append-only, state freed when
windows close), and a join on renamed bounds is a window join (Nexmark q5, as Flink plans
it) — results compared with DuckDB at parallelism 1 and 4."""

from __future__ import annotations

import pyarrow as pa
import pytest

from caudal.job import compile_sql, explain_sql, run_sql
from tests.changelog_helpers import fold, run_changelog
from tests.conftest import REPO
from tests.helpers import normalized_rows, read_committed

EVENTS = 40_000
#: 2000 events per second of event time: 20 s of bids
BID = ("CREATE TABLE bid WITH (connector = 'nexmark', table = 'bid', "
       f"events = '{EVENTS}', event_rate = '2000', pace = 'false', event_time_field = 'date_time');")


@pytest.fixture(scope="module")
def bids(tmp_path_factory) -> pa.Table:
    """The bid table, written by caudal itself, for DuckDB."""
    out = tmp_path_factory.mktemp("bid")
    run_sql(f"{BID}\nCREATE TABLE o WITH (connector = 'filesystem', path = '{out}', "
            "format = 'parquet');\nINSERT INTO o SELECT * FROM bid;")
    return read_committed(out)


def _q5() -> tuple[str, str]:
    text = (REPO / "bench" / "nexmark" / "q5.sql").read_text()
    query = text[text.index("INSERT INTO results") + len("INSERT INTO results"):]
    duck = (REPO / "bench" / "nexmark" / "duckdb" / "q5.sql").read_text()
    return query.strip().rstrip(";"), duck.strip().rstrip(";")


def _script(query: str, view: str = "") -> str:
    return f"{BID}\n{view}\nCREATE TABLE o WITH (connector = 'blackhole');\nINSERT INTO o {query};"


#: count per auction per window, then the largest count per window, by renamed bounds
TWO_LEVEL = ("SELECT max(c.num) AS maxn, c.s, c.e FROM (SELECT auction, count(*) AS num, "
             "window_start AS s, window_end AS e FROM TABLE(TUMBLE(TABLE bid, "
             "DESCRIPTOR(date_time), INTERVAL '2' SECOND)) GROUP BY auction, window_start, "
             "window_end) AS c GROUP BY c.s, c.e")
TWO_LEVEL_DUCK = ("WITH c AS (SELECT auction, count(*) AS num, epoch_us(date_time) // 2000000 "
                  "AS w FROM bid GROUP BY auction, w) SELECT max(num) AS maxn, "
                  "make_timestamptz(w * 2000000) AS s, make_timestamptz((w + 1) * 2000000) AS e "
                  "FROM c GROUP BY w")
#: the same over a view, with hopping windows and the bounds grouped in the other order
HOP_VIEW = ("CREATE VIEW counts AS SELECT auction, count(*) AS num, window_start AS s, "
            "window_end AS e FROM TABLE(HOP(TABLE bid, DESCRIPTOR(date_time), INTERVAL '2' "
            "SECOND, INTERVAL '6' SECOND)) GROUP BY auction, window_start, window_end;")
HOP_QUERY = "SELECT e, s, max(num) AS maxn, count(*) AS auctions FROM counts GROUP BY e, s"
HOP_DUCK = ("WITH w AS (SELECT auction, epoch_us(date_time) // 2000000 - k AS p FROM bid, "
            "range(0, 3) AS ks(k)), c AS (SELECT auction, count(*) AS num, p FROM w GROUP BY "
            "auction, p) SELECT make_timestamptz(p * 2000000 + 6000000) AS e, "
            "make_timestamptz(p * 2000000) AS s, max(num) AS maxn, count(*) AS auctions "
            "FROM c GROUP BY p")


def test_q5_plans_window_aggregates_and_a_window_join():
    query, _ = _q5()
    script = _script(query)
    names = [v.name for v in compile_sql(script).graph.vertices]
    assert "window join" in names
    assert not any("updating" in n for n in names), names
    text = explain_sql(script)
    assert "WindowJoin hop(2s, 10s)" in text and "[changelog]" not in text


def test_group_by_renamed_bounds_is_a_window_aggregate():
    text = explain_sql(_script(TWO_LEVEL))
    assert "UpdatingAggregate" not in text and "[changelog]" not in text
    assert "windows of tumble(2s)" in text


def test_group_by_one_bound_stays_an_updating_aggregate():
    """Only both bounds name the window (as Flink requires): one is a plain key."""
    query = TWO_LEVEL.replace("GROUP BY c.s, c.e", "GROUP BY c.s").replace(", c.e FROM (",
                                                                           " FROM (")
    assert "UpdatingAggregate" in explain_sql(_script(query))


def test_three_levels_keep_the_window():
    """A window aggregate over renamed bounds reports them as the upstream window's again."""
    query = (f"SELECT max(maxn) AS top, x, y FROM (SELECT maxn, s AS x, e AS y FROM "
             f"({TWO_LEVEL}) AS m) AS r GROUP BY x, y")
    text = explain_sql(_script(query))
    assert "UpdatingAggregate" not in text and text.count("windows of tumble(2s)") == 2


@pytest.mark.parametrize("parallelism", [1, 4])
@pytest.mark.parametrize("case", ["q5", "two_level", "hop_view"])
def test_window_over_window_matches_duckdb(tmp_path, duck, bids, case, parallelism):
    if case == "q5":
        view, (query, duck_query) = "", _q5()
    elif case == "two_level":
        view, query, duck_query = "", TWO_LEVEL, TWO_LEVEL_DUCK
    else:
        view, query, duck_query = HOP_VIEW, HOP_QUERY, HOP_DUCK
    changes = run_changelog(f"{BID}\n{view}", query, tmp_path / "out",
                            parallelism=parallelism, batch_rows=1500)
    assert set(changes.column("_op").to_pylist()) == {1}  # append-only
    duck.register("bid", bids)
    expected = duck.sql(duck_query).to_arrow_table()
    assert expected.num_rows > 0
    assert normalized_rows(fold(changes)) == normalized_rows(expected)
