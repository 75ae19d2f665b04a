"""count/sum/avg over an updating aggregate's changelog keep running totals per key
(operators.running_totals), not the rows: a two-level aggregate (max per key, then totals
per group) over a source changelog whose deletions empty groups and refill them, with NULLs,
folds to DuckDB's answer over the rows that remain, at parallelism 1 and 2; integer sums stay
exact through 2^63 and fail in one line past BIGINT; the plan marks the state layout."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import duckdb
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from caudal.job import compile_sql
from tests.changelog_helpers import fold, run_changelog
from tests.helpers import normalized_rows

INNER = "SELECT k, g, max(x) AS m FROM src GROUP BY k, g"
KEYED = ("SELECT g, count(*) AS n, count(m) AS c, sum(m) AS s, avg(m) AS a, "
         "count(*) FILTER (WHERE m > 0) AS p, sum(m) FILTER (WHERE m < 3) AS sl "
         f"FROM ({INNER}) GROUP BY g")
GLOBAL = f"SELECT count(*) AS n, sum(m) AS s, avg(m) AS a, count(m) AS c FROM ({INNER})"
SCHEMA = pa.schema([("k", pa.int64()), ("g", pa.int64()), ("x", pa.int64())])
ROW = st.tuples(st.integers(0, 5), st.integers(0, 2),
                st.one_of(st.none(), st.integers(-4, 9)))


@st.composite
def changes(draw) -> tuple[list[tuple[tuple, str]], list[tuple]]:
    """Inserts and deletes of rows present (a group empties when its last key's rows go,
    and may be refilled later)."""
    present: list[tuple] = []
    events: list[tuple[tuple, str]] = []
    for _ in range(draw(st.integers(1, 60))):
        if present and draw(st.integers(0, 2)) == 0:
            events.append((present.pop(draw(st.integers(0, len(present) - 1))), "d"))
        else:
            row = draw(ROW)
            present.append(row)
            events.append((row, "c"))
    return events, present


def _ddl(path: Path, events: list[tuple[tuple, str]]) -> str:
    lines = []
    for row, op in events:
        value = dict(zip(SCHEMA.names, row))
        lines.append({"before": value if op == "d" else None,
                      "after": value if op == "c" else None, "op": op})
    path.write_text("".join(json.dumps(x) + "\n" for x in lines))
    return (f"CREATE TABLE src (k BIGINT, g BIGINT, x BIGINT) WITH (connector = "
            f"'filesystem', path = '{path}', format = 'debezium_json');")


def _expected(query: str, present: list[tuple]) -> list[tuple]:
    con = duckdb.connect()
    src = pa.table({n: [r[i] for r in present] for i, n in enumerate(SCHEMA.names)},
                   schema=SCHEMA)
    con.register("src", src)
    return normalized_rows(con.sql(query).to_arrow_table())


@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(data=changes(), parallelism=st.sampled_from([1, 2]), flush=st.sampled_from(["0", "1s"]),
       keyed=st.booleans(), batch_rows=st.sampled_from([1, 3, 50]))
def test_totals_over_a_changelog_fold_to_duckdb(data, parallelism, flush, keyed, batch_rows):
    events, present = data
    query = KEYED if keyed else GLOBAL
    with tempfile.TemporaryDirectory() as tmp:
        ddl = _ddl(Path(tmp) / "changes.json", events)
        got = fold(run_changelog(ddl, query, Path(tmp) / "out", parallelism=parallelism,
                                 settings=f"SET updating_flush = '{flush}';",
                                 batch_rows=batch_rows))
    assert normalized_rows(got) == _expected(query, present)


def test_the_outer_aggregate_keeps_totals_and_marks_its_state(tmp_path):
    """The plan chooses totals for the aggregate over the inner one (its params enter the
    job's fingerprint, so a checkpoint of the rows' layout is refused), not for one over a
    source's changelog (whose corrupt retractions only the rows can tell) nor for max."""
    ddl = _ddl(tmp_path / "c.json", [((1, 1, 1), "c")])

    def totals(query: str) -> list[bool]:
        graph = compile_sql(f"{ddl}\nCREATE TABLE out WITH (connector = 'blackhole');\n"
                            f"INSERT INTO out {query};").graph
        return [bool(op.params.get("running_totals")) for v in graph.vertices
                for op in v.operators if op.kind == "updating_aggregate"]

    assert sorted(totals(KEYED)) == [False, True]
    assert totals("SELECT g, sum(x) AS s FROM src GROUP BY g") == [False]
    assert sorted(totals(f"SELECT g, max(m) AS s FROM ({INNER}) GROUP BY g")) == [False, False]


BIG = 1 << 62


@pytest.mark.parametrize("parallelism", [1, 2])
def test_sums_are_exact_through_2_63(tmp_path, parallelism):
    """Partial sums past 2^63 (in one batch, in one flush) end within BIGINT: exact, as
    DuckDB's HUGEINT; avg of huge values divides as DuckDB does."""
    rows = [(1, 0, BIG), (2, 0, BIG), (3, 0, BIG - 7), (4, 1, -BIG), (5, 1, -BIG),
            (6, 1, 3)]
    events = [(r, "c") for r in rows] + [((2, 0, BIG), "d"), ((1, 0, BIG), "d"),
                                         ((5, 1, -BIG), "d")]
    present = [r for r in rows if r not in ((2, 0, BIG), (1, 0, BIG), (5, 1, -BIG))]
    query = f"SELECT g, sum(m) AS s, avg(m) AS a, count(*) AS n FROM ({INNER}) GROUP BY g"
    got = fold(run_changelog(_ddl(tmp_path / "c.json", events), query, tmp_path / "out",
                             parallelism=parallelism, settings="SET updating_flush = '1h';",
                             batch_rows=100))
    assert normalized_rows(got) == _expected(query, present)


def test_a_sum_past_bigint_fails_in_one_line(tmp_path):
    events = [((k, 0, BIG), "c") for k in range(3)]
    query = f"SELECT g, sum(m) AS s FROM ({INNER}) GROUP BY g"
    with pytest.raises(Exception, match="overflowed BIGINT"):
        run_changelog(_ddl(tmp_path / "c.json", events), query, tmp_path / "out",
                      settings="SET updating_flush = '0';", batch_rows=1)
