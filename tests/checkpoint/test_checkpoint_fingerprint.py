"""The job fingerprint: identical across processes and parallelism, insensitive to where in
the file a statement is written, different when what the job computes changes."""

from __future__ import annotations

import subprocess
import sys

from caudal.checkpoint.fingerprint import describe_differences, job_fingerprint
from caudal.checkpoint.recovery import identify
from caudal.job import compile_sql
from tests.conftest import REPO

SQL = """
CREATE TABLE bids WITH (connector = 'nexmark', table = 'bid', events = '1000');
CREATE TABLE out WITH (connector = 'filesystem', path = '/tmp/out');
INSERT INTO out SELECT auction, count(*) AS n, tumble(INTERVAL '1' SECOND) AS window
FROM bids WHERE price > {limit} GROUP BY auction, window;
"""


def _fp(sql: str, parallelism: int = 1) -> str:
    return job_fingerprint(compile_sql(sql, parallelism).graph)


def test_same_job_same_fingerprint_in_another_process():
    here = _fp(SQL.format(limit=10))
    code = ("from caudal.checkpoint.fingerprint import job_fingerprint\n"
            "from caudal.job import compile_sql\n"
            f"print(job_fingerprint(compile_sql({SQL.format(limit=10)!r}, 3).graph))")
    there = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True,
                           text=True, check=True).stdout.strip()
    assert here == there == _fp("\n\n-- a comment\n" + SQL.format(limit=10), 2)


def test_a_changed_query_changes_it_and_says_where():
    old = compile_sql(SQL.format(limit=10)).graph
    new = compile_sql(SQL.format(limit=20)).graph
    assert job_fingerprint(old) != job_fingerprint(new)
    ident = identify(old)
    recorded = {"vertices": [{"id": v.id, "name": v.name, "fingerprint": ident.vertices[v.id]}
                             for v in old.vertices]}
    assert "[0] source bids changed" in describe_differences(new, recorded)


def test_the_same_at_every_parallelism_for_two_phase_plans():
    """Two-phase aggregates add a local stage at parallelism > 1 only: a job restored at
    another parallelism must still be recognized (the parallelism-1 plan has no such stage)."""
    ddl = ("CREATE TABLE bids WITH (connector = 'nexmark', table = 'bid', events = '1000');\n"
           "CREATE TABLE out WITH (connector = 'filesystem', path = '/tmp/out', "
           "format = 'debezium_json');\n")
    for query in [
        "INSERT INTO out SELECT bidder, count(*) AS n, sum(price) AS total FROM bids "
        "GROUP BY bidder",
        "INSERT INTO out SELECT auction, count(*) AS n, max(price) AS mx FROM bids "
        "GROUP BY auction",
        SQL.format(limit=10).split(";\n", 2)[2],
    ]:
        sql = ddl + query + ";"
        assert _fp(sql, 1) == _fp(sql, 2) == _fp(sql, 3), query


def test_every_nexmark_query_the_same_at_parallelism_1_and_2():
    """No plan of the bench's Nexmark queries differs by parallelism in what its state means
    (a checkpoint restores at another parallelism)."""
    for path in sorted((REPO / "bench" / "nexmark").glob("*.sql")):
        sql = path.read_text()
        assert _fp(sql, 1) == _fp(sql, 2), path.name


def test_the_state_layout_of_integer_avg_is_in_the_fingerprint():
    """avg over integers keeps an exact sum since 2026-12-07 (a DOUBLE sum before): the call
    says so, so the fingerprint of such a job differs from what an older caudal recorded and
    its checkpoints are refused in one line instead of failing after restarts; an avg over
    DOUBLE (same state as before) keeps its fingerprint."""
    from caudal.plan.aggregate_planning import EXACT_SUM

    ddl = ("CREATE TABLE bids WITH (connector = 'nexmark', table = 'bid', events = '1000');\n"
           "CREATE TABLE out WITH (connector = 'filesystem', path = '/tmp/out', "
           "format = 'debezium_json');\n")

    def calls(graph):
        return [c for v in graph.vertices for op in v.operators
                for c in op.params.get("aggregates", ()) if c.func == "avg"]

    graph = compile_sql(ddl + "INSERT INTO out SELECT auction, avg(price) AS a FROM bids "
                        "GROUP BY auction;").graph
    (call,) = calls(graph)
    assert call.options == {"sum": EXACT_SUM}
    graph = compile_sql(ddl + "INSERT INTO out SELECT auction, avg(CAST(price AS DOUBLE)) "
                        "AS a FROM bids GROUP BY auction;").graph
    (call,) = calls(graph)
    assert call.options == {}


def test_the_state_layout_of_decimal_avg_is_in_the_fingerprint():
    """avg over a DECIMAL keeps an exact sum since 2026-12-07 (of up to 18 digits its
    unscaled integers, of more a decimal256 sum; a DOUBLE sum before), and sum of a DECIMAL
    of more than 18 digits a decimal256 sum (a wrapping decimal128 one before): marked like
    integer avg, so an older checkpoint is refused in one line; sum of DECIMAL(12, …) (the
    same state as before) keeps its fingerprint."""
    from caudal.plan.aggregate_planning import EXACT_SUM

    ddl = ("CREATE TABLE bids WITH (connector = 'nexmark', table = 'bid', events = '1000');\n"
           "CREATE TABLE out WITH (connector = 'filesystem', path = '/tmp/out', "
           "format = 'debezium_json');\n")

    def calls(graph):
        return [c for v in graph.vertices for op in v.operators
                for c in op.params.get("aggregates", ())]

    for func, digits, options in (("avg", 12, {"sum": EXACT_SUM}), ("avg", 38, {"sum": EXACT_SUM}),
                                  ("sum", 38, {"sum": EXACT_SUM}), ("sum", 12, {})):
        graph = compile_sql(ddl + f"INSERT INTO out SELECT auction, {func}(CAST(price AS "
                            f"DECIMAL({digits}, 2))) AS a FROM bids GROUP BY auction;").graph
        (call,) = calls(graph)
        assert call.options == options, (func, digits)
