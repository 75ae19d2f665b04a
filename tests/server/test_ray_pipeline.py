"""A pipeline on Ray through the job server, over real HTTP: ``"runtime": "ray"`` with the
cluster's address; status, metrics, the preview of a node (rows relayed by the actors), stop
with a savepoint, restart from it; every event committed once."""

from __future__ import annotations

import logging
import os
import time

import pytest

from tests.server.test_api import PACED, committed
from tests.server.test_preview import preview

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def ray_address():
    pytest.importorskip("ray")
    from ray.cluster_utils import Cluster

    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    cluster = Cluster(initialize_head=True, head_node_args={
        "num_cpus": 2, "object_store_memory": 100 * 2**20, "include_dashboard": False})
    logging.getLogger("ray").setLevel(logging.ERROR)
    yield cluster.address
    cluster.shutdown()


def test_pipeline_on_ray(server, tmp_path, ray_address):
    c = server.client
    out = tmp_path / "out"
    r = c.post("/api/v1/pipelines", json={
        "name": "on-ray", "query": PACED.format(out=out), "parallelism": 2,
        "checkpoint_interval": "1s", "runtime": "ray", "address": ray_address})
    assert r.status_code == 201, r.text
    pid = r.json()["id"]
    p = server.wait_state(pid, {"running"})
    assert (p["runtime"], p["address"]) == ("ray", ray_address)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        m = c.get(f"/api/v1/pipelines/{pid}/metrics").json()
        if any(s.get("rows_in_per_s", 0) > 0 for s in m["subtasks"]):
            break
        assert c.get(f"/api/v1/pipelines/{pid}").json()["state"] == "running", \
            c.get(f"/api/v1/pipelines/{pid}/logs").json()
        time.sleep(0.5)
    else:
        raise AssertionError(f"no rate: {m}")
    assert 'pipeline="on-ray"' in c.get("/metrics").text
    _, rows, _ = preview(server, pid, 0, 20, want_dropped=False)
    assert {"auction", "price", "date_time"} <= set(rows[0])

    c.post(f"/api/v1/pipelines/{pid}/stop")
    assert server.wait_state(pid, {"stopped", "failed"}, timeout=120)["state"] == "stopped"
    cps = c.get(f"/api/v1/pipelines/{pid}/checkpoints").json()["data"]
    assert cps[-1]["kind"] == "savepoint"
    before = len(committed(out))
    assert c.post(f"/api/v1/pipelines/{pid}/restart").status_code == 200
    old = m["pid"]
    deadline = time.monotonic() + 120
    while c.get(f"/api/v1/pipelines/{pid}/metrics").json().get("pid") in (None, old):
        assert time.monotonic() < deadline
        time.sleep(0.5)
    c.post(f"/api/v1/pipelines/{pid}/stop")
    assert server.wait_state(pid, {"stopped", "failed"}, timeout=120)["state"] == "stopped"
    rows = committed(out)
    assert len(rows) > before > 5 and len(set(rows)) == len(rows)
    events = [e["message"] for e in c.get(f"/api/v1/pipelines/{pid}/errors").json()["events"]]
    assert any("on Ray" in e for e in events)
