"""A worker actor: one *slot* of the job, hosting subtask ``i`` of every vertex whose
parallelism reaches ``i`` (as Flink's slot sharing does), each subtask a thread running the
same ``SubtaskRunner`` loop as the local runtime. Channels between two subtasks of one actor
are in-process gates (a forward edge never leaves the process); channels to other actors are
remote ports (runtime.ray.channels). Checkpoint hooks are made of messages
(checkpoint.client) that the driver carries to and from the coordinator; the actor writes its
subtasks' state to the checkpoint storage itself (a local directory every node sees, or an
object store) and the messages carry only what it wrote."""

from __future__ import annotations

import os
import sys
import threading
from typing import Any

from caudal.checkpoint.client import CheckpointClient
from caudal.checkpoint.storage import CheckpointStorage
from caudal.checkpoint.writer import ChainKey, StateWriter
from caudal.connectors import python as python_connector
from caudal.errors import CaudalError
from caudal.plan.physical import Vertex
from caudal.runtime.base import SubtaskStats
from caudal.runtime.huge_pages import disable_huge_pages
from caudal.runtime.ray.channels import CREDITS, CountingGate, RemotePort
from caudal.runtime.ray.shipping import get_tables
from caudal.runtime.subtask import JobContext, SubtaskRunner
from caudal.runtime.taps import Tap
from caudal.runtime.wiring import EdgeWiring, open_source, output_edges

Key = tuple[int, int]

#: rows of a previewed vertex an actor holds between two polls of the driver (50 ms)
TAP_ROWS_PER_POLL = 50


class _Relay:
    """``sys.stdout`` of the actor's process: what a stdout sink prints goes back to the
    driver's terminal with the next poll, in order."""

    def __init__(self) -> None:
        self._parts: list[str] = []
        self._lock = threading.Lock()

    def write(self, text: str) -> int:
        with self._lock:
            self._parts.append(text)
        return len(text)

    def flush(self) -> None:
        pass

    def isatty(self) -> bool:
        return False

    def take(self) -> str:
        with self._lock:
            text, self._parts = "".join(self._parts), []
        return text


class WorkerCheckpoints:
    """What a worker needs to write its subtasks' checkpoints: where (a URI that means the
    same place on every node), the chains of the restored checkpoint its subtasks extend,
    and the storage credentials of the driver's environment (a node's own win)."""

    def __init__(self, uri: str, sync: bool, committed: int,
                 chains: dict[ChainKey, list[Any]], env: dict[str, str]):
        self.uri = uri
        self.sync = sync
        self.committed = committed
        self.chains = chains
        self.env = env

    def client(self, send: Any, vertices: dict[int, Vertex]) -> CheckpointClient:
        for name, value in self.env.items():
            os.environ.setdefault(name, value)
        storage = CheckpointStorage(self.uri, sync=self.sync)
        # compactions inside the snapshot's write: its acknowledgement names every file
        writer = StateWriter(storage, lambda v: f"[{v}] {vertices[v].name}", self.chains,
                             background=False)
        return CheckpointClient(send, writer, self.committed)


class WorkerActor:
    """Created empty (its process starts and imports caudal while the driver still plans the
    job: ``RayRuntime.prestart``), then given its subtasks by ``setup``."""

    def __init__(self, keep_huge_pages: bool = False) -> None:
        if not keep_huge_pages:
            # the process hosts this job alone, as ``caudal run``'s does: its operators pay
            # for zeroing 2 MB pages otherwise (runtime.huge_pages says why)
            disable_huge_pages()
        # what building and running subtasks imports, now rather than on the job's path
        import caudal.operators.registry  # noqa: F401
        import caudal.plan.compile  # noqa: F401

    def setup(self, vertices: list[Vertex], indexes: list[Key],
              channel_inputs: dict[Key, list[int]], settings: dict[str, Any],
              batch_rows: int, linger_s: float, restored: dict[Key, dict[str, Any]],
              checkpoints: WorkerCheckpoints | None,
              shipped: dict[str, Any] | None = None) -> None:
        self.stdout = _Relay()
        sys.stdout = self.stdout
        self.vertices = {v.id: v for v in vertices}
        hosted = [self.vertices[i] for i in dict.fromkeys(v for v, _ in indexes)]
        # python tables and collectors live in the driver: sources read shipped copies,
        # sinks write to relays that poll() hands back
        import ray

        self.relays = python_connector.install(hosted, get_tables(shipped or {}, ray.get))
        self.keys = list(indexes)
        self.job = JobContext(batch_rows=batch_rows, linger_s=linger_s,
                              settings=dict(settings), restored=dict(restored))
        self._outbox: list[Any] = []
        self._outbox_lock = threading.Lock()
        self.client = checkpoints.client(self._send, self.vertices) if checkpoints else None
        self.job.checkpoints = self.client
        self._limits = 0
        # a LIMIT output counts here; the driver ends the sources once all have their rows
        self.job.limits_open = None
        self.job.limit_reached = self._limit_reached  # type: ignore[method-assign]
        self.channel_inputs = channel_inputs
        self.gates = {key: CountingGate(len(channel_inputs[key]), CREDITS, self.job.cancel)
                      for key in self.keys if channel_inputs.get(key)}
        self.stats = {key: SubtaskStats(*key) for key in self.keys}
        self.runners: dict[Key, SubtaskRunner] = {}
        #: vertex -> this actor's tap of it, while the driver has a preview reader
        self.tapped: dict[int, Tap] = {}

    # ---- setup ------------------------------------------------------------------------------

    def connect(self, outputs: dict[Key, list[EdgeWiring]], hosts: dict[Key, Any]) -> str:
        """Wire every hosted subtask's outputs (in-process gates or remote ports) and build
        it, restoring its state; returns the node the actor runs on."""
        import ray

        ports: dict[tuple[Key, Key], RemotePort] = {}
        for key in self.keys:
            vertex_id, index = key

            def port_of(target: Key, key: Key = key) -> Any:
                if target in self.gates:
                    return self.gates[target]
                if (key, target) not in ports:
                    ports[(key, target)] = RemotePort(hosts[target], target, self.job.cancel)
                return ports[(key, target)]

            vertex = self.vertices[vertex_id]
            source, assigned = open_source(vertex, index)
            self.runners[key] = SubtaskRunner(
                self.job, vertex, index, self.gates.get(key), self.channel_inputs.get(key, []),
                output_edges(outputs[key], index, port_of), self.stats[key], source, assigned)
        # one call to every actor this one sends to: Ray opens the connection between the
        # two processes at the first call, now rather than with the job's first batch
        targets = {id(p.actor): p.actor for p in ports.values()}
        ray.get([actor.pid.remote() for actor in targets.values()])
        return ray.get_runtime_context().get_node_id()

    # ---- the loop ---------------------------------------------------------------------------

    def run(self) -> dict[str, Any]:
        """Run every hosted subtask to its end (a thread each); what the driver needs."""
        threads = [threading.Thread(target=r.run, name=f"{r.vertex.name}#{r.index}",
                                    daemon=True) for r in self.runners.values()]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        error = None
        if self.job.errors:
            e = self.job.errors[0]
            error = e if isinstance(e, CaudalError) else f"{type(e).__name__}: {e}"
        answer = self.poll()
        answer["error"] = error
        answer["bad_row_examples"] = [x for r in self.runners.values() if r.source is not None
                                      for x in r.source.metrics.bad_row_examples]
        metrics: dict[str, int] = {}
        for r in self.runners.values():
            for name, value in r.ctx.metrics.items():
                metrics[name] = metrics.get(name, 0) + value
        answer["metrics"] = metrics
        return answer

    # ---- channels ---------------------------------------------------------------------------

    def push(self, key: Key, items: list[tuple[int, int, Any]]) -> None:
        """Items of subtask ``key``'s input channels: (channel, sequence number, item)."""
        gate = self.gates[key]
        for channel, seq, item in items:
            gate.push(channel, seq, item)

    def credit(self, key: Key, channel: int, until: int) -> int:
        return self.gates[key].wait_consumed(channel, until)

    # ---- what the driver asks and tells -----------------------------------------------------

    def _send(self, message: Any) -> None:
        with self._outbox_lock:
            self._outbox.append(message)

    def _limit_reached(self) -> None:
        self._limits += 1

    def poll(self) -> dict[str, Any]:
        with self._outbox_lock:
            outbox, self._outbox = self._outbox, []
        # after the outbox: a sink's staged rows are taken with (or before) the checkpoint
        # acknowledgement sent after them
        collected = {handle: relay.take() for handle, relay in self.relays.items()}
        return {"stats": dict(self.stats), "stdout": self.stdout.take(), "outbox": outbox,
                "collected": collected,
                "limits": self._limits,
                "sink_rows": {key: sum(getattr(op, "rows", 0) for op in r.operators)
                              for key, r in self.runners.items() if r.vertex.sink is not None},
                "subtask_metrics": {key: dict(r.ctx.metrics)
                                    for key, r in self.runners.items()},
                "tapped": {vertex: tap.take() for vertex, tap in list(self.tapped.items())}}

    def tap(self, vertex: int, reading: bool) -> None:
        """Start (stop) keeping rows of ``vertex`` for the driver's preview."""
        if reading and vertex not in self.tapped:
            self.tapped[vertex] = self.job.taps.subscribe(vertex, TAP_ROWS_PER_POLL)
        elif not reading and vertex in self.tapped:
            self.job.taps.unsubscribe(vertex, self.tapped.pop(vertex))

    def deliver(self, messages: list[Any]) -> None:
        if self.client is not None:
            for m in messages:
                self.client.deliver(m)

    def drain(self) -> None:
        self.job.drain.set()

    def cancel(self) -> None:
        self.job.cancel.set()

    def pid(self) -> int:
        return os.getpid()
