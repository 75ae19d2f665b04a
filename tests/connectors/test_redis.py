"""The redis connector against the real Redis server on 127.0.0.1:6379."""

from __future__ import annotations

import json
import time
import uuid

import pyarrow.parquet as pq
import pytest

from tests.conftest import make_bids, run_cli
from tests.connectors.broker_util import (
    BIDS_COLUMNS,
    assert_filter_matches_duckdb,
    bids_json,
    counts_of,
    duck_tumbling,
    kill_and_resume,
    tumbling,
)

redis = pytest.importorskip("redis")
URL = "redis://127.0.0.1:6379/0"


@pytest.fixture
def r():
    client = redis.Redis.from_url(URL)
    try:
        client.ping()
    except redis.RedisError as e:
        pytest.skip(f"no Redis at {URL}: {e}")
    made: list[str] = []
    yield client, made
    for pattern in made:
        keys = list(client.scan_iter(match=pattern, count=1000))
        if keys:
            client.delete(*keys)
    client.close()


def unique(r, stem: str) -> str:
    name = f"caudal-test:{stem}:{uuid.uuid4().hex[:8]}"
    r[1].append(name + "*")
    return name


def fill(client, key: str, values: list[bytes]) -> None:
    pipe = client.pipeline(transaction=False)
    for v in values:
        pipe.xadd(key, {b"value": v})
    pipe.execute()


def source(key: str, extra: str = "") -> str:
    return f"""CREATE TABLE bids ({BIDS_COLUMNS},
  WATERMARK FOR date_time AS date_time - INTERVAL '1' SECOND) WITH (
  connector = 'redis', url = '{URL}', stream = '{key}', format = 'json',
  'scan.bounded.mode' = 'latest-offset'{extra});
"""


def stream_values(client, key: str) -> list[bytes]:
    return [f[b"value"] for _, f in client.xrange(key)]


@pytest.mark.parametrize("parallelism", [1, 2])
def test_stream_bounded_read_matches_duckdb(r, tmp_path, duck, parallelism):
    client, _ = r
    table = make_bids(3000, seed=parallelism)
    key = unique(r, "bids")
    fill(client, key, bids_json(table))
    out = tmp_path / "out"
    job = tmp_path / "job.sql"
    job.write_text(source(key) + f"""
CREATE TABLE out WITH (connector = 'filesystem', path = '{out}', format = 'parquet');
INSERT INTO out SELECT auction, price, date_time FROM bids WHERE price > 100;
""")
    result = run_cli("run", str(job), "--parallelism", str(parallelism))
    assert result.returncode == 0, result.stderr
    assert_filter_matches_duckdb(out, duck, table)


def test_stream_sink_round_trip(r, tmp_path, duck):
    client, _ = r
    table = make_bids(4000, seed=3)
    src, dst = unique(r, "bids"), unique(r, "counts")
    fill(client, src, bids_json(table))
    job = tmp_path / "job.sql"
    job.write_text(source(src) + f"""CREATE TABLE counts WITH (connector = 'redis',
  url = '{URL}', target = 'stream', key_format = '{dst}', format = 'json');
""" + tumbling())
    result = run_cli("run", str(job), "--checkpoint-dir", str(tmp_path / "ck"),
                     "--checkpoint-interval", "200ms")
    assert result.returncode == 0, result.stderr
    assert counts_of(stream_values(client, dst)) == duck_tumbling(duck, table)


@pytest.mark.parametrize("target", ["string", "hash"])
def test_updating_query_upserts_and_deletes_keys(r, tmp_path, duck, target):
    """GROUP BY with HAVING: keys are set, updated, and deleted when a group stops
    qualifying; what Redis holds at the end equals DuckDB's answer."""
    client, _ = r
    table = make_bids(3000, seed=5)
    src = unique(r, "bids")
    prefix = unique(r, "cnt")
    fill(client, src, bids_json(table))
    field = ", 'hash.field_format' = 'n{auction}'" if target == "hash" else ""
    job = tmp_path / "job.sql"
    job.write_text(source(src) + f"""CREATE TABLE few WITH (connector = 'redis',
  url = '{URL}', target = '{target}', key_format = '{prefix}:{{auction}}'{field});
INSERT INTO few SELECT auction, count(*) AS n FROM bids GROUP BY auction HAVING count(*) < 30;
""")
    result = run_cli("run", str(job), "--parallelism", "2", "--checkpoint-dir",
                     str(tmp_path / "ck"), "--checkpoint-interval", "200ms")
    assert result.returncode == 0, result.stderr
    duck.register("bids", table)
    want = sorted(duck.execute("SELECT auction, count(*) FROM bids GROUP BY auction "
                               "HAVING count(*) < 30").fetchall())
    got = []
    for key in client.scan_iter(match=f"{prefix}:*"):
        if target == "string":
            row = json.loads(client.get(key))
        else:
            held = client.hgetall(key)
            assert len(held) == 1
            (f, v), = held.items()
            row = json.loads(v)
            assert f.decode() == f"n{row['auction']}"
        assert key.decode() == f"{prefix}:{row['auction']}"
        got.append((row["auction"], row["n"]))
    assert sorted(got) == want and want


def test_bad_messages_follow_bad_data(r, tmp_path):
    client, _ = r
    key = unique(r, "bad")
    fill(client, key, [b'{"auction": 1, "price": 2, "date_time": "2026-01-01T00:00:00"}',
                       b"not json", b'{"auction": 3, "price": 4}'])
    out = tmp_path / "out"
    body = f"""CREATE TABLE out WITH (connector = 'filesystem', path = '{out}', format = 'json');
INSERT INTO out SELECT auction FROM bids;
"""
    job = tmp_path / "job.sql"
    job.write_text(source(key, ", group = 'g1'") + body)
    failed = run_cli("run", str(job))
    assert failed.returncode != 0
    assert f"malformed message in stream '{key}' entry" in failed.stderr
    assert "Traceback" not in failed.stderr
    job.write_text(source(key, ", group = 'g2', bad_data = 'drop'") + body)
    ok = run_cli("run", str(job))
    assert ok.returncode == 0, ok.stderr
    rows = [json.loads(line) for p in out.iterdir() for line in p.read_text().splitlines()]
    assert sorted(x["auction"] for x in rows) == [1, 3]


def test_server_down_is_one_line_after_bounded_retry(tmp_path):
    job = tmp_path / "job.sql"
    job.write_text(f"""CREATE TABLE bids ({BIDS_COLUMNS}) WITH (connector = 'redis',
  url = 'redis://127.0.0.1:1/0', stream = 'x', connect_timeout = '1s');
SELECT * FROM bids;
""")
    start = time.monotonic()
    result = run_cli("run", str(job))
    assert result.returncode != 0
    assert "cannot reach redis at redis://127.0.0.1:1/0" in result.stderr
    assert "Traceback" not in result.stderr
    assert time.monotonic() - start < 20


def test_key_format_names_a_column(r, tmp_path):
    job = tmp_path / "job.sql"
    job.write_text(f"""CREATE TABLE g WITH (connector = 'nexmark', table = 'bid', events = '10');
CREATE TABLE o WITH (connector = 'redis', url = '{URL}', key_format = 'b:{{nope}}');
INSERT INTO o SELECT auction, price FROM g;
""")
    result = run_cli("run", str(job))
    assert result.returncode != 0
    assert "names 'nope', not a column" in result.stderr


@pytest.mark.slow   # five killed runs and a resumed one
def test_kill_five_times_then_resume_exactly_once(r, tmp_path, duck):
    """Redis Stream source (XACK after checkpoints) -> tumbling count -> Redis stream sink
    (MULTI/EXEC with a commit marker): killed 5 times, each window is written once."""
    client, _ = r
    table = make_bids(20_000, seed=13)
    src, dst = unique(r, "kbids"), unique(r, "kcounts")
    fill(client, src, bids_json(table))
    job = tmp_path / "job.sql"
    job.write_text(source(src) + f"""CREATE TABLE counts WITH (connector = 'redis',
  url = '{URL}', target = 'stream', key_format = '{dst}');
""" + tumbling())
    hit = kill_and_resume(job, tmp_path / "ck", kills=5, seed=7)
    assert hit >= 3
    assert counts_of(stream_values(client, dst)) == duck_tumbling(duck, table)
    markers = list(client.scan_iter(match="caudal:commit:*"))
    client.delete(*markers)


@pytest.mark.parametrize("kind", ["", "LEFT"])
def test_lookup_join_equals_duckdb(r, tmp_path, duck, kind):
    """A redis sink writes auctions as string keys; a lookup join reads them back by key."""
    import pyarrow as pa

    client, _ = r
    prefix = unique(r, "auction")
    auctions = pa.table({"id": pa.array(range(1000, 1080), pa.int64()),
                         "seller": pa.array([f"s{i % 7}" for i in range(80)])})
    pipe = client.pipeline()
    for row in auctions.to_pylist():
        pipe.set(f"{prefix}:{row['id']}", json.dumps(row))
    pipe.execute()
    table = make_bids(2000, seed=23)
    pq.write_table(table, tmp_path / "bids.parquet")
    out = tmp_path / "out"
    job = tmp_path / "job.sql"
    job.write_text(f"""CREATE TABLE bids WITH (connector = 'filesystem',
  path = '{tmp_path / "bids.parquet"}', format = 'parquet');
CREATE TABLE a (id BIGINT, seller TEXT) WITH (connector = 'redis', url = '{URL}',
  key_format = '{prefix}:{{id}}', lookup = 'true', 'lookup.cache.max_rows' = '50');
CREATE TABLE out WITH (connector = 'filesystem', path = '{out}', format = 'parquet');
INSERT INTO out SELECT b.auction, b.price, a.seller FROM bids AS b {kind} JOIN a
  ON a.id = b.auction;
""")
    result = run_cli("run", str(job), "--parallelism", "2")
    assert result.returncode == 0, result.stderr
    duck.register("bids", table)
    duck.register("auctions", auctions)
    want = sorted(duck.execute(f"SELECT b.auction, b.price, a.seller FROM bids AS b {kind} "
                               f"JOIN auctions AS a ON a.id = b.auction").fetchall(), key=repr)
    got = sorted((tuple(x.values()) for x in pq.read_table(out).to_pylist()), key=repr)
    assert got == want and len(want) > 500
    if kind == "LEFT":
        assert any(x[2] is None for x in got)
