"""GROUP BY the window struct of a subquery's window aggregate (Arroyo's ``GROUP BY window``,
its Nexmark q5): a second window aggregate over the same windows, keyed by the window's
bounds and giving the struct back (caudal refused it; before that, it failed with Arrow's
"Keys of type struct"). Arroyo's nexmark_q5 smoke query runs as written over generated bids
and equals DuckDB at parallelism 1 and 2, and its max-per-window part stays a window
aggregate, so the join on the window is a window join (append-only output)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from caudal.job import compile_sql, run_sql
from tests.helpers import normalized_rows, read_committed

QUERY = Path(__file__).resolve().parent / "arroyo_smoke" / "queries" / "nexmark_q5.sql"
GENERATE = """
CREATE TABLE gen WITH (connector = 'nexmark', table = 'bid', events = '6000',
                       event_rate = '500', pace = 'false');
CREATE TABLE bids_file (datetime TIMESTAMP, auction BIGINT)
    WITH (connector = 'filesystem', path = '{out}', format = 'json');
INSERT INTO bids_file SELECT date_time AS datetime, auction FROM gen;
"""
#: the hopping windows (2 s slide, 10 s size) of each bid, as DuckDB expands them
WINDOWS = """
WITH b AS (SELECT CAST(datetime AS TIMESTAMP) AS datetime, auction
           FROM read_json('{path}/*.json*')),
w AS (SELECT auction, datetime, epoch_us(datetime) // 2000000 * 2000000 + 2000000
             + k * 2000000 AS wend
      FROM b, range(0, 5) r(k)),
counts AS (SELECT auction, wend, count(*) AS num FROM w GROUP BY auction, wend),
maxes AS (SELECT wend, max(num) AS maxn FROM counts GROUP BY wend)
"""


@pytest.fixture(scope="module")
def bids_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("nexmark_bids")
    run_sql(GENERATE.format(out=out))
    return out


def _arroyo_q5(bids: Path, out: Path) -> str:
    text = QUERY.read_text()
    text = text.replace("$input_dir/nexmark_bids.json", str(bids))
    text = text.replace("$output_path", str(out))
    return re.sub(r"connector\s*=\s*'single_file'", "connector = 'filesystem'", text)


@pytest.mark.parametrize("parallelism", [1, 2])
def test_arroyo_nexmark_q5_equals_duckdb(tmp_path, duck, bids_dir, parallelism):
    out = tmp_path / "out"
    run_sql(_arroyo_q5(bids_dir, out), parallelism=parallelism)
    got = duck.sql(f"SELECT auction, count FROM read_json('{out}/*.json*')").to_arrow_table()
    expected = duck.sql(WINDOWS.format(path=bids_dir) + """
        SELECT c.auction, c.num AS count FROM counts c JOIN maxes m ON c.wend = m.wend
        WHERE c.num >= m.maxn""").to_arrow_table()
    assert len(expected) > 10
    assert normalized_rows(got) == normalized_rows(expected)


def test_the_regrouped_window_is_a_window_aggregate(tmp_path, bids_dir):
    compiled = compile_sql(_arroyo_q5(bids_dir, tmp_path / "out"))
    plan = compiled.explain()
    assert "UpdatingAggregate" not in plan and "UpdatingJoin" not in plan


@pytest.mark.parametrize("parallelism", [1, 2])
def test_window_struct_of_a_subquery_regrouped_equals_duckdb(tmp_path, duck, bids_dir,
                                                              parallelism):
    out = tmp_path / "out"
    run_sql(f"""
        CREATE TABLE bids (datetime TIMESTAMP, auction BIGINT) WITH (connector = 'filesystem',
            path = '{bids_dir}', format = 'json', event_time_field = 'datetime');
        CREATE TABLE out WITH (connector = 'filesystem', path = '{out}', format = 'parquet');
        INSERT INTO out
        SELECT c.window.end AS wend, window.start AS wstart, max(c.num) AS maxn, count(*) AS n
        FROM (SELECT count(*) AS num, hop(interval '2 second', interval '10 seconds') AS window
              FROM bids GROUP BY auction, window) AS c
        GROUP BY c.window;
    """, parallelism=parallelism)
    expected = duck.sql(WINDOWS.format(path=bids_dir) + """
        SELECT make_timestamp(wend) AS wend, make_timestamp(wend - 10000000) AS wstart,
               max(num) AS maxn, count(*) AS n FROM counts GROUP BY wend""").to_arrow_table()
    assert normalized_rows(read_committed(out)) == normalized_rows(expected)
