"""Running a job again into the same filesystem sink (issue 10, bug 5): it used to append a
second copy of the output beside the first, silently. ``sink.mode`` says what to do with a
directory that already holds files when a job starts from scratch: ``error`` (the default),
``append`` or ``overwrite``; a job resuming from its own checkpoint always keeps (and goes on
appending to) what it committed. With a checkpoint directory, a job that already finished
says so instead of running again to emit nothing. All through the ``caudal`` command."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from caudal.errors import ConfigError
from caudal.job import compile_sql
from tests.checkpoint.test_checkpoint_chaos import normalized
from tests.checkpoint.test_checkpoint_cli import (
    STATELESS,
    _kill_after_checkpoints,
    _reference,
    _script,
)
from tests.conftest import run_cli
from tests.helpers import read_committed

pytestmark = pytest.mark.timeout(120)

ROWS = 500


def _job(tmp_path: Path, mode: str | None) -> tuple[Path, Path]:
    src = tmp_path / "in.parquet"
    if not src.exists():
        pq.write_table(pa.table({"id": pa.array(range(ROWS), pa.int64())}), src)
    out = tmp_path / "out"
    option = f", sink.mode = '{mode}'" if mode else ""
    job = tmp_path / "job.sql"
    job.write_text(f"CREATE TABLE src WITH (connector = 'filesystem', path = '{src}');\n"
                   f"CREATE TABLE out WITH (connector = 'filesystem', path = '{out}', "
                   f"format = 'parquet'{option});\n"
                   f"INSERT INTO out SELECT id FROM src;\n")
    return job, out


def _ids(out: Path) -> list[int]:
    table = read_committed(out)
    return sorted(table.column("id").to_pylist()) if table is not None else []


def test_a_second_run_into_a_non_empty_directory_is_refused(tmp_path):
    job, out = _job(tmp_path, None)
    first = run_cli("run", str(job))
    assert first.returncode == 0, first.stderr
    second = run_cli("run", str(job))
    assert second.returncode == 2, second.stderr
    message = second.stderr.strip()
    assert "\n" not in message and "Traceback" not in message
    assert f"sink 'out' at {out} already holds files" in message
    assert "set sink.mode = 'overwrite' or 'append'" in message and "line 2" in message
    assert _ids(out) == list(range(ROWS))       # the first run's output, once


def test_overwrite_replaces_what_the_directory_held(tmp_path):
    job, out = _job(tmp_path, "overwrite")
    out.mkdir()
    (out / "stale.parquet").write_bytes(b"an earlier job's file")
    (out / "older").mkdir()
    (out / "older" / "part.parquet").write_bytes(b"and a folder of them")
    (out / ".hidden-by-someone").write_text("readers never see hidden files: left alone")
    for _ in range(2):
        done = run_cli("run", str(job), "--parallelism", "2")
        assert done.returncode == 0, done.stderr
        assert _ids(out) == list(range(ROWS))
    assert not (out / "stale.parquet").exists() and not (out / "older").exists()
    assert (out / ".hidden-by-someone").exists()


def test_append_keeps_every_run(tmp_path):
    job, out = _job(tmp_path, "append")
    for _ in range(2):
        assert run_cli("run", str(job)).returncode == 0
    assert _ids(out) == sorted(list(range(ROWS)) * 2)


def test_a_finished_job_says_so_and_fresh_runs_it_again(tmp_path):
    job, out = _job(tmp_path, None)
    ck = tmp_path / "ck"
    first = run_cli("run", str(job), "--checkpoint-dir", str(ck))
    assert first.returncode == 0, first.stderr
    again = run_cli("run", str(job), "--checkpoint-dir", str(ck))
    assert again.returncode == 0, again.stderr
    lines = again.stderr.strip().splitlines()
    assert len(lines) == 1 and "already finished" in lines[0] and "--fresh" in lines[0]
    assert str(ck) in lines[0]
    assert _ids(out) == list(range(ROWS))
    # --fresh runs it from scratch: the sink finds the first run's files and refuses ...
    fresh = run_cli("run", str(job), "--checkpoint-dir", str(ck), "--fresh")
    assert fresh.returncode == 2 and "sink.mode" in fresh.stderr
    # ... unless told to overwrite them
    job, out = _job(tmp_path, "overwrite")
    fresh = run_cli("run", str(job), "--checkpoint-dir", str(ck), "--fresh")
    assert fresh.returncode == 0, fresh.stderr
    assert _ids(out) == list(range(ROWS))


@pytest.mark.parametrize("mode", ["overwrite", "error"])
def test_a_resumed_job_keeps_its_own_committed_epochs(tmp_path, mode):
    """Killed after a checkpoint committed rows, the job runs again with the same command:
    it resumes, so neither mode touches what it committed; the output is exactly that of an
    uninterrupted run."""
    out, ck = tmp_path / "out", tmp_path / "ck"
    job = tmp_path / "job.sql"
    job.write_text(_script(STATELESS, out, events=400_000, rate=400_000,
                           sink=f"connector = 'filesystem', sink.mode = '{mode}'"))
    _kill_after_checkpoints(job, ck, 2)
    committed = read_committed(out)
    assert committed is not None and committed.num_rows > 0
    resumed = run_cli("run", str(job), "-p", "2", "--checkpoint-dir", str(ck))
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming from checkpoint" in resumed.stderr
    expected = normalized(read_committed(_reference(tmp_path, STATELESS, events=400_000,
                                                    rate=400_000)))
    assert normalized(read_committed(out)).equals(expected)


def test_sink_mode_is_checked_when_planning(tmp_path):
    job, _ = _job(tmp_path, None)
    src = job.read_text().splitlines()[0]
    with pytest.raises(ConfigError) as err:
        compile_sql(f"{src}\nCREATE TABLE out WITH (connector = 'filesystem', path = "
                    f"'{tmp_path}', sink.mode = 'replace');\nINSERT INTO out SELECT id FROM src;")
    assert "sink.mode = 'replace'" in str(err.value)
    assert "accepted: error, append, overwrite" in str(err.value)
    # quoted or not, a dotted option name is the same option
    for key in ("sink.mode", "'sink.mode'"):
        compiled = compile_sql(f"{src}\nCREATE TABLE out WITH (connector = 'filesystem', "
                               f"path = '{tmp_path}', {key} = 'append');\n"
                               f"INSERT INTO out SELECT id FROM src;")
        assert compiled.job.outputs[0].plan.table.options["sink.mode"] == "append"
