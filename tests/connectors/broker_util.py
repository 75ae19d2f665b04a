"""What the broker connector tests share: bids as JSON messages, the tumbling-count job, its
DuckDB answer, and killing a job at random moments and resuming it."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow as pa

from tests.conftest import REPO

BIDS_COLUMNS = "auction BIGINT, price BIGINT, date_time TIMESTAMP"


def bids_json(table: pa.Table) -> list[bytes]:
    """Rows as JSON messages with zone-less timestamps (2026-01-01T00:00:00.123456)."""
    out = []
    for r in table.select(["auction", "price", "date_time"]).to_pylist():
        r["date_time"] = r["date_time"].replace(tzinfo=None).isoformat()
        out.append(json.dumps(r).encode())
    return out


def tumbling(sink_table: str = "counts", seconds: int = 2) -> str:
    return f"""INSERT INTO {sink_table}
SELECT window_start, count(*) AS bids, sum(price) AS total
FROM TABLE(TUMBLE(TABLE bids, DESCRIPTOR(date_time), INTERVAL '{seconds}' SECOND))
GROUP BY window_start, window_end;
"""


def duck_tumbling(duck, table: pa.Table, seconds: int = 2) -> list[tuple]:
    duck.register("bids", table)
    rows = duck.execute(f"""SELECT time_bucket(INTERVAL '{seconds} seconds', date_time)
        AS ws, count(*), sum(price) FROM bids GROUP BY ws ORDER BY ws""").fetchall()
    return [(ws.strftime("%Y-%m-%dT%H:%M:%S"), n, int(total)) for ws, n, total in rows]


#: the filter query the bounded-read tests run, and the check of its output against DuckDB
FILTER = "SELECT auction, price, date_time FROM bids WHERE price > 100"


def assert_filter_matches_duckdb(out: Path, duck, table: pa.Table) -> None:
    """The parquet files under ``out`` hold what DuckDB answers to FILTER over ``table``."""
    import pyarrow.parquet as pq

    got = sorted((x["auction"], x["price"], x["date_time"].replace(tzinfo=None))
                 for x in pq.read_table(out).to_pylist())
    duck.register("bids", table)
    want = sorted((a, p, t.replace(tzinfo=None)) for a, p, t in duck.execute(FILTER).fetchall())
    assert got == want and len(got) > 2000


def counts_of(values: list[bytes]) -> list[tuple]:
    rows = [json.loads(v) for v in values]
    return sorted((r["window_start"][:19], r["bids"], r["total"]) for r in rows)


def newest_checkpoint(ck: Path) -> int:
    done = [int(p.parent.name.split("-")[1]) for p in ck.glob("epoch-*/_manifest.json")]
    return max(done, default=0)


def kill_and_resume(job: Path, ck: Path, kills: int, seed: int,
                    parallelisms: tuple[int, ...] = (1,), batch_rows: int = 50) -> int:
    """SIGKILL ``caudal run job`` ``kills`` times at random moments after a new checkpoint,
    then let the same command finish; returns how many kills hit a running job."""
    rng = random.Random(seed)
    env = dict(os.environ, PYTHONPATH=str(REPO))
    env.pop("CAUDAL_DEBUG", None)
    hit = 0
    for attempt in range(kills + 1):
        par = parallelisms[attempt % len(parallelisms)]
        cmd = [sys.executable, "-m", "caudal.cli", "run", str(job), "--checkpoint-dir",
               str(ck), "--checkpoint-interval", "150ms", "--parallelism", str(par),
               "--batch-rows", str(batch_rows)]
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                text=True, env=env)
        if attempt < kills:
            before = newest_checkpoint(ck)
            deadline = time.monotonic() + 60
            while proc.poll() is None and newest_checkpoint(ck) == before and \
                    time.monotonic() < deadline:
                time.sleep(0.01)
            time.sleep(rng.uniform(0.0, 0.2))  # short: a fast job must not outrun its kills
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
                hit += 1
            proc.wait()
            continue
        _, err = proc.communicate(timeout=240)
        assert proc.returncode == 0, err
    return hit


class CuttableProxy:
    """A TCP proxy on loopback in front of a broker port: a job connects through it and the
    test cuts every connection mid-run (the broker and other clients are not touched)."""

    def __init__(self, port: int):
        import socket
        import threading

        self.target = port
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.pairs: list[tuple] = []
        self.cuts = 0
        #: connections accepted so far (a reconnect shows as more)
        self.accepted = 0
        self.lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        import socket
        import threading

        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            try:
                server = socket.create_connection(("127.0.0.1", self.target))
            except OSError:
                client.close()
                continue
            with self.lock:
                self.pairs.append((client, server))
                self.accepted += 1
            for a, b in ((client, server), (server, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(src, dst) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        for s in (src, dst):
            try:
                s.close()
            except OSError:
                pass

    def cut(self) -> int:
        """Close every proxied connection now; returns how many there were."""
        import socket

        with self.lock:
            pairs, self.pairs = self.pairs, []
        for pair in pairs:
            for s in pair:
                try:
                    s.shutdown(socket.SHUT_RDWR)
                    s.close()
                except OSError:
                    pass
        self.cuts += 1
        return len(pairs)

    def close(self) -> None:
        self.listener.close()
        self.cut()
