"""Metrics of running jobs: a JSON snapshot of a runtime's counters, and its Prometheus form.

A job process (``caudal run``) takes a snapshot only when asked: each scrape of
``--metrics-port`` and each tick of ``--metrics-file`` (which the job server reads). Taking
one reads the subtasks' counters racily (they are plain integers the subtask threads bump),
so serving metrics costs the job nothing between scrapes.

Series follow Prometheus conventions: ``caudal_`` prefix, base units (seconds, bytes),
``_total`` for counters; labels ``pipeline``, ``operator`` (``[vertex] name``) and
``subtask``.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

from caudal.runtime.messages import WATERMARK_MAX, WATERMARK_MIN

#: seconds between two writes of a --metrics-file
FILE_INTERVAL_S = 1.0


def _state_rows(operators: list[Any]) -> int:
    total = 0
    for op in operators:
        count = getattr(op, "state_rows", None)
        if count is None:
            continue
        try:
            total += int(count())
        except Exception:  # noqa: BLE001 - read while the subtask mutates it: skip this time
            pass
    return total


def _state_bytes(coordinator: Any) -> dict[tuple[int, int], int]:
    """(vertex, subtask) -> bytes of its state files in the newest complete checkpoint (what
    restoring it reads; live state is not measured between checkpoints)."""
    kept = list(getattr(coordinator, "_kept", None) or [])
    if not kept:
        return {}
    return {(v.id, i): sum(f.file.bytes for f in sub.files())
            for v in kept[-1].vertices for i, sub in enumerate(v.subtasks)}


def snapshot(runtime: Any) -> dict[str, Any]:
    """The counters of every subtask of ``runtime`` (a LocalRuntime or the checkpointed
    wrapper around one), plus its checkpoints, as plain JSON values."""
    coordinator = getattr(runtime, "coordinator", None)
    state_bytes = _state_bytes(coordinator) if coordinator is not None else {}
    subtasks = []
    runners = list(getattr(runtime, "runners", []) or [])
    for stats, runner in zip(runtime.stats(), runners):
        vertex = runner.vertex
        metrics = dict(getattr(runner.ctx, "metrics", {}) or {})
        wm = stats.watermark
        if wm is not None and (wm <= WATERMARK_MIN or wm >= WATERMARK_MAX):
            wm = None  # no watermark yet, or the end of input
        subtasks.append({
            "vertex": vertex.id, "operator": f"[{vertex.id}] {vertex.name}",
            "subtask": stats.index, "source": vertex.source is not None,
            "sink": vertex.sink is not None,
            "rows_in": stats.rows_in, "rows_out": stats.rows_out,
            "bytes_in": getattr(stats, "bytes_in", 0), "bytes_out": getattr(stats, "bytes_out", 0),
            "batches_in": stats.batches_in,
            "backpressure_s": round(getattr(stats, "backpressure_s", 0.0), 6),
            "watermark_us": wm, "finished": stats.finished,
            "late_rows": stats.late_rows + int(metrics.get("late_rows", 0)),
            "bad_rows": stats.bad_rows_dropped,
            "state_rows": _state_rows(getattr(runner, "operators", [])),
            "state_bytes": state_bytes.get((vertex.id, stats.index)),
            "counters": {k: v for k, v in metrics.items() if isinstance(v, int | float)},
        })
    out: dict[str, Any] = {"time": time.time(), "pid": os.getpid(), "subtasks": subtasks,
                           "restarts": getattr(runtime, "restarts", 0), "checkpoints": []}
    if coordinator is not None:
        out["checkpoints"] = [
            {"epoch": h.epoch, "duration_s": round(h.duration_s, 4), "bytes": h.bytes,
             "ok": h.ok, "error": h.error} for h in list(coordinator.history)[-50:]]
        kept = list(getattr(coordinator, "_kept", None) or [])
        if kept:
            out["checkpoint_time"] = kept[-1].time
    return out


def check_metrics_file(path: str) -> None:
    """Refuse a --metrics-file that cannot be written before the job starts: once it runs,
    writes that fail are ignored (metrics never fail a job), so nothing would say so."""
    from caudal.errors import CaudalError

    tmp = f"{path}.tmp"
    try:
        with open(tmp, "w"):
            pass
        os.unlink(tmp)
    except OSError as e:
        raise CaudalError(f"--metrics-file {path}: cannot write it ({e.strerror or e})") \
            from None


class MetricsFile:
    """Writes ``snapshot(runtime)`` to ``path`` every second (atomically: a reader never sees
    half a file), and once more when the job ends."""

    def __init__(self, runtime: Any, path: str, interval_s: float = FILE_INTERVAL_S):
        self.runtime, self.path, self.interval_s = runtime, path, interval_s
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._loop, name="caudal-metrics-file",
                                       daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join(2)
        self.write()

    def write(self) -> None:
        try:
            data = json.dumps(snapshot(self.runtime), separators=(",", ":"))
            tmp = f"{self.path}.tmp"
            with open(tmp, "w") as f:
                f.write(data)
            os.replace(tmp, self.path)
        except Exception:  # noqa: BLE001 - metrics never fail a job
            pass

    def _loop(self) -> None:
        while not self.stop.wait(self.interval_s):
            self.write()


# ---- Prometheus -------------------------------------------------------------------------

#: (series, help, snapshot field, kind) per subtask
SUBTASK_SERIES = [
    ("rows_in", "Rows read by the subtask (from its source or its inputs)", "rows_in",
     "counter"),
    ("rows_out", "Rows emitted by the subtask", "rows_out", "counter"),
    ("bytes_in", "Arrow buffer bytes of the batches read", "bytes_in", "counter"),
    ("bytes_out", "Arrow buffer bytes of the batches emitted", "bytes_out", "counter"),
    ("backpressure_seconds", "Seconds the subtask waited for room downstream",
     "backpressure_s", "counter"),
    ("late_rows", "Rows dropped as late (behind the watermark)", "late_rows", "counter"),
    ("bad_rows", "Rows a source dropped as malformed", "bad_rows", "counter"),
    ("state_rows", "Rows held in operator state", "state_rows", "gauge"),
]
#: (series, help, snapshot field) per subtask, only where the snapshot has a value
OPTIONAL_SERIES = [
    ("state_bytes", "Bytes of the subtask's state in the newest complete checkpoint",
     "state_bytes"),
]


def collect(snapshots: Iterable[tuple[str, dict[str, Any]]],
            extra: Callable[[], list[Any]] | None = None) -> list[Any]:
    """Prometheus metric families for ``(pipeline, snapshot)`` pairs."""
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

    labels = ["pipeline", "operator", "subtask"]
    fams: dict[str, Any] = {}
    for name, help_, _, kind in SUBTASK_SERIES:
        cls = CounterMetricFamily if kind == "counter" else GaugeMetricFamily
        fams[name] = cls(f"caudal_{name}", help_, labels=labels)
    for name, help_, _ in OPTIONAL_SERIES:
        fams[name] = GaugeMetricFamily(f"caudal_{name}", help_, labels=labels)
    wm = GaugeMetricFamily("caudal_watermark_seconds",
                           "Event-time watermark of the subtask (Unix seconds)", labels=labels)
    lag = GaugeMetricFamily("caudal_watermark_lag_seconds",
                            "Wall-clock time minus the watermark", labels=labels)
    plabels = ["pipeline"]
    restarts = CounterMetricFamily("caudal_restarts", "Restarts of the job after a failure",
                                   labels=plabels)
    ck_dur = GaugeMetricFamily("caudal_checkpoint_duration_seconds",
                               "Duration of the newest complete checkpoint", labels=plabels)
    ck_size = GaugeMetricFamily("caudal_checkpoint_size_bytes",
                                "Size of the newest complete checkpoint", labels=plabels)
    ck_age = GaugeMetricFamily("caudal_checkpoint_age_seconds",
                               "Seconds since the newest complete checkpoint", labels=plabels)
    ck_count = CounterMetricFamily("caudal_checkpoints",
                                   "Checkpoints completed by this run", labels=plabels)
    now = time.time()
    for pipeline, snap in snapshots:
        for st in snap.get("subtasks", []):
            values = [pipeline, st["operator"], str(st["subtask"])]
            for name, _, field, _ in SUBTASK_SERIES:
                fams[name].add_metric(values, float(st.get(field) or 0))
            for name, _, field in OPTIONAL_SERIES:
                if st.get(field) is not None:
                    fams[name].add_metric(values, float(st[field]))
            if st.get("watermark_us") is not None:
                wm.add_metric(values, st["watermark_us"] / 1e6)
                lag.add_metric(values, max(0.0, now - st["watermark_us"] / 1e6))
        restarts.add_metric([pipeline], float(snap.get("restarts", 0)))
        done = [c for c in snap.get("checkpoints", []) if c.get("ok")]
        ck_count.add_metric([pipeline], float(len(done)))
        if done:
            ck_dur.add_metric([pipeline], done[-1]["duration_s"])
            ck_size.add_metric([pipeline], float(done[-1]["bytes"]))
            if snap.get("checkpoint_time"):
                ck_age.add_metric([pipeline], max(0.0, now - snap["checkpoint_time"]))
    out = list(fams.values()) + [wm, lag, restarts, ck_dur, ck_size, ck_age, ck_count]
    if extra is not None:
        out.extend(extra())
    return out


class SnapshotCollector:
    """A prometheus-client collector calling ``source()`` at each scrape."""

    def __init__(self, source: Callable[[], Iterable[tuple[str, dict[str, Any]]]],
                 extra: Callable[[], list[Any]] | None = None):
        self.source = source
        self.extra = extra

    def collect(self):
        return collect(self.source(), self.extra)


def serve_job_metrics(runtime: Any, port: int, pipeline: str, host: str = "127.0.0.1"):
    """``caudal run --metrics-port``: a Prometheus endpoint (any path) for this one job,
    served by a daemon thread. Returns the HTTP server."""
    from prometheus_client import start_http_server
    from prometheus_client.registry import CollectorRegistry

    registry = CollectorRegistry(auto_describe=False)
    registry.register(SnapshotCollector(lambda: [(pipeline, snapshot(runtime))]))
    try:
        server, _thread = start_http_server(port, addr=host, registry=registry)
    except OSError as e:
        from caudal.errors import CaudalError

        raise CaudalError(f"--metrics-port {port}: cannot listen on {host}:{port} "
                          f"({e.strerror})") from None
    return server

