"""Pipelines as supervised child processes of the job server.

Each pipeline runs as ``python -m caudal.cli run`` (with ``--runtime ray`` for a pipeline on
Ray: the process is then the job's driver) with its own directory under the state dir:
``job.sql``, ``checkpoints/``, ``output.log`` (its stdout: rows of SELECTs, the printed
preview), ``stderr.log``, ``metrics.json`` (``--metrics-file``) and ``tap.sock``
(``--tap-socket``: the preview of any node). Because every run has a
checkpoint directory, any start after the first resumes from the newest checkpoint:

- stop: SIGTERM, on which the job takes a savepoint and exits 0;
- a crash (exit code not 0): restarted after a backoff (0.5 s, doubling up to 10 s), at most
  ``MAX_RESTARTS`` times in a row, then ``failed`` with the last error line of its stderr;
- rescale: stop with a savepoint, then start again at the new parallelism;
- the server killed (SIGKILL): each child gets SIGTERM from the kernel (PR_SET_PDEATHSIG) and
  takes a savepoint; the restarted server waits for the old process to end and starts the
  pipeline again from that savepoint. A server stopped normally does the same itself.

One thread (``Supervisor.run``) starts every child, so the parent-death signal (tied to the
thread that forked) fires only when the server dies.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from caudal.server.store import Store
from caudal.server.tap_socket import socket_path

MAX_RESTARTS = 3
BACKOFF_S = 0.5
MAX_BACKOFF_S = 10.0
#: seconds a stopping child has to take its savepoint before it is killed
STOP_TIMEOUT_S = 60.0
#: a running pipeline's output.log or stderr.log above this is cut to its last LOG_KEEP_BYTES:
#: a SELECT printing for days would otherwise fill the disk with what is only a preview
LOG_MAX_BYTES = 64 << 20
LOG_KEEP_BYTES = 1 << 20


def pid_alive(pid: int | None) -> bool:
    """A process ``pid`` exists and is not a zombie."""
    if not pid:
        return False
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        try:
            os.kill(pid, 0)
            return True
        except OSError:
            return False


def tail_lines(path: Path, n: int, max_bytes: int = 1 << 20) -> list[str]:
    """The last ``n`` lines of a log file (read from its last ``max_bytes``)."""
    try:
        with open(path, "rb") as f:
            end = f.seek(0, 2)
            f.seek(max(0, end - max_bytes))
            lines = f.read().decode(errors="replace").splitlines()
    except OSError:
        return []
    return lines[-n:] if n else []


def bound_log(path: Path, max_bytes: int, keep_bytes: int) -> bool:
    """Cut a log a running child appends to (O_APPEND) to its last ``keep_bytes`` once it
    passes ``max_bytes``: the file is emptied and the kept tail appended again, so the
    child's writes go on at the new end (a line it writes meanwhile may land before the
    kept tail). True when it was cut."""
    try:
        if path.stat().st_size <= max_bytes:
            return False
        with open(path, "rb+") as f:
            f.seek(-keep_bytes, 2)
            tail = f.read()
            tail = tail[tail.find(b"\n") + 1:]   # from a whole line
            f.truncate(0)
        with open(path, "ab") as f:
            f.write(tail)
        return True
    except OSError:
        return False


def last_error(path: Path) -> str | None:
    """The last ``caudal: …error…`` line of a stderr log (else its last line)."""
    lines = [x.strip() for x in tail_lines(path, 1000, 65536) if x.strip()]
    for line in reversed(lines):
        if "error" in line.lower() and line.startswith("caudal:"):
            return line
    return lines[-1] if lines else None


@dataclass
class Child:
    proc: subprocess.Popen
    started: float
    stopping: bool = False
    #: start again as soon as it exits (rescale)
    then_start: bool = False
    term_sent: float = 0.0


class Supervisor:
    def __init__(self, store: Store, state_dir: Path, python: str = sys.executable,
                 tick_s: float = 0.2):
        self.store = store
        self.state_dir = state_dir
        self.python = python
        self.tick_s = tick_s
        self.children: dict[str, Child] = {}
        #: pipeline -> monotonic time before which it is not started (backoff)
        self.not_before: dict[str, float] = {}
        #: pipeline -> pid of a process a previous server left behind
        self.orphans: dict[str, int] = {}
        #: pipeline -> the checkpoint its next start restores (``--from-epoch``), once
        self.from_epoch: dict[str, int] = {}
        #: pipeline -> (process, epoch) whose checkpoint duration the store has
        self._durations_kept: dict[str, set[tuple[int | None, int]]] = {}
        self._lock = threading.RLock()
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self.run, name="caudal-supervisor", daemon=True)
        for p in store.all():
            if p["pid"] and pid_alive(p["pid"]) and p["desired"] == "running":
                self.orphans[p["id"]] = p["pid"]

    # ---- paths ----------------------------------------------------------------------------

    def dir(self, pid: str) -> Path:
        return self.state_dir / "pipelines" / pid

    def checkpoint_dir(self, pid: str) -> Path:
        return self.dir(pid) / "checkpoints"

    # ---- requests from the API (any thread) -----------------------------------------------

    def request_start(self, pid: str, epoch: int | None = None) -> None:
        with self._lock:
            if epoch is not None:
                self.from_epoch[pid] = epoch
            self.store.update(pid, desired="running", restarts=0, error=None)
            self.not_before.pop(pid, None)
            child = self.children.get(pid)
            if child is not None and child.stopping:
                child.then_start = True
            elif child is None:
                self.store.update(pid, state="running")
                self.store.event(pid, "restart", "starting from the newest checkpoint")

    def request_stop(self, pid: str) -> None:
        with self._lock:
            self.store.update(pid, desired="stopped")
            child = self.children.get(pid)
            self._signal_orphan(pid)
            if child is None:
                p = self.store.get(pid)
                if p and p["state"] in ("running", "created"):
                    self.store.update(pid, state="stopped")
                    self.store.event(pid, "stopped", "stopped")
                return
            self._terminate(pid, child)

    def request_rescale(self, pid: str, parallelism: int) -> None:
        with self._lock:
            self.store.update(pid, parallelism=parallelism)
            self.store.event(pid, "rescale", f"rescaling to parallelism {parallelism}")
            child = self.children.get(pid)
            if child is not None:
                child.then_start = True
                self._terminate(pid, child)

    def delete(self, pid: str) -> None:
        with self._lock:
            self.store.update(pid, desired="deleted")
            self._signal_orphan(pid)
            child = self.children.get(pid)
            if child is not None:
                self._terminate(pid, child)
        deadline = time.monotonic() + STOP_TIMEOUT_S
        while pid in self.children and time.monotonic() < deadline:
            time.sleep(0.05)
        with self._lock:
            child = self.children.pop(pid, None)
            if child is not None:
                child.proc.kill()
                child.proc.wait()
            self.store.delete(pid)
        shutil.rmtree(self.dir(pid), ignore_errors=True)

    def request_checkpoint(self, pid: str) -> str | None:
        """Ask the pipeline's process for a checkpoint now (SIGUSR1); why not, if it cannot.
        Only a process that runs its job gets the signal (its metrics file says so): before
        that it may not handle it yet."""
        with self._lock:
            child = self.children.get(pid)
            target = child.proc.pid if child is not None and not child.stopping else \
                self.orphans.get(pid)
            if not target or not pid_alive(target):
                return "it has no running process"
            try:
                running = json.loads((self.dir(pid) / "metrics.json").read_text())["pid"]
            except (OSError, ValueError, KeyError):
                running = None
            if running != target:
                return "its process is starting: try again in a moment"
            try:
                os.kill(target, signal.SIGUSR1)
            except OSError:
                return "its process has ended"
            self.store.event(pid, "checkpoint", "checkpoint requested")
            return None

    def _signal_orphan(self, pid: str) -> None:
        """A process a previous server left running (it had not ended when this one started)
        is stopped with a savepoint like a child."""
        orphan = self.orphans.get(pid)
        if orphan and pid_alive(orphan):
            try:
                os.kill(orphan, signal.SIGTERM)
            except OSError:
                pass

    def _terminate(self, pid: str, child: Child) -> None:
        if not child.stopping:
            child.stopping = True
            child.term_sent = time.monotonic()
            self.store.event(pid, "stopping", "stopping with a savepoint")
            try:
                child.proc.send_signal(signal.SIGTERM)
            except OSError:
                pass

    # ---- the loop -------------------------------------------------------------------------

    def start(self) -> None:
        self.thread.start()

    def shutdown(self) -> None:
        """Stop every child with a savepoint, leaving ``desired`` as it is: the next server
        resumes them."""
        self._stop.set()
        self.thread.join(STOP_TIMEOUT_S + 5)

    def _stop_children(self) -> None:
        # in the supervisor thread: its end would send the children the parent-death signal,
        # a second SIGTERM that stops a job at once instead of after its savepoint
        with self._lock:
            for child in self.children.values():
                try:
                    child.proc.send_signal(signal.SIGTERM)
                except OSError:
                    pass
            for child in self.children.values():
                try:
                    child.proc.wait(STOP_TIMEOUT_S)
                except subprocess.TimeoutExpired:
                    child.proc.kill()

    def run(self) -> None:
        while not self._stop.wait(self.tick_s):
            try:
                self.tick()
            except Exception as e:  # noqa: BLE001 - the supervisor must not die
                print(f"caudal: supervisor: {type(e).__name__}: {e}", file=sys.stderr)
        self._stop_children()

    def tick(self) -> None:
        with self._lock:
            for p in self.store.all():
                pid = p["id"]
                child = self.children.get(pid)
                if child is not None:
                    code = child.proc.poll()
                    if code is None:
                        if child.stopping and \
                                time.monotonic() - child.term_sent > STOP_TIMEOUT_S:
                            child.proc.kill()
                        self._bound_logs(pid)
                        continue
                    self._exited(p, child, code)
                    p = self.store.get(pid) or p
                if pid in self.children or p["desired"] != "running":
                    continue
                if p["state"] not in ("created", "running"):
                    continue
                if pid in self.orphans:
                    if pid_alive(self.orphans[pid]):
                        continue  # the previous server's child is taking its savepoint
                    del self.orphans[pid]
                if time.monotonic() < self.not_before.get(pid, 0.0):
                    continue
                self._spawn(p)

    def _bound_logs(self, pid: str) -> None:
        for name in ("output.log", "stderr.log"):
            if bound_log(self.dir(pid) / name, LOG_MAX_BYTES, LOG_KEEP_BYTES):
                self.store.event(pid, "log", f"{name} passed {LOG_MAX_BYTES >> 20} MB: cut "
                                             f"to its last {LOG_KEEP_BYTES >> 20} MB")

    def read_metrics(self, pid: str) -> dict[str, Any] | None:
        """The newest metrics snapshot of the pipeline's process (``--metrics-file``); the
        checkpoint durations in it are kept in the store, past the process's end."""
        try:
            snap = json.loads((self.dir(pid) / "metrics.json").read_text())
        except (OSError, ValueError):
            return None
        seen = self._durations_kept.setdefault(pid, set())
        durations = {c["epoch"]: c["duration_s"] for c in snap.get("checkpoints", [])
                     if c.get("ok") and (snap.get("pid"), c["epoch"]) not in seen}
        if durations:
            self.store.record_durations(pid, durations)
            seen.update((snap.get("pid"), e) for e in durations)
        return snap

    def _spawn(self, p: dict[str, Any]) -> None:
        pid = p["id"]
        d = self.dir(pid)
        d.mkdir(parents=True, exist_ok=True)
        self.read_metrics(pid)  # the previous process's last report, before it is replaced
        with contextlib.suppress(OSError):
            (d / "metrics.json").unlink()
        (d / "job.sql").write_text(p["query"])
        cmd = [self.python, "-m", "caudal.cli", "run", str(d / "job.sql"),
               "--parallelism", str(p["parallelism"]),
               "--checkpoint-dir", str(self.checkpoint_dir(pid)),
               "--checkpoint-interval", p["checkpoint_interval"],
               "--max-restarts", "0", "--metrics-file", str(d / "metrics.json"),
               "--tap-socket", str(socket_path(d))]
        if p["runtime"] == "ray":
            cmd += ["--runtime", "ray"]
            if p["address"]:
                cmd += ["--address", p["address"]]
        epoch = self.from_epoch.pop(pid, None)
        if epoch is not None:
            cmd += ["--from-epoch", str(epoch)]
        out = open(d / "output.log", "ab")
        err = open(d / "stderr.log", "ab")
        try:
            # the child sets its own parent-death signal (caudal.cli): Python code between
            # fork and exec in this multithreaded server (a preexec_fn) crashed children
            proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                                    start_new_session=True,
                                    env=dict(os.environ, CAUDAL_PARENT_PID=str(os.getpid())))
        finally:
            out.close()
            err.close()
        self.children[pid] = Child(proc, time.monotonic())
        self.store.update(pid, state="running", pid=proc.pid)
        on = " on Ray" if p["runtime"] == "ray" else ""
        self.store.event(pid, "started", f"process {proc.pid} started at parallelism "
                                         f"{p['parallelism']}{on}")

    def _exited(self, p: dict[str, Any], child: Child, code: int) -> None:
        pid = p["id"]
        del self.children[pid]
        self.read_metrics(pid)
        self.store.update(pid, pid=None)
        if p["desired"] == "deleted":
            return
        if child.stopping and code in (0, 130, -signal.SIGTERM, -signal.SIGKILL):
            # 0: its savepoint was taken; otherwise it ended first (a stop during its
            # start-up, a second signal, the stop timeout): its newest checkpoint is resumed
            how = "stopped with a savepoint" if code == 0 else \
                "stopped before a savepoint (the newest checkpoint is resumed)"
            if child.then_start or p["desired"] == "running":
                self.store.event(pid, "stopped", f"{how}; starting again")
                self.store.update(pid, state="running")
            else:
                self.store.update(pid, state="stopped")
                self.store.event(pid, "stopped", how)
            return
        if code == 0:
            self.store.update(pid, state="finished", desired="stopped")
            self.store.event(pid, "finished", "finished: every input was read to its end")
            return
        error = last_error(self.dir(pid) / "stderr.log") or f"exit code {code}"
        restarts = p["restarts"] + 1
        self.store.event(pid, "error", error)
        if restarts > MAX_RESTARTS:
            self.store.update(pid, state="failed", desired="stopped", error=error)
            self.store.event(pid, "failed", f"failed after {MAX_RESTARTS} restarts: {error}")
            return
        delay = min(BACKOFF_S * 2 ** (restarts - 1), MAX_BACKOFF_S)
        self.not_before[pid] = time.monotonic() + delay
        self.store.update(pid, state="running", restarts=restarts, error=error)
        self.store.event(pid, "restarting", f"restarting from the last checkpoint in "
                                            f"{delay:.1f}s (restart {restarts} of "
                                            f"{MAX_RESTARTS})")
