"""Compiled plans (caudal.plan_file): `caudal compile job.sql -o job.plan` then `caudal run
job.plan` gives the answer the .sql gives (DuckDB's), at parallelism 1 and 2; a plan that no
longer fits the caudal running it, or its inputs, is refused in one line before anything
runs (a stale plan would be a wrong answer)."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from caudal import cli, plan_file
from caudal.job import compile_sql
from tests.changelog_helpers import fold, read_changes
from tests.helpers import normalized_rows, read_committed
from tests.sql.test_joins_sql import DDL as NEXMARK_DDL
from tests.sql.test_joins_sql import _bench_query, _duck, nexmark  # noqa: F401


def _compile_and_run(tmp_path: Path, script: str, parallelism: int, *run_args: str) -> Path:
    """Write ``script``, compile it to a plan at ``parallelism``, run the plan; the plan."""
    job = tmp_path / "job.sql"
    job.write_text(script)
    plan = tmp_path / "job.plan"
    assert cli.main(["compile", str(job), "-o", str(plan), "-p", str(parallelism)]) == 0
    assert cli.main(["run", str(plan), *run_args]) == 0
    return plan


def _error(capsys, argv: list[str]) -> str:
    """The one line `caudal` says on stderr for ``argv``, which must fail with exit code 2."""
    capsys.readouterr()
    assert cli.main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    return err[0]


@pytest.mark.parametrize("parallelism", [1, 2])
@pytest.mark.parametrize("name", ["q4", "q7", "q8"])
def test_nexmark_plan_folds_to_duckdb(tmp_path, duck, nexmark, name, parallelism):  # noqa: F811
    """An interval join into nested updating aggregates, the window max join, a window
    join: run from their compiled plans."""
    query, duck_query = _bench_query(name)
    out = tmp_path / "out"
    script = (f"SET updating_flush = '0';\n{NEXMARK_DDL}\nCREATE TABLE out WITH (connector = "
              f"'filesystem', path = '{out}', format = 'debezium_json');\n"
              f"INSERT INTO out {query};\n")
    schema = compile_sql(script).job.outputs[-1].plan.table.schema
    _compile_and_run(tmp_path, script, parallelism, "--batch-rows", "2000")
    expected = _duck(duck, nexmark, duck_query)
    assert expected.num_rows > 0
    assert normalized_rows(fold(read_changes(out, schema))) == normalized_rows(expected)


@pytest.fixture
def bids(tmp_path) -> Path:
    path = tmp_path / "in" / "bids.parquet"
    path.parent.mkdir()
    pq.write_table(pa.table({"auction": [1, 2, 1, 3, 2, 1] * 50,
                             "price": list(range(300))}), path, row_group_size=70)
    return path


@pytest.mark.parametrize("parallelism", [1, 2])
def test_count_max_plan_over_inferred_parquet_equals_duckdb(tmp_path, duck, bids,
                                                            parallelism):
    """The ratio table's count+max, over a Parquet file whose columns the planner inferred;
    and a stateless projection to Parquet."""
    out, copy = tmp_path / "out", tmp_path / "copy"
    query = "SELECT auction, count(*) AS bids, max(price) AS top FROM bid GROUP BY auction"
    script = (f"CREATE TABLE bid WITH (connector = 'filesystem', path = '{bids.parent}');\n"
              f"CREATE TABLE out WITH (connector = 'filesystem', path = '{out}', "
              "format = 'debezium_json');\n"
              f"CREATE TABLE copy WITH (connector = 'filesystem', path = '{copy}');\n"
              f"INSERT INTO out {query};\n"
              "INSERT INTO copy SELECT auction, price * 2 AS p2 FROM bid WHERE price > 7;\n")
    schema = compile_sql(script).job.outputs[0].plan.table.schema
    plan = _compile_and_run(tmp_path, script, parallelism, "--batch-rows", "40")
    assert plan_file.read_plan(str(plan)).inferred == {"bid": pq.read_schema(bids)}
    bid = pq.read_table(bids)  # noqa: F841 - DuckDB reads the local variable by name
    assert normalized_rows(fold(read_changes(out, schema))) == \
        normalized_rows(duck.sql(query).to_arrow_table())
    assert normalized_rows(read_committed(copy)) == normalized_rows(
        duck.sql("SELECT auction, price * 2 AS p2 FROM bid WHERE price > 7").to_arrow_table())


def _trivial_plan(tmp_path: Path, bids: Path) -> Path:
    job = tmp_path / "job.sql"
    job.write_text(f"CREATE TABLE bid WITH (connector = 'filesystem', path = '{bids}');\n"
                   "CREATE TABLE out WITH (connector = 'blackhole');\n"
                   "INSERT INTO out SELECT auction, price FROM bid WHERE price > 3;\n")
    plan = tmp_path / "job.plan"
    assert cli.main(["compile", str(job), "-o", str(plan)]) == 0
    return plan


def test_a_changed_schema_is_refused(tmp_path, bids, capsys):
    plan = _trivial_plan(tmp_path, bids)
    pq.write_table(pa.table({"auction": ["a"], "price": [1]}), bids)
    line = _error(capsys, ["run", str(plan)])
    assert line.startswith("caudal: error: the columns of table 'bid' changed since")
    assert "auction was BIGINT, is TEXT" in line and "compile it again" in line
    pq.write_table(pa.table({"auction": [1]}), bids)
    assert "price is gone" in _error(capsys, ["run", str(plan)])
    # new rows of the same columns are what a plan is for: it runs
    pq.write_table(pa.table({"auction": [7, 8], "price": [10, 20]}), bids)
    assert cli.main(["run", str(plan)]) == 0


def test_a_table_that_fails_its_planning_checks_is_refused(tmp_path, bids, capsys):
    plan = _trivial_plan(tmp_path, bids)
    bids.unlink()
    line = _error(capsys, ["run", str(plan)])
    assert line.startswith(f"caudal: error: {plan}: table 'bid': path ")
    assert "does not exist" in line


def _rewrite_header(plan: Path, **changes) -> None:
    data = plan.read_bytes()
    head, _, payload = data[len(plan_file.MAGIC):].partition(b"\n")
    header = json.loads(head) | changes
    plan.write_bytes(plan_file.MAGIC + json.dumps(header).encode() + b"\n" + payload)


@pytest.mark.parametrize(("change", "said"), [
    ({"format": plan_file.FORMAT + 1}, f"is a plan of format {plan_file.FORMAT + 1}"),
    ({"caudal": "0.0.1"}, "was compiled by caudal 0.0.1; this is caudal 0."),
    ({"build": "0123"}, "was compiled by another build of caudal (sources 0123); this is a "
                        "build of caudal (sources "),
    ({"pyarrow": "1.0.0"}, "was compiled by pyarrow 1.0.0; this is pyarrow "),
    ({"python": "2.7"}, "was compiled by Python 2.7; this is Python 3."),
])
def test_another_caudal_refuses_the_plan(tmp_path, bids, capsys, change, said):
    plan = _trivial_plan(tmp_path, bids)
    _rewrite_header(plan, **change)
    line = _error(capsys, ["run", str(plan)])
    assert said in line and f"caudal compile JOB.sql -o {plan}" in line


def test_damaged_plans_and_options_that_planning_took_are_refused(tmp_path, bids, capsys):
    plan = _trivial_plan(tmp_path, bids)
    assert "compiled for --parallelism 1, not 2" in _error(capsys, ["run", str(plan), "-p", "2"])
    # explain showed the plan's graph at its own parallelism, ignoring -p 2
    assert "compiled for --parallelism 1, not 2" in _error(capsys,
                                                           ["explain", str(plan), "-p", "2"])
    udf = tmp_path / "f.py"
    udf.write_text("")
    assert "--udf cannot be given with a compiled plan" in _error(
        capsys, ["run", str(plan), "--udf", str(udf)])
    plan.write_bytes(plan.read_bytes()[:-40])
    assert f"{plan} is damaged" in _error(capsys, ["run", str(plan)])
    plan.write_bytes(b"\x80\x04binary")
    assert "is neither a SQL file" in _error(capsys, ["run", str(plan)])


def test_a_plan_runs_with_checkpoints_and_explains(tmp_path, bids, capsys):
    out = tmp_path / "out"
    script = (f"CREATE TABLE bid WITH (connector = 'filesystem', path = '{bids}');\n"
              f"CREATE TABLE out WITH (connector = 'filesystem', path = '{out}');\n"
              "INSERT INTO out SELECT auction, price FROM bid WHERE price > 3;\n")
    plan = _compile_and_run(tmp_path, script, 1, "--checkpoint-dir", str(tmp_path / "ck"))
    assert read_committed(out).num_rows == 296
    capsys.readouterr()
    assert cli.main(["explain", str(plan)]) == 0
    assert "source bid (filesystem)" in capsys.readouterr().out


def test_a_plan_resumes_the_checkpoints_of_its_sql(tmp_path, bids, capsys):
    """The same job either way: the .sql's final checkpoint says to the plan that the job
    already ran to the end (its identity is the graph's, not the file's)."""
    out, ck = tmp_path / "out", tmp_path / "ck"
    job = tmp_path / "job.sql"
    job.write_text(f"CREATE TABLE bid WITH (connector = 'filesystem', path = '{bids}');\n"
                   f"CREATE TABLE out WITH (connector = 'filesystem', path = '{out}');\n"
                   "INSERT INTO out SELECT auction, price FROM bid WHERE price > 3;\n")
    assert cli.main(["run", str(job), "--checkpoint-dir", str(ck)]) == 0
    assert cli.main(["compile", str(job), "-o", str(tmp_path / "job.plan")]) == 0
    capsys.readouterr()
    assert cli.main(["run", str(tmp_path / "job.plan"), "--checkpoint-dir", str(ck)]) == 0
    assert "final checkpoint" in capsys.readouterr().err
    assert read_committed(out).num_rows == 296


def test_a_job_with_a_python_udf_is_not_compiled(tmp_path, bids, capsys):
    udf = tmp_path / "udfs.py"
    udf.write_text("import caudal as cd\n\n@cd.udf(returns='BIGINT')\n"
                   "def twice(x: int) -> int:\n    return 2 * x\n")
    job = tmp_path / "job.sql"
    job.write_text(f"CREATE TABLE bid WITH (connector = 'filesystem', path = '{bids}');\n"
                   "SELECT twice(price) AS p FROM bid;\n")
    plan = tmp_path / "job.plan"
    line = _error(capsys, ["compile", str(job), "-o", str(plan), "--udf", str(udf)])
    assert "a compiled plan cannot hold Python functions (twice is one)" in line
    assert not plan.exists()


@pytest.mark.parametrize("query", [
    "SELECT 1 AS one, 'hello' AS greeting",
    "SELECT a, b * 2 AS b2 FROM (VALUES (1, 10), (2, 20), (3, 30)) AS t(a, b) WHERE a > 1",
])
def test_literal_rows_travel_in_the_plan(tmp_path, capsys, query):
    """A literal SELECT's row and VALUES are tables of the compiling process's memory
    (connectors.python): the plan carries them, and prints what the .sql prints."""
    job = tmp_path / "job.sql"
    job.write_text(query + ";\n")
    assert cli.main(["run", str(job)]) == 0
    expected = capsys.readouterr().out
    assert cli.main(["compile", str(job), "-o", str(tmp_path / "job.plan")]) == 0
    from caudal.connectors.python import TABLES

    TABLES.clear()  # as in another process
    capsys.readouterr()
    assert cli.main(["run", str(tmp_path / "job.plan")]) == 0
    assert capsys.readouterr().out == expected and expected.count("\n") >= 2


def test_source_hash_is_cached_per_set_of_files_and_sees_an_edit(tmp_path):
    """The build hash a plan is checked against is kept in caudal's __pycache__ under a key of
    every source's name, size and mtime: an edited source (another mtime) is hashed again,
    and a cache that does not match the files is not believed."""
    import os
    import shutil
    import subprocess
    import sys

    shutil.copytree(Path(plan_file.__file__).parent, tmp_path / "caudal",
                    ignore=shutil.ignore_patterns("__pycache__"))
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env["PYTHONPATH"] = str(tmp_path)

    def build() -> str:
        code = "import caudal.plan_file as p; print(p.source_hash())"
        return subprocess.run([sys.executable, "-c", code], env=env, cwd=tmp_path, text=True,
                              capture_output=True, check=True, timeout=120).stdout.strip()

    first = build()
    cache = tmp_path / "caudal" / "__pycache__" / "sources.blake2"
    assert cache.read_text().split()[1] == first and build() == first
    cache.write_text(cache.read_text().split()[0] + " 0123\n")  # a wrong value: believed
    assert build() == "0123"  # (the key is what guards, as a .pyc's header does)
    cache.write_text("nokey 0123\n")  # a key of other files: hashed again
    assert build() == first
    edited = tmp_path / "caudal" / "plan_file.py"
    edited.write_text(edited.read_text() + "\n# an edit\n")
    second = build()
    assert second != first and cache.read_text().split()[1] == second
