"""Window joins as Flink and Arroyo users write them: Flink's FULL (and LEFT / RIGHT) window
join example of its "Window JOIN" docs — an append result, unmatched rows padded with NULLs
when their window closes — and Arroyo's ``ON a.window = b.window`` on window structs. Each
equals DuckDB's batch answer at parallelism 1 and 2 and only appends."""

from __future__ import annotations

import datetime as dt

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from caudal.errors import PlanError
from caudal.job import explain_sql
from tests.changelog_helpers import run_changelog
from tests.helpers import normalized_rows

ROWS = {"LeftTable": [(2, 1, "L1"), (6, 2, "L2"), (3, 3, "L3")],
        "RightTable": [(1, 2, "R2"), (4, 3, "R3"), (5, 4, "R4")]}
TABLE = ("CREATE TABLE {name} (row_time TIMESTAMP, num INT, id TEXT, WATERMARK FOR row_time "
         "AS row_time - INTERVAL '1' SECOND) WITH (connector = 'filesystem', path = '{path}', "
         "format = 'parquet');")


def _table(rows) -> pa.Table:
    return pa.table({
        "row_time": pa.array([dt.datetime(2020, 4, 15, 12, m, tzinfo=dt.UTC) for m, _, _ in rows],
                             pa.timestamp("us", tz="UTC")),
        "num": pa.array([n for _, n, _ in rows], pa.int32()),
        "id": [i for _, _, i in rows]})


@pytest.fixture(scope="module")
def tables(tmp_path_factory) -> tuple[str, dict[str, pa.Table]]:
    ddl, data = [], {}
    for name, rows in ROWS.items():
        path = tmp_path_factory.mktemp(name)
        data[name] = _table(rows)
        pq.write_table(data[name], path / "part.parquet")
        ddl.append(TABLE.format(name=name, path=path))
    return "\n".join(ddl), data


#: Flink's example, verbatim but for the join kind
FLINK_JOIN = """SELECT L.num as L_Num, L.id as L_Id, R.num as R_Num, R.id as R_Id, L.window_start, L.window_end
           FROM (
               SELECT * FROM TABLE(TUMBLE(TABLE LeftTable, DESCRIPTOR(row_time), INTERVAL '5' MINUTES))
           ) L
           {kind} JOIN (
               SELECT * FROM TABLE(TUMBLE(TABLE RightTable, DESCRIPTOR(row_time), INTERVAL '5' MINUTES))
           ) R
           ON L.num = R.num AND L.window_start = R.window_start AND L.window_end = R.window_end"""
DUCK_JOIN = """WITH L AS (SELECT *, time_bucket(INTERVAL 5 MINUTE, row_time) AS window_start,
    time_bucket(INTERVAL 5 MINUTE, row_time) + INTERVAL 5 MINUTE AS window_end FROM LeftTable),
  R AS (SELECT *, time_bucket(INTERVAL 5 MINUTE, row_time) AS window_start,
    time_bucket(INTERVAL 5 MINUTE, row_time) + INTERVAL 5 MINUTE AS window_end FROM RightTable)
SELECT L.num, L.id, R.num, R.id, L.window_start, L.window_end FROM L {kind} JOIN R
ON L.num = R.num AND L.window_start = R.window_start AND L.window_end = R.window_end"""


@pytest.mark.parametrize("parallelism", [1, 2])
@pytest.mark.parametrize("kind", ["FULL", "LEFT", "RIGHT", "FULL OUTER", ""])
def test_flink_window_join_example(tmp_path, duck, tables, kind, parallelism):
    ddl, data = tables
    query = FLINK_JOIN.format(kind=kind)
    assert f"WindowJoin tumble(5m) {(kind or 'INNER').split()[0]}" in \
        explain_sql(f"{ddl}\n{query};")
    changes = run_changelog(ddl, query, tmp_path / "out", parallelism=parallelism)
    assert set(changes.column("_op").to_pylist()) == {1}  # appended once, never retracted
    for name, table in data.items():
        duck.register(name, table)
    expected = duck.sql(DUCK_JOIN.format(kind=kind)).to_arrow_table()
    assert normalized_rows(changes.drop_columns(["_op"])) == normalized_rows(expected)
    if kind.startswith("FULL"):  # Flink's docs: two matched-or-padded rows per window
        assert changes.num_rows == 5


def test_a_window_over_a_full_join_is_refused_not_nulled(tables):
    """The padded side's window columns are NULL in unmatched rows: they cannot be the event
    time of a further window (rows would vanish), so it is refused."""
    ddl, _ = tables
    query = (f"SELECT count(*) AS n, tumble(INTERVAL '10' MINUTE) AS w FROM "
             f"({FLINK_JOIN.format(kind='FULL')}) GROUP BY w")
    with pytest.raises(PlanError) as err:
        explain_sql(f"{ddl}\n{query};")
    assert "without event time" in err.value.message and err.value.line is not None
    left = query.replace("FULL JOIN", "LEFT JOIN")
    assert "over event time" in explain_sql(f"{ddl}\n{left};")


COALESCED = FLINK_JOIN.format(kind="FULL").replace(
    "L.window_start, L.window_end", "COALESCE(L.window_start, R.window_start) AS window_start, "
    "COALESCE(L.window_end, R.window_end) AS window_end")
OVER_FULL = {  # windows over a FULL window join, on the COALESCE of both sides' bounds
    "regroup": f"SELECT window_start, count(*) AS n, count(L_Num) AS l, count(R_Num) AS r "
               f"FROM ({COALESCED}) GROUP BY window_start, window_end",
    "tumble": f"SELECT w.start AS window_start, count(*) AS n, count(L_Num) AS l, "
              f"count(R_Num) AS r, tumble(INTERVAL '10' MINUTE) AS w FROM ({COALESCED}) "
              f"GROUP BY w",
}
DUCK_OVER_FULL = {
    "regroup": f"SELECT window_start, count(*), count(L_Num), count(R_Num) FROM "
               f"({DUCK_JOIN.format(kind='FULL')}) GROUP BY 1".replace(
                   "L.window_start, L.window_end", "coalesce(L.window_start, R.window_start) "
                   "AS window_start, L.num AS L_Num, R.num AS R_Num"),
    "tumble": f"SELECT time_bucket(INTERVAL 10 MINUTE, window_start), count(*), "
              f"count(L_Num), count(R_Num) FROM ({DUCK_JOIN.format(kind='FULL')}) GROUP BY 1"
              .replace("L.window_start, L.window_end",
                       "coalesce(L.window_start, R.window_start) AS window_start, "
                       "L.num AS L_Num, R.num AS R_Num"),
}


@pytest.mark.parametrize("parallelism", [1, 2])
@pytest.mark.parametrize("name", sorted(OVER_FULL))
def test_windows_over_a_full_join_on_coalesced_bounds(tmp_path, duck, tables, name,
                                                      parallelism):
    ddl, data = tables
    assert "over event time" in explain_sql(f"{ddl}\n{OVER_FULL[name]};")
    changes = run_changelog(ddl, OVER_FULL[name], tmp_path / "out", parallelism=parallelism)
    assert set(changes.column("_op").to_pylist()) == {1}
    for table_name, table in data.items():
        duck.register(table_name, table)
    expected = duck.sql(DUCK_OVER_FULL[name]).to_arrow_table()
    assert expected.num_rows == (2 if name == "regroup" else 1)
    got = changes.select(["window_start", "n", "l", "r"])
    assert normalized_rows(got) == normalized_rows(expected)


# ---- Arroyo: ON a.window = b.window -------------------------------------------------------

EVENTS = 20_000
NEXMARK = ("CREATE TABLE {name} WITH (connector = 'nexmark', table = '{name}', "
           f"events = '{EVENTS}', event_rate = '2000', pace = 'false', "
           "event_time_field = 'date_time');")
DDL = "\n".join(NEXMARK.format(name=n) for n in ("auction", "bid"))
ARROYO_JOIN = """SELECT a.auction, a.window.start AS s, a.window.end AS e, a.n, b.m
FROM (SELECT auction, count(*) AS n, tumble(INTERVAL '2' SECOND) AS window
      FROM bid GROUP BY auction, window) a
{kind} JOIN (SELECT id AS auction, count(*) AS m, tumble(INTERVAL '2' SECOND) AS window
      FROM auction GROUP BY id, window) b
ON a.window = b.window AND a.auction = b.auction"""
DUCK_ARROYO = """WITH a AS (SELECT auction, count(*) AS n, time_bucket(INTERVAL 2 SECOND, date_time) AS s
      FROM bid GROUP BY ALL),
  b AS (SELECT id AS auction, count(*) AS m, time_bucket(INTERVAL 2 SECOND, date_time) AS s
      FROM auction GROUP BY ALL)
SELECT a.auction, a.s, a.s + INTERVAL 2 SECOND AS e, a.n, b.m FROM a {kind} JOIN b
ON a.s = b.s AND a.auction = b.auction"""


@pytest.fixture(scope="module")
def nexmark(tmp_path_factory) -> dict[str, pa.Table]:
    from caudal.job import run_sql
    from tests.helpers import read_committed

    out = {}
    for name in ("auction", "bid"):
        path = tmp_path_factory.mktemp(name)
        run_sql(f"{NEXMARK.format(name=name)}\nCREATE TABLE o WITH (connector = 'filesystem', "
                f"path = '{path}', format = 'parquet');\nINSERT INTO o SELECT * FROM {name};")
        out[name] = read_committed(path)
    return out


def _window_join_equals_duckdb(tmp_path, duck, nexmark, query: str, duck_query: str,
                               parallelism: int, least: int) -> None:
    """A window join over the Nexmark tables: planned as one, append-only, DuckDB's rows."""
    assert "WindowJoin tumble(2s)" in explain_sql(f"{DDL}\n{query};")
    changes = run_changelog(DDL, query, tmp_path / "out", parallelism=parallelism,
                            batch_rows=1000)
    assert set(changes.column("_op").to_pylist()) == {1}
    for name, table in nexmark.items():
        duck.register(name, table)
    expected = duck.sql(duck_query).to_arrow_table()
    assert expected.num_rows > least
    assert normalized_rows(changes.drop_columns(["_op"])) == normalized_rows(expected)


@pytest.mark.parametrize("parallelism", [1, 2])
@pytest.mark.parametrize("kind", ["", "LEFT"])
def test_arroyo_join_on_window_structs(tmp_path, duck, nexmark, kind, parallelism):
    _window_join_equals_duckdb(tmp_path, duck, nexmark, ARROYO_JOIN.format(kind=kind),
                               DUCK_ARROYO.format(kind=kind), parallelism, 50)


# ---- Flink: window SEMI / ANTI joins (IN / EXISTS correlated on both window bounds) -----

LEFT_W = ("SELECT * FROM TABLE(TUMBLE(TABLE LeftTable, DESCRIPTOR(row_time), "
          "INTERVAL '5' MINUTES))")
RIGHT_W = ("SELECT * FROM TABLE(TUMBLE(TABLE RightTable, DESCRIPTOR(row_time), "
           "INTERVAL '5' MINUTES))")
BOUNDS = "L.window_start = R.window_start AND L.window_end = R.window_end"
SEMI_ANTI = {  # the queries of Flink's Window JOIN docs, and the ids they print
    "in": (f"SELECT * FROM ({LEFT_W}) L WHERE L.num IN (SELECT num FROM ({RIGHT_W}) R "
           f"WHERE {BOUNDS})", "SEMI", ["L3"]),
    "exists": (f"SELECT * FROM ({LEFT_W}) L WHERE EXISTS (SELECT * FROM ({RIGHT_W}) R "
               f"WHERE L.num = R.num AND {BOUNDS})", "SEMI", ["L3"]),
    "not_in": (f"SELECT * FROM ({LEFT_W}) L WHERE L.num NOT IN (SELECT num FROM ({RIGHT_W}) R "
               f"WHERE {BOUNDS})", "ANTI", ["L1", "L2"]),
    "not_exists": (f"SELECT * FROM ({LEFT_W}) L WHERE NOT EXISTS (SELECT * FROM ({RIGHT_W}) R "
                   f"WHERE L.num = R.num AND {BOUNDS})", "ANTI", ["L1", "L2"]),
}


@pytest.mark.parametrize("parallelism", [1, 2])
@pytest.mark.parametrize("name", sorted(SEMI_ANTI))
def test_flink_window_semi_and_anti_joins(tmp_path, tables, name, parallelism):
    ddl, _ = tables
    query, kind, ids = SEMI_ANTI[name]
    assert f"WindowJoin tumble(5m) {kind}" in explain_sql(f"{ddl}\n{query};")
    changes = run_changelog(ddl, query, tmp_path / "out", parallelism=parallelism)
    if name != "not_in":  # NOT IN's NULL check is an updating anti join over the result
        assert set(changes.column("_op").to_pylist()) == {1}
    from tests.changelog_helpers import fold

    got = fold(changes)
    assert sorted(got.column("id").to_pylist()) == ids
    assert got.column("window_time").to_pylist() == [
        e - dt.timedelta(microseconds=1) for e in got.column("window_end").to_pylist()]


NEXMARK_SEMI = """SELECT B.auction, B.price, B.window_start FROM (SELECT * FROM TABLE(TUMBLE(
  TABLE bid, DESCRIPTOR(date_time), INTERVAL '2' SECOND))) B WHERE {neg}EXISTS (
  SELECT * FROM (SELECT * FROM TABLE(TUMBLE(TABLE auction, DESCRIPTOR(date_time),
  INTERVAL '2' SECOND))) A WHERE A.id = B.auction AND A.window_start = B.window_start
  AND A.window_end = B.window_end)"""
DUCK_SEMI = """SELECT B.auction, B.price, time_bucket(INTERVAL 2 SECOND, B.date_time) AS ws
FROM bid B WHERE {neg}EXISTS (SELECT 1 FROM auction A WHERE A.id = B.auction AND
  time_bucket(INTERVAL 2 SECOND, A.date_time) = time_bucket(INTERVAL 2 SECOND, B.date_time))"""


@pytest.mark.parametrize("parallelism", [1, 2])
@pytest.mark.parametrize("neg", ["", "NOT "])
def test_window_semi_and_anti_joins_match_duckdb(tmp_path, duck, nexmark, neg, parallelism):
    _window_join_equals_duckdb(tmp_path, duck, nexmark, NEXMARK_SEMI.format(neg=neg),
                               DUCK_SEMI.format(neg=neg), parallelism, 100)


def test_window_structs_compared_in_where_of_a_comma_join(tmp_path, duck, nexmark):
    inner = ARROYO_JOIN.format(kind="")
    a, b = inner.index("FROM (") + 5, inner.index(" JOIN (")
    query = (inner[:b] + ", " + inner[b + len(" JOIN "):]).replace(
        "ON a.window = b.window", "WHERE a.window = b.window")
    assert query[a] == "(" and "WHERE a.window = b.window" in query
    _window_join_equals_duckdb(tmp_path, duck, nexmark, query, DUCK_ARROYO.format(kind=""),
                               2, 50)
