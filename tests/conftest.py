"""Shared fixtures: data files written with pyarrow, and a DuckDB reference connection."""

from __future__ import annotations

import datetime as dt
import os
import re
import subprocess
import sys
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

REPO = Path(__file__).resolve().parents[1]
_EXIT_STATUS = {"code": 0}
#: the plan cache directory this session made, deleted at its end
_PLAN_CACHE: list[str] = []


def pytest_sessionfinish(session, exitstatus):
    _EXIT_STATUS["code"] = int(exitstatus)
    if _PLAN_CACHE:  # the suite's own plan cache (below)
        import shutil

        shutil.rmtree(_PLAN_CACHE[0], ignore_errors=True)


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config):
    """Leave without interpreter teardown: with polars and pyarrow both loaded it can abort in
    their thread pools (apache/arrow#34314) after every test passed, turning exit 0 into 134."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(_EXIT_STATUS["code"])


#: what a test file touches that only one test at a time may use, found in its text: the
#: machine's shared services (PostgreSQL, MariaDB, Redis, RabbitMQ, MQTT, NATS: fixed table,
#: key, queue and subject names) and the Ray cluster (one per worker process, 3 nodes each)
_SHARED = {
    "services": re.compile(r"psycopg|redis\.|pika|paho|import nats|rstream|"
                           r":(5432|6379|5672|1883|4222|3306)\b|connector\s*=\s*'"
                           r"(postgres|redis|rabbitmq|amqp|mqtt|nats|mysql|mariadb)"),
    "ray": re.compile(r"ray_cluster|import ray|runtime=.ray|test_ray_"),
}


@pytest.hookimpl(tryfirst=True)  # before xdist's own hook, which reads the marks
def pytest_collection_modifyitems(config, items):
    """Under ``pytest -n N --dist loadgroup`` (``make test``) the tests of one file run on one
    worker, in their order, as in a serial run (module fixtures once, fixed names within a
    file never raced), and every file that uses a shared service (or the Ray cluster) on one
    worker, one file after another; the other files spread over the workers. xdist groups by
    the ``xdist_group`` mark, as a ``@group`` suffix its hook puts on ``_nodeid``; pytest 9.2
    reads the id from ``_id`` instead, so there the suffix is put on ``_id`` here. Without
    xdist, nothing."""
    if not config.getoption("loadgroup", default=False):  # set in xdist workers
        return
    try:
        from _pytest.nodeid import NodeId
    except ImportError:  # pytest before 9.2: xdist's hook applies the marks
        NodeId = None

    groups: dict[Path, str] = {}
    for item in items:
        path = Path(str(item.path))
        if path not in groups:
            text = path.read_text(errors="replace") if path.suffix == ".py" else ""
            groups[path] = next((name for name, pattern in _SHARED.items()
                                 if pattern.search(text)), path.name)
        item.add_marker(pytest.mark.xdist_group(groups[path]))
        if NodeId is not None and hasattr(item, "_id"):
            item._id = NodeId.parse(f"{item.nodeid}@{groups[path]}")


def make_bids(n: int, seed: int = 0) -> pa.Table:
    """A small bids table with nulls, negative numbers and strings, for tests."""
    rng = np.random.default_rng(seed)
    base = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    price = rng.integers(-50, 10_000, n)
    price_mask = rng.random(n) < 0.05
    channel = np.array(["apple", "google", "facebook", "baidu", ""], dtype=object)[
        rng.integers(0, 5, n)]
    return pa.table({
        "auction": pa.array(rng.integers(1000, 1100, n), pa.int64()),
        "bidder": pa.array(rng.integers(1, 500, n), pa.int64()),
        "price": pa.array(price, pa.int64(), mask=price_mask),
        "channel": pa.array(channel, pa.string(), mask=rng.random(n) < 0.03),
        "url": pa.array([f"https://x.io/a/{i % 97}?q={i % 13}" for i in range(n)]),
        "date_time": pa.array([base + dt.timedelta(milliseconds=int(x))
                               for x in np.sort(rng.integers(0, 60_000, n))],
                              pa.timestamp("us", tz="UTC")),
        "extra": pa.array(["x" * int(k) for k in rng.integers(0, 5, n)]),
    })


@pytest.fixture
def bids_parquet(tmp_path: Path) -> tuple[Path, pa.Table]:
    table = make_bids(5000)
    path = tmp_path / "bids.parquet"
    pq.write_table(table, path, row_group_size=700)
    return path, table


@pytest.fixture
def duck():
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    yield con
    con.close()


def run_cli(*args: str, cwd: Path | None = None, timeout: float = 120,
            env: dict | None = None) -> subprocess.CompletedProcess:
    """Run the caudal command as a user would (a real process)."""
    full_env = dict(os.environ)
    full_env.pop("CAUDAL_DEBUG", None)
    if env:
        full_env.update(env)
    return subprocess.run([sys.executable, "-m", "caudal.cli", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=timeout, env=full_env)


# `caudal run job.sql` keeps plans in a cache directory (caudal.plan_cache): the suite's go to
# one of its own (in-process runs and the processes it starts), not the user's ~/.cache
if not os.path.isabs(os.environ.get("CAUDAL_PLAN_CACHE", "")) and \
        os.environ.get("CAUDAL_PLAN_CACHE", "1") not in ("0", "false", "no", "off"):
    import tempfile

    os.environ["CAUDAL_PLAN_CACHE"] = tempfile.mkdtemp(prefix="caudal-test-plans-")
    _PLAN_CACHE.append(os.environ["CAUDAL_PLAN_CACHE"])
