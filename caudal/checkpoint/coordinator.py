"""The checkpoint coordinator: starts epochs, collects every subtask's snapshot, writes the
manifest (the commit point) and then lets the two-phase-commit sinks commit.

One epoch at a time:

1. every ``interval`` the coordinator asks each running source subtask to inject
   ``Barrier(epoch)`` (``barrier_due``, polled by the source loop before each read);
2. each subtask, once the barrier has arrived on all its inputs (aligned), snapshots its
   operators (sinks pre-commit), forwards the barrier and calls ``acknowledge``. That call only
   queues the state: Parquet files are written by the coordinator's writer threads, so the
   pipeline stalls no longer than the operators' own ``snapshot`` calls;
3. when every subtask has acknowledged (or had finished its input before the barrier reached
   it: its final state stands in) and every file is written, the manifest is written; the
   epoch is now *complete*: ``committed_epoch()`` advances, and each sink subtask commits its
   pre-committed epochs up to it, in its own thread, at its next loop turn;
4. old checkpoints beyond ``keep`` are deleted (files still named by a kept manifest stay).

A checkpoint that fails (a write error such as a full disk) is dropped with a warning and the
job goes on: sinks keep their pre-commits, which the next complete checkpoint carries (its
manifest lists every pre-commit not yet committed). Bounded jobs end with a *final*
checkpoint, taken once every subtask has finished, which commits the last rows.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

from caudal.checkpoint.chains import ChainKey, StateChains
from caudal.checkpoint.errors import CheckpointError
from caudal.checkpoint.manifest import (
    MANIFEST_NAME,
    Manifest,
    StateFile,
    StateRef,
    SubtaskState,
    VertexState,
    completed_epochs,
    epoch_dir,
    epoch_of_dir,
    manifest_path,
    read_manifest,
    write_manifest,
    write_triggered,
)
from caudal.checkpoint.messages import (
    Acknowledge,
    Barrier,
    CheckpointStatus,
    Finished,
    FinishedReply,
)
from caudal.checkpoint.storage import TEMP_MARK, CheckpointStorage
from caudal.plan.physical import PhysicalGraph
from caudal.state.incremental import StateDelta

Key = tuple[int, int]

#: attempts at the final checkpoint of a bounded job (one per interval) before the job fails
FINAL_ATTEMPTS = 3


def warn(message: str) -> None:
    print(f"caudal: {message}", file=sys.stderr, flush=True)


@dataclass
class _Checkpoint:
    epoch: int
    stop: bool
    started: float
    #: subtasks whose acknowledgement (or final state) is still to come
    waiting: set[Key]
    #: per subtask: the written state
    states: dict[Key, Future] = field(default_factory=dict)
    aborted: bool = False
    #: when the last acknowledgement arrived (barriers aligned everywhere)
    acked: float | None = None
    #: subtask-seconds spent in snapshots and in barrier alignment
    snapshot_s: float = 0.0
    align_s: float = 0.0


@dataclass
class CheckpointRecord:
    """One finished checkpoint, for metrics and benchmarks."""

    epoch: int
    duration_s: float
    bytes: int
    ok: bool
    error: str | None = None
    #: from the trigger to the last acknowledgement (barrier travel, alignment, snapshots)
    acks_s: float | None = None
    #: subtask-seconds the pipeline spent in operators' snapshots, and in alignment
    snapshot_s: float = 0.0
    align_s: float = 0.0


class CheckpointCoordinator:
    """Implements the runtime's CheckpointHooks for one run (one attempt) of a job."""

    def __init__(self, storage: CheckpointStorage, graph: PhysicalGraph, job_id: str,
                 vertex_fingerprints: dict[int, str], *, interval_s: float, first_epoch: int,
                 committed_epoch: int = 0, keep: int = 3, max_key_groups: int = 128,
                 chains: dict[ChainKey, list[StateFile]] | None = None,
                 kept: list[Manifest] | None = None,
                 log: Callable[[str], None] = warn):
        self.storage = storage
        self.graph = graph
        self.job_id = job_id
        self.vertex_fingerprints = vertex_fingerprints
        self.interval_s = interval_s
        self.keep = max(1, keep)
        self.max_key_groups = max_key_groups
        self.log = log
        self.subtasks: list[Key] = [(v.id, i) for v in graph.vertices
                                    for i in range(v.parallelism)]
        self.sources = {(v.id, i) for v in graph.vertices if v.source is not None
                        for i in range(v.parallelism)}
        self.history: list[CheckpointRecord] = []
        self._lock = threading.Condition()
        self._next_epoch = first_epoch
        self._completed = committed_epoch
        self._failed = 0
        self._inject: dict[Key, Barrier] = {}
        self._inflight: _Checkpoint | None = None
        self._finals: dict[Key, Future] = {}
        self._final_payloads: dict[Key, tuple[int, dict[str, Any]]] = {}
        #: the files of every state table, written and compacted (checkpoint.chains)
        self.chains = StateChains(storage, chains, log)
        self._kept: list[Manifest] = list(kept or [])
        self._stop_requested = False
        self.stop_epoch: int | None = None
        self.stop_error: str | None = None
        #: why the final checkpoint could not be written (the job then fails)
        self.final_error: str | None = None
        self._final_failures = 0
        self._trigger_now = False
        #: the epoch a trigger has taken but not started yet
        self._reserved: int | None = None
        self._final_done = False
        self._closed = False
        #: per subtask, its latest state write: writes of one subtask run in order
        self._last_write: dict[Key, Future] = {}
        self._writer = ThreadPoolExecutor(2, thread_name_prefix="caudal-ckpt-write")
        self._committer = ThreadPoolExecutor(1, thread_name_prefix="caudal-ckpt-commit")
        self._timer: threading.Thread | None = None
        self._cancel: threading.Event | None = None

    # ---- lifecycle --------------------------------------------------------------------------

    def start(self, cancel: threading.Event) -> None:
        """Start the timer that triggers a checkpoint every interval."""
        self._cancel = cancel
        self._timer = threading.Thread(target=self._timer_loop, name="caudal-ckpt-timer",
                                       daemon=True)
        self._timer.start()

    def close(self, wait: bool = True) -> None:
        """Stop triggering; an in-flight checkpoint is abandoned (its files become garbage,
        swept later), pending writes are finished when ``wait``."""
        with self._lock:
            self._closed = True
            if self._inflight is not None:
                self._inflight.aborted = True
                self._inflight = None
            self._inject.clear()
            self._lock.notify_all()
        if self._timer is not None and self._timer is not threading.current_thread():
            self._timer.join(5)
        self._writer.shutdown(wait=wait, cancel_futures=not wait)
        self._committer.shutdown(wait=wait, cancel_futures=not wait)
        self.chains.close(wait)

    def request_stop(self) -> None:
        """Take a savepoint and stop: sources inject a stopping barrier at the next turn."""
        with self._lock:
            self._stop_requested = True
            self._trigger_now = True
            self._lock.notify_all()

    @property
    def next_epoch(self) -> int:
        return self._next_epoch

    def _timer_loop(self) -> None:
        last = time.monotonic()
        while True:
            with self._lock:
                while True:
                    if self._closed or self._final_done or (
                            self._cancel is not None and self._cancel.is_set()):
                        return
                    if self._inflight is None and (
                            self._trigger_now or time.monotonic() >= last + self.interval_s):
                        break
                    self._lock.wait(0.05)
                self._trigger_now = False
                stop = self._stop_requested
            epoch = self.trigger(stop=stop)
            if stop and epoch is not None:
                return  # the stopping checkpoint is the last one
            last = time.monotonic()

    # ---- triggering -------------------------------------------------------------------------

    def trigger(self, stop: bool = False) -> int | None:
        """Start a checkpoint now (unless one is in flight); returns its epoch."""
        with self._lock:
            if self._inflight is not None or self._closed or self._reserved is not None:
                return None
            epoch = self._next_epoch
            self._next_epoch += 1
            # between here and the checkpoint's creation, a subtask that finishes is
            # covered by this epoch (its final state is in _finals when the epoch starts)
            self._reserved = epoch
        try:
            write_triggered(self.storage, epoch)
        except CheckpointError as e:
            self.log(f"checkpoint {epoch} not started: {e}; the job goes on and will try "
                     f"again at the next interval")
            self.history.append(CheckpointRecord(epoch, 0.0, 0, False, str(e)))
            with self._lock:
                self._reserved = None
                self._final_failed(e)
                self._lock.notify_all()
            return None
        with self._lock:
            self._reserved = None
            if self._closed:
                return None
            cp = _Checkpoint(epoch, stop, time.monotonic(),
                             {k for k in self.subtasks if k not in self._finals})
            self._inflight = cp
            if stop:
                self.stop_epoch = epoch
            for key in self._finals:
                cp.states[key] = self._retry_final(key)
            for key in self.sources & cp.waiting:
                self._inject[key] = Barrier(epoch, stop)
            if not cp.waiting:
                self._all_acknowledged(cp)
        return epoch

    def _retry_final(self, key: Key) -> Future:
        """A finished subtask's final state, written again if the first write failed."""
        fut = self._finals[key]
        if fut.done() and fut.exception() is not None:
            _, payload = self._final_payloads[key]
            fut = self._submit_write(self._next_epoch - 1, key, payload, True)
            self._finals[key] = fut
        return fut

    # ---- what subtasks call (CheckpointHooks) -------------------------------------------------

    def barrier_due(self, vertex: int, subtask: int) -> Barrier | None:
        if not self._inject:
            return None
        with self._lock:
            return self._inject.pop((vertex, subtask), None)

    def acknowledge(self, vertex: int, subtask: int, epoch: int,
                    state: dict[str, Any]) -> None:
        """A subtask snapshotted ``epoch``: queue its state for writing and return."""
        key = (vertex, subtask)
        with self._lock:
            cp = self._inflight
            if cp is None or cp.epoch != epoch or key not in cp.waiting:
                if not self._closed:
                    self._defer_state(key, state)   # a checkpoint that was abandoned
                return
            cp.waiting.discard(key)
            timing = state.pop("timing", None) or {}
            cp.snapshot_s += timing.get("snapshot_s", 0.0)
            cp.align_s += timing.get("align_s", 0.0)
            cp.states[key] = self._submit_write(epoch, key, state, False)
            if not cp.waiting:
                self._all_acknowledged(cp)

    def finished(self, vertex: int, subtask: int, label: int,
                 state: dict[str, Any]) -> int:
        """A subtask reached the end of its input; ``state`` is its final snapshot (its sinks
        pre-committed as epoch ``label``). It stands in for the subtask in every later
        checkpoint. Returns the epoch whose completion commits the sinks' last rows."""
        key = (vertex, subtask)
        with self._lock:
            self._inject.pop(key, None)
            cp = self._inflight
            directory = cp.epoch if cp is not None and key in cp.waiting else self._next_epoch
            if cp is None and self._reserved is not None:
                directory = self._reserved
            fut = self._submit_write(directory, key, state, True)
            self._finals[key] = fut
            self._final_payloads[key] = (label, state)
            if cp is not None and key in cp.waiting:
                cp.waiting.discard(key)
                cp.states[key] = fut
                needed = cp.epoch
                if not cp.waiting:
                    self._all_acknowledged(cp)
            else:
                needed = directory
            if len(self._finals) == len(self.subtasks):
                self._trigger_now = True   # everything ended: take the final checkpoint now
            self._lock.notify_all()
        return needed

    def committed_epoch(self) -> int:
        return self._completed

    # ---- the same, as messages (subtasks in other processes: checkpoint.client) ------------

    def receive(self, message: Acknowledge | Finished) -> FinishedReply | None:
        """Handle a subtask's message; a ``Finished`` gets its reply."""
        if isinstance(message, Acknowledge):
            self.acknowledge(message.vertex, message.subtask, message.epoch, message.state)
            return None
        needed = self.finished(message.vertex, message.subtask, message.label, message.state)
        return FinishedReply(message.vertex, message.subtask, needed)

    def barriers_due(self) -> dict[Key, Barrier]:
        """Every barrier a source subtask must inject now (taken: each is delivered once)."""
        if not self._inject:
            return {}
        with self._lock:
            due, self._inject = self._inject, {}
            return due

    def status(self) -> CheckpointStatus:
        with self._lock:
            return CheckpointStatus(self._completed, self._failed, self._final_done,
                                    self.final_error, self._closed)

    def wait_completed(self, epoch: int, cancel: threading.Event | None = None,
                       until_covered: bool = False) -> bool:
        """Block until checkpoint ``epoch`` completed (True) or failed (False). With
        ``until_covered``, a failure does not end the wait: any later complete checkpoint
        covers it (how a finished subtask waits to commit its last rows)."""
        with self._lock:
            while self._completed < epoch:
                if self._failed >= epoch and not until_covered:
                    return False
                if until_covered and self.final_error is not None:
                    return False
                if until_covered and self._final_done:
                    return True   # the final checkpoint holds every subtask's final state
                if self._closed or (cancel is not None and cancel.is_set()):
                    return False
                self._lock.wait(0.05)
            return True

    # ---- writing state ----------------------------------------------------------------------

    def _submit_write(self, epoch: int, key: Key, payload: dict[str, Any],
                      final: bool) -> Future:
        """Queue a subtask's state for the writer threads, after its previous write (delta
        chains must grow in order). Called with the lock held."""
        previous = self._last_write.get(key)

        def write() -> SubtaskState:
            if previous is not None:
                previous.exception()  # wait; its failure is reported by its own checkpoint
            return self._write_state(epoch, key, payload, final)

        fut = self._writer.submit(write)
        self._last_write[key] = fut
        return fut

    def _write_state(self, epoch: int, key: Key, payload: dict[str, Any],
                     final: bool) -> SubtaskState:
        vertex, subtask = key
        operators: list[dict[str, StateRef]] = []
        for index, state in enumerate(payload.get("operators", [])):
            refs: dict[str, StateRef] = {}
            for name, value in (state or {}).items():
                refs[name] = self._write_value(epoch, (vertex, subtask, index, name), value)
            operators.append(refs)
        offsets = payload.get("offsets")
        if offsets is not None:
            _check_json(offsets, f"source offsets of {self._label(vertex)}")
        mark = payload.get("watermark")
        return SubtaskState(operators, offsets, final, int(mark) if mark is not None else None)

    def _label(self, vertex: int) -> str:
        return f"[{vertex}] {self.graph.vertex(vertex).name}"

    def _write_value(self, epoch: int, ckey: ChainKey, value: Any) -> StateRef:
        vertex, subtask, index, name = ckey
        if isinstance(value, pa.RecordBatch):
            value = pa.Table.from_batches([value])
        if isinstance(value, (pa.Table, StateDelta)):
            return StateRef(files=self.chains.write(epoch, ckey, value,
                                                    lambda: self._no_chain(ckey)))
        _check_json(value, f"state {name!r} of operator {index} of {self._label(vertex)}")
        return StateRef(value=value)

    def _no_chain(self, ckey: ChainKey) -> str:
        vertex, _, index, name = ckey
        return (f"operator {index} of {self._label(vertex)} returned a StateDelta for "
                f"{name!r} without a full table before it (return the whole table from the "
                f"first snapshot after open or restore)")

    def _defer_state(self, key: Key, payload: dict[str, Any]) -> None:
        """A subtask's snapshot for a checkpoint that was abandoned: its deltas are kept for
        the next write (the operator will not send those changes again)."""
        previous = self._last_write.get(key)

        def defer() -> None:
            if previous is not None:
                previous.exception()
            for index, state in enumerate(payload.get("operators", [])):
                for name, value in (state or {}).items():
                    if isinstance(value, pa.RecordBatch):
                        value = pa.Table.from_batches([value])
                    if isinstance(value, (pa.Table, StateDelta)):
                        ckey = (*key, index, name)
                        self.chains.defer(ckey, value, lambda c=ckey: self._no_chain(c))

        self._last_write[key] = self._writer.submit(defer)

    # ---- completing -------------------------------------------------------------------------

    def _all_acknowledged(self, cp: _Checkpoint) -> None:
        """Every subtask has answered: complete once the writes are done (lock held)."""
        cp.acked = time.monotonic()
        self._committer.submit(self._complete, cp)

    def _complete(self, cp: _Checkpoint) -> None:
        try:
            states = {key: fut.result() for key, fut in cp.states.items()}
        except BaseException as e:  # noqa: BLE001 - a failed write fails the checkpoint
            self._fail(cp, e)
            return
        with self._lock:
            if cp.aborted or self._inflight is not cp:
                return
        finals = all(s.finished for s in states.values())
        manifest = Manifest(self.job_id, cp.epoch, [
            VertexState(v.id, v.name, v.parallelism, self.vertex_fingerprints[v.id],
                        [op.label for op in v.operators],
                        [states[(v.id, i)] for i in range(v.parallelism)])
            for v in self.graph.vertices], self.max_key_groups, time.time(),
            savepoint=cp.stop, final=finals)
        try:
            write_manifest(self.storage, manifest)
        except BaseException as e:  # noqa: BLE001
            self._fail(cp, e)
            return
        with self._lock:
            self._completed = cp.epoch
            self._inflight = None
            self._kept.append(manifest)
            self._final_done = finals
            if len(self._finals) == len(self.subtasks) and not finals:
                self._trigger_now = True   # the last subtasks finished during this one
            self._lock.notify_all()
        self.history.append(CheckpointRecord(
            cp.epoch, time.monotonic() - cp.started, manifest.bytes, True,
            acks_s=(cp.acked - cp.started) if cp.acked is not None else None,
            snapshot_s=cp.snapshot_s, align_s=cp.align_s))
        try:
            self._retain()
        except Exception as e:  # noqa: BLE001 - retention is housekeeping
            self.log(f"could not delete old checkpoints: {e}")

    def _fail(self, cp: _Checkpoint, error: BaseException) -> None:
        with self._lock:
            if self._inflight is cp:
                self._inflight = None
            self._failed = max(self._failed, cp.epoch)
            for key, barrier in list(self._inject.items()):
                if barrier.epoch == cp.epoch:
                    del self._inject[key]
            if cp.stop:
                self.stop_error = str(error)
            self._final_failed(error)
            self._lock.notify_all()
        aborted = cp.aborted
        self.history.append(CheckpointRecord(cp.epoch, time.monotonic() - cp.started, 0,
                                             False, str(error)))
        if not aborted:
            message = error.message if isinstance(error, CheckpointError) else \
                f"{type(error).__name__}: {error}"
            self.log(f"checkpoint {cp.epoch} failed: {message}; the job goes on and the "
                     f"next checkpoint will cover this one")

    def _final_failed(self, error: BaseException) -> None:
        """Count a failed attempt at the final checkpoint (lock held): after a few the job
        fails instead of waiting forever to commit its last rows."""
        if len(self._finals) != len(self.subtasks):
            return
        self._final_failures += 1
        if self._final_failures >= FINAL_ATTEMPTS:
            self.final_error = error.message if isinstance(error, CheckpointError) \
                else f"{type(error).__name__}: {error}"

    def summary(self) -> str | None:
        """One line on the checkpoints of this run, for the end of ``caudal run``."""
        done = [h for h in self.history if h.ok]
        if not done:
            return None
        failed = len(self.history) - len(done)
        from caudal.checkpoint.listing import human_bytes

        return (f"{len(done)} checkpoints (newest {done[-1].epoch}, "
                f"{human_bytes(done[-1].bytes)}), {sum(h.duration_s for h in done) / len(done):.2f}s"
                f" each on average; subtasks spent {sum(h.snapshot_s for h in done):.2f}s "
                f"in snapshots and sink pre-commits, {sum(h.align_s for h in done):.2f}s aligning "
                f"barriers"
                + (f"; {failed} failed" if failed else ""))

    # ---- retention --------------------------------------------------------------------------

    def referenced(self) -> set[str]:
        """Files still needed: by a kept manifest, a live chain (or its compaction), or a
        finished subtask."""
        names = {f.file.path for m in self._kept for f in m.files()}
        names.update(self.chains.needed(self._completed))
        for fut in list(self._finals.values()):
            if fut.done() and fut.exception() is None:
                names.update(f.file.path for f in fut.result().files())
        return names

    def _retain(self) -> None:
        """Keep the newest ``keep`` complete checkpoints; delete older manifests first (so a
        half-deleted checkpoint is never taken for a complete one), then unneeded files."""
        with self._lock:
            self._kept.sort(key=lambda m: m.epoch)
            dropped = self._kept[:-self.keep]
            self._kept = self._kept[-self.keep:]
            newest = self._completed
        for m in dropped:
            self.storage.delete_file(manifest_path(m.epoch))
        referenced = self.referenced()
        sweep(self.storage, newest, {m.epoch for m in self._kept},
              lambda rel: rel in referenced or rel in self.chains.needed(newest))


def sweep(storage: CheckpointStorage, newest: int, kept: set[int],
          referenced: set[str] | Callable[[str], bool]) -> None:
    """Delete every file of epochs up to ``newest`` that no kept checkpoint needs: old
    checkpoints (manifest first, so a half-deleted one never looks complete), failed ones,
    leftovers of a crash, deltas folded by compaction. Epochs after ``newest`` may be in
    progress and are left alone. ``referenced`` may be a test asked at each deletion (a
    compaction may write into an older epoch's directory while the sweep runs)."""
    needed = referenced.__contains__ if isinstance(referenced, set) else referenced
    for name in storage.list_dir(""):
        epoch = epoch_of_dir(name)
        if epoch is None or epoch > newest:
            continue
        directory = epoch_dir(epoch)
        if epoch not in kept:
            storage.delete_file(manifest_path(epoch))
        for entry in storage.list_dir(directory):
            rel = f"{directory}/{entry}"
            # a file being written has the name it will have plus a mark: needed as much
            if not (epoch in kept and entry == MANIFEST_NAME) and \
                    not needed(rel.partition(TEMP_MARK)[0]):
                storage.delete_file(rel)
        storage.remove_empty_dir(directory)


def kept_manifests(storage: CheckpointStorage, keep: int) -> list[Manifest]:
    """The newest readable manifests (for retention after a restart)."""
    out = []
    for epoch in reversed(completed_epochs(storage)):
        try:
            out.append(read_manifest(storage, epoch))
        except CheckpointError:
            continue
        if len(out) >= keep:
            break
    return sorted(out, key=lambda m: m.epoch)


def _check_json(value: Any, what: str) -> None:
    try:
        json.dumps(value)
    except (TypeError, ValueError) as e:
        raise CheckpointError(f"{what} cannot be checkpointed: {e} (return pyarrow Tables, "
                              f"or JSON values: numbers, strings, lists, dicts)") from None
