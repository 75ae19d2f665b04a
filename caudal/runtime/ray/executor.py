"""The Ray executor: deploys the physical graph over worker actors, one per slot (subtask
``i`` of every vertex shares slot ``i``), spread over the cluster's nodes; wires their
channels, and runs the driver's loop: it relays checkpoint
messages between the coordinator (in the driver) and the subtasks, prints what stdout sinks
print, ends the sources once every LIMIT output has its rows, and turns a dead actor or node
into a RuntimeFailure, from which the supervisor (runtime.supervisor) restarts the job from
its last complete checkpoint on the nodes that are left. Checkpoint state never passes
through the driver: each worker writes its subtasks' state to the checkpoint storage and the
driver carries small acknowledgements (paths, sizes, offsets)."""

from __future__ import annotations

import os
import sys
import threading
import time
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

from caudal.checkpoint.messages import CheckpointStatus
from caudal.connectors import python as python_connector
from caudal.connectors.registry import prepare_sinks
from caudal.errors import CaudalError, RuntimeFailure
from caudal.plan.physical import PhysicalGraph, Vertex
from caudal.runtime.base import JobResult, Runtime, SubtaskStats
from caudal.runtime.huge_pages import HUGE_PAGES_ENV
from caudal.runtime.ray.cluster import connect, ray_module
from caudal.runtime.ray.shipping import check_shippable, put_tables
from caudal.runtime.subtask import JobContext
from caudal.runtime.wiring import wire

Key = tuple[int, int]

#: seconds between two polls of the actors (stats, checkpoint messages, stdout)
POLL_S = 0.05
#: threads of a worker started before the plan is known: enough for a job whose workers each
#: read a few shuffles from every slot (deploy starts its own workers if it needs more)
PRESTART_THREADS = 8
PRESTART_CHANNELS_PER_SLOT = 8


def _concurrency(slots: int) -> int:
    return PRESTART_THREADS + PRESTART_CHANNELS_PER_SLOT * slots


#: environment variables of the driver that say how to reach checkpoint storage; workers
#: get them unless their node sets its own
STORAGE_ENV = ("AWS_", "GOOGLE_", "AZURE_", "HADOOP_", "ARROW_S3_", "FSSPEC_")


@dataclass
class _SubtaskView:
    """What the status line reads of a subtask (the local runtime's SubtaskRunner has the
    same attributes)."""

    vertex: Vertex
    index: int
    source: Any
    operators: list[Any] = field(default_factory=list)
    #: ``ctx.metrics``: the operators' counters, as of the last poll
    ctx: Any = field(default_factory=lambda: SimpleNamespace(metrics={}))


@dataclass
class _Rows:
    rows: int = 0


class RayRuntime(Runtime):
    def __init__(self, batch_rows: int = 65536, linger_s: float = 0.005,
                 channel_capacity: int = 8, address: str | None = None):
        self.job = JobContext(batch_rows=batch_rows, linger_s=linger_s)
        self.channel_capacity = channel_capacity
        self.address = address
        self.graph: PhysicalGraph | None = None
        #: the worker actors (slots), and which hosts each subtask
        self.workers: list[Any] = []
        self.actors: dict[tuple[int, int], Any] = {}
        self.placement: dict[tuple[int, int], str] = {}
        self._stats: dict[tuple[int, int], SubtaskStats] = {}
        self._views: dict[tuple[int, int], _SubtaskView] = {}
        self._done = threading.Event()
        #: workers started before the job was planned (prestart): node, threads, actor
        self._warm: list[tuple[str, int, Any]] = []
        #: handle -> the object store reference of an in-memory table the workers read
        #: (shipping.put_tables), held for the job and its restarts
        self._tables: dict[str, Any] = {}

    def fresh(self) -> RayRuntime:
        runtime = RayRuntime(self.job.batch_rows, self.job.linger_s, self.channel_capacity,
                             self.address)
        runtime.job.taps = self.job.taps
        runtime._tables = self._tables  # a restart puts no table again
        return runtime

    # ---- deploy -----------------------------------------------------------------------------

    def plan(self, graph: PhysicalGraph) -> list[tuple[dict[str, Any], list[Key]]]:
        """The worker actors of the job and where they go: as many slots as the widest
        vertex's parallelism (subtask ``i`` of every vertex in slot ``i mod slots``), dealt
        round-robin over the cluster's live nodes (a soft pin: Ray may move a slot whose
        node is full or gone)."""
        slots = max(v.parallelism for v in graph.vertices)
        hosted: list[list[Key]] = [[] for _ in range(slots)]
        for v in graph.vertices:
            for i in range(v.parallelism):
                hosted[i % slots].append((v.id, i))
        return list(zip(self._placement(slots), hosted))

    def _placement(self, slots: int) -> list[dict[str, Any]]:
        """The node of each slot: round-robin over the live nodes, the head first."""
        connect(self.address)
        ray = ray_module()
        nodes = sorted((n for n in ray.nodes() if n.get("Alive")),
                       key=lambda n: (not n.get("Resources", {}).get(
                           "node:__internal_head__"), n["NodeManagerAddress"],
                           n.get("NodeManagerPort", 0), n["NodeID"]))
        return [nodes[s % len(nodes)] for s in range(slots)]

    def explain_plan(self, graph: PhysicalGraph) -> str:
        """``caudal explain --runtime ray``: each worker actor, its node and its subtasks."""
        lines = ["Placement on Ray:"]
        for slot, (node, keys) in enumerate(self.plan(graph)):
            names = ", ".join(f"{graph.vertex(v).name}#{i}" for v, i in keys)
            lines.append(f"  worker {slot} on node {node['NodeManagerAddress']} "
                         f"({node['NodeID'][:8]}): {names}")
        return "\n".join(lines)

    def prestart(self, parallelism: int) -> None:
        """Start the workers a job of this parallelism will have, before it is planned: a
        worker's process start and imports (seconds) then overlap the driver's planning.
        ``deploy`` takes them if the plan needs the same slots, else starts its own."""
        self._warm = self._start_workers(self._placement(parallelism),
                                         [_concurrency(parallelism)] * parallelism)

    def _start_workers(self, nodes: list[dict[str, Any]], concurrency: list[int]) -> list[Any]:
        ray = ray_module()
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        from caudal.runtime.ray.actor import WorkerActor
        from caudal.runtime.ray.channels import worker_env

        remote = ray.remote(WorkerActor)
        keep_huge_pages = os.environ.get(HUGE_PAGES_ENV) == "1"
        workers = []
        for node, threads in zip(nodes, concurrency):
            workers.append((node["NodeID"], threads, remote.options(
                num_cpus=0, max_concurrency=threads, max_restarts=0,
                runtime_env={"env_vars": worker_env()},
                scheduling_strategy=NodeAffinitySchedulingStrategy(node["NodeID"], soft=True),
            ).remote(keep_huge_pages)))
        return workers

    def deploy(self, graph: PhysicalGraph, restore_from: str | None = None) -> None:
        connect(self.address)
        ray = ray_module()
        from caudal.runtime.ray.actor import WorkerCheckpoints

        self.graph = graph
        try:  # pickled once for every actor (with the users' functions it carries)
            vertices = ray.put(graph.vertices)
        except Exception:  # noqa: BLE001 - say which function cannot travel
            check_shippable(graph, ray.cloudpickle.dumps)
            raise
        if self.job.checkpoints is None:
            # as the local runtime: without checkpoints a job starts from scratch (with them
            # the supervisor prepares the sinks once, knowing whether the job resumes)
            prepare_sinks(graph, resuming=False)
        self.job.settings = dict(graph.settings)
        wiring = wire(graph)
        plan = self.plan(graph)
        hosted = [keys for _, keys in plan]
        for v in graph.vertices:
            for i in range(v.parallelism):
                self._stats[(v.id, i)] = SubtaskStats(v.id, i)
                self._views[(v.id, i)] = _SubtaskView(
                    v, i, v.source, [_Rows()] if v.sink is not None else [])
        inputs = [{k: wiring.channel_inputs[k] for k in keys if k in wiring.channel_inputs}
                  for keys in hosted]
        try:  # the in-memory tables each slot's sources read, put in the object store once
            shipments = [put_tables(python_connector.shipment(
                [v for v in graph.vertices if any(k[0] == v.id for k in keys)]),
                ray.put, self._tables) for keys in hosted]
        except CaudalError:
            self._kill(actor for _, _, actor in self._warm)
            self._warm = []
            raise
        # a threaded actor runs a call per input channel at once (credits), and a few more
        needed = [8 + sum(len(c) for c in ins.values()) for ins in inputs]
        warm, self._warm = self._warm, []
        if [n for n, _, _ in warm] == [node["NodeID"] for node, _ in plan] and \
                all(threads >= n for (_, threads, _), n in zip(warm, needed)):
            self.workers = [actor for _, _, actor in warm]
        else:
            self._kill(actor for _, _, actor in warm)
            self.workers = [a for _, _, a in self._start_workers([n for n, _ in plan], needed)]
        setups = []
        for actor, keys, ins, tables in zip(self.workers, hosted, inputs, shipments):
            setups.append(actor.setup.remote(
                vertices, keys, ins, graph.settings, self.job.batch_rows, self.job.linger_s,
                {k: self.job.restored[k] for k in keys if k in self.job.restored},
                self._worker_checkpoints(WorkerCheckpoints, keys),
                tables))
            for k in keys:
                self.actors[k] = actor
        try:
            ray.get(setups)  # (a threaded actor may start the next call before this one ends)
            nodes = ray.get([a.connect.remote({k: wiring.outputs[k] for k in keys},
                                              self.actors)
                             for a, keys in zip(self.workers, hosted)])
        except Exception as e:  # noqa: BLE001 - an actor that cannot start (bad options …)
            self._kill_all()
            raise self._failure(e) from None
        for keys, node in zip(hosted, nodes):
            for k in keys:
                self.placement[k] = node
        # the live preview's readers are in this process; the rows come from the actors
        self.job.taps.listener = self._tap_changed
        for vertex in list(self.job.taps.active):
            self._tap_changed(vertex, True)

    def _tap_changed(self, vertex: int, reading: bool) -> None:
        """A vertex gained its first preview reader (or lost its last): the actors hosting
        its subtasks start (stop) sending its rows with their polls."""
        for actor in {id(a): a for (v, _), a in self.actors.items() if v == vertex}.values():
            actor.tap.remote(vertex, reading)

    def _worker_checkpoints(self, cls: Any, keys: list[Key]) -> Any:
        """Where and how a worker writes its subtasks' checkpoints (None without them)."""
        cp = self.job.checkpoints
        if cp is None:
            return None
        env = {k: v for k, v in os.environ.items() if k.startswith(STORAGE_ENV)}
        return cls(cp.storage.location, cp.storage.sync, cp.committed_epoch(),
                   cp.chains_of(keys), env)

    # ---- run ----------------------------------------------------------------------------------

    def run(self) -> JobResult:
        ray = ray_module()
        started = time.monotonic()
        runs = {a.run.remote(): a for a in self.workers}
        finals: list[dict[str, Any]] = []
        limits_open = self.graph.limited_outputs() if self.graph is not None else None
        drained = False
        last_status: CheckpointStatus | None = None
        try:
            while runs:
                ready, _ = ray.wait(list(runs), num_returns=len(runs), timeout=POLL_S)
                for ref in ready:
                    runs.pop(ref)
                    try:
                        final = ray.get(ref)
                    except Exception as e:  # noqa: BLE001 - a dead actor or node
                        raise self._failure(e) from None
                    finals.append(final)
                    self._absorb(final)
                    if final["error"] is not None:
                        error = final["error"]
                        raise error if isinstance(error, CaudalError) else \
                            RuntimeFailure(error)
                if self.job.cancel.is_set():
                    raise RuntimeFailure("the job was stopped")
                running = list(runs.values())
                try:
                    answers = ray.get([a.poll.remote() for a in running])
                except Exception as e:  # noqa: BLE001
                    raise self._failure(e) from None
                for answer in answers:
                    self._absorb(answer)
                limits = sum(a["limits"] for a in answers) + sum(f["limits"] for f in finals)
                if limits_open is not None and not drained and limits >= limits_open:
                    drained = True
                    for a in running:
                        a.drain.remote()
                last_status = self._checkpoint_turn(running, last_status)
        except BaseException:
            self._kill_all()
            raise
        finally:
            self._done.set()
        self._kill_all()
        return self._result(finals, time.monotonic() - started)

    def _absorb(self, answer: dict[str, Any]) -> None:
        self._stats.update(answer["stats"])
        python_connector.replay(answer["collected"])  # before the acks that follow them
        for key, rows in answer["sink_rows"].items():
            self._views[key].operators[0].rows = rows
        for key, metrics in answer.get("subtask_metrics", {}).items():
            self._views[key].ctx.metrics = metrics
        for vertex, (batches, dropped) in answer.get("tapped", {}).items():
            for tap in self.job.taps.active.get(vertex, ()):
                tap.add_dropped(dropped)
                for batch in batches:
                    tap.offer(batch)
        if answer["stdout"]:
            sys.stdout.write(answer["stdout"])
            sys.stdout.flush()
        cp = self.job.checkpoints
        for message in answer["outbox"]:
            if cp is None:
                continue
            reply = cp.receive(message)
            if reply is not None:
                self.actors[(reply.vertex, reply.subtask)].deliver.remote([reply])

    def _checkpoint_turn(self, running: list[Any],
                         last: CheckpointStatus | None) -> CheckpointStatus | None:
        cp = self.job.checkpoints
        if cp is None:
            return None
        for key, message in cp.requests_due():
            self.actors[key].deliver.remote([message])
        status = cp.status()
        if status != last:
            for a in running:
                a.deliver.remote([status])
        return status

    def _failure(self, error: BaseException) -> RuntimeFailure:
        ray = ray_module()
        if isinstance(error, ray.exceptions.RayActorError | ray.exceptions.ActorDiedError
                      | ray.exceptions.NodeDiedError | ray.exceptions.OwnerDiedError):
            first = (str(error).strip().splitlines() or [""])[0]
            return RuntimeFailure(f"a subtask's actor died ({first[:160]})")
        if isinstance(error, ray.exceptions.RayTaskError):
            cause = error.cause if getattr(error, "cause", None) is not None else error
            if isinstance(cause, CaudalError):
                return cause  # type: ignore[return-value]
            return RuntimeFailure(f"{type(cause).__name__}: {cause}")
        return RuntimeFailure(f"{type(error).__name__}: {error}")

    def _kill_all(self) -> None:
        self._kill([*self.workers, *(actor for _, _, actor in self._warm)])

    @staticmethod
    def _kill(actors: Any) -> None:
        ray = ray_module()
        for a in actors:
            try:
                ray.kill(a, no_restart=True)
            except Exception:  # noqa: BLE001, S110 - already gone
                pass

    def _result(self, finals: list[dict[str, Any]], elapsed: float) -> JobResult:
        assert self.graph is not None
        metrics: dict[str, int] = {}
        examples: list[str] = []
        for f in finals:
            for name, value in f["metrics"].items():
                metrics[name] = metrics.get(name, 0) + value
            examples.extend(f["bad_row_examples"])
        stats = list(self._stats.values())
        return JobResult(
            elapsed_s=elapsed,
            rows_in=sum(s.rows_in for s in stats if self.graph.vertex(s.vertex).source),
            rows_out=sum(view.operators[0].rows for view in self._views.values()
                         if view.operators),
            bad_rows_dropped=sum(s.bad_rows_dropped for s in stats),
            late_rows=sum(s.late_rows for s in stats) + metrics.get("late_rows", 0),
            bad_row_examples=examples[:5], metrics=metrics)

    # ---- the rest of the Runtime interface ----------------------------------------------------

    def wait(self, timeout: float | None = None) -> bool:
        return self._done.wait(timeout)

    def stop(self, savepoint: bool = False) -> None:
        self.job.cancel.set()

    def stats(self) -> list[SubtaskStats]:
        return list(self._stats.values())

    @property
    def runners(self) -> list[_SubtaskView]:
        return list(self._views.values())

