"""The job server's HTTP side: REST API under /api/v1 (OpenAPI at /api/v1/openapi.json),
Prometheus /metrics, and the web console (static files) at /.

Errors answer ``{"error": "<one line>"}``: invalid SQL 400 with the CLI's message (``line N,
column M: …``), unknown pipeline 404, malformed body 422 naming the field, missing or wrong
token 401.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import time
from pathlib import Path
from typing import Any, Literal

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response, StreamingResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from caudal import __version__
from caudal.checkpoint import DEFAULT_INTERVAL
from caudal.errors import CaudalError
from caudal.server.preview import PREVIEW_TAIL, node_events, printed_events
from caudal.server.store import Store
from caudal.server.supervisor import Supervisor, tail_lines
from caudal.server.tap_socket import socket_path

STATIC = Path(__file__).parent / "static"


class PipelineIn(BaseModel):
    name: str = Field(min_length=1, max_length=200)
    query: str = Field(min_length=1, description="a whole SQL script: DDL and INSERTs/SELECTs")
    parallelism: int = Field(1, ge=1, le=256)
    checkpoint_interval: str = Field(DEFAULT_INTERVAL, description="time between checkpoints")
    runtime: Literal["local", "ray"] = Field(
        "local", description="local: threads of the pipeline's own process; ray: actors of a "
                             "Ray cluster (docs/ray.md)")
    address: str | None = Field(None, max_length=500,
                                description="with runtime ray: the cluster (auto, HOST:PORT or "
                                            "ray://…); without it each run starts a local Ray")


class ValidateIn(BaseModel):
    query: str
    parallelism: int = Field(1, ge=1, le=256)


class RestartIn(BaseModel):
    epoch: int | None = Field(None, ge=1, description="the checkpoint to restore (default: "
                                                      "the newest)")


class RescaleIn(BaseModel):
    parallelism: int = Field(ge=1, le=256)


class ApiError(Exception):
    def __init__(self, status: int, message: str, **extra: Any):
        self.status, self.message, self.extra = status, message, extra


def one_line(e: CaudalError) -> str:
    """The CLI's error line (cli.main prints it after ``caudal: error: ``)."""
    return " ".join(str(e).split())


def compile_query(query: str, parallelism: int):
    from caudal.job import compile_sql

    try:
        return compile_sql(query, parallelism)
    except CaudalError as e:
        raise ApiError(400, one_line(e), line=e.line, column=e.col) from None
    except Exception as e:  # noqa: BLE001 - a planner bug: one line, no traceback
        first = (str(e).strip().splitlines() or [""])[0]
        raise ApiError(400, f"internal error: {type(e).__name__}: {first}") from None


def check_rescale(query: str, parallelism: int, checkpoint_dir: Path, running: bool) -> None:
    """400 now rather than a failed pipeline later: the newest checkpoint must restore at
    the new parallelism (same job graph, source partitions that still exist). A running
    pipeline with no complete checkpoint yet is refused (409): its stop takes a savepoint
    of the old graph that nothing has checked against the new one."""
    compiled = compile_query(query, parallelism)
    from caudal.checkpoint.errors import OtherJobCheckpoint
    from caudal.runtime.supervisor import check_restorable

    try:
        checked = checkpoint_dir.exists() and check_restorable(compiled.graph,
                                                               str(checkpoint_dir))
        if running and not checked:
            raise ApiError(409, f"cannot rescale to parallelism {parallelism} yet: the pipeline "
                                f"has no complete checkpoint to check the new parallelism "
                                f"against; take one (POST …/checkpoint, the console's "
                                f"Checkpoint now) and rescale again")
    except OtherJobCheckpoint:
        raise ApiError(400, f"cannot rescale to parallelism {parallelism}: the job plans into "
                            f"another dataflow graph at {parallelism} (compare its graph with "
                            f"`caudal explain -p {parallelism}`), into which its checkpoints "
                            f"cannot restore; to start over at {parallelism}, delete the "
                            f"pipeline and create it again") from None
    except CaudalError as e:
        raise ApiError(400, f"cannot rescale to parallelism {parallelism}: {one_line(e)}"
                       ) from None


def graph_json(graph) -> dict[str, Any]:
    vertices = []
    for v in graph.vertices:
        vertices.append({
            "id": v.id, "name": v.name, "label": f"[{v.id}] {v.name}",
            "parallelism": v.parallelism,
            "operators": [getattr(op, "label", type(op).__name__) for op in v.operators],
            "source": v.source.name if v.source is not None else None,
            "sink": v.sink.name if v.sink is not None else None})
    edges = [{"src": e.src, "dst": e.dst, "partitioning": e.partitioning, "keys": list(e.keys)}
             for e in graph.edges]
    return {"vertices": vertices, "edges": edges, "explain": graph.explain()}


class Rates:
    """Per-subtask rates from two consecutive metrics snapshots of a pipeline."""

    def __init__(self):
        self.seen: dict[str, tuple[dict, dict | None]] = {}

    def enrich(self, pid: str, snap: dict[str, Any]) -> dict[str, Any]:
        cur, prev = self.seen.get(pid, (None, None))
        if cur is None or snap["time"] != cur["time"]:
            if cur is not None and cur.get("pid") == snap.get("pid"):
                prev = cur
            elif cur is not None:
                prev = None
            self.seen[pid] = (snap, prev)
        else:
            snap = cur
        out = json.loads(json.dumps(snap))
        if prev is not None:
            dt = max(snap["time"] - prev["time"], 1e-6)
            before = {(s["vertex"], s["subtask"]): s for s in prev["subtasks"]}
            for s in out["subtasks"]:
                p = before.get((s["vertex"], s["subtask"]))
                if p is None:
                    continue
                s["rows_in_per_s"] = max(0.0, (s["rows_in"] - p["rows_in"]) / dt)
                s["rows_out_per_s"] = max(0.0, (s["rows_out"] - p["rows_out"]) / dt)
                s["backpressure_ratio"] = min(1.0, max(
                    0.0, (s["backpressure_s"] - p["backpressure_s"]) / dt))
        now = time.time()
        for s in out["subtasks"]:
            wm = s.get("watermark_us")
            s["watermark_lag_s"] = max(0.0, now - wm / 1e6) if wm is not None else None
        return out


def create_app(state_dir: Path, token: str | None = None) -> FastAPI:
    state_dir.mkdir(parents=True, exist_ok=True)
    store = Store(state_dir / "server.sqlite")
    supervisor = Supervisor(store, state_dir)
    rates = Rates()
    graphs: dict[tuple[str, int], dict[str, Any]] = {}

    from contextlib import asynccontextmanager

    @asynccontextmanager
    async def lifespan(app):
        supervisor.start()
        yield
        await asyncio.to_thread(supervisor.shutdown)

    app = FastAPI(title="caudal job server", version=__version__, lifespan=lifespan,
                  openapi_url="/api/v1/openapi.json", docs_url="/api/v1/docs", redoc_url=None)
    app.state.supervisor = supervisor
    app.state.store = store

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, e: ApiError):
        return JSONResponse({"error": e.message, **e.extra}, status_code=e.status)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, e: StarletteHTTPException):
        # an unknown path or method: the same {"error"} shape as every other refusal
        what = {404: f"no such path {request.url.path}",
                405: f"{request.method} is not allowed on {request.url.path}"}
        return JSONResponse({"error": what.get(e.status_code, str(e.detail))},
                            status_code=e.status_code, headers=e.headers)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, e: RequestValidationError):
        parts = []
        for err in e.errors():
            loc = [str(x) for x in err.get("loc", ()) if x != "body"]
            if err.get("type") == "json_invalid":
                parts.append(f"the body is not valid JSON ({err.get('msg')})")
            else:
                parts.append(f"field {'.'.join(loc) or 'body'!r}: {err.get('msg')}")
        fields = [".".join(str(x) for x in err.get("loc", ()) if x != "body")
                  for err in e.errors()]
        return JSONResponse({"error": "; ".join(parts), "fields": fields}, status_code=422)

    @app.middleware("http")
    async def _auth(request: Request, call_next):
        path = request.url.path
        if token and (path.startswith("/api/") or path == "/metrics") and \
                path != "/api/v1/health":
            given = request.headers.get("authorization", "")
            given = given[7:] if given.lower().startswith("bearer ") else \
                request.query_params.get("token", "")
            if not hmac.compare_digest(given.encode(), token.encode()):
                return JSONResponse({"error": "unauthorized: give the server's token as "
                                              "'Authorization: Bearer <token>'"},
                                    status_code=401,
                                    headers={"WWW-Authenticate": "Bearer"})
        return await call_next(request)

    def _get(pid: str) -> dict[str, Any]:
        p = store.get(pid)
        if p is None:
            raise ApiError(404, f"no pipeline {pid!r}")
        return p

    def _view(p: dict[str, Any]) -> dict[str, Any]:
        out = {k: p[k] for k in ("id", "name", "state", "parallelism", "query", "error",
                                 "restarts", "pid", "created", "updated",
                                 "checkpoint_interval", "runtime", "address")}
        out["desired"] = p["desired"]
        return out

    def _metrics(pid: str) -> dict[str, Any] | None:
        snap = supervisor.read_metrics(pid)
        return rates.enrich(pid, snap) if snap is not None else None

    # ---- pipelines ------------------------------------------------------------------------

    @app.post("/api/v1/pipelines/validate", tags=["pipelines"])
    async def validate(body: ValidateIn):
        """Plan the script without running it: 200 with the dataflow graph, or 400 with the
        one-line error (``line N, column M: …``)."""
        compiled = await asyncio.to_thread(compile_query, body.query, body.parallelism)
        return {"ok": True, "graph": graph_json(compiled.graph)}

    @app.post("/api/v1/pipelines", status_code=201, tags=["pipelines"])
    async def create(body: PipelineIn):
        """Validate and start a pipeline; answers its id."""
        from caudal.durations import parse_duration_s

        try:
            interval = parse_duration_s(body.checkpoint_interval, "checkpoint_interval")
        except CaudalError as e:
            raise ApiError(400, one_line(e)) from None
        if interval <= 0:  # (each start of its process would refuse it, until failed)
            raise ApiError(400, f"checkpoint_interval must be positive, not "
                                f"{body.checkpoint_interval!r} (e.g. 10s or 500ms)")
        if body.address and body.runtime != "ray":
            raise ApiError(400, "address is the Ray cluster's: give it with runtime 'ray'")
        compiled = await asyncio.to_thread(compile_query, body.query, body.parallelism)
        # the name is the pipeline's label in /metrics: two of one name would be one series
        # twice (no await from this check to the insert: requests cannot interleave)
        same = [p["id"] for p in store.all() if p["name"] == body.name]
        if same:
            raise ApiError(409, f"a pipeline named {body.name!r} exists (id {same[0]}): "
                                f"give another name, or delete it first")
        pid = store.create(body.name, body.query, body.parallelism, body.checkpoint_interval,
                           body.runtime, body.address)
        graphs[(pid, body.parallelism)] = graph_json(compiled.graph)
        return {"id": pid}

    @app.get("/api/v1/pipelines", tags=["pipelines"])
    async def list_pipelines():
        return {"data": [_view(p) for p in store.all()]}

    @app.get("/api/v1/pipelines/{pid}", tags=["pipelines"])
    async def get_pipeline(pid: str):
        return _view(_get(pid))

    @app.post("/api/v1/pipelines/{pid}/stop", tags=["pipelines"])
    async def stop(pid: str):
        """Stop with a savepoint (the job's SIGTERM); restart resumes from it."""
        _get(pid)
        supervisor.request_stop(pid)
        return _view(_get(pid))

    @app.post("/api/v1/pipelines/{pid}/restart", tags=["pipelines"])
    async def restart(pid: str, body: RestartIn | None = None):
        """Start a stopped, finished or failed pipeline again from its newest checkpoint (or
        the complete checkpoint ``epoch``)."""
        p = _get(pid)
        if p["pid"] and p["desired"] == "running" and p["state"] == "running":
            raise ApiError(409, f"pipeline {pid} is running; stop it first")
        epoch = body.epoch if body is not None else None
        if epoch is not None:
            from caudal.checkpoint.listing import describe_checkpoints

            d = supervisor.checkpoint_dir(pid)
            epochs = [c["epoch"] for c in describe_checkpoints(str(d))] if d.exists() else []
            if epoch not in epochs:
                raise ApiError(400, f"no complete checkpoint {epoch} (complete: "
                                    f"{', '.join(map(str, epochs)) or 'none'})")
        supervisor.request_start(pid, epoch)
        return _view(_get(pid))

    @app.post("/api/v1/pipelines/{pid}/checkpoint", status_code=202, tags=["pipelines"])
    async def checkpoint_now(pid: str):
        """Take a checkpoint now, without waiting for the interval; the job goes on. It
        appears under ``/checkpoints`` once complete."""
        p = _get(pid)
        why = supervisor.request_checkpoint(pid) if p["state"] == "running" else \
            f"it is {p['state']}"
        if why is not None:
            raise ApiError(409, f"cannot checkpoint pipeline {pid} now: {why}")
        return {"requested": True}

    @app.post("/api/v1/pipelines/{pid}/rescale", tags=["pipelines"])
    async def rescale(pid: str, body: RescaleIn):
        """Stop with a savepoint and start again at the new parallelism."""
        p = _get(pid)
        await asyncio.to_thread(check_rescale, p["query"], body.parallelism,
                                supervisor.checkpoint_dir(pid), p["state"] == "running")
        supervisor.request_rescale(pid, body.parallelism)
        return _view(_get(pid))

    @app.delete("/api/v1/pipelines/{pid}", tags=["pipelines"])
    async def delete(pid: str):
        """Stop (with a savepoint) and forget a pipeline, its checkpoints and logs."""
        _get(pid)
        await asyncio.to_thread(supervisor.delete, pid)
        return {"deleted": pid}

    @app.get("/api/v1/pipelines/{pid}/graph", tags=["pipelines"])
    async def graph(pid: str):
        """The physical dataflow graph (``caudal explain``)."""
        p = _get(pid)
        key = (pid, p["parallelism"])
        if key not in graphs:
            compiled = await asyncio.to_thread(compile_query, p["query"], p["parallelism"])
            graphs[key] = graph_json(compiled.graph)
        return graphs[key]

    @app.get("/api/v1/pipelines/{pid}/metrics", tags=["pipelines"])
    async def metrics(pid: str):
        """Per-operator and subtask counters of the running job, with rates (of a pipeline
        whose process has ended: its last counters, and rates of 0)."""
        p = _get(pid)
        m = _metrics(pid) or {"subtasks": [], "checkpoints": []}
        if not p["pid"]:  # nothing flows: its last report's rates are not the present's
            for s in m["subtasks"]:
                s.update(rows_in_per_s=0.0, rows_out_per_s=0.0, backpressure_ratio=0.0)
        return m

    @app.get("/api/v1/pipelines/{pid}/checkpoints", tags=["pipelines"])
    async def checkpoints(pid: str):
        """Complete checkpoints (size, kind, per operator state) with their durations."""
        _get(pid)
        from caudal.checkpoint.listing import describe_checkpoints

        d = supervisor.checkpoint_dir(pid)
        items = await asyncio.to_thread(describe_checkpoints, str(d)) if d.exists() else []
        supervisor.read_metrics(pid)
        durations = store.durations(pid)
        for c in items:
            c["duration_s"] = durations.get(c["epoch"])
        return {"data": items}

    @app.get("/api/v1/pipelines/{pid}/errors", tags=["pipelines"])
    async def errors(pid: str):
        """The last error, and the pipeline's history (starts, stops, errors, restarts)."""
        p = _get(pid)
        return {"error": p["error"], "events": store.events(pid)}

    @app.get("/api/v1/pipelines/{pid}/logs", tags=["pipelines"])
    async def logs(pid: str, tail: int = 200):
        """The last lines the job wrote to stderr."""
        _get(pid)
        return {"lines": tail_lines(supervisor.dir(pid) / "stderr.log", max(0, tail))}

    @app.get("/api/v1/pipelines/{pid}/output", tags=["pipelines"])
    async def output(pid: str, tail: int = PREVIEW_TAIL):
        """The last rows the job printed (its SELECTs, to stdout)."""
        _get(pid)
        return {"lines": tail_lines(supervisor.dir(pid) / "output.log", max(0, tail))}

    @app.get("/api/v1/pipelines/{pid}/preview", tags=["pipelines"])
    async def preview(pid: str, request: Request, node: int | None = None):
        """Live output (Server-Sent Events). Without ``node``: each line the job prints (its
        SELECTs), starting with the last few. With ``node`` (a vertex id of the graph): the
        rows that node emits (a sink: the rows it writes), as ``rows`` events of at most a few
        hundred rows each, with how many rows the preview dropped to keep up; the job never
        waits for the preview."""
        p = _get(pid)
        if node is None:
            events = printed_events(supervisor.dir(pid) / "output.log", request)
        else:
            names = {v["id"]: v["label"] for v in (await graph(pid))["vertices"]}
            if node not in names:
                raise ApiError(404, f"no node {node} in pipeline {pid} (nodes: "
                                    f"{', '.join(names.values())})")
            if p["state"] != "running":
                raise ApiError(409, f"pipeline {pid} is {p['state']}: a node's rows are "
                                    f"previewed while it runs")

            def running() -> bool:
                q = store.get(pid)
                return q is not None and q["state"] == "running"

            events = node_events(socket_path(supervisor.dir(pid)), node, names[node], request,
                                 running)
        return StreamingResponse(events, media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache"})

    # ---- Prometheus -----------------------------------------------------------------------

    def _prometheus() -> bytes:
        from prometheus_client import generate_latest
        from prometheus_client.core import GaugeMetricFamily
        from prometheus_client.registry import CollectorRegistry

        from caudal.server.metrics import SnapshotCollector

        pipelines = store.all()

        def snapshots():
            for p in pipelines:
                if p["state"] != "running":
                    continue
                try:
                    snap = json.loads((supervisor.dir(p["id"]) / "metrics.json").read_text())
                except (OSError, ValueError):
                    continue
                snap["restarts"] = max(snap.get("restarts", 0), p["restarts"])
                yield p["name"], snap

        def states():
            fam = GaugeMetricFamily("caudal_pipelines", "Pipelines by state",
                                    labels=["state"])
            for s in ("created", "running", "finished", "failed", "stopped"):
                fam.add_metric([s], float(sum(p["state"] == s for p in pipelines)))
            return [fam]

        registry = CollectorRegistry(auto_describe=False)
        registry.register(SnapshotCollector(snapshots, states))
        return generate_latest(registry)

    @app.get("/metrics", include_in_schema=False)
    async def prometheus():
        from prometheus_client import CONTENT_TYPE_LATEST

        body = await asyncio.to_thread(_prometheus)
        return Response(body, media_type=CONTENT_TYPE_LATEST)

    @app.get("/api/v1/health", tags=["server"])
    async def health():
        return {"ok": True, "version": __version__, "auth": bool(token)}

    # ---- console --------------------------------------------------------------------------

    @app.get("/", include_in_schema=False)
    async def index():
        return FileResponse(STATIC / "index.html")

    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    return app
