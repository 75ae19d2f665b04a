"""The REST API over real HTTP against ``caudal serve`` in a subprocess."""

from __future__ import annotations

import time

import httpx

from tests.server.conftest import Server

BOUNDED = """CREATE TABLE t (counter BIGINT) WITH (connector = 'impulse', events = '1000');
SELECT counter FROM t WHERE counter < 5;"""

PACED = """CREATE TABLE bids WITH (connector = 'nexmark', table = 'bid', event_rate = '300');
CREATE TABLE out WITH (connector = 'filesystem', path = '{out}', format = 'json');
INSERT INTO out SELECT auction, price, date_time FROM bids;"""


def committed(out) -> list[str]:
    import json

    rows = []
    for f in sorted(out.rglob("*.json")):
        if not f.name.startswith((".", "_")):
            rows += [json.loads(x)["date_time"] for x in f.read_text().splitlines() if x]
    return rows


def test_bounded_pipeline_runs_to_finished(server):
    c = server.client
    r = c.post("/api/v1/pipelines", json={"name": "small", "query": BOUNDED,
                                          "parallelism": 1})
    assert r.status_code == 201, r.text
    pid = r.json()["id"]
    assert [p["id"] for p in c.get("/api/v1/pipelines").json()["data"]] == [pid]
    p = server.wait_state(pid, {"finished", "failed"})
    assert p["state"] == "finished", c.get(f"/api/v1/pipelines/{pid}/errors").json()
    assert p["name"] == "small"
    lines = c.get(f"/api/v1/pipelines/{pid}/output").json()["lines"]
    assert [x.strip() for x in lines[1:]] == ["0", "1", "2", "3", "4"]
    cps = c.get(f"/api/v1/pipelines/{pid}/checkpoints").json()["data"]
    assert cps and cps[-1]["kind"] == "final"
    m = c.get(f"/api/v1/pipelines/{pid}/metrics").json()
    assert sum(s["rows_in"] for s in m["subtasks"] if s["source"]) == 1000
    g = c.get(f"/api/v1/pipelines/{pid}/graph").json()
    assert g["vertices"] and "source t" in g["explain"]
    kinds = [e["kind"] for e in c.get(f"/api/v1/pipelines/{pid}/errors").json()["events"]]
    assert kinds[0] == "created" and kinds[-1] == "finished"
    assert c.delete(f"/api/v1/pipelines/{pid}").status_code == 200
    assert c.get(f"/api/v1/pipelines/{pid}").status_code == 404


def test_bad_input(server):
    c = server.client
    r = c.post("/api/v1/pipelines", json={"name": "bad", "query": "SELECT nope FROM t;"})
    assert r.status_code == 400
    assert "line 1" in r.json()["error"] and "\n" not in r.json()["error"]
    r = c.post("/api/v1/pipelines/validate", json={"query": "CREATE TABLE t (a INT) WITH ("
                                                             "connector = 'impulse');\nSELEC a"})
    assert r.status_code == 400 and r.json()["line"] == 2, r.text
    assert c.post("/api/v1/pipelines/validate", json={"query": BOUNDED}).status_code == 200
    r = c.post("/api/v1/pipelines", json={"query": BOUNDED})
    assert r.status_code == 422 and "name" in r.json()["error"], r.text
    r = c.post("/api/v1/pipelines", content=b"{not json", headers={
        "content-type": "application/json"})
    assert r.status_code == 422 and "JSON" in r.json()["error"]
    r = c.post("/api/v1/pipelines", json={"name": "x", "query": BOUNDED, "address": "auto"})
    assert r.status_code == 400 and "runtime 'ray'" in r.json()["error"]
    r = c.post("/api/v1/pipelines", json={"name": "x", "query": BOUNDED, "runtime": "spark"})
    assert r.status_code == 422 and "runtime" in r.json()["error"]
    r = c.post("/api/v1/pipelines", json={"name": "x", "query": BOUNDED, "parallelism": 0})
    assert r.status_code == 422 and "parallelism" in r.json()["error"]
    assert c.get("/api/v1/pipelines/nope").status_code == 404
    assert c.post("/api/v1/pipelines/nope/stop").status_code == 404
    spec = c.get("/api/v1/openapi.json").json()
    assert "/api/v1/pipelines/{pid}" in spec["paths"]


def test_stop_restart_rescale_and_metrics(server, tmp_path):
    c = server.client
    out = tmp_path / "out"
    r = c.post("/api/v1/pipelines", json={"name": "paced", "query": PACED.format(out=out),
                                          "parallelism": 2, "checkpoint_interval": "1s"})
    assert r.status_code == 201, r.text
    pid = r.json()["id"]
    server.wait_state(pid, {"running"})
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        m = c.get(f"/api/v1/pipelines/{pid}/metrics").json()
        if any(s.get("rows_in_per_s", 0) > 0 for s in m["subtasks"]) and any(
                s.get("watermark_us") for s in m["subtasks"]):
            break
        time.sleep(0.3)
    else:
        raise AssertionError(f"no rate or watermark: {m}")
    text = c.get("/metrics").text
    assert 'caudal_rows_in_total{operator="[0] source bids",pipeline="paced",subtask="0"}' in text
    assert "caudal_watermark_lag_seconds" in text
    while not c.get(f"/api/v1/pipelines/{pid}/checkpoints").json()["data"]:  # (rescale
        assert time.monotonic() < deadline                                   # checks it)
        time.sleep(0.2)
    assert c.post(f"/api/v1/pipelines/{pid}/rescale", json={"parallelism": 3}).status_code == 200
    deadline = time.monotonic() + 30
    while c.get(f"/api/v1/pipelines/{pid}/metrics").json().get("pid") in (None, m["pid"]):
        assert time.monotonic() < deadline
        time.sleep(0.2)
    assert c.get(f"/api/v1/pipelines/{pid}").json()["parallelism"] == 3
    c.post(f"/api/v1/pipelines/{pid}/stop")
    p = server.wait_state(pid, {"stopped", "failed"})
    assert p["state"] == "stopped", p
    # a stopped pipeline's last report keeps its counters, but nothing flows: rates were the
    # last running ones (the console drew a stopped graph at full speed)
    m = c.get(f"/api/v1/pipelines/{pid}/metrics").json()
    assert m["subtasks"] and sum(s["rows_in"] for s in m["subtasks"]) > 0
    assert all(s.get("rows_in_per_s", 0) == 0 == s.get("rows_out_per_s", 0) and
               s.get("backpressure_ratio", 0) == 0 for s in m["subtasks"]), m["subtasks"]
    kinds = [c["kind"] for c in c.get(f"/api/v1/pipelines/{pid}/checkpoints").json()["data"]]
    assert kinds[-1] == "savepoint"
    logs = c.get(f"/api/v1/pipelines/{pid}/logs").json()["lines"]
    assert any("savepoint" in x for x in logs)
    r = c.post(f"/api/v1/pipelines/{pid}/restart", json={"epoch": 99999})
    assert r.status_code == 400 and "no complete checkpoint 99999" in r.json()["error"]
    assert c.post(f"/api/v1/pipelines/{pid}/restart").status_code == 200
    server.wait_state(pid, {"running"})
    c.post(f"/api/v1/pipelines/{pid}/stop")
    server.wait_state(pid, {"stopped"})
    # sizes, and durations kept past the processes that took them (three runs here)
    cps = c.get(f"/api/v1/pipelines/{pid}/checkpoints").json()["data"]
    assert all(cp["bytes"] >= 0 and cp["duration_s"] is not None for cp in cps), cps
    rows = committed(out)
    assert len(rows) > 5 and len(set(rows)) == len(rows)  # each event once (unique times)


def test_rescale_refused_when_the_checkpoint_cannot_restore(server):
    c = server.client
    q = ("CREATE TABLE t (counter BIGINT) WITH (connector = 'impulse', event_rate = '100');\n"
         "SELECT counter FROM t;")
    pid = c.post("/api/v1/pipelines", json={"name": "imp", "query": q, "parallelism": 2,
                                            "checkpoint_interval": "500ms"}).json()["id"]
    deadline = time.monotonic() + 60
    while not c.get(f"/api/v1/pipelines/{pid}/checkpoints").json()["data"]:
        assert time.monotonic() < deadline
        time.sleep(0.2)
    r = c.post(f"/api/v1/pipelines/{pid}/rescale", json={"parallelism": 3})
    assert r.status_code == 400, r.text
    assert r.json()["error"].startswith("cannot rescale to parallelism 3: cannot resume table")
    assert c.get(f"/api/v1/pipelines/{pid}").json()["state"] == "running"  # left running


def test_failing_pipeline_ends_failed(server):
    c = server.client
    q = ("CREATE TABLE t (a BIGINT) WITH (connector = 'filesystem', path = 'missing-dir', "
         "format = 'json');\nSELECT a FROM t;")
    r = c.post("/api/v1/pipelines", json={"name": "broken", "query": q})
    if r.status_code == 400:  # refused at planning: also a clear answer
        assert "missing-dir" in r.json()["error"]
        return
    pid = r.json()["id"]
    p = server.wait_state(pid, {"failed", "finished"}, timeout=90)
    assert p["state"] == "failed" and p["error"] and p["restarts"] == 3, p


def test_token(tmp_path):
    s = Server(tmp_path / "state", token="s3cret").start()
    try:
        bare = httpx.Client(base_url=s.url)
        for path in ("/api/v1/pipelines", "/metrics", "/api/v1/openapi.json"):
            r = bare.get(path)
            assert r.status_code == 401 and "s3cret" not in r.text
        assert bare.get("/api/v1/pipelines",
                        headers={"Authorization": "Bearer nope"}).status_code == 401
        assert s.client.get("/api/v1/pipelines").status_code == 200
        assert bare.get("/").status_code == 200  # the console page asks for the token
    finally:
        s.stop()


def test_checkpoint_on_request(server, tmp_path):
    c = server.client
    pid = c.post("/api/v1/pipelines", json={
        "name": "hourly", "query": PACED.format(out=tmp_path / "out"),
        "checkpoint_interval": "1h"}).json()["id"]
    server.wait_state(pid, {"running"})
    deadline = time.monotonic() + 60
    while (r := c.post(f"/api/v1/pipelines/{pid}/checkpoint")).status_code == 409:
        assert "starting" in r.json()["error"] and time.monotonic() < deadline, r.text
        time.sleep(0.3)
    assert r.status_code == 202, r.text
    # complete, and its duration reported (the job's metrics file: within a second)
    while not (cps := c.get(f"/api/v1/pipelines/{pid}/checkpoints").json()["data"]) or \
            cps[0]["duration_s"] is None:
        assert time.monotonic() < deadline
        time.sleep(0.2)
    assert cps[0]["kind"] == "checkpoint"
    assert c.get(f"/api/v1/pipelines/{pid}").json()["state"] == "running"  # it goes on
    c.post(f"/api/v1/pipelines/{pid}/stop")
    server.wait_state(pid, {"stopped"})
    r = c.post(f"/api/v1/pipelines/{pid}/checkpoint")
    assert r.status_code == 409 and "stopped" in r.json()["error"]


def test_a_name_is_one_pipeline_and_every_error_is_json(server):
    """Two pipelines of one name were both accepted: /metrics then carried the same series
    (label pipeline = the name) twice, which Prometheus refuses (duplicate samples) and which
    sums two jobs' counters into one that goes backwards. Unknown paths and methods answered
    FastAPI's {"detail": …} instead of the documented {"error": …}."""
    from prometheus_client.parser import text_string_to_metric_families

    c = server.client
    q = ("CREATE TABLE t (counter BIGINT) WITH (connector = 'impulse', event_rate = '50');\n"
         "SELECT counter FROM t;")
    first = c.post("/api/v1/pipelines", json={"name": "twin", "query": q})
    assert first.status_code == 201, first.text
    pid = first.json()["id"]
    r = c.post("/api/v1/pipelines", json={"name": "twin", "query": q})
    assert r.status_code == 409 and pid in r.json()["error"], r.text
    assert len(c.get("/api/v1/pipelines").json()["data"]) == 1
    deadline = time.monotonic() + 30
    while "caudal_rows_in_total{" not in (text := c.get("/metrics").text):
        assert time.monotonic() < deadline
        time.sleep(0.2)
    samples = [(s.name, tuple(sorted(s.labels.items())))
               for f in text_string_to_metric_families(text) for s in f.samples]
    assert len(samples) == len(set(samples))
    for path, method in (("/api/v1/nothing", "GET"), ("/nothing", "GET"),
                         (f"/api/v1/pipelines/{pid}", "PUT")):
        r = c.request(method, path)
        assert r.status_code in (404, 405) and set(r.json()) == {"error"}, r.text
    assert c.delete(f"/api/v1/pipelines/{pid}").status_code == 200
    assert c.post("/api/v1/pipelines", json={"name": "twin", "query": q}).status_code == 201


def test_a_port_or_state_dir_in_use_is_one_line(server, tmp_path):
    """A port in use printed "serving on …", then uvicorn's own "ERROR: [Errno 98] …" and
    exit 3. A second server on the same --state-dir started, and would have started its own
    process for any pipeline whose process the first server replaced (two jobs on one
    checkpoint directory)."""
    import subprocess
    import sys

    from tests.server.conftest import REPO, free_port

    def serve(*args: str) -> subprocess.CompletedProcess:
        env = {k: v for k, v in __import__("os").environ.items() if k != "CAUDAL_TOKEN"}
        env["PYTHONPATH"] = str(REPO)
        return subprocess.run([sys.executable, "-m", "caudal.cli", "serve", *args], env=env,
                              capture_output=True, text=True, timeout=15)

    r = serve("--port", str(server.port), "--state-dir", str(tmp_path / "other"))
    assert r.returncode == 2, r.stderr
    [line] = r.stderr.strip().splitlines()
    assert line.startswith(f"caudal: error: cannot listen on 127.0.0.1:{server.port}"), line
    assert "--port" in line
    r = serve("--port", str(free_port()), "--state-dir", str(server.state_dir))
    assert r.returncode == 2, r.stderr
    [line] = r.stderr.strip().splitlines()
    assert "another caudal serve" in line and str(server.state_dir) in line, line
    assert server.client.get("/api/v1/health").status_code == 200


def test_rescale_to_another_graph_says_so_in_the_servers_terms(server):
    """At parallelism 1 a SELECT's source, filter and printing fuse into one vertex; at 2 the
    printing is a vertex of its own: the checkpoints cannot restore. The refusal said the
    checkpoint "was written by a different job; run with --fresh …, or give another
    --checkpoint-dir": flags of caudal run the server user has no way to give."""
    c = server.client
    q = ("CREATE TABLE bids WITH (connector = 'nexmark', table = 'bid', event_rate = '200');\n"
         "SELECT auction, price FROM bids WHERE price > 10000000;")
    pid = c.post("/api/v1/pipelines", json={"name": "fused", "query": q,
                                            "checkpoint_interval": "500ms"}).json()["id"]
    deadline = time.monotonic() + 60
    while not c.get(f"/api/v1/pipelines/{pid}/checkpoints").json()["data"]:
        assert time.monotonic() < deadline
        time.sleep(0.2)
    r = c.post(f"/api/v1/pipelines/{pid}/rescale", json={"parallelism": 2})
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    assert error.startswith("cannot rescale to parallelism 2: ") and "graph" in error, error
    for cli_only in ("--fresh", "--checkpoint-dir", "different job"):
        assert cli_only not in error, error
    assert c.get(f"/api/v1/pipelines/{pid}").json()["state"] == "running"


def test_rescale_before_the_first_checkpoint_is_refused_not_failed_later(server):
    """With no complete checkpoint there was nothing to check: the rescale was accepted, the
    stop's savepoint (of the old graph) could not restore into the new one, and the pipeline
    ended failed after 3 restarts, with an error naming caudal run's flags."""
    c = server.client
    q = ("CREATE TABLE bids WITH (connector = 'nexmark', table = 'bid', event_rate = '200');\n"
         "SELECT auction, price FROM bids WHERE price > 10000000;")
    pid = c.post("/api/v1/pipelines", json={"name": "early", "query": q,
                                            "checkpoint_interval": "1h"}).json()["id"]
    server.wait_state(pid, {"running"})
    r = c.post(f"/api/v1/pipelines/{pid}/rescale", json={"parallelism": 2})
    assert r.status_code == 409, r.text
    assert "checkpoint" in r.json()["error"] and "--" not in r.json()["error"], r.text
    deadline = time.monotonic() + 30
    while not c.get(f"/api/v1/pipelines/{pid}/metrics").json().get("pid"):  # its job runs
        assert time.monotonic() < deadline
        time.sleep(0.2)
    p = c.get(f"/api/v1/pipelines/{pid}").json()
    assert p["state"] == "running" and p["parallelism"] == 1 and p["restarts"] == 0, p
    c.post(f"/api/v1/pipelines/{pid}/stop")          # stopped, never checkpointed before:
    server.wait_state(pid, {"stopped"})             # its savepoint is checked as any other
    r = c.post(f"/api/v1/pipelines/{pid}/rescale", json={"parallelism": 2})
    assert r.status_code == 400 and "graph" in r.json()["error"], r.text


def test_a_stop_during_start_up_does_not_claim_a_savepoint(server, tmp_path):
    """A stop while the process was still starting (before its job ran: SIGTERM ends it
    at once) was recorded as "stopped with a savepoint", with no savepoint taken."""
    c = server.client
    pid = c.post("/api/v1/pipelines", json={"name": "brief", "query": PACED.format(
        out=tmp_path / "out")}).json()["id"]
    server.wait_state(pid, {"running"})
    c.post(f"/api/v1/pipelines/{pid}/stop")
    server.wait_state(pid, {"stopped"})
    said = [e["message"] for e in c.get(f"/api/v1/pipelines/{pid}/errors").json()["events"]
            if e["kind"] == "stopped"][-1]
    kinds = [cp["kind"] for cp in c.get(f"/api/v1/pipelines/{pid}/checkpoints").json()["data"]]
    assert ("savepoint" in kinds) == ("with a savepoint" in said), (said, kinds)


def test_a_zero_checkpoint_interval_is_refused_at_create(server):
    """"0s" was accepted (201), then each start of the process refused it and the pipeline
    restarted until failed, with caudal run's "--checkpoint-interval must be positive"."""
    r = server.client.post("/api/v1/pipelines", json={"name": "z", "query": BOUNDED,
                                                       "checkpoint_interval": "0s"})
    assert r.status_code == 400, r.text
    assert r.json()["error"].startswith("checkpoint_interval must be positive"), r.text
    assert server.client.get("/api/v1/pipelines").json()["data"] == []


def test_the_printed_preview_ends_when_its_pipeline_is_deleted(server):
    """The stream of a deleted pipeline's printed output went on for ever (keep-alives on a
    file that was no longer there)."""
    import threading

    c = server.client
    q = ("CREATE TABLE t (counter BIGINT) WITH (connector = 'impulse', event_rate = '20');\n"
         "SELECT counter FROM t;")
    pid = c.post("/api/v1/pipelines", json={"name": "gone", "query": q}).json()["id"]
    server.wait_state(pid, {"running"})
    lines: list[str] = []

    def read() -> None:
        with httpx.stream("GET", f"{server.url}/api/v1/pipelines/{pid}/preview",
                          timeout=30) as r:
            for line in r.iter_lines():
                lines.append(line)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    time.sleep(1)
    assert c.delete(f"/api/v1/pipelines/{pid}").status_code == 200
    reader.join(10)
    assert not reader.is_alive(), lines[-3:]
    assert "event: end" in lines, lines[-3:]
