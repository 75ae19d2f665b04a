"""The job server's own state: pipelines (name, SQL, parallelism, state, what the user wants
of them) and their history, in one SQLite file under the state directory.

What a pipeline *should* be doing (``desired``: running or stopped) is kept apart from what it
*is* (``state``), so a server restarted after a crash knows which pipelines to resume.
"""

from __future__ import annotations

import sqlite3
import threading
import time
import uuid
from pathlib import Path
from typing import Any

#: the states the API reports
STATES = ("created", "running", "finished", "failed", "stopped")

SCHEMA = """
CREATE TABLE IF NOT EXISTS pipelines (
  id TEXT PRIMARY KEY,
  name TEXT NOT NULL,
  query TEXT NOT NULL,
  parallelism INTEGER NOT NULL,
  checkpoint_interval TEXT NOT NULL,
  state TEXT NOT NULL,
  desired TEXT NOT NULL,
  error TEXT,
  restarts INTEGER NOT NULL DEFAULT 0,
  pid INTEGER,
  created REAL NOT NULL,
  updated REAL NOT NULL,
  runtime TEXT NOT NULL DEFAULT 'local',
  address TEXT
);
CREATE TABLE IF NOT EXISTS checkpoint_durations (
  pipeline TEXT NOT NULL,
  epoch INTEGER NOT NULL,
  duration_s REAL NOT NULL,
  PRIMARY KEY (pipeline, epoch)
);
CREATE TABLE IF NOT EXISTS events (
  seq INTEGER PRIMARY KEY AUTOINCREMENT,
  pipeline TEXT NOT NULL,
  time REAL NOT NULL,
  kind TEXT NOT NULL,
  message TEXT NOT NULL
);
"""

COLUMNS = ("id", "name", "query", "parallelism", "checkpoint_interval", "state", "desired",
           "error", "restarts", "pid", "created", "updated", "runtime", "address")
#: columns added after the first release: (name, definition), added to an older file on open
ADDED = (("runtime", "TEXT NOT NULL DEFAULT 'local'"), ("address", "TEXT"))


class Store:
    def __init__(self, path: Path):
        self.path = path
        self._lock = threading.Lock()
        self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.executescript(SCHEMA)
        have = {r[1] for r in self._db.execute("PRAGMA table_info(pipelines)")}
        for name, definition in ADDED:
            if name not in have:
                self._db.execute(f"ALTER TABLE pipelines ADD COLUMN {name} {definition}")

    def _rows(self, sql: str, args: tuple = ()) -> list[dict[str, Any]]:
        with self._lock:
            cur = self._db.execute(sql, args)
            names = [d[0] for d in cur.description]
            return [dict(zip(names, r)) for r in cur.fetchall()]

    def _exec(self, sql: str, args: tuple = ()) -> None:
        with self._lock:
            self._db.execute(sql, args)

    def create(self, name: str, query: str, parallelism: int, interval: str,
               runtime: str = "local", address: str | None = None) -> str:
        pid = uuid.uuid4().hex[:12]
        now = time.time()
        self._exec("INSERT INTO pipelines (id, name, query, parallelism, checkpoint_interval, "
                   "state, desired, created, updated, runtime, address) "
                   "VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                   (pid, name, query, parallelism, interval, "created", "running", now, now,
                    runtime, address))
        on = f" on Ray ({address or 'a local Ray started for it'})" if runtime == "ray" else ""
        self.event(pid, "created", f"created with parallelism {parallelism}{on}")
        return pid

    def get(self, pid: str) -> dict[str, Any] | None:
        rows = self._rows(f"SELECT {', '.join(COLUMNS)} FROM pipelines WHERE id = ?", (pid,))
        return rows[0] if rows else None

    def all(self) -> list[dict[str, Any]]:
        return self._rows(f"SELECT {', '.join(COLUMNS)} FROM pipelines ORDER BY created")

    def update(self, key: str, **fields: Any) -> None:
        assert set(fields) <= set(COLUMNS)
        fields["updated"] = time.time()
        sets = ", ".join(f"{k} = ?" for k in fields)
        self._exec(f"UPDATE pipelines SET {sets} WHERE id = ?", (*fields.values(), key))

    def record_durations(self, pid: str, durations: dict[int, float]) -> None:
        """Checkpoint durations a job process reported (its metrics file): kept here because
        the checkpoints themselves do not hold them and the process's report ends with it."""
        with self._lock:
            self._db.executemany("INSERT OR REPLACE INTO checkpoint_durations VALUES (?,?,?)",
                                 [(pid, e, d) for e, d in durations.items()])

    def durations(self, pid: str) -> dict[int, float]:
        rows = self._rows("SELECT epoch, duration_s FROM checkpoint_durations "
                          "WHERE pipeline = ?", (pid,))
        return {r["epoch"]: r["duration_s"] for r in rows}

    def delete(self, pid: str) -> None:
        self._exec("DELETE FROM checkpoint_durations WHERE pipeline = ?", (pid,))
        self._exec("DELETE FROM pipelines WHERE id = ?", (pid,))
        self._exec("DELETE FROM events WHERE pipeline = ?", (pid,))

    def event(self, pid: str, kind: str, message: str) -> None:
        self._exec("INSERT INTO events (pipeline, time, kind, message) VALUES (?,?,?,?)",
                   (pid, time.time(), kind, message))

    def events(self, pid: str, limit: int = 200) -> list[dict[str, Any]]:
        rows = self._rows("SELECT time, kind, message FROM events WHERE pipeline = ? "
                          "ORDER BY seq DESC LIMIT ?", (pid, limit))
        return rows[::-1]
