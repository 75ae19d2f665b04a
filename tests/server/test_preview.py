"""Live preview of any node over real HTTP: ``GET /api/v1/pipelines/{id}/preview?node=N``
streams the rows that node emits (a sink node: the rows it writes) as Server-Sent Events,
with how many rows the preview dropped to keep up."""

from __future__ import annotations

import json
import time

QUERY = """CREATE TABLE bids WITH (connector = 'nexmark', table = 'bid', event_rate = '20000');
CREATE TABLE out WITH (connector = 'blackhole');
INSERT INTO out SELECT auction, count(*) * 2 AS doubled, window_start
FROM TABLE(TUMBLE(TABLE bids, DESCRIPTOR(date_time), INTERVAL '1' SECOND))
WHERE price % 3 = 0 GROUP BY auction, window_start, window_end;"""


def sse_events(response, until: float):
    """(event, data) pairs of a streaming SSE response, until the monotonic time ``until``."""
    event = None
    for line in response.iter_lines():
        if line.startswith("event: "):
            event = line[7:]
        elif line.startswith("data: "):
            yield event, json.loads(line[6:])
        if time.monotonic() > until:
            return


def preview(server, pid: str, node: int, rows_wanted: int = 300, want_dropped: bool = True):
    c = server.client
    rows, dropped, first = [], 0, None
    with c.stream("GET", f"/api/v1/pipelines/{pid}/preview", params={"node": node},
                  timeout=60) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith(
            "text/event-stream")
        for event, data in sse_events(r, time.monotonic() + 60):
            if first is None:
                first = (event, data)
            if event == "rows":
                rows += data["rows"]
                dropped += data["dropped"]
                if len(rows) >= rows_wanted and (dropped or not want_dropped):
                    break
    return first, rows, dropped


def test_preview_of_the_source_and_of_the_sink(server):
    c = server.client
    pid = c.post("/api/v1/pipelines", json={"name": "taps", "query": QUERY,
                                            "parallelism": 2}).json()["id"]
    server.wait_state(pid, {"running"})
    g = c.get(f"/api/v1/pipelines/{pid}/graph").json()
    source = next(v["id"] for v in g["vertices"] if v["source"])
    sink = next(v["id"] for v in g["vertices"] if v["sink"])

    assert source != sink
    first, rows, dropped = preview(server, pid, source)
    assert first == ("node", {"node": source, "name": next(
        v["label"] for v in g["vertices"] if v["id"] == source)})
    assert "auction" in rows[0]  # what the node sends on: here partial window counts
    # 20 000 rows/s is more than the preview keeps (500 rows per half second): it says so
    assert dropped > 0

    _, rows, _ = preview(server, pid, sink, 5, want_dropped=False)
    assert set(rows[0]) == {"auction", "doubled", "window_start"}
    assert all(r["doubled"] % 2 == 0 and r["doubled"] > 0 for r in rows)

    r = c.get(f"/api/v1/pipelines/{pid}/preview", params={"node": 99})
    assert r.status_code == 404 and "no node 99" in r.json()["error"]
    # the job ran on while previewed, and a reader gone leaves nothing behind
    m = c.get(f"/api/v1/pipelines/{pid}/metrics").json()
    assert sum(s["rows_in"] for s in m["subtasks"] if s["source"]) > 10_000
    c.post(f"/api/v1/pipelines/{pid}/stop")
    server.wait_state(pid, {"stopped"})
    r = c.get(f"/api/v1/pipelines/{pid}/preview", params={"node": sink})
    assert r.status_code == 409 and "stopped" in r.json()["error"]
