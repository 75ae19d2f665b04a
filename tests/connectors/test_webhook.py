"""The webhook sink against a receiver on loopback."""

from __future__ import annotations

import pytest

from tests.conftest import make_bids, run_cli
from tests.connectors.broker_util import counts_of, duck_tumbling, kill_and_resume, tumbling
from tests.connectors.http_receiver import Receiver


@pytest.fixture
def receiver():
    made: list[Receiver] = []

    def make(**kwargs) -> Receiver:
        made.append(Receiver(**kwargs))
        return made[-1]

    yield make
    for r in made:
        r.close()


def bids_file(tmp_path, n: int = 2000, seed: int = 1):
    import pyarrow.parquet as pq

    table = make_bids(n, seed=seed)
    pq.write_table(table, tmp_path / "bids.parquet")
    return table, f"""CREATE TABLE bids WITH (connector = 'filesystem',
  path = '{tmp_path / "bids.parquet"}', format = 'parquet');
"""


@pytest.mark.parametrize("checkpoints", [False, True])
def test_rows_arrive_in_json_array_batches(tmp_path, duck, receiver, checkpoints):
    table, source = bids_file(tmp_path)
    hook = receiver()
    job = tmp_path / "job.sql"
    job.write_text(source + f"""CREATE TABLE hook WITH (connector = 'webhook',
  endpoint = '{hook.url}', format = 'json', 'batch.max_rows' = '300',
  headers = 'Authorization: Bearer t0ken, X-Source: caudal');
INSERT INTO hook SELECT auction, price FROM bids WHERE price > 100;
""")
    extra = ["--checkpoint-dir", str(tmp_path / "ck"), "--checkpoint-interval",
             "100ms"] if checkpoints else []
    result = run_cli("run", str(job), *extra)
    assert result.returncode == 0, result.stderr
    assert all(len(rows) <= 300 for _, rows, _ in hook.requests)
    assert all(h["Authorization"] == "Bearer t0ken" and h["X-Source"] == "caudal" and
               h["Content-Type"] == "application/json" for _, _, h in hook.requests)
    keys = [k for k, _, _ in hook.requests]
    assert len(set(keys)) == len(keys)
    duck.register("bids", table)
    want = sorted(duck.execute("SELECT auction, price FROM bids WHERE price > 100").fetchall())
    assert sorted((r["auction"], r["price"]) for r in hook.rows()) == want


def test_issue_ddl_shape(tmp_path, receiver):
    """CREATE TABLE hook WITH (connector = 'webhook', endpoint = …, format = 'json')."""
    _, source = bids_file(tmp_path, 1200)
    hook = receiver()
    job = tmp_path / "job.sql"
    job.write_text(source + f"""CREATE TABLE hook WITH (connector = 'webhook', endpoint = '{hook.url}', format = 'json');
INSERT INTO hook SELECT auction, price FROM bids;
""")
    result = run_cli("run", str(job))
    assert result.returncode == 0, result.stderr
    assert len(hook.rows()) == 1200
    assert max(len(rows) for _, rows, _ in hook.requests) == 500


def test_retries_keep_the_idempotency_key(tmp_path, receiver):
    table, source = bids_file(tmp_path, 700)
    hook = receiver(fail_first=2)
    job = tmp_path / "job.sql"
    job.write_text(source + f"""CREATE TABLE hook WITH (connector = 'webhook',
  endpoint = '{hook.url}', 'retry.backoff' = '10ms');
INSERT INTO hook SELECT auction FROM bids;
""")
    result = run_cli("run", str(job))
    assert result.returncode == 0, result.stderr
    assert len(hook.rows()) == 700
    assert hook.tries and all(n == 3 for n in hook.tries.values())   # 2 failures, 1 success


def test_client_error_is_one_line(tmp_path, receiver):
    _, source = bids_file(tmp_path, 10)
    hook = receiver(fail_first=100, status=404)
    job = tmp_path / "job.sql"
    job.write_text(source + f"""CREATE TABLE hook WITH (connector = 'webhook',
  endpoint = '{hook.url}');
INSERT INTO hook SELECT auction FROM bids;
""")
    result = run_cli("run", str(job))
    assert result.returncode != 0
    assert f"POST to {hook.url} failed (HTTP 404 Not Found)" in result.stderr
    assert "Traceback" not in result.stderr
    assert len(hook.tries) == 1 and list(hook.tries.values()) == [1]   # 4xx: not retried


@pytest.mark.slow   # five killed runs and a resumed one
def test_kill_five_times_every_batch_once_by_key(tmp_path, duck, receiver):
    """NATS JetStream -> tumbling count -> webhook, SIGKILLed 5 times: every window reaches
    the endpoint, and taking each Idempotency-Key once gives DuckDB's answer exactly."""
    from tests.connectors.broker_util import bids_json
    from tests.connectors.test_nats import drop_stream, make_stream, source, unique

    table = make_bids(20_000, seed=17)
    src, subject = unique("hbids")
    make_stream(src, subject, bids_json(table))
    hook = receiver()
    job = tmp_path / "job.sql"
    job.write_text(source(src, subject) + f"""CREATE TABLE counts WITH (connector = 'webhook',
  endpoint = '{hook.url}', 'batch.max_rows' = '3');
""" + tumbling())
    hit = kill_and_resume(job, tmp_path / "ck", kills=5, seed=9)
    drop_stream(src)
    assert hit >= 3
    import json

    values = [json.dumps(r).encode() for r in hook.rows()]
    assert counts_of(values) == duck_tumbling(duck, table)
