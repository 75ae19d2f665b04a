"""Checkpoints as users meet them, through the ``caudal`` command in real processes:
resuming, savepoints on SIGTERM, listing, refusing another job's or a damaged directory,
restarts after a failure inside one process, and a disk that fills up mid-run."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from caudal.checkpoint.errors import IncompatibleCheckpoint
from caudal.checkpoint.manifest import completed_epochs, manifest_path, read_manifest
from caudal.checkpoint.recovery import check_partitions
from caudal.checkpoint.storage import CheckpointStorage
from caudal.job import run_sql
from tests.checkpoint.test_checkpoint_chaos import normalized
from tests.conftest import REPO, run_cli
from tests.helpers import read_committed

pytestmark = pytest.mark.timeout(90)

TUMBLING = ("SELECT auction, count(*) AS num, sum(price) AS total, "
            "tumble(INTERVAL '100' MILLISECOND) AS window FROM bids GROUP BY auction, window")
STATELESS = "SELECT auction, price, date_time FROM bids WHERE price > 1000"


def _script(select: str, out: Path, events: int = 1_000_000, rate: int = 500_000,
            pace: bool = True, sink: str = "connector = 'filesystem'") -> str:
    return (f"CREATE TABLE bids WITH (connector = 'nexmark', table = 'bid', events = "
            f"'{events}', event_rate = '{rate}', pace = '{str(pace).lower()}');\n"
            f"CREATE TABLE out WITH ({sink}, path = '{out}', format = 'parquet');\n"
            f"INSERT INTO out {select};\n")


def _reference(tmp_path: Path, select: str, **kw) -> Path:
    ref = tmp_path / "reference"
    run_sql(_script(select, ref, pace=False, **kw), parallelism=2)
    return ref


def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k != "CAUDAL_DEBUG"}


def _start(*args: str, cwd: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "caudal.cli", *args], cwd=cwd,
                            stderr=subprocess.PIPE, text=True, env=_env())


def _completed(ck: Path) -> list[int]:
    return completed_epochs(CheckpointStorage(str(ck))) if ck.exists() else []


def _wait_epochs(ck: Path, count: int, proc: subprocess.Popen, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while len(_completed(ck)) < count:
        ended = proc.poll() is not None
        if ended or time.monotonic() > deadline:
            if not ended:   # leave no process behind
                proc.kill()
            _, err = proc.communicate()
            raise AssertionError(f"no checkpoint completed in time: {err}")
        time.sleep(0.01)


def _kill_after_checkpoints(job: Path, ck: Path, count: int, *extra: str) -> None:
    proc = _start("run", str(job), "-p", "2", "--checkpoint-dir", str(ck),
                  "--checkpoint-interval", "100ms", *extra, cwd=job.parent)
    _wait_epochs(ck, count, proc)
    os.kill(proc.pid, signal.SIGKILL)
    proc.communicate()


def test_sigterm_takes_a_savepoint_and_the_next_run_resumes(tmp_path):
    out, ck = tmp_path / "out", tmp_path / "ck"
    job = tmp_path / "job.sql"
    job.write_text(_script(TUMBLING, out))
    proc = _start("run", str(job), "-p", "2", "--checkpoint-dir", str(ck),
                  "--checkpoint-interval", "300ms", cwd=tmp_path)
    _wait_epochs(ck, 1, proc)
    os.kill(proc.pid, signal.SIGTERM)
    _, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err
    assert "stopped with savepoint" in err and "Traceback" not in err
    listing = run_cli("checkpoints", str(ck))
    assert listing.returncode == 0 and "savepoint" in listing.stdout
    assert "tumble" in listing.stdout                  # per-operator state size
    partial = read_committed(out)
    resumed = run_cli("run", str(job), "-p", "2", "--checkpoint-dir", str(ck), cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    expected = normalized(read_committed(_reference(tmp_path, TUMBLING)))
    got = normalized(read_committed(out))
    assert partial is not None and 0 < partial.num_rows < got.num_rows
    assert got.equals(expected)
    again = run_cli("run", str(job), "-p", "2", "--checkpoint-dir", str(ck), cwd=tmp_path)
    assert again.returncode == 0, again.stderr            # a finished job stays finished
    assert "already finished" in again.stderr and "--fresh" in again.stderr
    assert normalized(read_committed(out)).equals(expected)
    listing = run_cli("checkpoints", str(ck))
    assert "final" in listing.stdout


def test_another_job_is_refused_unless_fresh(tmp_path):
    out, ck = tmp_path / "out", tmp_path / "ck"
    job = tmp_path / "job.sql"
    job.write_text(_script(STATELESS, out, events=20_000, pace=False))
    assert run_cli("run", str(job), "--checkpoint-dir", str(ck)).returncode == 0
    other = tmp_path / "other.sql"
    other.write_text(_script(STATELESS.replace("1000", "2000"), tmp_path / "out2",
                             events=20_000, pace=False))
    proc = run_cli("run", str(other), "--checkpoint-dir", str(ck))
    assert proc.returncode == 2
    assert "different job" in proc.stderr and "--fresh" in proc.stderr
    assert "changed" in proc.stderr and "Traceback" not in proc.stderr
    fresh = run_cli("run", str(other), "--checkpoint-dir", str(ck), "--fresh")
    assert fresh.returncode == 0, fresh.stderr
    assert read_committed(tmp_path / "out2").num_rows > 0
    not_ours = tmp_path / "home"
    not_ours.mkdir()
    (not_ours / "thesis.tex").write_text("precious")
    proc = run_cli("run", str(job), "--checkpoint-dir", str(not_ours), "--fresh")
    assert proc.returncode == 2 and "holds no caudal checkpoints" in proc.stderr
    assert (not_ours / "thesis.tex").exists()


@pytest.mark.slow  # a kill test of ~5-11 CPU s: make test-all
def test_nexmark_job_restores_at_another_parallelism(tmp_path):
    """Nexmark's partitions are fixed (nexmark-<i>-of-240) whatever the parallelism: offsets
    taken at 2 subtasks are dealt to 3, and the output is exactly the uninterrupted one."""
    job = tmp_path / "job.sql"
    job.write_text(_script(STATELESS, tmp_path / "out", events=3_000_000))
    ck = tmp_path / "ck"
    _kill_after_checkpoints(job, ck, 1)
    proc = run_cli("run", str(job), "-p", "3", "--checkpoint-dir", str(ck))
    assert proc.returncode == 0, proc.stderr
    expected = normalized(read_committed(_reference(tmp_path, STATELESS, events=3_000_000)))
    assert normalized(read_committed(tmp_path / "out")).equals(expected)


def test_check_partitions_names_what_to_do():
    check_partitions("t", ["a", "b"], {"a": 1}, 2, 3)
    with pytest.raises(IncompatibleCheckpoint, match="--parallelism 2"):
        check_partitions("t", ["a-of-3"], {"a-of-2": 1}, 2, 3)
    with pytest.raises(IncompatibleCheckpoint, match="input changed"):
        check_partitions("t", ["b"], {"a": 1}, 2, 2)


@pytest.mark.parametrize("damage", ["truncate state", "delete state", "corrupt manifest"])
def test_damaged_checkpoint_is_a_clear_error(tmp_path, damage):
    job = tmp_path / "job.sql"
    job.write_text(_script(TUMBLING, tmp_path / "out", events=3_000_000))
    ck = tmp_path / "ck"
    # epochs long enough that each commits closed windows: an epoch with nothing to commit
    # may rightly be skipped on resume (seen on a busy machine with 100 ms epochs)
    _kill_after_checkpoints(job, ck, 2, "--checkpoint-interval", "500ms")
    storage = CheckpointStorage(str(ck))
    newest = completed_epochs(storage)[-1]
    state = ck / read_manifest(storage, newest).files()[0].file.path
    if damage == "truncate state":
        state.write_bytes(state.read_bytes()[:100])
    elif damage == "delete state":
        state.unlink()
    else:
        (ck / manifest_path(newest)).write_text('{"format": "caudal-checkpoint/1", "ep')
    proc = run_cli("run", str(job), "-p", "2", "--checkpoint-dir", str(ck))
    assert proc.returncode == 2, proc.stderr
    assert f"checkpoint {newest}" in proc.stderr or str(ck) in proc.stderr
    assert "--from-epoch" in proc.stderr and "Traceback" not in proc.stderr
    listing = run_cli("checkpoints", str(ck))
    assert listing.returncode == 0
    if damage == "corrupt manifest":
        assert "damaged" in listing.stdout


def _flaky(tmp_path: Path, out: Path, always: bool) -> str:
    sink = (f"connector = 'flaky', fail_after = '300000', marker = '{tmp_path / 'failed'}', "
            f"always = '{str(always).lower()}'")
    return _script(STATELESS, out, events=1_500_000, rate=1_000_000, sink=sink)


def test_a_failing_operator_restarts_from_the_last_checkpoint(tmp_path):
    out = tmp_path / "out"
    job = tmp_path / "job.sql"
    job.write_text(_flaky(tmp_path, out, always=False))
    proc = subprocess.run(
        [sys.executable, "-m", "tests.checkpoint.flaky_connector", "run", str(job), "-p", "2",
         "--checkpoint-dir", str(tmp_path / "ck"), "--checkpoint-interval", "100ms"],
        cwd=REPO, capture_output=True, text=True, env=_env(), timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "on purpose" in proc.stderr and "restarting from checkpoint" in proc.stderr
    expected = normalized(read_committed(_reference(tmp_path, STATELESS, events=1_500_000, rate=1_000_000)))
    assert normalized(read_committed(out)).equals(expected)


def test_restarts_give_up_after_max_restarts(tmp_path):
    job = tmp_path / "job.sql"
    job.write_text(_flaky(tmp_path, tmp_path / "out", always=True))
    proc = subprocess.run(
        [sys.executable, "-m", "tests.checkpoint.flaky_connector", "run", str(job),
         "--checkpoint-dir", str(tmp_path / "ck"), "--max-restarts", "2"],
        cwd=REPO, capture_output=True, text=True, env=_env(), timeout=60)
    assert proc.returncode == 1, proc.stderr
    assert proc.stderr.count("restarting from") == 2
    assert "after 2 restarts" in proc.stderr and "Traceback" not in proc.stderr


# ---- a full disk ---------------------------------------------------------------------------

FULL_DISK_DRIVER = r"""
import os, subprocess, sys, threading, time
ck, job = sys.argv[1], sys.argv[2]
os.makedirs(ck, exist_ok=True)
subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "none", ck], check=True)
proc = subprocess.Popen([sys.executable, "-m", "caudal.cli", "run", job, "-p", "2",
                         "--checkpoint-dir", ck, "--checkpoint-interval", "100ms"],
                        stderr=subprocess.PIPE, text=True)
lines = []
reader = threading.Thread(target=lambda: lines.extend(proc.stderr), daemon=True)
reader.start()
while not os.path.exists(os.path.join(ck, "epoch-00000001", "_manifest.json")):
    assert proc.poll() is None, "ended before its first checkpoint"
    time.sleep(0.01)
filler = os.path.join(ck, "filler")
with open(filler, "wb") as f:                       # the disk is full from now on
    try:
        while True:
            f.write(b"x" * 65536)
            f.flush()
    except OSError:
        pass
deadline = time.monotonic() + 30
while not any("failed" in l or "not started" in l for l in lines):
    assert time.monotonic() < deadline and proc.poll() is None, "no checkpoint failed"
    time.sleep(0.01)
os.unlink(filler)                                   # space again
proc.wait(60)
reader.join(5)
print("".join(lines), file=sys.stderr)
sys.exit(proc.returncode)
"""


@pytest.mark.skipif(shutil.which("unshare") is None, reason="needs unshare (util-linux)")
def test_a_full_disk_fails_checkpoints_not_the_output(tmp_path):
    probe = subprocess.run(["unshare", "-rm", "sh", "-c",
                            f"mount -t tmpfs -o size=64k none {tmp_path}"],
                           capture_output=True)
    if probe.returncode != 0:
        pytest.skip("cannot mount a private tmpfs here")
    out = tmp_path / "out"
    job = tmp_path / "job.sql"
    job.write_text(_script(STATELESS, out, events=2_000_000, rate=1_000_000))
    driver = tmp_path / "driver.py"
    driver.write_text(FULL_DISK_DRIVER)
    proc = subprocess.run(["unshare", "-rm", sys.executable, str(driver), str(tmp_path / "ck"),
                           str(job)], cwd=REPO, capture_output=True, text=True, env=_env(),
                          timeout=80)
    assert proc.returncode == 0, proc.stderr
    assert "No space left on device" in proc.stderr and "the job goes on" in proc.stderr
    expected = normalized(read_committed(_reference(tmp_path, STATELESS, events=2_000_000, rate=1_000_000)))
    assert normalized(read_committed(out)).equals(expected)


def test_listing_an_empty_or_foreign_directory(tmp_path):
    proc = run_cli("checkpoints", str(tmp_path))
    assert proc.returncode == 2 and "no caudal checkpoints" in proc.stderr
    ck = tmp_path / "ck"
    ck.mkdir()
    (ck / "_job.json").write_text(json.dumps({"job": "abc"}))
    proc = run_cli("checkpoints", str(ck))
    assert proc.returncode == 0 and "no complete checkpoint yet" in proc.stdout


def test_a_run_killed_while_claiming_the_directory_can_resume(tmp_path):
    """SIGKILL while the first run wrote its job file leaves only that file's temporary
    copy: the directory is still ours, not a stranger's."""
    out, ck = tmp_path / "out", tmp_path / "ck"
    ck.mkdir()
    leftover = ck / "_job.json.tmp-0123456789ab"
    leftover.write_text('{"job": "')
    job = tmp_path / "job.sql"
    job.write_text(_script(STATELESS, out, events=20_000, pace=False))
    proc = run_cli("run", str(job), "--checkpoint-dir", str(ck), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert not leftover.exists() and (ck / "_job.json").exists()


def test_from_an_older_epoch_says_committed_rows_are_written_again(tmp_path):
    """--from-epoch N before the newest checkpoint replays what the sinks committed after N
    (the duplicated rows of a file sink): it said nothing about it."""
    job = tmp_path / "job.sql"
    job.write_text(_script(TUMBLING, tmp_path / "out", events=3_000_000))
    ck = tmp_path / "ck"
    _kill_after_checkpoints(job, ck, 3, "--checkpoint-interval", "300ms")
    epochs = _completed(ck)
    proc = run_cli("run", str(job), "-p", "2", "--checkpoint-dir", str(ck), "--from-epoch",
                   str(epochs[-2]), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert (f"checkpoint {epochs[-2]} is older than the newest ({epochs[-1]}): rows the sinks "
            f"committed after it are written again") in proc.stderr


def test_fresh_refused_by_a_sink_keeps_the_checkpoints(tmp_path):
    """--fresh deleted the checkpoints before a sink refused to start over (its directory
    holds the first run's files): the refused command left the job without them."""
    job = tmp_path / "job.sql"
    job.write_text(_script(TUMBLING, tmp_path / "out", events=100_000, pace=False))
    ck = tmp_path / "ck"
    first = run_cli("run", str(job), "--checkpoint-dir", str(ck), cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    epochs = _completed(ck)
    assert epochs
    fresh = run_cli("run", str(job), "--checkpoint-dir", str(ck), "--fresh", cwd=tmp_path)
    assert fresh.returncode == 2 and "already holds files" in fresh.stderr, fresh.stderr
    assert _completed(ck) == epochs
    again = run_cli("run", str(job), "--checkpoint-dir", str(ck), cwd=tmp_path)
    assert again.returncode == 0 and "already finished" in again.stderr, again.stderr


def test_a_repeated_sigterm_still_ends_with_the_savepoint(tmp_path):
    """SIGTERM twice (the parent-death signal of a killed ``caudal serve`` comes once per
    thread of the server as each ends; systemd and the server both signal on a stop) took
    the second as "stop at once": no savepoint, exit 130 and a message saying there was no
    --checkpoint-dir. A repeated SIGTERM is the same request; only a second Ctrl-C stops at
    once, and says from which checkpoint the next run resumes."""
    out, ck = tmp_path / "out", tmp_path / "ck"
    job = tmp_path / "job.sql"
    job.write_text(_script(STATELESS, out, rate=20_000))
    proc = _start("run", str(job), "--checkpoint-dir", str(ck), "--checkpoint-interval",
                  "300ms", cwd=tmp_path)
    _wait_epochs(ck, 1, proc)
    for _ in range(5):
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGTERM)
        time.sleep(0.003)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert "stopped with savepoint" in err and "stopped by Ctrl-C" not in err

    proc = _start("run", str(job), "--checkpoint-dir", str(ck), "--checkpoint-interval",
                  "300ms", cwd=tmp_path)
    _wait_epochs(ck, len(_completed(ck)) + 1, proc)
    proc.send_signal(signal.SIGINT)
    time.sleep(0.01)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=30)
    last = err.strip().splitlines()[-1]
    assert proc.returncode in (0, 130), err   # the savepoint may finish before the second
    if proc.returncode == 130:
        assert "without --checkpoint-dir" not in last and "resume" in last, err
    assert "Traceback" not in err
