"""The benchmark suite with tiny sizes: every query file is read, each query caudal can plan
gives DuckDB's batch answer row for row, and the command, the latency sink, the README
update and the plot work end to end."""

from __future__ import annotations

import dataclasses
import datetime as dt
import decimal
import json
from collections import Counter
from pathlib import Path

import pyarrow as pa
import pytest

from caudal.bench import events
from caudal.bench.command import bench_query
from caudal.bench.duckdb_baseline import run_duckdb
from caudal.bench.jobs import NotSupported, RunSettings, compile_query, source_columns
from caudal.bench.queries import load_queries
from caudal.bench.report import QueryReport, update_readme
from caudal.bench.runner import run_caudal
from caudal.plan.changelog import OP
from tests.conftest import run_cli

QUERIES = load_queries()
#: 30 s of event time at 1000 events/s: several 10 s windows, sessions that close
SMALL = RunSettings(events=30_000, event_rate=1_000)


def test_every_query_file_is_complete():
    expected = {f"q{n}" for n in (0, 1, 2, 3, 4, 5, 6, 7, 8, 11, 12, 14, 17, 18, 19, 20, 21, 22)}
    assert expected <= set(QUERIES)
    for q in QUERIES.values():
        assert q.title.startswith(("Nexmark", "Not a Nexmark")), q.name
        assert q.kind, q.name
        assert q.tables, q.name
        assert q.duckdb_sql or q.batch_reason, q.name
        try:
            compile_query(q, SMALL)
        except NotSupported as e:
            assert str(e).startswith("not yet supported by caudal"), q.name


def _normal(value):
    """Python values of both engines made comparable (decimals, floats, instants)."""
    if isinstance(value, decimal.Decimal | float):
        return round(float(value), 6)
    if isinstance(value, dt.datetime):
        return value.astimezone(dt.UTC).replace(tzinfo=None)
    return value


def _rows(table: pa.Table) -> list[tuple]:
    """The result's rows, sorted; a changelog (``_op``) is folded into the rows it leaves."""
    weights = None
    if OP in table.column_names:
        weights = [1 if op > 0 else -1 for op in table.column(OP).to_pylist()]
        table = table.drop_columns([OP])
    columns = [[_normal(v) for v in c.to_pylist()] for c in table.columns]
    rows = list(zip(*columns))
    if weights is not None:
        net = Counter()
        for row, w in zip(rows, weights):
            net[row] += w
        assert all(n >= 0 for n in net.values()), "a retraction of a row never inserted"
        rows = [row for row, n in net.items() for _ in range(n)]
    return sorted(rows, key=repr)


def _comparable(q) -> bool:
    return q.duckdb_sql is not None


@pytest.mark.parametrize("name", [n for n, q in QUERIES.items() if _comparable(q)])
def test_results_equal_duckdb(name):
    query = QUERIES[name]
    settings = dataclasses.replace(SMALL, collect=True)
    try:
        compiled = compile_query(query, settings)
    except NotSupported as e:
        pytest.skip(str(e))
    try:
        try:
            streamed = run_caudal(query, settings, warmup=False)
        except ImportError as e:  # planned; its operator is still being written
            pytest.skip(str(e))
        batch = run_duckdb(query, settings, source_columns(compiled), keep=True)
    finally:
        events.clear()
    assert streamed.table is not None and batch.table is not None
    assert streamed.net_rows == batch.rows > 0
    assert _rows(streamed.table) == _rows(batch.table)


def test_replay_source_streams_the_generated_events():
    query = QUERIES["q2"]
    memory = dataclasses.replace(SMALL, source="memory", parallelism=2, collect=True)
    generated = dataclasses.replace(SMALL, collect=True)
    try:
        a = run_caudal(query, memory, warmup=False)
    finally:
        events.clear()
    b = run_caudal(query, generated, warmup=False)
    assert a.rows_in == b.rows_in == 27_600
    assert _rows(a.table) == _rows(b.table)


def test_latency_run_measures_each_row():
    report = bench_query(QUERIES["q1"], RunSettings(events=3_000, event_rate=20_000,
                                                    pace=True), linger_s=0.001, warmup=False)
    assert report.status == "ok", report.reason
    lat = report.latency_ms
    assert lat["samples"] == report.rows_out == 2_760
    # ordered and finite; how small is a benchmark's question, not a test's (a loaded
    # machine stretches the tail)
    assert 0 <= lat["p50"] <= lat["p99"] <= lat["p999"] <= lat["max"] < 10_000
    assert report.achieved_rate < 25_000  # paced, not as fast as possible


def test_unsupported_query_is_reported_not_raised():
    query = dataclasses.replace(QUERIES["q0"], caudal_sql=QUERIES["q0"].caudal_sql.replace(
        "FROM bid;", "FROM bid JOIN bid AS b2 ON bid.auction = b2.auction WHERE false;"),
        needs="a feature")
    report = bench_query(query, SMALL)
    if report.status == "ok":
        pytest.skip("caudal plans joins now")
    assert report.status == "unsupported"
    assert report.reason.startswith("not yet supported by caudal (needs a feature)")


def test_command_writes_json_and_the_readme(tmp_path: Path):
    out = tmp_path / "r.jsonl"
    done = run_cli("bench", "nexmark", "-q", "q2,count1s", "--events", "20k", "--event-rate",
                   "1k", "--compare", "duckdb", "--json", str(out), "--no-warmup", timeout=60)
    assert done.returncode == 0, done.stderr
    assert "same row count" in done.stdout
    reports = [QueryReport.from_json(line) for line in out.read_text().splitlines()]
    assert [r.query for r in reports] == ["q2", "count1s"]
    assert all(r.rows_match and r.duckdb_seconds and r.memory_seconds for r in reports)
    assert json.loads(out.read_text().splitlines()[0])["machine"]["cores"] >= 1
    readme = tmp_path / "README.md"
    readme.write_text("# figures\n\nprose stays\n")
    update_readme(reports, readme)
    update_readme(reports, readme)  # rewritten in place, not appended twice
    text = readme.read_text()
    assert text.count("| q2 |") == 1 and "prose stays" in text
    pytest.importorskip("matplotlib")
    from bench.plot import plot

    plot(reports, tmp_path / "plot.png")
    assert (tmp_path / "plot.png").stat().st_size > 1000
