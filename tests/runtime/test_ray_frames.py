"""Frames on Ray (``runtime="ray"``): ``collect``, ``stream`` and ``write_*`` give the rows of
the same frame on the local runtime and of DuckDB, at parallelism 2 on the session's 3-node
cluster; in-memory tables (``from_arrow``) are shipped to the workers, collected rows come
back to this process, and a worker killed mid-run costs no row and duplicates none."""

from __future__ import annotations

import os
import signal
import threading
import time

import psutil
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

import caudal as cd
from caudal import col
from caudal.testing import fold
from tests.conftest import make_bids
from tests.frame.udafs import py_avg
from tests.helpers import normalized_rows, read_committed


@cd.udf(returns="DOUBLE")
def euro(price: pa.Array) -> pa.Array:
    return pc.multiply(price, 0.9)


@pytest.fixture(scope="module")
def bids_data(tmp_path_factory):
    table = make_bids(4000, seed=5)
    path = tmp_path_factory.mktemp("ray_frames") / "bids.parquet"
    pq.write_table(table, path, row_group_size=500)
    return path, table


def _duck(query: str, bids: pa.Table) -> pa.Table:
    import duckdb

    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    con.register("bids", bids)
    return con.sql(query).to_arrow_table()


def test_collect_on_ray_equals_local_and_duckdb(ray_cluster, bids_data):
    path, table = bids_data
    on_ray = {"runtime": "ray", "address": ray_cluster.address, "parallelism": 2}
    # a window aggregate with a UDF over a Parquet reader
    windows = (cd.read_parquet(path, event_time="date_time", watermark_delay="2s")
               .filter(col("price") > 0)
               .group_by("auction", cd.tumble("date_time", "10s"))
               .agg(cd.count().alias("n"), euro(col("price")).sum().alias("e")))
    got = windows.collect(**on_ray)
    assert got.num_rows > 0
    assert normalized_rows(got) == normalized_rows(windows.collect(parallelism=2))
    want = _duck("SELECT auction, time_bucket(INTERVAL 10 SECOND, date_time) AS ws, "
                 "time_bucket(INTERVAL 10 SECOND, date_time) + INTERVAL 10 SECOND AS we, "
                 "count(*), sum(price * 0.9::DOUBLE) FROM bids WHERE price > 0 GROUP BY ALL", table)
    assert normalized_rows(got) == normalized_rows(want.rename_columns(got.column_names))
    # an updating aggregate (a changelog, folded) over an in-memory table, through cd.sql
    memory = cd.from_arrow(table.select(["bidder", "price"]))
    per_bidder = cd.sql("SELECT bidder, count(*) AS n, sum(euro(price)) AS s FROM b "
                        "GROUP BY bidder", b=memory)
    got = per_bidder.collect(**on_ray)
    want = _duck("SELECT bidder, count(*), sum(price * 0.9::DOUBLE) FROM bids GROUP BY bidder", table)
    assert normalized_rows(got) == normalized_rows(want.rename_columns(got.column_names))


@pytest.mark.parametrize("parallelism", [1, 2])
def test_from_arrow_and_values_on_ray(ray_cluster, bids_data, parallelism):
    """A frame of ``from_arrow`` joined with VALUES in ``cd.sql``: both are tables of this
    process's memory, shipped to the workers, at p=1 and p=2."""
    table = bids_data[1]
    memory = cd.from_arrow(table.select(["auction", "bidder", "price"]))
    query = ("SELECT v.label, count(*) AS n, max(b.price) AS top FROM b JOIN (VALUES (0, 'even'), "
             "(1, 'odd')) AS v(id, label) ON b.bidder % 2 = v.id WHERE b.price > 50 "
             "GROUP BY v.label")
    per_label = cd.sql(query, b=memory)
    got = per_label.collect(runtime="ray", address=ray_cluster.address,
                            parallelism=parallelism)
    b = table  # noqa: F841 - DuckDB reads the local variable by name
    import duckdb

    want = duckdb.sql(query).to_arrow_table()
    assert want.num_rows == 2
    assert normalized_rows(got) == normalized_rows(want)
    assert normalized_rows(got) == normalized_rows(per_label.collect(parallelism=parallelism))


def test_memory_tables_travel_once_through_the_object_store(ray_cluster, bids_data,
                                                           monkeypatch):
    """An in-memory table read by two sources (a self-join) and a VALUES table, at p=2 on
    3 nodes: each is put in Ray's object store once, the workers get references, and the
    answer is DuckDB's. A table the store cannot take is refused in one line."""
    import duckdb
    import ray

    from caudal.errors import ConfigError

    put, puts = ray.put, []

    def counting(value, *args, **kwargs):
        if isinstance(value, pa.Table):
            puts.append(value.num_rows)
        return put(value, *args, **kwargs)

    monkeypatch.setattr(ray, "put", counting)
    b = bids_data[1].select(["auction", "bidder", "price"])
    query = ("SELECT v.label, count(*) AS n, max(y.price) AS top FROM b AS x JOIN b AS y "
             "ON x.auction = y.auction AND x.bidder = y.bidder JOIN (VALUES (0, 'even'), "
             "(1, 'odd')) AS v(id, label) ON x.bidder % 2 = v.id GROUP BY v.label")
    frame = cd.sql(query, b=cd.from_arrow(b))
    got = frame.collect(runtime="ray", address=ray_cluster.address, parallelism=2)
    assert normalized_rows(got) == normalized_rows(duckdb.sql(query).to_arrow_table())
    assert sorted(puts) == [2, b.num_rows]

    def full(value, *args, **kwargs):
        if isinstance(value, pa.Table):
            raise ray.exceptions.ObjectStoreFullError("the object store is full")
        return put(value, *args, **kwargs)

    monkeypatch.setattr(ray, "put", full)
    with pytest.raises(ConfigError, match="cannot be put in Ray's object store") as error:
        frame.collect(runtime="ray", address=ray_cluster.address, parallelism=2)
    assert "\n" not in str(error.value) and "read_parquet" in error.value.hint


def test_udaf_on_ray_equals_the_builtin(ray_cluster, bids_data):
    """A UDAF (its class travels to the workers) in a window, at p=2 on Ray."""
    by_channel = cd.read_parquet(bids_data[0], event_time="date_time",
                                 watermark_delay="2s").group_by("channel",
                                                                cd.tumble("date_time", "10s"))
    ours = by_channel.agg(py_avg(col("price")).alias("a")).collect(runtime="ray",
                                                                   parallelism=2)
    builtin = by_channel.agg(col("price").mean().alias("a")).collect(parallelism=2)
    assert ours.num_rows > 0 and normalized_rows(ours) == normalized_rows(builtin)


def test_explain_on_ray_shows_the_placement(ray_cluster):
    per_key = cd.from_arrow({"k": [1, 2, 3]}).group_by("k").agg(cd.count().alias("n"))
    text = per_key.explain(parallelism=2, runtime="ray")
    assert "Placement on Ray:" in text and "worker 1 on node" in text


def test_stream_on_ray_yields_the_changelog_as_the_job_runs(ray_cluster):
    """A paced source (about 3 s): batches arrive while the job runs, with their _op."""
    bids = cd.read_nexmark("bid", events=6000, event_rate=2000)
    per_auction = bids.group_by("auction").agg(cd.count().alias("n"))
    started = time.monotonic()
    arrivals, batches = [], []
    for batch in per_auction.stream(runtime="ray", parallelism=2, linger="50ms"):
        arrivals.append(time.monotonic() - started)
        batches.append(batch)
    assert batches and all(b.schema.names == ["auction", "n", "_op"] for b in batches)
    assert arrivals[0] < arrivals[-1] - 1.0, arrivals  # not all at the end
    got = fold(pa.Table.from_batches(batches))
    assert normalized_rows(got) == normalized_rows(per_auction.collect())
    # a consumer that stops early stops the job: its actors go away
    stream = per_auction.stream(runtime="ray", parallelism=2, linger="50ms")
    next(stream)
    stream.close()
    deadline = time.monotonic() + 30
    while _our_workers() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _our_workers() == []


def _our_workers() -> list[int]:
    """The live Ray worker actors' processes started by this test session's cluster."""
    pids = []
    for p in psutil.Process(os.getpid()).children(recursive=True):
        try:
            if p.status() != psutil.STATUS_ZOMBIE and "WorkerActor" in " ".join(p.cmdline()):
                pids.append(p.pid)
        except psutil.Error:  # gone meanwhile
            continue
    return pids


@pytest.mark.slow
def test_worker_killed_during_checkpointed_collect_and_write(ray_cluster, tmp_path, capfd):
    """SIGKILL of a worker after the first checkpoint: the job restarts from it, and the rows
    collected (staged in this process, committed at checkpoints) and written are exact."""
    bids = cd.read_nexmark("bid", events=12000, event_rate=2000)
    windows = (bids.group_by("auction", cd.tumble("date_time", "1s"))
               .agg(cd.count().alias("n"), col("price").max().alias("mx")))
    expected = normalized_rows(windows.collect(parallelism=2))

    killed: list[int] = []

    def kill_after_checkpoint(ck) -> None:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not any(ck.glob("*/_manifest.json")):
            time.sleep(0.1)
        pids = _our_workers()
        if pids:
            os.kill(pids[0], signal.SIGKILL)
            killed.append(pids[0])

    options = {"runtime": "ray", "parallelism": 2, "checkpoint_interval": "500ms"}
    for how in ("collect", "write"):
        ck = tmp_path / f"ck-{how}"
        killer = threading.Thread(target=kill_after_checkpoint, args=(ck,))
        killer.start()
        if how == "collect":
            got = windows.collect(checkpoint_dir=str(ck), **options)
        else:
            out = tmp_path / "out"
            windows.write_parquet(str(out), checkpoint_dir=str(ck), **options)
            got = read_committed(out)
        killer.join()
        assert killed, f"{how}: no worker was killed"
        killed.clear()
        assert normalized_rows(got) == expected, how
        assert "restarting from checkpoint" in capfd.readouterr().err, how
