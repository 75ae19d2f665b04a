"""The postgres connector against the machine's PostgreSQL (no mocks): the COPY and upsert
sinks vs DuckDB, prepared-transaction recovery, killed runs, bad tables and servers.

Every test uses its own table names and removes the prepared transactions it leaves.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import random
import signal
import subprocess
import sys
import time
import uuid
from decimal import Decimal
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from caudal.connectors.base import table_token
from caudal.connectors.pg_client import csv_bytes
from caudal.errors import CaudalError
from caudal.job import run_sql
from caudal.plan.tables import TableSpec
from tests.conftest import REPO, make_bids, run_cli

psycopg = pytest.importorskip("psycopg")

CONNINFO = "host=127.0.0.1 user=postgres dbname=test"
CONNECTION = f"connection = '{CONNINFO}'"


def _server_ready() -> str | None:
    try:
        with psycopg.connect(CONNINFO, connect_timeout=3, autocommit=True) as c:
            prepared = int(c.execute("SHOW max_prepared_transactions").fetchone()[0])
            logical = c.execute("SHOW wal_level").fetchone()[0] == "logical"
    except psycopg.Error as e:
        return f"no PostgreSQL at {CONNINFO}: {e}"
    if prepared == 0 or not logical:
        subprocess.run([str(REPO / ".ci" / "postgres-setup")], check=True, timeout=120)
    return None


_REASON = _server_ready()
pytestmark = [pytest.mark.skipif(_REASON is not None, reason=_REASON or ""),
              pytest.mark.timeout(300)]


@pytest.fixture
def pg():
    """An autocommit connection, and a fresh table name prefix whose tables, stages and
    prepared transactions are dropped afterwards."""
    conn = psycopg.connect(CONNINFO, autocommit=True)
    conn.execute("SET TIME ZONE 'UTC'")
    prefix = f"t_{uuid.uuid4().hex[:8]}"
    conn.prefix = prefix
    leftovers = ("SELECT 'stage', tablename FROM pg_tables WHERE tablename LIKE "
                 "'caudal\\_stage\\_%' UNION ALL SELECT 'slot', slot_name FROM "
                 "pg_replication_slots WHERE slot_name LIKE 'caudal\\_t\\_%' UNION ALL "
                 "SELECT 'publication', pubname FROM pg_publication WHERE pubname LIKE "
                 "'caudal\\_%'")
    before = set(conn.execute(leftovers).fetchall())
    yield conn
    # first what a failed test left prepared: it holds locks that a DROP would wait for
    for (gid,) in conn.execute("SELECT gid FROM pg_prepared_xacts WHERE gid LIKE 'caudal-%'"
                               " AND database = current_database()").fetchall():
        # only ours: a prepared transaction that touched one of this test's tables
        # (its relation locks share the virtual transaction of its transaction id's lock)
        touches = conn.execute(
            "SELECT count(*) FROM pg_prepared_xacts p JOIN pg_locks x ON x.locktype = "
            "'transactionid' AND x.transactionid = p.transaction JOIN pg_locks l ON "
            "l.virtualtransaction = x.virtualtransaction AND l.pid IS NULL JOIN pg_class c "
            "ON c.oid = l.relation WHERE p.gid = %s AND c.relname LIKE %s",
            (gid, prefix + "%"))
        if touches.fetchone()[0]:
            conn.execute(f"ROLLBACK PREPARED '{gid}'")
    # a stage table that appeared meanwhile may be another run's (tests of other checkouts
    # share the server), its prepared transaction holding it: not waited for forever
    conn.execute("SET lock_timeout = '5s'")
    for kind, name in set(conn.execute(leftovers).fetchall()) - before:
        if kind == "stage":
            try:
                conn.execute(f'DROP TABLE IF EXISTS "{name}"')
            except psycopg.errors.LockNotAvailable:
                pass
        elif kind == "slot":
            conn.execute("SELECT pg_drop_replication_slot(slot_name) FROM "
                         "pg_replication_slots WHERE slot_name = %s AND NOT active", (name,))
        else:
            conn.execute(f'DROP PUBLICATION IF EXISTS "{name}"')
    for (name,) in conn.execute("SELECT tablename FROM pg_tables WHERE tablename LIKE %s",
                                (prefix + "%",)).fetchall():
        conn.execute(f'DROP TABLE IF EXISTS "{name}"')
    conn.close()


def _rows(conn, query: str) -> list[tuple]:
    return sorted(conn.execute(query).fetchall(), key=repr)


def _duck_rows(duck, query: str) -> list[tuple]:
    return sorted((tuple(r) for r in duck.execute(query).fetchall()), key=repr)


def _typed_file(path: Path, n: int = 3000) -> pa.Table:
    """Bids plus the awkward types: decimals, dates, booleans, doubles, bytes, lists."""
    bids = make_bids(n, seed=3)
    bids = bids.set_column(bids.schema.get_field_index("url"), "url", pa.array(
        [f"ü/{i}\t\"q\"\\," if i % 13 else None for i in range(n)]))
    rng = np.random.default_rng(5)
    table = bids.append_column("flag", pa.array(rng.random(n) < 0.5, mask=rng.random(n) < .1))
    table = table.append_column("ratio", pa.array(rng.normal(size=n)))
    table = table.append_column("amount", pa.array(
        [Decimal(int(x)) / 100 for x in rng.integers(-10**6, 10**6, n)], pa.decimal128(12, 2)))
    table = table.append_column("day", pa.array(
        [dt.date(2026, 1, 1) + dt.timedelta(days=int(x)) for x in rng.integers(0, 300, n)]))
    table = table.append_column("raw", pa.array([bytes([i % 256, 0, 255]) if i % 11 else None
                                                 for i in range(n)]))
    table = table.append_column("tags", pa.array(
        [[int(x), None] if x % 3 else None for x in rng.integers(0, 100, n)],
        pa.list_(pa.int64())))
    pq.write_table(table, path, row_group_size=500)
    return table


#: columns COPYed in binary (every type has a binary writer) or as CSV (decimals, arrays)
COPY_COLUMNS = {
    "binary": "auction, price, channel, date_time, extra, flag, ratio, day, raw, url",
    "csv": "auction, price, channel, date_time, extra, flag, ratio, amount, day, raw, tags",
}


@pytest.mark.parametrize("encoding", sorted(COPY_COLUMNS))
@pytest.mark.parametrize("parallelism", [1, 2])
def test_copy_sink_writes_what_duckdb_computes(pg, duck, tmp_path, parallelism, encoding):
    path = tmp_path / "bids.parquet"
    _typed_file(path)
    target = f"{pg.prefix}_append"
    columns = COPY_COLUMNS[encoding]
    select = f"SELECT {columns} FROM bids WHERE price IS NULL OR price > 100"
    run_sql(f"""CREATE TABLE bids WITH (connector = 'filesystem', path = '{path}');
        CREATE TABLE out WITH (connector = 'postgres', {CONNECTION}, table = '{target}');
        INSERT INTO out {select};""", parallelism=parallelism, batch_rows=700)
    got = _rows(pg, f"SELECT {columns} FROM {target}")
    want = _duck_rows(duck, select.replace("FROM bids", f"FROM '{path}'"))
    assert len(got) == len(want) > 1000
    raw = columns.split(", ").index("raw")
    assert [g[:raw] + g[raw + 1:] for g in got] == [w[:raw] + w[raw + 1:] for w in want]
    assert [g[raw] and bytes(g[raw]) for g in got] == [w[raw] for w in want]
    types = dict(pg.execute("SELECT column_name, data_type FROM information_schema.columns "
                            "WHERE table_name = %s", (target,)).fetchall())
    assert types["date_time"] == "timestamp with time zone"
    if encoding == "csv":
        assert types["amount"] == "numeric" and types["tags"] == "ARRAY"


def _updating_select(kind: str) -> str:
    if kind == "aggregate":
        return ("SELECT auction, channel, count(*) AS bids, sum(price) AS total, "
                "max(price) AS top FROM bids GROUP BY auction, channel")
    # counts of counts: a row of the outer GROUP BY is deleted when no auction has its count
    return ("SELECT num, count(*) AS auctions FROM (SELECT auction, count(*) AS num FROM bids "
            "GROUP BY auction) GROUP BY num")


@pytest.mark.parametrize("kind", ["aggregate", "nested"])
@pytest.mark.parametrize("parallelism", [1, 2])
def test_upsert_of_an_updating_aggregate_equals_duckdb(pg, duck, bids_parquet, kind,
                                                       parallelism):
    path, _ = bids_parquet
    target = f"{pg.prefix}_{kind}"
    select = _updating_select(kind)
    run_sql(f"""SET updating_flush = '0s';
        CREATE TABLE bids WITH (connector = 'filesystem', path = '{path}');
        CREATE TABLE out WITH (connector = 'postgres', {CONNECTION}, table = '{target}');
        INSERT INTO out {select};""", parallelism=parallelism, batch_rows=300)
    columns = "auction, channel, bids, total, top" if kind == "aggregate" else "num, auctions"
    got = _rows(pg, f"SELECT {columns} FROM {target}")
    want = _duck_rows(duck, select.replace("FROM bids", f"FROM '{path}'"))
    assert got == want
    key = pg.execute("SELECT array_agg(a.attname::text ORDER BY a.attname) FROM pg_index i "
                     "JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = "
                     "ANY(i.indkey) WHERE i.indrelid = %s::regclass AND i.indisunique",
                     (target,)).fetchone()[0]
    assert key == (["auction", "channel"] if kind == "aggregate" else ["num"])
    # the writers' staging tables went away with the run
    token = table_token(TableSpec("out", "postgres", {"connection": CONNINFO, "table": target}))
    assert pg.execute("SELECT count(*) FROM pg_tables WHERE starts_with(tablename, %s)",
                      (f"caudal_stage_{token}",)).fetchone()[0] == 0


def _sink(target: str, subtask: int = 0, **options):
    from caudal.connectors.postgres import PostgresSink

    schema = pa.schema([("k", pa.int64()), ("v", pa.string())])
    spec = TableSpec("out", "postgres", {"connection": CONNINFO, "table": target, **options},
                     schema, upsert_key=["k"] if options.get("sink.mode") == "upsert" else None)
    sink = PostgresSink(spec, subtask, 1)
    sink.writer = 3   # the id of the sink's vertex (the runtime sets it)
    return sink, schema


@pytest.mark.parametrize("mode", ["append", "upsert"])
def test_recovery_commits_what_the_checkpoint_lists_and_rolls_back_the_rest(pg, mode):
    target = f"{pg.prefix}_{mode}"
    batch = pa.record_batch({"k": [1, 2, 3], "v": ["a", "b", "c"]})
    later = pa.record_batch({"k": [3, 4], "v": ["x", "d"]})
    sink, schema = _sink(target, **{"sink.mode": mode})
    sink.open(schema)
    sink.write(batch)
    state = sink.pre_commit(5)                  # epoch 5: in the checkpoint
    sink.write(later)
    sink.pre_commit(6)                          # epoch 6: prepared, checkpoint never done
    prepared = sorted(r[0] for r in pg.execute("SELECT gid FROM pg_prepared_xacts"))
    assert {f"caudal-{sink.wid}-5", f"caudal-{sink.wid}-6"} <= set(prepared)
    assert _rows(pg, f"SELECT * FROM {target}") == []          # nothing visible yet
    sink.conn.close()                                           # the process dies
    for _ in range(2):                          # recovery, twice: commit is idempotent
        again, _ = _sink(target, **{"sink.mode": mode})
        again.open(schema, state)
        again.commit(5)
        again.abort(6)
        again.close()
    assert _rows(pg, f"SELECT * FROM {target}") == [(1, "a"), (2, "b"), (3, "c")]
    assert [r for r in pg.execute("SELECT gid FROM pg_prepared_xacts").fetchall()
            if r[0].startswith(f"caudal-{sink.wid}-")] == []
    # an epoch whose transaction vanished without commit is an error, not silent loss
    lost, _ = _sink(target, **{"sink.mode": mode})
    lost.open(schema, {"epoch": 9, "pending": [[9, f"caudal-{sink.wid}-9"]]})
    with pytest.raises(CaudalError, match="is gone and was never committed"):
        lost.commit(9)
    lost.close()


@pytest.mark.parametrize("mode", ["append", "upsert"])
def test_a_checkpoint_completing_while_the_next_epoch_writes_commits_after_its_prepare(
        pg, monkeypatch, mode):
    """COMMIT PREPARED cannot run inside the next epoch's open transaction (nor beside its
    open COPY): it waits for that one's PREPARE; every row arrives once."""
    from caudal.connectors import postgres

    monkeypatch.setattr(postgres, "FLUSH_ROWS", 2)   # every write goes to the server
    target = f"{pg.prefix}_busy_{mode}"
    sink, schema = _sink(target, **{"sink.mode": mode})
    sink.open(schema)
    sink.write(pa.record_batch({"k": [1, 2], "v": ["a", "b"]}))
    sink.write(pa.record_batch({"k": [3, 4], "v": ["c", "d"]}))
    sink.pre_commit(1)
    sink.write(pa.record_batch({"k": [5, 6], "v": ["e", "f"]}))   # epoch 2 is open
    sink.commit(1)                                   # checkpoint 1 completes meanwhile
    assert _rows(pg, f"SELECT * FROM {target}") == []
    sink.write(pa.record_batch({"k": [7, 8], "v": ["g", "h"]}))
    state = sink.pre_commit(2)   # (its state lists 1 too: committing again is a no-op)
    assert [p[0] for p in state["pending"]] == [1, 2]
    visible = len(_rows(pg, f"SELECT * FROM {target}"))   # 1 was committed after the PREPARE
    sink.commit(2)
    sink.close()
    assert visible == 4
    assert _rows(pg, f"SELECT * FROM {target}") == [
        (k, v) for k, v in zip(range(1, 9), "abcdefgh")]


@pytest.mark.parametrize("mode", ["append", "upsert"])
def test_an_epoch_aborted_while_the_next_epoch_writes_rolls_back_after_its_prepare(
        pg, monkeypatch, mode):
    """ROLLBACK PREPARED cannot run inside the next epoch's open transaction (nor beside its
    open COPY) either: it waits for that one's PREPARE (or its ROLLBACK at close); the
    aborted epoch's rows never show, the next epoch's arrive once."""
    from caudal.connectors import postgres

    monkeypatch.setattr(postgres, "FLUSH_ROWS", 2)   # every write goes to the server
    target = f"{pg.prefix}_abort_{mode}"
    sink, schema = _sink(target, **{"sink.mode": mode})
    sink.open(schema)
    try:
        sink.write(pa.record_batch({"k": [1, 2], "v": ["a", "b"]}))
        sink.pre_commit(1)
        sink.write(pa.record_batch({"k": [3, 4], "v": ["c", "d"]}))   # epoch 2 is open
        sink.abort(1)                                 # checkpoint 1 is given up meanwhile
        sink.write(pa.record_batch({"k": [5, 6], "v": ["e", "f"]}))
        state = sink.pre_commit(2)
        assert [p[0] for p in state["pending"]] == [2]   # no recovery commits 1
        gids = {r[0] for r in pg.execute("SELECT gid FROM pg_prepared_xacts")}
        assert _gid_of(sink, 1) not in gids and _gid_of(sink, 2) in gids
        sink.commit(2)
        assert _rows(pg, f"SELECT * FROM {target}") == [(3, "c"), (4, "d"), (5, "e"),
                                                        (6, "f")]
        # aborted with an epoch open at the end: rolled back after that one's ROLLBACK
        sink.write(pa.record_batch({"k": [7, 8], "v": ["g", "h"]}))
        sink.pre_commit(3)
        sink.write(pa.record_batch({"k": [9, 10], "v": ["i", "j"]}))
        sink.abort(3)
    finally:
        sink.close()
        left = [g for (g,) in pg.execute("SELECT gid FROM pg_prepared_xacts WHERE "
                                         "starts_with(gid, %s)", (f"caudal-{sink.wid}-",))]
        for gid in left:   # (so that a failure does not leave the table locked)
            pg.execute(f"ROLLBACK PREPARED '{gid}'")
    assert left == []
    assert len(_rows(pg, f"SELECT * FROM {target}")) == 4


@pytest.mark.parametrize("mode", ["append", "upsert"])
def test_a_commit_waiting_for_the_open_epoch_runs_at_close(pg, monkeypatch, mode):
    """A checkpoint completes while the next epoch's transaction is open, then the job is
    cancelled (or fails) before that epoch's PREPARE: close rolls the open one back and then
    commits the completed epoch, so nothing of the job stays prepared."""
    from caudal.connectors import postgres

    monkeypatch.setattr(postgres, "FLUSH_ROWS", 2)   # every write goes to the server
    target = f"{pg.prefix}_closing_{mode}"
    sink, schema = _sink(target, **{"sink.mode": mode})
    sink.open(schema)
    try:
        sink.write(pa.record_batch({"k": [1, 2], "v": ["a", "b"]}))
        sink.pre_commit(1)
        sink.write(pa.record_batch({"k": [3, 4], "v": ["c", "d"]}))   # epoch 2 is open
        sink.commit(1)                                 # checkpoint 1 completes meanwhile
        assert _rows(pg, f"SELECT * FROM {target}") == []
    finally:
        sink.close()                                   # cancelled: epoch 2 never prepared
        left = [g for (g,) in pg.execute("SELECT gid FROM pg_prepared_xacts WHERE "
                                         "starts_with(gid, %s)", (f"caudal-{sink.wid}-",))]
        for gid in left:   # (so that a failure does not leave the table locked)
            pg.execute(f"ROLLBACK PREPARED '{gid}'")
    assert left == []
    assert _rows(pg, f"SELECT * FROM {target}") == [(1, "a"), (2, "b")]


def _gid_of(sink, epoch: int) -> str:
    from caudal.connectors.postgres import _gid

    return _gid(sink.wid, epoch)


def test_orphans_of_killed_runs_are_rolled_back(pg):
    from caudal.connectors.postgres import PostgresSink

    target = f"{pg.prefix}_orphan"
    sink, schema = _sink(target)
    sink.open(schema)
    sink.write(pa.record_batch({"k": [1], "v": ["a"]}))
    sink.pre_commit(1)
    sink.conn.close()
    PostgresSink.discard_orphans(sink.table)
    assert [r for r in pg.execute("SELECT gid FROM pg_prepared_xacts").fetchall()
            if r[0].startswith(f"caudal-{sink.wid}-")] == []
    assert _rows(pg, f"SELECT * FROM {target}") == []


def test_a_table_that_does_not_fit_is_refused_at_planning_showing_both(pg, tmp_path):
    target = f"{pg.prefix}_narrow"
    pg.execute(f"CREATE TABLE {target} (auction integer, price text)")
    script = tmp_path / "job.sql"
    script.write_text(
        f"CREATE TABLE bids WITH (connector = 'nexmark', table = 'bid', events = '10');\n"
        f"CREATE TABLE out WITH (connector = 'postgres', {CONNECTION}, table = '{target}');\n"
        f"INSERT INTO out SELECT auction, price FROM bids;\n")
    result = run_cli("run", str(script), cwd=tmp_path)
    assert result.returncode == 2
    err = result.stderr.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert f"public.{target} does not fit" in err
    assert "column auction is integer, the query gives BIGINT" in err
    assert "(auction BIGINT, price BIGINT)" in err and "(auction integer, price text)" in err


def test_an_updating_query_into_a_table_without_its_key_is_refused(pg, tmp_path):
    target = f"{pg.prefix}_nokey"
    pg.execute(f"CREATE TABLE {target} (auction bigint, n bigint)")
    with pytest.raises(CaudalError, match="no primary key or unique index on exactly"):
        run_sql(f"""CREATE TABLE bids WITH (connector = 'nexmark', table = 'bid', events = '9');
            CREATE TABLE out WITH (connector = 'postgres', {CONNECTION}, table = '{target}');
            INSERT INTO out SELECT auction, count(*) AS n FROM bids GROUP BY auction;""")


def test_an_unreachable_server_fails_after_bounded_retries_in_one_line(tmp_path):
    script = tmp_path / "job.sql"
    script.write_text(
        "CREATE TABLE bids WITH (connector = 'nexmark', table = 'bid', events = '10');\n"
        "CREATE TABLE out WITH (connector = 'postgres', url = "
        "'jdbc:postgresql://127.0.0.1:1/test', username = 'postgres', password = 'secret', "
        "table = 'x', \"connect.attempts\" = '2');\n"
        "INSERT INTO out SELECT auction FROM bids;\n")
    result = run_cli("run", str(script), cwd=tmp_path)
    assert result.returncode != 0
    err = result.stderr.strip()
    assert len(err.splitlines()) == 1 and "secret" not in err
    assert "cannot connect to PostgreSQL at 127.0.0.1:1/test as postgres" in err
    assert "2 attempt(s)" in err


# ---- killed runs ---------------------------------------------------------------------------

def _chaos(command: list[str], kills: int, rng: random.Random, cwd: Path, ck: Path) -> int:
    """Start ``command``; once a new checkpoint is complete, SIGKILL it a random 0-300 ms
    later (mid-epoch, or between a pre-commit and its commit), ``kills`` times; then let it
    run to the end. Killing after a checkpoint, not after a fixed time, keeps the kills inside
    the job on a loaded machine, where a process takes seconds to start. Returns the kills."""
    import os
    import signal

    from caudal.checkpoint.manifest import completed_epochs
    from caudal.checkpoint.storage import CheckpointStorage
    from tests.checkpoint.test_checkpoint_chaos import _wait_for_checkpoint

    done = 0
    while True:
        proc = subprocess.Popen(command, cwd=cwd, stderr=subprocess.PIPE, text=True)
        try:
            if done < kills:
                last = max(completed_epochs(CheckpointStorage(str(ck))), default=0) \
                    if ck.exists() else 0
                if _wait_for_checkpoint(ck, last, proc, 120):
                    time.sleep(rng.uniform(0, 0.3))
                    if proc.poll() is None:
                        os.kill(proc.pid, signal.SIGKILL)
                        proc.wait()
                        proc.stderr.close()
                        done += 1
                        continue
            _, err = proc.communicate(timeout=180)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        assert proc.returncode == 0, err
        return done


def _kill_test(pg, duck, tmp_path, kills: int, events: int, rate: int) -> None:
    target = f"{pg.prefix}_killed"
    select = ("SELECT auction, count(*) AS bids, sum(price) AS total, max(bidder) AS bidder "
              "FROM bids GROUP BY auction")

    def script(paced: bool, table: str) -> str:
        return (f"SET updating_flush = '50ms';\n"
                f"CREATE TABLE bids WITH (connector = 'nexmark', table = 'bid', events = "
                f"'{events}', event_rate = '{rate}', pace = '{str(paced).lower()}');\n"
                f"CREATE TABLE out WITH (connector = 'postgres', {CONNECTION}, "
                f"table = '{table}');\nINSERT INTO out {select};\n")

    run_sql(script(False, f"{target}_ref"), parallelism=2)
    job = tmp_path / "job.sql"
    job.write_text(script(True, target))
    ck = tmp_path / "ck"
    done = _chaos([sys.executable, "-m", "caudal.cli", "run", str(job), "-p", "2",
                   "--checkpoint-dir", str(ck), "--checkpoint-interval", "200ms"],
                  kills, random.Random(kills), tmp_path, ck)
    assert done == kills
    got = _rows(pg, f"SELECT * FROM {target}")
    assert got == _rows(pg, f"SELECT * FROM {target}_ref")
    assert len(got) > 100
    assert pg.execute("SELECT count(*) FROM pg_prepared_xacts p JOIN pg_locks l ON "
                      "l.virtualtransaction = '-1/' || p.transaction::text JOIN pg_class c "
                      "ON c.oid = l.relation WHERE c.relname LIKE %s",
                      (target + "%",)).fetchone()[0] == 0
    # the uninterrupted answer is DuckDB's too
    from caudal.job import run_sql as run

    dump = tmp_path / "bids"
    run(f"CREATE TABLE bids WITH (connector = 'nexmark', table = 'bid', events = '{events}');"
        f"CREATE TABLE out WITH (connector = 'filesystem', path = '{dump}');"
        f"INSERT INTO out SELECT auction, bidder, price FROM bids;")
    want = _duck_rows(duck, select.replace("FROM bids", f"FROM '{dump}/*.parquet'"))
    assert got == want


@pytest.mark.slow  # a kill test of ~5-11 CPU s: make test-all
def test_killed_upserting_job_twice_writes_the_uninterrupted_answer(pg, duck, tmp_path):
    _kill_test(pg, duck, tmp_path, kills=2, events=400_000, rate=200_000)


@pytest.mark.slow
def test_killed_upserting_job_ten_times_writes_the_uninterrupted_answer(pg, duck, tmp_path):
    _kill_test(pg, duck, tmp_path, kills=10, events=3_000_000, rate=300_000)


def test_a_declared_primary_key_upserts_an_append_only_query(pg, duck, bids_parquet):
    """Flink's upsert semantics: with PRIMARY KEY (k) NOT ENFORCED, each row replaces the
    row of its key (the last one of the input wins), even from an append-only query."""
    path, _ = bids_parquet
    target = f"{pg.prefix}_declared"
    run_sql(f"""CREATE TABLE bids WITH (connector = 'filesystem', path = '{path}');
        CREATE TABLE out (bidder BIGINT, auction BIGINT, price BIGINT,
                          PRIMARY KEY (bidder) NOT ENFORCED)
          WITH (connector = 'postgres', {CONNECTION}, table = '{target}');
        INSERT INTO out SELECT bidder, auction, price FROM bids;""")
    got = _rows(pg, f"SELECT bidder, auction, price FROM {target}")
    want = _duck_rows(duck, f"SELECT bidder, auction, price FROM read_parquet('{path}', "
                            f"file_row_number = true) QUALIFY row_number() OVER (PARTITION "
                            f"BY bidder ORDER BY file_row_number DESC) = 1")
    assert got == want
    assert pg.execute("SELECT count(*) FROM pg_index WHERE indrelid = %s::regclass AND "
                      "indisprimary", (target,)).fetchone()[0] == 1


# ---- bounded source ------------------------------------------------------------------------

def _fill_source(pg, name: str, n: int = 20_000) -> None:
    pg.execute(f"""CREATE TABLE {name} (id bigint PRIMARY KEY, name text, price numeric(10,2),
        ratio float8, amt numeric, d date, ts timestamptz, tsn timestamp, iv interval,
        flag boolean, j jsonb, raw bytea, tags int[], small smallint)""")
    pg.execute(f"""INSERT INTO {name} SELECT i, CASE WHEN i % 7 = 0 THEN NULL ELSE 'n' || i
        END, i * 1.25, i / 3.0, i * 1.5, date '2026-01-01' + i % 300,
        timestamptz '2026-01-01 00:00:00+00' + i * interval '1 second',
        timestamp '2026-01-01' + i * interval '1 minute', i * interval '1 second', i % 2 = 0,
        jsonb_build_object('a', i), '\\x01ff'::bytea, array[i, i + 1], (i % 100)::smallint
        FROM generate_series(1, {n}) i""")


@pytest.mark.parametrize("parallelism", [1, 2])
def test_source_reads_a_table_as_postgresql_computes_it(pg, parallelism):
    """Table -> caudal GROUP BY -> upsert into another table; PostgreSQL's own GROUP BY of
    the same table is the reference."""
    name = f"{pg.prefix}_src"
    _fill_source(pg, name)
    aggregates = ("count(*) AS n, sum(price) AS price, sum(ratio) AS ratio, sum(amt) AS amt, "
                  "min(d) AS d, max(ts) AS ts, max(tsn) AS tsn, count(name) AS names, "
                  "sum(CASE WHEN flag THEN 1 ELSE 0 END) AS flags, sum(tags[2]) AS tags, "
                  "count(raw) AS raws, max(length(j::text)) AS j")
    run_sql(f"""CREATE TABLE src WITH (connector = 'postgres', {CONNECTION}, table = '{name}');
        CREATE TABLE out WITH (connector = 'postgres', {CONNECTION}, table = '{name}_agg');
        INSERT INTO out SELECT small, {aggregates} FROM src GROUP BY small;""",
            parallelism=parallelism)
    columns = "small, n, price, ratio, amt, d, ts, tsn, names, flags, tags, raws, j"
    got = pg.execute(f"SELECT {columns} FROM {name}_agg ORDER BY small").fetchall()
    want = pg.execute(f"SELECT small, {aggregates} FROM {name} GROUP BY small "
                      f"ORDER BY small").fetchall()
    assert len(got) == len(want) == 100
    for g, w in zip(got, want):
        assert g[:3] == w[:3] and g[5:] == w[5:6] + (w[6], w[7].replace(tzinfo=dt.UTC)) + w[8:]
        assert g[3] == pytest.approx(w[3]) and g[4] == pytest.approx(float(w[4]))


def test_source_reads_a_query_with_declared_columns_and_intervals(pg, tmp_path):
    name = f"{pg.prefix}_q"
    _fill_source(pg, name, 1000)
    result = run_sql(f"""CREATE TABLE q (id BIGINT, iv INTERVAL) WITH (connector = 'postgres',
          {CONNECTION}, query = 'SELECT id, iv FROM {name} WHERE id <= 10 ORDER BY id');
        CREATE TABLE out WITH (connector = 'filesystem', path = '{tmp_path / "o"}');
        INSERT INTO out SELECT id, iv FROM q;""")
    assert result is not None
    got = pq.read_table(tmp_path / "o").sort_by("id").to_pylist()
    assert [(r["id"], r["iv"]) for r in got] == [(i, dt.timedelta(seconds=i))
                                                  for i in range(1, 11)]


def test_source_names_a_missing_table(pg, tmp_path):
    script = tmp_path / "job.sql"
    script.write_text(f"CREATE TABLE src WITH (connector = 'postgres', {CONNECTION}, "
                      f"table = '{pg.prefix}_missing');\nSELECT * FROM src;\n")
    result = run_cli("run", str(script), cwd=tmp_path)
    err = result.stderr.strip()
    assert result.returncode == 2 and len(err.splitlines()) == 1
    assert f'relation "{pg.prefix}_missing" does not exist' in err


# ---- lookup joins --------------------------------------------------------------------------

def _dim(pg, duck, name: str) -> None:
    """A dimension table in PostgreSQL (and the same rows in DuckDB as ``dim``): auctions
    1000..1079 only (the bids' auctions go to 1099: some keys are missing), channel-keyed
    rows for the two-column key."""
    rng = np.random.default_rng(11)
    ids = np.arange(1000, 1080)
    dim = pa.table({"id": ids, "seller": pa.array([f"s{i % 9}" for i in ids]),
                    "reserve": pa.array(rng.integers(0, 5000, len(ids)),
                                        mask=rng.random(len(ids)) < 0.1)})
    pg.execute(f"CREATE TABLE {name} (id bigint PRIMARY KEY, seller text, reserve bigint)")
    with pg.cursor().copy(f"COPY {name} FROM STDIN (FORMAT csv)") as copy:
        copy.write(csv_bytes(dim))
    duck.register("dim", dim)


def _stream_ddl(path: Path) -> str:
    return (f"CREATE TABLE bids (auction BIGINT, bidder BIGINT, price BIGINT, channel TEXT, "
            f"p AS PROCTIME()) WITH (connector = 'filesystem', path = '{path}');")


@pytest.mark.parametrize("kind", ["LEFT", "INNER"])
@pytest.mark.parametrize("cache", ["0", "30"])
@pytest.mark.parametrize("style", ["flink", "arroyo"])
def test_lookup_join_equals_duckdb(pg, duck, bids_parquet, tmp_path, kind, cache, style):
    path, _ = bids_parquet
    name = f"{pg.prefix}_dim"
    _dim(pg, duck, name)
    out = tmp_path / "out"
    lookup = ", lookup = 'true'" if style == "arroyo" else ""
    if cache != "0":   # as docs/connectors.md writes it (Flink's spelling; it was refused)
        lookup += ", 'lookup.cache.ttl' = '1 min'"
    as_of = " FOR SYSTEM_TIME AS OF b.p" if style == "flink" else ""
    where = "WHERE d.reserve IS NULL OR d.reserve < 4000"
    run_sql(f"""{_stream_ddl(path)}
        CREATE TABLE d WITH (connector = 'postgres', {CONNECTION}, table = '{name}',
                             "lookup.cache.max_rows" = '{cache}'{lookup});
        CREATE TABLE out WITH (connector = 'filesystem', path = '{out}');
        INSERT INTO out SELECT b.auction, b.price, d.seller, d.reserve
        FROM bids AS b {kind} JOIN d{as_of} ON d.id = b.auction {where};""",
            parallelism=2, batch_rows=512)
    got = sorted((tuple(r.values()) for r in pq.read_table(out).to_pylist()), key=repr)
    want = _duck_rows(duck, f"SELECT b.auction, b.price, d.seller, d.reserve FROM "
                            f"'{path}' AS b {kind} JOIN dim AS d ON d.id = b.auction {where}")
    assert got == want and len(want) > 1000
    if kind == "LEFT":
        assert any(r[2] is None for r in got)



def test_lookup_join_on_two_columns_with_a_filtered_table(pg, duck, bids_parquet, tmp_path):
    path, _ = bids_parquet
    name = f"{pg.prefix}_dim2"
    _dim(pg, duck, name)
    out = tmp_path / "out"
    run_sql(f"""{_stream_ddl(path)}
        CREATE TABLE d WITH (connector = 'postgres', {CONNECTION}, table = '{name}',
                             "lookup.cache.max_rows" = '10', "lookup.cache.ttl" = '1ms');
        CREATE VIEW rich AS SELECT id, seller, reserve FROM d WHERE reserve > 100;
        CREATE TABLE out WITH (connector = 'filesystem', path = '{out}');
        INSERT INTO out SELECT b.auction, b.bidder, d.seller FROM bids AS b
        LEFT JOIN rich FOR SYSTEM_TIME AS OF b.p AS d
          ON d.id = b.auction AND d.reserve = b.bidder + 1000;""",
            batch_rows=256)
    got = sorted((tuple(r.values()) for r in pq.read_table(out).to_pylist()), key=repr)
    want = _duck_rows(duck, f"SELECT b.auction, b.bidder, d.seller FROM '{path}' AS b LEFT "
                            f"JOIN (SELECT * FROM dim WHERE reserve > 100) AS d ON d.id = "
                            f"b.auction AND d.reserve = b.bidder + 1000")
    assert got == want


@pytest.mark.parametrize("kind", ["LEFT", "INNER"])
def test_warm_lookup_join_with_a_residual_condition_equals_duckdb(pg, duck, bids_parquet,
                                                                  tmp_path, kind):
    """One unique key and a warm cache (each row finds its cached row by position), with a
    condition beyond the key that some matches fail (NULL reserve included)."""
    path, _ = bids_parquet
    name = f"{pg.prefix}_dim3"
    _dim(pg, duck, name)
    out = tmp_path / "out"
    run_sql(f"""{_stream_ddl(path)}
        CREATE TABLE d WITH (connector = 'postgres', {CONNECTION}, table = '{name}',
                             "lookup.cache.max_rows" = '1000');
        CREATE TABLE out WITH (connector = 'filesystem', path = '{out}');
        INSERT INTO out SELECT b.auction, b.price, d.seller, d.reserve
        FROM bids AS b {kind} JOIN d FOR SYSTEM_TIME AS OF b.p
          ON d.id = b.auction AND d.reserve < b.price;""", batch_rows=512)
    got = sorted((tuple(r.values()) for r in pq.read_table(out).to_pylist()), key=repr)
    want = _duck_rows(duck, f"SELECT b.auction, b.price, d.seller, d.reserve FROM "
                            f"'{path}' AS b {kind} JOIN dim AS d ON d.id = b.auction "
                            f"AND d.reserve < b.price")
    assert got == want and len(want) > 100


def test_a_lookup_join_on_a_primary_key_imports_neither_polars_nor_pyarrow_compute(
        pg, duck, bids_parquet, tmp_path):
    """Polars costs ~0.2 s of CPU to import, pyarrow.compute ~0.05 s, numpy.ma (which
    ``pa.array`` of a NumPy array imports) ~0.03 s, more than joining millions of rows: the
    lookup path (planning, ADBC, the cache, the join) does without them, as the same job
    without the join does."""
    path, _ = bids_parquet
    name = f"{pg.prefix}_dim4"
    _dim(pg, duck, name)
    job = tmp_path / "job.sql"
    job.write_text(f"""{_stream_ddl(path)}
        CREATE TABLE d WITH (connector = 'postgres', {CONNECTION}, table = '{name}',
                             "lookup.cache.max_rows" = '1000');
        CREATE TABLE out WITH (connector = 'blackhole');
        INSERT INTO out SELECT b.auction, d.seller FROM bids AS b
        LEFT JOIN d FOR SYSTEM_TIME AS OF b.p ON d.id = b.auction;""")
    code = (f"import sys, caudal.cli\nassert caudal.cli.main(['run', {str(job)!r}]) == 0\n"
            f"print(sorted(m for m in ('polars', 'pyarrow.compute', 'numpy.ma') "
            f"if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"}, cwd=REPO,
                          timeout=120, check=True)
    assert done.stdout.strip().splitlines()[-1] == "[]"


# ---- CDC -----------------------------------------------------------------------------------

@pytest.fixture
def cdc(pg):
    """A table with REPLICA IDENTITY FULL; its slot and publication are dropped afterwards."""
    name = f"{pg.prefix}_cdc"
    slot = f"caudal_{name}"
    pg.execute(f"CREATE TABLE {name} (id bigint PRIMARY KEY, cat text, amount numeric(10,2), "
               f"ts timestamptz, flag boolean, note text)")
    pg.execute(f"ALTER TABLE {name} REPLICA IDENTITY FULL")
    pg.execute(f"INSERT INTO {name} SELECT i, 'c' || (i % 3), i * 1.5, timestamptz "
               f"'2026-01-01 00:00:00+00' + i * interval '1 minute', i % 2 = 0, CASE WHEN "
               f"i % 5 = 0 THEN NULL ELSE repeat('x', i % 4) END FROM generate_series(1, 300) i")
    yield name, slot
    pg.execute("SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE "
               "slot_name = %s AND NOT active", (slot,))
    pg.execute(f'DROP PUBLICATION IF EXISTS "{slot}"')


def test_cdc_snapshot_then_changes_feed_an_updating_count(pg, cdc, tmp_path):
    name, slot = cdc
    script = tmp_path / "job.sql"
    script.write_text(f"""
        CREATE TABLE src (id BIGINT, cat TEXT, amount DECIMAL(10, 2), ts TIMESTAMP,
                          flag BOOLEAN, note TEXT, PRIMARY KEY (id) NOT ENFORCED)
        WITH ('connector' = 'postgres-cdc', 'hostname' = '127.0.0.1', 'port' = '5432',
              'username' = 'postgres', 'database-name' = 'test', 'schema-name' = 'public',
              'table-name' = '{name}', 'slot.name' = '{slot}',
              'decoding.plugin.name' = 'pgoutput', 'scan.bounded.mode' = 'latest-offset');
        CREATE TABLE out WITH (connector = 'postgres', {CONNECTION}, table = '{name}_out');
        INSERT INTO out SELECT cat, count(*) AS n, sum(amount) AS total,
          count(*) FILTER (WHERE flag) AS flags, max(ts) AS ts, count(note) AS notes,
          sum(length(note)) AS chars FROM src GROUP BY cat;""")
    query = (f"SELECT cat, count(*), sum(amount), count(*) FILTER (WHERE flag), max(ts), "
             f"count(note), sum(length(note)) FROM {name} GROUP BY cat ORDER BY cat")
    ck = str(tmp_path / "ck")

    def run_and_compare() -> None:
        result = run_cli("run", str(script), "--checkpoint-dir", ck, cwd=tmp_path)
        assert result.returncode == 0, result.stderr
        got = pg.execute(f"SELECT cat, n, total, flags, ts, notes, chars FROM {name}_out "
                         f"ORDER BY cat").fetchall()
        assert got == pg.execute(query).fetchall()

    run_and_compare()                                   # the snapshot
    pg.execute(f"INSERT INTO {name} VALUES (1001, 'c0', 10, now(), true, 'new'), "
               f"(1002, 'c9', 5, now(), false, NULL)")
    pg.execute(f"UPDATE {name} SET cat = 'c1', amount = amount + 1 WHERE id <= 40")
    pg.execute(f"DELETE FROM {name} WHERE id BETWEEN 100 AND 160")
    with pg.transaction():
        pg.execute(f"UPDATE {name} SET flag = NOT flag, note = 'changed' WHERE id = 200")
        pg.execute(f"DELETE FROM {name} WHERE cat = 'c2' AND id > 250")
    changed = pg.execute("SELECT pg_current_wal_lsn() - '0/0'::pg_lsn").fetchone()[0]

    def confirmed() -> int:
        return pg.execute("SELECT confirmed_flush_lsn - '0/0'::pg_lsn FROM "
                          "pg_replication_slots WHERE slot_name = %s", (slot,)).fetchone()[0]

    run_and_compare()                                   # resumed: the changes
    pg.execute(f"DELETE FROM {name} WHERE cat = 'c9'")  # a group disappears
    run_and_compare()
    # this run resumed from the checkpoint holding the changes: confirmed past them now
    assert confirmed() >= changed


def test_cdc_refuses_a_table_without_full_replica_identity(pg, tmp_path):
    name = f"{pg.prefix}_nofull"
    pg.execute(f"CREATE TABLE {name} (id bigint PRIMARY KEY, v text)")
    with pytest.raises(CaudalError, match="REPLICA IDENTITY FULL"):
        run_sql(f"""CREATE TABLE src WITH ('connector' = 'postgres-cdc',
              'hostname' = '127.0.0.1', 'username' = 'postgres', 'database-name' = 'test',
              'table-name' = '{name}', 'slot.name' = 'caudal_{name}');
            SELECT v, count(*) FROM src GROUP BY v;""")


@pytest.mark.slow
def test_upsert_restored_at_other_parallelisms_writes_the_same_table(pg, tmp_path):
    """Killed after a checkpoint at parallelism 2, resumed at 3 and killed again, finished at
    1: recovery commits the old subtasks' prepared transactions and their staged rows."""
    import os
    import signal

    from caudal.checkpoint.manifest import completed_epochs
    from caudal.checkpoint.storage import CheckpointStorage
    from tests.checkpoint.test_checkpoint_chaos import _wait_for_checkpoint

    target = f"{pg.prefix}_rescaled"

    def script(paced: bool, table: str) -> str:
        return (f"SET updating_flush = '50ms';\n"
                f"CREATE TABLE bids WITH (connector = 'nexmark', table = 'bid', events = "
                f"'300000', event_rate = '100000', pace = '{str(paced).lower()}');\n"
                f"CREATE TABLE out WITH (connector = 'postgres', {CONNECTION}, "
                f"table = '{table}');\nINSERT INTO out SELECT bidder, count(*) AS n, "
                f"sum(price) AS total FROM bids GROUP BY bidder;\n")

    run_sql(script(False, f"{target}_ref"), parallelism=2)
    job = tmp_path / "job.sql"
    job.write_text(script(True, target))
    ck = tmp_path / "ck"
    command = [sys.executable, "-m", "caudal.cli", "run", str(job), "--checkpoint-dir",
               str(ck), "--checkpoint-interval", "200ms"]
    last = 0
    for parallelism in (2, 3):
        proc = subprocess.Popen([*command, "-p", str(parallelism)], cwd=tmp_path,
                                stderr=subprocess.PIPE, text=True)
        try:
            killed = _wait_for_checkpoint(ck, last, proc, 60)
            time.sleep(random.Random(parallelism).uniform(0, 0.3))
        finally:
            if proc.poll() is None:
                os.kill(proc.pid, signal.SIGKILL)
        _, err = proc.communicate(timeout=60)
        assert killed, f"no checkpoint before the run ended: {err}"
        last = max(completed_epochs(CheckpointStorage(str(ck))))
    final = subprocess.run([*command, "-p", "1"], cwd=tmp_path, capture_output=True,
                           text=True, timeout=120)
    assert final.returncode == 0, final.stderr
    got = _rows(pg, f"SELECT * FROM {target}")
    assert got == _rows(pg, f"SELECT * FROM {target}_ref") and len(got) > 100


@pytest.mark.slow
def test_kafka_to_upsert_killed_ten_times_writes_the_uninterrupted_answer(pg, tmp_path):
    """The issue's pipeline: Kafka -> updating aggregate -> PostgreSQL upsert, SIGKILLed 10
    times, resumed with the same command; the table equals an uninterrupted run's."""
    from caudal.connectors.kafka_mock import cluster

    target = f"{pg.prefix}_kafka"
    with cluster() as brokers:
        run_sql(f"""CREATE TABLE gen WITH (connector = 'nexmark', table = 'bid',
                      events = '110000', pace = 'false');
            CREATE TABLE topic WITH (connector = 'kafka', bootstrap_servers = '{brokers}',
                                     topic = 'pg_bids', format = 'json');
            INSERT INTO topic SELECT auction, bidder, price, date_time FROM gen;""")

        def script(table: str) -> str:
            return (f"SET updating_flush = '20ms';\n"
                    f"CREATE TABLE bids (auction BIGINT, bidder BIGINT, price BIGINT, "
                    f"date_time TIMESTAMP) WITH (connector = 'kafka', bootstrap_servers = "
                    f"'{brokers}', topic = 'pg_bids', 'source.offset' = 'earliest', "
                    f"'scan.bounded.mode' = 'latest-offset');\n"
                    f"CREATE TABLE out WITH (connector = 'postgres', {CONNECTION}, "
                    f"table = '{table}');\nINSERT INTO out SELECT auction, count(*) AS n, "
                    f"sum(price) AS total, max(bidder) AS bidder FROM bids GROUP BY auction;\n")

        run_sql(script(f"{target}_ref"), parallelism=2)
        job = tmp_path / "job.sql"
        job.write_text(script(target))
        ck = tmp_path / "ck"
        # small batches keep the job busy through ten kills: the mock cluster holds only
        # ~30k messages a partition, and 512-row batches were read in 4-5 runs' time
        done = _chaos([sys.executable, "-m", "caudal.cli", "run", str(job), "-p", "2",
                       "--checkpoint-dir", str(ck), "--checkpoint-interval", "100ms",
                       "--batch-rows", "32"], 10, random.Random(7), tmp_path, ck)
    assert done == 10
    got = _rows(pg, f"SELECT * FROM {target}")
    assert got == _rows(pg, f"SELECT * FROM {target}_ref") and len(got) > 100


def test_cdc_mirrors_a_table_through_an_upsert_sink_at_parallelism_two(pg, cdc, tmp_path):
    """No aggregate: the changelog goes to a table with a declared primary key, shuffled by
    it to two sink subtasks; the mirror equals the table after each run."""
    name, slot = cdc
    script = tmp_path / "job.sql"
    script.write_text(f"""
        CREATE TABLE src (id BIGINT, cat TEXT, note TEXT) WITH ('connector' = 'postgres-cdc',
          'hostname' = '127.0.0.1', 'username' = 'postgres', 'database-name' = 'test',
          'table-name' = '{name}', 'slot.name' = '{slot}',
          'scan.bounded.mode' = 'latest-offset');
        CREATE TABLE mirror (id BIGINT, cat TEXT, note TEXT, PRIMARY KEY (id) NOT ENFORCED)
          WITH (connector = 'postgres', {CONNECTION}, table = '{name}_mirror');
        INSERT INTO mirror SELECT id, cat, note FROM src;""")

    def run_and_compare() -> None:
        result = run_cli("run", str(script), "-p", "2", "--checkpoint-dir",
                         str(tmp_path / "ck"), cwd=tmp_path)
        assert result.returncode == 0, result.stderr
        assert _rows(pg, f"SELECT * FROM {name}_mirror") == \
            _rows(pg, f"SELECT id, cat, note FROM {name}")

    run_and_compare()
    pg.execute(f"UPDATE {name} SET note = 'changed', cat = 'z' WHERE id % 7 = 0")
    pg.execute(f"DELETE FROM {name} WHERE id > 250")
    pg.execute(f"INSERT INTO {name} VALUES (5000, 'new', 1, now(), true, 'hello'), "
               f"(5001, 'new', 2, now(), false, NULL)")
    run_and_compare()


def test_cdc_streams_every_type_it_snapshots(pg, tmp_path):
    """The values of a streamed change (text, cast per batch) equal those of the snapshot
    (ADBC, typed) for each type a CDC table takes: a TIME column failed on the first change
    with Arrow's 'Unsupported cast from string to time64'."""
    name = f"{pg.prefix}_types"
    slot = f"caudal_{name}"
    pg.execute(f"CREATE TABLE {name} (id int PRIMARY KEY, n numeric(12, 3), ts timestamptz, "
               f"tsn timestamp, t text, j json, d date, b boolean, f real, dd double "
               f"precision, u uuid, by bytea, sm smallint, tm time)")
    pg.execute(f"ALTER TABLE {name} REPLICA IDENTITY FULL")
    row = ("'123.456', '2024-01-01 10:00:00.123456+02', '2024-01-01 10:00:00.5', "
           "E'h\\u00e9llo \\U0001F600 \"q\\\\ \\t\\n', '{\"a\": [1, 2]}', '2024-02-29', true, "
           "'NaN', '-Infinity', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', '\\x00ff', -32768, "
           "'10:11:12.5'")
    nulls = ", ".join(["NULL"] * 13)
    pg.execute(f"INSERT INTO {name} VALUES (1, {row}), (2, {nulls})")
    columns = "id, n, ts, tsn, t, j, d, b, f, dd, u, by, sm, tm"
    script = tmp_path / "job.sql"
    script.write_text(f"""
        CREATE TABLE src (id INT, n DECIMAL(12, 3), ts TIMESTAMP WITH TIME ZONE,
          tsn TIMESTAMP, t TEXT, j TEXT, d DATE, b BOOLEAN, f REAL, dd DOUBLE, u TEXT,
          by BYTEA, sm SMALLINT, tm TIME) WITH ('connector' = 'postgres-cdc',
          'hostname' = '127.0.0.1', 'username' = 'postgres', 'database-name' = 'test',
          'table-name' = '{name}', 'slot.name' = '{slot}',
          'scan.bounded.mode' = 'latest-offset');
        CREATE TABLE out WITH (connector = 'filesystem', path = '{tmp_path / "out"}',
          format = 'debezium_json');
        INSERT INTO out SELECT {columns} FROM src;""")
    try:
        first = run_cli("run", str(script), "--checkpoint-dir", str(tmp_path / "ck"),
                        "--max-restarts", "0")
        assert first.returncode == 0, first.stderr
        pg.execute(f"INSERT INTO {name} VALUES (3, {row}), (4, {nulls})")
        pg.execute(f"UPDATE {name} SET sm = 7 WHERE id = 1")
        second = run_cli("run", str(script), "--checkpoint-dir", str(tmp_path / "ck"),
                         "--max-restarts", "0")
        assert second.returncode == 0 and "Traceback" not in second.stderr, second.stderr
    finally:
        pg.execute("SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots "
                   "WHERE slot_name = %s AND NOT active", (slot,))
        pg.execute(f'DROP PUBLICATION IF EXISTS "{slot}"')
    lines = [json.loads(x) for f in sorted((tmp_path / "out").iterdir())
             for x in f.read_text().splitlines()]
    after = {(r["op"], r["after"]["id"]): r["after"] for r in lines}
    assert set(after) == {("c", 1), ("c", 2), ("c", 3), ("c", 4), ("u", 1)}
    streamed, snapshot = dict(after["c", 3], id=1), after["c", 1]
    assert streamed == snapshot and streamed["tm"] == "10:11:12.500"
    assert dict(after["c", 4], id=2) == after["c", 2]
    assert after["u", 1] == dict(snapshot, sm=7)


def test_a_failed_cdc_source_lets_its_restart_take_the_slot(pg, cdc, tmp_path):
    """A source that fails mid-stream is closed before the job restarts: the restart takes
    the replication slot again (it found it held by the failed run's connection, and the
    job ended with 'replication slot … is active for PID …' instead of the failure's own
    line, here a TRUNCATE the changelog cannot follow)."""
    name, slot = cdc
    script = tmp_path / "job.sql"
    script.write_text(f"""
        CREATE TABLE src (id BIGINT, cat TEXT) WITH ('connector' = 'postgres-cdc',
          'hostname' = '127.0.0.1', 'username' = 'postgres', 'database-name' = 'test',
          'table-name' = '{name}', 'slot.name' = '{slot}',
          'scan.bounded.mode' = 'latest-offset');
        CREATE TABLE out WITH (connector = 'filesystem', path = '{tmp_path / "out"}',
          format = 'debezium_json');
        INSERT INTO out SELECT id, cat FROM src;""")
    first = run_cli("run", str(script), "--checkpoint-dir", str(tmp_path / "ck"))
    assert first.returncode == 0, first.stderr
    pg.execute(f"TRUNCATE {name}")
    second = run_cli("run", str(script), "--checkpoint-dir", str(tmp_path / "ck"),
                     "--max-restarts", "1")
    assert second.returncode != 0
    last = second.stderr.strip().splitlines()[-1]
    assert "was truncated" in last and "is active for PID" not in second.stderr, \
        second.stderr


def _insert_into_new_table(pg, tmp_path: Path, target: str, columns: str,
                           select: str) -> subprocess.CompletedProcess:
    """``INSERT INTO`` a PostgreSQL table created with ``columns``, by `caudal run`."""
    pg.execute(f"CREATE TABLE {target} ({columns})")
    script = tmp_path / "job.sql"
    script.write_text(
        f"CREATE TABLE out WITH (connector = 'postgres', {CONNECTION}, table = '{target}');\n"
        f"INSERT INTO out SELECT {select};\n")
    return run_cli("run", str(script), "--max-restarts", "0", cwd=tmp_path)


@pytest.mark.parametrize("column, value, fits", [
    ("numeric(10, 1)", "CAST(123.45 AS DECIMAL(10, 2))", False),   # was 123.5
    ("numeric(5, 2)", "CAST(123.45 AS DECIMAL(10, 2))", False),
    ("numeric(12, 2)", "CAST(123.45 AS DECIMAL(10, 2))", True),
    ("numeric(6, 2)", "CAST(1.23456 AS DOUBLE)", False),           # was 1.23
    ("numeric", "CAST(1.23456 AS DOUBLE)", True),
    ("numeric(4, 0)", "CAST(12345 AS BIGINT)", False),
    ("numeric(19, 0)", "CAST(12345 AS BIGINT)", True),
    ("timestamp(0)", "TIMESTAMP '2024-01-01 10:00:00.75'", False),  # was 10:00:01
    ("timestamptz(3)", "TIMESTAMP '2024-01-01 10:00:00.75'", False),
    ("timestamp(6)", "TIMESTAMP '2024-01-01 10:00:00.75'", True),
    ("numeric(6, 2)[]", "ARRAY[CAST(1.5 AS DOUBLE)]", False),
])
def test_a_column_that_would_round_the_values_is_refused(pg, tmp_path, column, value, fits):
    """PostgreSQL rounds a value to its column's scale or precision without a word
    (123.45 into numeric(10, 1) is 123.5, 10:00:00.75 into timestamp(0) 10:00:01): such a
    column does not hold the query's values without loss, and is refused at planning."""
    target = f"{pg.prefix}_round"
    result = _insert_into_new_table(pg, tmp_path, target, f"v {column}", f"{value} AS v")
    if fits:
        assert result.returncode == 0, result.stderr
        assert pg.execute(f"SELECT count(*) FROM {target}").fetchone()[0] == 1
    else:
        assert result.returncode == 2, result.stderr
        err = result.stderr.strip()
        assert len(err.splitlines()) == 1 and f"public.{target} does not fit" in err, err
        assert pg.execute(f"SELECT count(*) FROM {target}").fetchone()[0] == 0


def test_an_error_of_the_server_is_one_line_naming_the_table_not_psycopg(pg, tmp_path):
    """What the server refuses while the sink writes (a value too long for varchar(3)) is
    one line naming the PostgreSQL table and the sink, with the server's words and context
    (it read 'StringDataRightTruncation: value too long …', psycopg's class first)."""
    target = f"{pg.prefix}_short"
    result = _insert_into_new_table(pg, tmp_path, target, "k bigint, name varchar(3)",
                                    "CAST(1 AS BIGINT) AS k, 'abcdef' AS name")
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    assert "StringDataRightTruncation" not in lines[0], lines[0]
    assert f"PostgreSQL table public.{target} (sink 'out'): value too long for type " \
           f"character varying(3)" in lines[0], lines[0]
    assert "column name" in lines[0], lines[0]


def test_cdc_names_are_flink_cdcs_literal_names(pg, tmp_path):
    """'schema-name' and 'table-name' name the catalog's schema and table as they are
    spelled (Flink CDC's meaning): the schema was taken as written but the table folded to
    lower case, so a table "Order Items" could not be read ('public.order items does not
    exist')."""
    name = f"{pg.prefix}_Mixed Case"
    slot = f"caudal_{pg.prefix}_mixed"
    pg.execute(f'CREATE TABLE "{name}" (id bigint PRIMARY KEY, "Note" text)')
    pg.execute(f'ALTER TABLE "{name}" REPLICA IDENTITY FULL')
    pg.execute(f"""INSERT INTO "{name}" VALUES (1, 'a'), (2, NULL)""")
    script = tmp_path / "job.sql"
    script.write_text(f"""
        CREATE TABLE src (id BIGINT, Note TEXT) WITH ('connector' = 'postgres-cdc',
          'hostname' = '127.0.0.1', 'username' = 'postgres', 'database-name' = 'test',
          'schema-name' = 'public', 'table-name' = '{name}', 'slot.name' = '{slot}',
          'scan.bounded.mode' = 'latest-offset');
        SELECT id, Note FROM src;""")
    try:
        result = run_cli("run", str(script))
    finally:
        pg.execute("SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots "
                   "WHERE slot_name = %s AND NOT active", (slot,))
        pg.execute(f'DROP PUBLICATION IF EXISTS "{slot}"')
    assert result.returncode == 0, result.stderr
    assert "2 rows in" in result.stderr, result.stderr


def test_a_cdc_connection_the_server_ends_is_one_line_and_the_job_goes_on(pg, cdc, tmp_path):
    """The server ending the replication connection (pg_terminate_backend, a failover) is
    one line naming the table, the job restarts from its checkpoint and sees the change
    made meanwhile (it read 'AdminShutdown: terminating connection …' and a line break)."""
    name, slot = cdc
    out = tmp_path / "out"
    script = tmp_path / "job.sql"
    script.write_text(f"""
        CREATE TABLE src (id BIGINT, cat TEXT) WITH ('connector' = 'postgres-cdc',
          'hostname' = '127.0.0.1', 'username' = 'postgres', 'database-name' = 'test',
          'table-name' = '{name}', 'slot.name' = '{slot}');
        CREATE TABLE out WITH (connector = 'filesystem', path = '{out}',
          format = 'debezium_json');
        INSERT INTO out SELECT id, cat FROM src;""")
    env = dict(os.environ, PYTHONPATH=str(REPO))
    env.pop("CAUDAL_DEBUG", None)
    proc = subprocess.Popen([sys.executable, "-m", "caudal.cli", "run", str(script),
                             "--checkpoint-dir", str(tmp_path / "ck"),
                             "--checkpoint-interval", "200ms"],
                            stderr=subprocess.PIPE, text=True, env=env)
    try:
        deadline = time.monotonic() + 30
        while not pg.execute("SELECT count(*) FROM pg_replication_slots WHERE slot_name = "
                             "%s AND active", (slot,)).fetchone()[0] or not _committed(out):
            assert time.monotonic() < deadline and proc.poll() is None
            time.sleep(0.1)
        time.sleep(1)   # checkpoints past the snapshot (one during it cannot be resumed)
        pg.execute("SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots "
                   "WHERE slot_name = %s", (slot,))
        pg.execute(f"INSERT INTO {name} (id, cat) VALUES (9001, 'after')")
        while not any('"id":9001' in line for line in _committed(out)):
            assert time.monotonic() < deadline + 30
            if proc.poll() is not None:
                pytest.fail(proc.stderr.read())
            time.sleep(0.1)
    finally:
        proc.send_signal(signal.SIGINT)
        err = proc.communicate(timeout=60)[1]
    failed = [line for line in err.splitlines() if "job failed" in line]
    assert failed and "Traceback" not in err, err
    assert f"postgres-cdc table 'src' (public.{name}): terminating connection due to " \
           f"administrator command; restarting from checkpoint" in failed[0], err
    assert "AdminShutdown" not in err, err


def _committed(out: Path) -> list[str]:
    """The lines of the committed files under ``out`` (not the in-progress ones)."""
    if not out.exists():
        return []
    return [line for p in out.rglob("*.json")
            if not any(part.startswith((".", "_")) for part in p.relative_to(out).parts)
            for line in p.read_text().splitlines()]


def _resumed_rows(table: TableSpec, skip: int) -> list[tuple]:
    """The rows a bounded source delivers when resumed after ``skip`` rows."""
    from caudal.connectors.pg_source import PostgresSource

    table.schema = PostgresSource.infer_schema(table)
    source = PostgresSource(table)
    source.open(["all"], {"all": skip})
    rows: list[tuple] = []
    while (batch := source.poll(1000, 0.1)) is not None:
        rows += list(zip(*batch.to_pydict().values()))
    return rows


def test_a_table_without_primary_key_resumes_in_ctid_order(pg):
    # it was read in no order and resumed by skipping a count: a sequential scan may start
    # anywhere, and rows were lost and repeated; rows updated after loading move in ctid
    name = f"{pg.prefix}_nopk"
    pg.execute(f"CREATE TABLE {name} (v BIGINT)")
    pg.execute(f"INSERT INTO {name} SELECT g FROM generate_series(1, 50) g")
    pg.execute(f"UPDATE {name} SET v = v + 1000 WHERE v % 7 = 0")  # new places, at the end
    order = [r[0] for r in pg.execute(f"SELECT v FROM {name} ORDER BY ctid").fetchall()]
    table = TableSpec(name="src", connector="postgres",
                      options={"connection": CONNINFO, "table": name})
    assert [r[0] for r in _resumed_rows(table, 20)] == order[20:]


def test_a_query_without_order_by_is_not_resumed(pg):
    name = f"{pg.prefix}_q"
    pg.execute(f"CREATE TABLE {name} (id BIGINT PRIMARY KEY, v TEXT)")
    pg.execute(f"INSERT INTO {name} SELECT g, 'x' || g FROM generate_series(1, 30) g")
    table = TableSpec(name="src", connector="postgres",
                      options={"connection": CONNINFO, "query": f"SELECT id, v FROM {name}"})
    assert len(_resumed_rows(table, 0)) == 30  # a first run reads in any order
    with pytest.raises(CaudalError, match=r"^table 'src' cannot resume: its query has no "
                                          r"ORDER BY, so which 12 rows the stopped run "
                                          r"delivered is unknown \(end the query with ORDER "
                                          r"BY a unique key"):
        _resumed_rows(table, 12)
    table.options["query"] += " ORDER BY id"
    assert [r[0] for r in _resumed_rows(table, 12)] == list(range(13, 31))
