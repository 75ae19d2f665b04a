"""The job server killed with SIGKILL while two pipelines run: restarted on the same state
directory, it resumes both from their savepoints (the children took one on the parent-death
SIGTERM) and their committed output equals an uninterrupted run's."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from caudal.job import run_sql
from tests.server.conftest import Server

BIDS = ("CREATE TABLE bids WITH (connector = 'nexmark', table = 'bid', events = '6000', "
        "event_rate = '600'{pace});\n")
QUERIES = {
    "copy": "INSERT INTO out SELECT auction, bidder, price, date_time FROM bids;",
    "windows": ("INSERT INTO out SELECT window_start, auction, count(*) AS n, max(price) AS top "
                "FROM TABLE(TUMBLE(TABLE bids, DESCRIPTOR(date_time), INTERVAL '1' SECOND)) "
                "GROUP BY window_start, window_end, auction;"),
}


def script(query: str, out: Path, pace: bool) -> str:
    return (BIDS.format(pace="" if pace else ", pace = 'false'")
            + f"CREATE TABLE out WITH (connector = 'filesystem', path = '{out}', "
              f"format = 'json');\n" + query)


def rows(out: Path) -> list[str]:
    found = []
    for f in out.rglob("*.json"):
        if not f.name.startswith((".", "_")):
            found += [json.dumps(json.loads(x), sort_keys=True)
                      for x in f.read_text().splitlines() if x]
    return sorted(found)


@pytest.mark.slow
def test_sigkill_server_resumes_both_pipelines(tmp_path):
    state = tmp_path / "state"
    state.mkdir()
    s = Server(state).start()
    ids = {}
    for name, query in QUERIES.items():
        r = s.client.post("/api/v1/pipelines", json={
            "name": name, "query": script(query, tmp_path / name, pace=True),
            "parallelism": 2, "checkpoint_interval": "1s"})
        assert r.status_code == 201, r.text
        ids[name] = r.json()["id"]
    deadline = time.monotonic() + 60
    for pid in ids.values():  # past a few checkpoints, well before the end (10 s of events)
        while len(s.client.get(f"/api/v1/pipelines/{pid}/checkpoints").json()["data"]) < 2:
            assert time.monotonic() < deadline, "no checkpoint within 60s"
            time.sleep(0.2)
    s.kill()
    s.client.close()

    s2 = Server(state).start()
    try:
        for pid in ids.values():
            p = s2.wait_state(pid, {"finished", "failed"}, timeout=120)
            assert p["state"] == "finished", s2.client.get(f"/api/v1/pipelines/{pid}/errors").json()
            events = s2.client.get(f"/api/v1/pipelines/{pid}/errors").json()["events"]
            assert sum(e["kind"] == "started" for e in events) >= 2  # it was resumed
            logs = s2.client.get(f"/api/v1/pipelines/{pid}/logs").json()["lines"]
            assert any("resuming from" in x for x in logs), logs
    finally:
        s2.stop()
    for name, query in QUERIES.items():
        run_sql(script(query, tmp_path / f"{name}-ref", pace=False), parallelism=2)
        got, want = rows(tmp_path / name), rows(tmp_path / f"{name}-ref")
        assert want and got == want, name


@pytest.mark.slow
def test_server_stopped_cleanly_resumes_from_savepoint(tmp_path):
    state = tmp_path / "state"
    state.mkdir()
    s = Server(state).start()
    q = script(QUERIES["copy"], tmp_path / "copy", pace=True)
    pid = s.client.post("/api/v1/pipelines", json={"name": "copy", "query": q,
                                                   "checkpoint_interval": "1s"}).json()["id"]
    deadline = time.monotonic() + 60
    while not s.client.get(f"/api/v1/pipelines/{pid}/checkpoints").json()["data"]:
        assert time.monotonic() < deadline
        time.sleep(0.2)
    s.stop()  # SIGTERM: the server stops its children with a savepoint
    s2 = Server(state).start()
    try:
        p = s2.wait_state(pid, {"finished", "failed"}, timeout=120)
        assert p["state"] == "finished"
        logs = s2.client.get(f"/api/v1/pipelines/{pid}/logs").json()["lines"]
        assert any("resuming from savepoint" in x for x in logs), logs
    finally:
        s2.stop()
    run_sql(script(QUERIES["copy"], tmp_path / "ref", pace=False), parallelism=1)
    assert rows(tmp_path / "copy") == rows(tmp_path / "ref")
