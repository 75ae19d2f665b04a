"""The loop of one subtask, shared by every runtime: read input (a source or an input gate),
run the fused chain, route output, and handle control messages in order with the data.

Checkpoints: a source subtask injects ``Barrier(epoch)`` when the coordinator asks; a subtask
with several input channels aligns (blocks each channel that delivered the barrier until all
did), then snapshots its operators, forwards the barrier and acknowledges.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any, Protocol

import pyarrow as pa

from caudal import clock
from caudal.connectors.base import IDLE_TIMEOUT, Source
from caudal.durations import parse_duration_s
from caudal.operators.base import OperatorContext
from caudal.operators.registry import create
from caudal.operators.side_output import tag_of, untag
from caudal.operators.sink import SINK_TABLE, SinkOperator
from caudal.plan.physical import Vertex
from caudal.runtime.base import SubtaskStats
from caudal.runtime.chain import Chain
from caudal.runtime.channels import Cancelled, InputGate
from caudal.runtime.messages import WATERMARK_MAX, Barrier, EndOfData, Idle, Watermark
from caudal.runtime.partitioners import Route
from caudal.runtime.taps import Taps, tapped_chain
from caudal.runtime.watermarks import InputWatermarks, SourceWatermark
from caudal.types import conform_batch


class CheckpointHooks(Protocol):
    """What a subtask asks of the checkpoint coordinator (none when checkpoints are off);
    implemented by caudal.checkpoint.coordinator.CheckpointCoordinator."""

    def barrier_due(self, vertex: int, subtask: int) -> Barrier | None:
        """The barrier a source subtask must inject now, if any."""

    def acknowledge(self, vertex: int, subtask: int, epoch: int,
                    state: dict[str, Any]) -> None:
        """The subtask snapshotted ``epoch``; must return at once (state is written
        asynchronously)."""

    def finished(self, vertex: int, subtask: int, label: int, state: dict[str, Any]) -> int:
        """The subtask's input ended; ``state`` is final. Returns the epoch whose completion
        makes its sinks' last rows committable."""

    def committed_epoch(self) -> int:
        """The newest complete checkpoint: sinks may commit pre-commits up to it."""

    def wait_completed(self, epoch: int, cancel: threading.Event | None = None,
                       until_covered: bool = False) -> bool:
        """Block until checkpoint ``epoch`` completed (True) or failed (False); with
        ``until_covered`` until a later checkpoint covers a failed one."""


def sink_states(state: dict[str, Any]) -> dict[str, Any]:
    """A sink's pre-commit state as named checkpoint states: JSON values under ``sink``, each
    Arrow table (e.g. messages staged for the commit) as its own ``sink.<name>`` file."""
    tables = {k: v for k, v in (state or {}).items() if isinstance(v, pa.Table)}
    out: dict[str, Any] = {"sink": {k: v for k, v in (state or {}).items()
                                    if k not in tables}}
    out.update({f"{SINK_TABLE}{k}": v for k, v in tables.items()})
    return out


def coalesced(batches: list[pa.RecordBatch]) -> list[pa.RecordBatch]:
    """Consecutive batches of one schema as one batch (a copy of their rows, which costs
    less than another call of the operators that follow), in order."""
    if len(batches) == 1:
        return batches
    out: list[pa.RecordBatch] = []
    run: list[pa.RecordBatch] = []
    for batch in batches:
        if run and not batch.schema.equals(run[0].schema):
            out.append(run[0] if len(run) == 1 else pa.concat_batches(run))
            run = []
        run.append(batch)
    out.append(run[0] if len(run) == 1 else pa.concat_batches(run))
    return out


class Stopped(Exception):
    """The subtask took part in a stopping checkpoint (a savepoint) and ends here."""


@dataclass
class JobContext:
    """What all subtasks of a job share."""

    cancel: threading.Event = field(default_factory=threading.Event)
    errors: list[BaseException] = field(default_factory=list)
    checkpoints: CheckpointHooks | None = None
    batch_rows: int = 65536
    linger_s: float = 0.005
    settings: dict[str, Any] = field(default_factory=dict)
    #: state restored from a checkpoint: (vertex, subtask) -> {"operators": [...], ...}
    restored: dict[tuple[int, int], dict[str, Any]] = field(default_factory=dict)
    #: final LIMIT operators still short of rows; None when some output has no LIMIT
    limits_open: int | None = None
    #: set once every LIMIT output has its rows: sources end as if their input had
    drain: threading.Event = field(default_factory=threading.Event)
    #: readers of the vertices' output (the live preview); kept across restarts
    taps: Taps = field(default_factory=Taps)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def fail(self, error: BaseException) -> None:
        self.errors.append(error)
        self.cancel.set()

    def limit_reached(self) -> None:
        """A final LIMIT has all its rows (operators.limit)."""
        with self._lock:
            if self.limits_open is None:
                return
            self.limits_open -= 1
            if self.limits_open <= 0:
                self.drain.set()


@dataclass
class OutputEdge:
    route: Route
    #: per downstream subtask: its gate and this subtask's channel in it
    targets: list[tuple[InputGate, int]]
    #: the side output this edge carries (None: the main output)
    tag: str | None = None

    def send_batch(self, batch: pa.RecordBatch) -> float:
        """Route ``batch``; the seconds spent blocked on full channels."""
        waited = 0.0
        for target, piece in self.route(batch):
            if piece.num_rows:
                gate, channel = self.targets[target]
                waited += gate.put(channel, piece) or 0.0
        return waited

    def send_control(self, message: Any) -> None:
        for gate, channel in self.targets:
            gate.put(channel, message)


class SubtaskRunner:
    def __init__(self, job: JobContext, vertex: Vertex, index: int,
                 gate: InputGate | None, channel_inputs: list[int],
                 outputs: list[OutputEdge], stats: SubtaskStats,
                 source: Source | None = None, assigned: list[str] | None = None):
        self.job = job
        self.vertex = vertex
        self.index = index
        self.gate = gate
        self.channel_inputs = channel_inputs
        self.outputs = outputs
        self.stats = stats
        self.source = source
        self.assigned = assigned or []
        # a LIMIT right before a sink may end the job (PhysicalGraph.limited_outputs)
        self.ctx = OperatorContext(subtask=index, parallelism=vertex.parallelism,
                                   vertex=vertex.id,
                                   checkpointing=job.checkpoints is not None,
                                   limit_reached=job.limit_reached if vertex.sink else None)
        restored = job.restored.get((vertex.id, index), {})
        self.operators = [create(spec) for spec in vertex.operators]
        op_states = restored.get("operators") or [{} for _ in self.operators]
        for op, state in zip(self.operators, op_states):
            if isinstance(op, SinkOperator):
                # the checkpoint's pre-commits were committed before the job started
                # (checkpoint.recovery.recover_sinks): a sink starts with no pending epoch
                op.open(self.ctx, None)
            else:
                op.open(self.ctx)
                if state:
                    op.restore(state)
        self.sinks = [op for op in self.operators if isinstance(op, SinkOperator)]
        self.source_offsets = restored.get("offsets")
        self.restored_watermark: int | None = restored.get("watermark")
        self.source_watermark: SourceWatermark | None = None
        #: epoch -> the source offsets its snapshot holds, until the checkpoint completes
        self._offsets_taken: dict[int, dict[str, Any]] = {}
        self.chain = Chain(tapped_chain(self.operators, job.taps, vertex.id))
        self.epoch = restored.get("epoch", 0)
        #: every channel end this subtask writes to, once (a remote one may hold a batch
        #: until the step ends: runtime.ray.channels)
        self._ports = list({id(gate): gate for out in outputs
                            for gate, _ in out.targets}.values())

    # ---- output ---------------------------------------------------------------------------

    def _emit(self, batches: list[pa.RecordBatch]) -> None:
        stats = self.stats
        for b in batches:
            stats.rows_out += b.num_rows
            stats.bytes_out += b.nbytes
            side = tag_of(b)
            if side is not None:
                b = untag(b)
            for out in self.outputs:
                if out.tag == side:
                    stats.backpressure_s += out.send_batch(b)

    def _control(self, message: Any) -> None:
        for out in self.outputs:
            out.send_control(message)

    def _flush(self) -> None:
        """The step ended: send what the channels hold, before waiting for input."""
        for port in self._ports:
            port.flush()

    def _watermark(self, time_us: int) -> None:
        emitted, forward = self.chain.on_watermark(time_us)
        self._emit(emitted)
        self.stats.watermark = forward
        self._control(Watermark(forward))

    # ---- checkpoints ----------------------------------------------------------------------

    def _payload(self, epoch: int) -> dict[str, Any]:
        """Every operator's snapshot (sinks pre-commit ``epoch``), and a source's offsets and
        watermark. Only this runs in the subtask's thread; files are written elsewhere."""
        states: list[dict[str, Any]] = []
        for op in self.operators:
            if isinstance(op, SinkOperator):
                states.append(sink_states(op.pre_commit(epoch)))
            else:
                states.append(op.snapshot(epoch))
        payload: dict[str, Any] = {"operators": states}
        if self.source is not None:
            payload["offsets"] = self.source.offsets()
            self._offsets_taken[epoch] = payload["offsets"]
            if self.source_watermark is not None:
                payload["watermark"] = self.source_watermark.current
        return payload

    def _snapshot(self, barrier: Barrier, aligned_s: float = 0.0) -> None:
        self._emit(self.chain.release_held())
        started = time.perf_counter()
        payload = self._payload(barrier.epoch)
        # what the checkpoint cost this subtask's pipeline: the snapshot, and how long some of
        # its inputs were held back waiting for the barrier on the others
        payload["timing"] = {"snapshot_s": time.perf_counter() - started,
                             "align_s": aligned_s}
        self.epoch = barrier.epoch
        self._control(barrier)
        if self.job.checkpoints is not None:
            self.job.checkpoints.acknowledge(self.vertex.id, self.index, barrier.epoch, payload)
        if barrier.stop:
            self._stop_after(barrier.epoch)

    def _stop_after(self, epoch: int) -> None:
        """A savepoint: wait for it to complete, commit the sinks, end without flushing
        (the state is in the savepoint; a resumed job goes on from there)."""
        if self.job.checkpoints is not None and \
                self.job.checkpoints.wait_completed(epoch, self.job.cancel):
            self._commit_sinks()
        for op in self.operators:
            op.close()
        if self.source is not None:
            self.source.close()
        raise Stopped

    def _notify_source(self) -> None:
        """Tell the source which of its snapshotted offsets a completed checkpoint holds."""
        if not self._offsets_taken:
            return
        done = self.job.checkpoints.committed_epoch()
        ready = [e for e in self._offsets_taken if e <= done]
        if ready:
            newest = max(ready)
            offsets = self._offsets_taken[newest]
            for e in ready:
                del self._offsets_taken[e]
            self.source.checkpoint_completed(offsets)

    def _commit_sinks(self) -> None:
        if self.job.checkpoints is None or not self.sinks:
            return
        epoch = self.job.checkpoints.committed_epoch()
        for op in self.sinks:
            if op.pending and min(op.pending) <= epoch:
                op.commit(epoch)

    def _finish(self) -> None:
        self._emit(self.chain.on_end())
        cp = self.job.checkpoints
        if cp is None:
            for op in self.sinks:
                op.finish(self.epoch + 1)
            self._control(EndOfData())
            if self.source is not None:
                # no checkpoint will come: a source that acknowledges its input after each
                # one (NATS, Redis Streams, RabbitMQ) does so at the end of a bounded read
                self.source.checkpoint_completed(self.source.offsets())
        else:
            # the sinks' last rows become visible through a final checkpoint: pre-commit them,
            # hand the final state to the coordinator, and commit once it is complete
            label = self.epoch + 1
            payload = self._payload(label)
            self._control(EndOfData())
            needed = cp.finished(self.vertex.id, self.index, label, payload)
            if self.sinks:
                if cp.wait_completed(needed, self.job.cancel, until_covered=True):
                    # a complete checkpoint holds this final state: commit up to its label
                    for op in self.sinks:
                        if op.pending:
                            op.commit(max(label, max(op.pending)))
                    if self.source is not None:
                        self.source.checkpoint_completed(self.source.offsets())
                elif not self.job.cancel.is_set():
                    from caudal.checkpoint.errors import CheckpointError

                    raise CheckpointError(
                        f"the final checkpoint failed ({getattr(cp, 'final_error', '?')}): "
                        f"the last rows are not committed; fix the cause and run the same "
                        f"command again to finish from the last checkpoint")
            elif self.source is not None and \
                    cp.wait_completed(needed, self.job.cancel, until_covered=True):
                # the final checkpoint holds everything this source read: it may acknowledge
                # its input now (without the wait, a crash before that checkpoint completes
                # would lose what was acknowledged)
                self.source.checkpoint_completed(self.source.offsets())
        for op in self.operators:
            op.close()
        self.stats.finished = True

    # ---- loops ----------------------------------------------------------------------------

    def run(self) -> None:
        try:
            if self.source is not None:
                self._run_source()
            else:
                self._run_inputs()
        except Stopped:
            pass   # (the savepoint closed the source)
        except Cancelled:
            self._release_source()
        except BaseException as e:  # noqa: BLE001 - reported to the job, which stops
            self.job.fail(e)
            self._release_source()

    def _release_source(self) -> None:
        """Close the source of a failed or cancelled run: a restart opens a new one, which
        must find the connections, ports and replication slots this one held free (a
        PostgreSQL slot or an HTTP port takes one holder). Nothing is acknowledged: what it
        read after the checkpoint is read again."""
        if self.source is not None:
            try:
                self.source.close()
            except Exception:  # noqa: BLE001, S110 - closing after a failure
                pass

    def _run_source(self) -> None:
        source = self.source
        table = source.table
        source.open(self.assigned, self.source_offsets)
        time_col = table.event_time
        wm = SourceWatermark(table.watermark_delay_us) if time_col else None
        self.source_watermark = wm
        if wm is not None and self.restored_watermark is not None:
            # resumed: never go back behind the watermark of the checkpoint
            wm.current = max(wm.current, self.restored_watermark)
            self._watermark(wm.current)
        idle_after = parse_duration_s(table.options.get("idle_timeout", IDLE_TIMEOUT), "idle_timeout")
        last_data = time.monotonic()
        idle = False
        if not self.assigned and not source.finished():
            # no partition is this subtask's (more subtasks than the source has partitions,
            # e.g. a broker queue read by one subtask): it reads nothing, so it must not hold
            # the watermark back until idle_timeout
            idle = True
            self.chain.on_idle()
            self._control(Idle())
        schema = source.schema
        computed = table.computed_step()  # computed columns, before the watermark reads them
        next_tick = 0.0
        while not self.job.cancel.is_set():
            if self.job.drain.is_set():
                break  # every output is a LIMIT that has its rows: end as if exhausted
            if self.job.checkpoints is not None:
                barrier = self.job.checkpoints.barrier_due(self.vertex.id, self.index)
                if barrier is not None:
                    self._snapshot(barrier)
                self._commit_sinks()
                self._notify_source()
            if self.chain.timed:
                now = time.monotonic()
                if now >= next_tick:  # e.g. a local pre-aggregation's partials held too long
                    next_tick = now + 0.1
                    self._emit(self.chain.on_processing_time(clock.now_us()))
            self._flush()
            batch = source.poll(self.job.batch_rows, self.job.linger_s)
            if batch is None:
                if source.finished():
                    break
                if wm is not None and wm.advance(source.watermark()):
                    self._watermark(wm.current)   # e.g. an idle partition stopped holding it
                if not idle and time.monotonic() - last_data > idle_after:
                    idle = True
                    self._emit(self.chain.release_held())   # before the downstream goes on
                    self.chain.on_idle()
                    self._control(Idle())
                continue
            last_data = time.monotonic()
            idle = False
            if not batch.schema.equals(schema):
                batch = conform_batch(batch, schema)
            if computed is not None:
                batch = computed(batch)
            self.stats.rows_in += batch.num_rows
            self.stats.bytes_in += batch.nbytes
            self.stats.batches_in += 1
            self.stats.bad_rows_dropped = source.metrics.bad_rows_dropped
            advanced = False
            if wm is not None:
                own = source.watermark()
                advanced = wm.advance(own) if own is not None else \
                    wm.observe(batch.column(time_col))
            self._emit(self.chain.process(batch))
            if advanced:
                self._watermark(wm.current)
        if self.job.cancel.is_set():
            return
        self.stats.bad_rows_dropped = source.metrics.bad_rows_dropped
        self._watermark(WATERMARK_MAX)
        self._finish()
        source.close()

    def _run_inputs(self) -> None:
        gate = self.gate
        assert gate is not None
        marks = InputWatermarks(gate.channels)
        merge = bool(self.operators) and self.operators[0].accepts_merged_batches
        #: per channel: the channels of the same operator input, itself first
        same_input = [[ch] + [c for c, i in enumerate(self.channel_inputs)
                              if i == inp and c != ch]
                      for ch, inp in enumerate(self.channel_inputs)]
        barrier_seen: set[int] = set()
        align_started = 0.0
        pending: Barrier | None = None
        ended: set[int] = set()
        next_tick = 0.0
        while True:
            if self.job.checkpoints is not None:
                self._commit_sinks()
            self._flush()
            got = gate.get(0.05)
            if self.chain.timed:
                now = time.monotonic()
                if now >= next_tick:  # processing-time windows close on the wall clock
                    next_tick = now + 0.1
                    self._emit(self.chain.on_processing_time(clock.now_us()))
            if got is None:
                continue
            channel, item = got
            if isinstance(item, pa.RecordBatch):
                taken = [(channel, item)]
                if merge and item.num_rows < self.job.batch_rows:
                    # pieces of other upstream batches already queued: one call for all
                    taken += gate.more_batches(same_input[channel],
                                               self.job.batch_rows - item.num_rows)
                for ch, batch in taken:
                    marks.activity(ch)
                    self.stats.rows_in += batch.num_rows
                    self.stats.bytes_in += batch.nbytes
                    self.stats.batches_in += 1
                for batch in coalesced([batch for _, batch in taken]):
                    self._emit(self.chain.process(batch, self.channel_inputs[channel]))
            elif isinstance(item, Watermark):
                if marks.update(channel, item.time):
                    self._watermark(marks.current)
            elif isinstance(item, Barrier):
                if not barrier_seen:
                    align_started = time.perf_counter()
                barrier_seen.add(channel)
                pending = item
                gate.block(channel)
                if len(barrier_seen | ended) >= gate.channels:
                    # aligned: every input delivered the barrier (or ended)
                    barrier_seen.clear()
                    pending = None
                    gate.unblock_all()
                    self._snapshot(item, time.perf_counter() - align_started)
            elif isinstance(item, Idle):
                if marks.set_idle(channel):
                    self._watermark(marks.current)
            elif isinstance(item, EndOfData):
                ended.add(channel)
                if marks.end(channel):
                    self._watermark(marks.current)
                if pending is not None and len(barrier_seen | ended) >= gate.channels:
                    # a channel ended while others wait in alignment: the barrier is complete
                    barrier, pending = pending, None
                    barrier_seen.clear()
                    gate.unblock_all()
                    self._snapshot(barrier, time.perf_counter() - align_started)
                if len(ended) == gate.channels:
                    break
        if marks.current < WATERMARK_MAX:
            self._watermark(WATERMARK_MAX)
        self._finish()
