"""The plan cache (caudal.plan_cache): `caudal run job.sql` uses a stored plan only when every
input planning read is unchanged, plans again on any difference (each recorded input is
changed here in turn), never caches jobs that read what it cannot record, survives damaged
entries and concurrent writers, and gives DuckDB's answer with and without it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from caudal import cli, plan_cache
from tests.changelog_helpers import fold, read_changes
from tests.helpers import normalized_rows

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def plans(tmp_path, monkeypatch) -> Path:
    """A cache directory of this test's own; inputs are trusted however recently written
    (the racy window is what test_a_recently_changed_input_is_not_stored checks)."""
    folder = tmp_path / "plans"
    monkeypatch.setenv("CAUDAL_PLAN_CACHE", str(folder))
    monkeypatch.setattr(plan_cache, "RACY_NS", 0)
    return folder


@pytest.fixture
def planned(monkeypatch) -> list[str]:
    """The SQL texts planned since the test began (a hit plans nothing)."""
    import caudal.job

    calls: list[str] = []
    real = caudal.job.compile_sql

    def spy(text, parallelism=1):
        calls.append(text)
        return real(text, parallelism)

    monkeypatch.setattr(caudal.job, "compile_sql", spy)
    return calls


def _run(job: Path, *args: str) -> None:
    assert cli.main(["run", str(job), *args]) == 0


def _hits(job: Path, planned: list[str], *args: str) -> bool:
    """Run ``job``; True when it ran from the cache."""
    before = len(planned)
    _run(job, *args)
    return len(planned) == before


@pytest.fixture
def data(tmp_path) -> Path:
    folder = tmp_path / "in"
    folder.mkdir()
    pq.write_table(pa.table({"auction": [1, 2, 1, 3, 2, 1] * 50, "price": list(range(300))}),
                   folder / "a.parquet", row_group_size=70)
    return folder


def _job(tmp_path: Path, source: str, sql: str = "SELECT auction, price FROM bid WHERE "
         "price > 3") -> Path:
    job = tmp_path / "job.sql"
    job.write_text(f"CREATE TABLE bid WITH (connector = 'filesystem', path = '{source}');\n"
                   "CREATE TABLE out WITH (connector = 'blackhole');\n"
                   f"INSERT INTO out {sql};\n")
    return job


def test_a_second_run_is_a_hit_and_each_recorded_input_is_a_miss(tmp_path, plans, planned,
                                                                   data, monkeypatch):
    job = _job(tmp_path, str(data))
    assert not _hits(job, planned) and _hits(job, planned) and _hits(job, planned)
    assert len(list(plans.glob("*.plan"))) == 1

    os.utime(data / "a.parquet")  # touched: another mtime
    assert not _hits(job, planned) and _hits(job, planned)
    (data / "b.parquet").write_bytes((data / "a.parquet").read_bytes())  # a file added
    assert not _hits(job, planned) and _hits(job, planned)
    (data / "b.parquet").unlink()  # and removed
    assert not _hits(job, planned) and _hits(job, planned)
    assert not _hits(job, planned, "-p", "2") and _hits(job, planned, "-p", "2")
    assert _hits(job, planned, "-p", "1")  # each parallelism its own entry
    monkeypatch.setenv("CAUDAL_SOMETHING", "x")
    assert not _hits(job, planned) and _hits(job, planned)
    job.write_text(job.read_text().replace("price > 3", "price > 4"))
    assert not _hits(job, planned) and _hits(job, planned)
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")  # the working directory is part of the key
    assert not _hits(job, planned) and _hits(job, planned)
    assert planned and all("price" in text for text in planned)


def test_a_changed_column_type_is_planned_again(tmp_path, plans, planned, data, capsys):
    """A file rewritten with a column of another type: planned again, and the job says what
    planning says (here: TEXT cannot be compared with 3), not what the old plan would do."""
    job = _job(tmp_path, str(data / "a.parquet"), "SELECT auction, price FROM bid")
    assert not _hits(job, planned) and _hits(job, planned)
    pq.write_table(pa.table({"auction": ["x", "y"], "price": [1, 2]}), data / "a.parquet")
    capsys.readouterr()
    assert not _hits(job, planned) and _hits(job, planned)
    job.write_text(job.read_text().replace("FROM bid", "FROM bid WHERE auction > 3"))
    assert cli.main(["run", str(job)]) == 2
    assert "INT, TEXT" in capsys.readouterr().err
    pq.write_table(pa.table({"auction": [1, 5], "price": [1, 2]}), data / "a.parquet")
    assert not _hits(job, planned) and _hits(job, planned)


def test_a_sink_directory_filled_by_the_job_does_not_miss(tmp_path, plans, planned, data):
    out = tmp_path / "out"
    job = tmp_path / "job.sql"
    job.write_text(f"CREATE TABLE bid WITH (connector = 'filesystem', path = '{data}');\n"
                   f"CREATE TABLE out WITH (connector = 'filesystem', path = '{out}', "
                   "sink.mode = 'overwrite');\n"
                   "INSERT INTO out SELECT auction, price FROM bid;\n")
    assert not _hits(job, planned) and _hits(job, planned) and _hits(job, planned)


@pytest.mark.parametrize("table", [
    "CREATE TABLE k (a BIGINT) WITH (connector = 'kafka', topic = 't', "
    "'properties.bootstrap.servers' = '127.0.0.1:1', format = 'json')",
    "CREATE TABLE p (a BIGINT) WITH (connector = 'postgres', url = "
    "'postgresql://127.0.0.1:1/db', table = 't')",
    "CREATE TABLE s WITH (connector = 'filesystem', path = 's3://bucket/dir')",
    "CREATE TABLE n WITH (connector = 'nexmark', events = '10', base_time = 'now')",
])
def test_jobs_that_read_what_cannot_be_recorded_are_never_cached(tmp_path, plans, planned,
                                                                 data, table):
    """A table of a service's connector, a URL or the wall clock anywhere in the script,
    even unused: planning may have read it, so every run plans."""
    job = _job(tmp_path, str(data))
    job.write_text(table + ";\n" + job.read_text())
    assert not _hits(job, planned) and not _hits(job, planned)
    assert not list(plans.glob("*.plan"))


def test_udfs_and_the_switches_turn_it_off(tmp_path, plans, planned, data, monkeypatch):
    job = _job(tmp_path, str(data))
    udf = tmp_path / "f.py"
    udf.write_text("")
    assert not _hits(job, planned, "--udf", str(udf)) and \
        not _hits(job, planned, "--udf", str(udf))
    assert not _hits(job, planned, "--no-plan-cache")
    monkeypatch.setenv("CAUDAL_PLAN_CACHE", "0")
    assert not _hits(job, planned)
    assert not plans.exists() or not list(plans.glob("*.plan"))
    monkeypatch.setenv("CAUDAL_PLAN_CACHE", str(plans))
    assert not _hits(job, planned) and _hits(job, planned)
    assert not _hits(job, planned, "--no-plan-cache")  # off: not even read


def test_generators_and_literals_are_cached(tmp_path, plans, planned, capsys):
    job = tmp_path / "job.sql"
    job.write_text("CREATE TABLE b WITH (connector = 'nexmark', events = '50', table = 'bid');\n"
                   "SELECT count(*) AS n FROM b UNION ALL SELECT 7 AS n;\n")
    capsys.readouterr()
    assert not _hits(job, planned)
    first = capsys.readouterr().out
    from caudal.connectors.python import TABLES

    TABLES.clear()  # as in another process: the entry carries the literal row
    assert _hits(job, planned)
    # the union's two inputs run in threads: their rows come in either order
    assert sorted(line.split() for line in capsys.readouterr().out.splitlines()) == \
        sorted(line.split() for line in first.splitlines()) == \
        [["+I", "46"], ["+I", "7"], ["op", "n"]]


def test_damaged_and_foreign_entries_are_replaced(tmp_path, plans, planned, data):
    job = _job(tmp_path, str(data))
    _run(job)
    (entry,) = plans.glob("*.plan")
    good = entry.read_bytes()
    for damage in (good[:-30], b"", b"garbage", good.replace(b'"inputs"', b'"inputz"'),
                   plan_cache.MAGIC + b"{}\n" + good.split(b"\n", 2)[2],
                   good[:len(plan_cache.MAGIC)] + b"[1,2]\n"):
        entry.write_bytes(damage)
        assert not _hits(job, planned)
        assert entry.read_bytes() == good or entry.read_bytes().startswith(plan_cache.MAGIC)
        assert _hits(job, planned)


def test_an_untrusted_directory_is_not_used(tmp_path, plans, planned, data):
    job = _job(tmp_path, str(data))
    _run(job)
    plans.chmod(0o777)  # anyone could have put a pickle there
    assert not _hits(job, planned) and not _hits(job, planned)
    plans.chmod(0o700)
    assert _hits(job, planned)


def test_a_recently_changed_input_is_not_stored(tmp_path, plans, planned, data, monkeypatch):
    """A file written within RACY_NS before planning could be rewritten within the same tick
    of the filesystem clock without its stat changing: such a plan is not stored."""
    monkeypatch.setattr(plan_cache, "RACY_NS", 3_600 * 10**9)
    job = _job(tmp_path, str(data))
    assert not _hits(job, planned) and not _hits(job, planned)
    assert not list(plans.glob("*.plan"))


def test_eviction_keeps_the_directory_bounded(tmp_path, plans, planned, data, monkeypatch):
    job = _job(tmp_path, str(data))
    _run(job)
    (entry,) = plans.glob("*.plan")
    monkeypatch.setattr(plan_cache, "MAX_BYTES", entry.stat().st_size * 3)
    for n in range(6):
        job.write_text(job.read_text().replace(f"price > {n + 3}", f"price > {n + 4}"))
        _run(job)
    assert 1 <= len(list(plans.glob("*.plan"))) <= 3
    assert _hits(job, planned)  # the newest stays


@pytest.mark.parametrize("parallelism", ["1", "2"])
def test_count_max_equals_duckdb_with_and_without_the_cache(tmp_path, plans, planned, data,
                                                            duck, parallelism):
    query = "SELECT auction, count(*) AS bids, max(price) AS top FROM bid GROUP BY auction"
    bid = pq.read_table(data / "a.parquet")  # noqa: F841 - DuckDB reads it by name
    expected = normalized_rows(duck.sql(query).to_arrow_table())
    for flags, hit in ((["--no-plan-cache"], False), ([], False), ([], True), ([], True)):
        out = tmp_path / "out"
        job = tmp_path / "job.sql"
        job.write_text(f"CREATE TABLE bid WITH (connector = 'filesystem', path = '{data}');\n"
                       f"CREATE TABLE out WITH (connector = 'filesystem', path = '{out}', "
                       "format = 'debezium_json', sink.mode = 'overwrite');\n"
                       f"INSERT INTO out {query};\n")
        assert _hits(job, planned, "-p", parallelism, "--batch-rows", "40", *flags) == hit
        schema = pa.schema([("auction", pa.int64()), ("bids", pa.int64()),
                            ("top", pa.int64())])
        assert normalized_rows(fold(read_changes(out, schema))) == expected


def test_a_cached_plan_resumes_the_checkpoints_of_a_planned_run(tmp_path, plans, planned, data,
                                                                 capsys):
    out, ck = tmp_path / "out", tmp_path / "ck"
    job = tmp_path / "job.sql"
    job.write_text(f"CREATE TABLE bid WITH (connector = 'filesystem', path = '{data}');\n"
                   f"CREATE TABLE out WITH (connector = 'filesystem', path = '{out}');\n"
                   "INSERT INTO out SELECT auction, price FROM bid WHERE price > 3;\n")
    assert not _hits(job, planned, "--checkpoint-dir", str(ck))
    capsys.readouterr()
    assert _hits(job, planned, "--checkpoint-dir", str(ck))
    assert "final checkpoint" in capsys.readouterr().err
    assert not _hits(job, planned, "--checkpoint-dir", str(ck), "--no-plan-cache")
    assert "final checkpoint" in capsys.readouterr().err


def test_explain_neither_reads_nor_writes_it(tmp_path, plans, planned, data, capsys):
    job = _job(tmp_path, str(data))
    assert cli.main(["explain", str(job)]) == 0
    assert "Logical plan" in capsys.readouterr().out
    assert not plans.exists() or not list(plans.glob("*.plan"))


_PROBE = """
import sys, caudal.cli
code = caudal.cli.main(['run', {job!r}])
print('sqlglot' in sys.modules, code, flush=True)
import os; os._exit(0)
"""


def test_concurrent_runs_and_a_second_process_end_to_end(tmp_path):
    """Four processes plan the same job at once into an empty cache (each renames a whole
    entry into place); a fifth runs it from the cache without importing sqlglot."""
    job = tmp_path / "job.sql"
    job.write_text("SELECT 1 AS a, 'hello' AS b;\n")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env |= {"PYTHONPATH": str(ROOT), "CAUDAL_PLAN_CACHE": str(tmp_path / "plans")}
    command = [sys.executable, "-c", _PROBE.format(job=str(job))]
    runs = [subprocess.Popen(command, env=env, cwd=tmp_path, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True) for _ in range(4)]
    for run in runs:
        out, err = run.communicate(timeout=120)
        assert run.returncode == 0 and "hello" in out, err
    entries = os.listdir(tmp_path / "plans")
    assert len(entries) == 1 and entries[0].endswith(".plan")
    out = subprocess.run(command, env=env, cwd=tmp_path, capture_output=True, text=True,
                         timeout=120, check=True).stdout
    assert "hello" in out and out.strip().splitlines()[-1] == "False 0"
    entry = json.loads((tmp_path / "plans" / entries[0]).read_bytes().split(b"\n")[1])
    assert entry["inputs"] == []
