"""The checkpoint coordinator: starts epochs, collects every subtask's snapshot, writes the
manifest (the commit point) and then lets the two-phase-commit sinks commit.

One epoch at a time:

1. every ``interval`` the coordinator asks each running source subtask to inject
   ``Barrier(epoch)`` (``barrier_due``, polled by the source loop before each read);
2. each subtask, once the barrier has arrived on all its inputs (aligned), snapshots its
   operators (sinks pre-commit), forwards the barrier and calls ``acknowledge``. That call only
   queues the state: Parquet files are written by a ``StateWriter``'s threads
   (checkpoint.writer), so the pipeline stalls no longer than the operators' own ``snapshot``
   calls. A local job's writer is the coordinator's; a subtask in another process (a Ray
   worker) writes with its own and acknowledges by message with what it wrote (paths,
   sizes, offsets: ``receive``), so state never travels through the coordinator;
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

import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, InvalidStateError, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from caudal.checkpoint.barrier import Barrier
from caudal.checkpoint.chains import ChainKey, StateChains
from caudal.checkpoint.errors import CheckpointError
from caudal.checkpoint.manifest import (
    MANIFEST_NAME,
    Manifest,
    StateFile,
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
    CheckpointStatus,
    FinalWritten,
    Finished,
    FinishedReply,
    WriteFinalAgain,
)
from caudal.checkpoint.storage import TEMP_MARK, CheckpointStorage
from caudal.checkpoint.writer import Key, StateWriter
from caudal.plan.physical import PhysicalGraph

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
        #: a finished subtask's final state, to write again if the write failed; None for a
        #: subtask that writes its own (a remote one: it is asked with WriteFinalAgain)
        self._final_payloads: dict[Key, dict[str, Any] | None] = {}
        #: the state writer of subtasks in this process; it starts with the chains of the
        #: restored checkpoint (handed to remote subtasks with ``chains_of``)
        self.writer = StateWriter(storage, self._label, chains, log)
        #: per remote subtask, the newest state it wrote (its live chains: retention keeps
        #: their files)
        self._remote: dict[Key, SubtaskState] = {}
        #: messages for remote subtasks (other than barriers), taken by ``requests_due``
        self._requests: list[tuple[Key, Any]] = []
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
            pending = [f for f in self._finals.values() if not f.done()]
            self._lock.notify_all()
        for fut in pending:  # remote final states that will not come now
            _settle(fut, None, CheckpointError("the job stopped before it was written"))
        if self._timer is not None and self._timer is not threading.current_thread():
            self._timer.join(5)
        self.writer.close(wait)
        self._committer.shutdown(wait=wait, cancel_futures=not wait)

    def request_stop(self) -> None:
        """Take a savepoint and stop: sources inject a stopping barrier at the next turn."""
        with self._lock:
            self._stop_requested = True
            self._trigger_now = True
            self._lock.notify_all()

    def request_checkpoint(self) -> None:
        """Take a checkpoint now rather than at the end of the interval (the job server's
        ``POST /checkpoint``). A plain flag, taken by the timer within 50 ms: safe to call
        from a signal handler, which must not wait for the lock."""
        self._trigger_now = True

    @property
    def chains(self) -> StateChains:
        """The state chains of the subtasks whose state this process writes."""
        return self.writer.chains

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
        """A finished subtask's final state, written again if the first write failed (lock
        held, in ``trigger``)."""
        fut = self._finals[key]
        if fut.done() and fut.exception() is not None:
            payload = self._final_payloads[key]
            epoch = self._next_epoch - 1
            if payload is None:  # a remote subtask writes it again
                fut = Future()
                self._requests.append((key, WriteFinalAgain(*key, epoch)))
            else:
                fut = self._submit_write(epoch, key, payload, True)
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
                    self.writer.defer(key, state)   # a checkpoint that was abandoned
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
        return self._finished((vertex, subtask), state)[0]

    def _finished(self, key: Key, state: dict[str, Any] | None) -> tuple[int, int]:
        """``finished``, for a local subtask (``state``, written here) or a remote one (None:
        it writes its final state itself, into the returned directory, and says so with
        FinalWritten). Returns (epoch that commits its last rows, directory)."""
        with self._lock:
            self._inject.pop(key, None)
            cp = self._inflight
            directory = cp.epoch if cp is not None and key in cp.waiting else self._next_epoch
            if cp is None and self._reserved is not None:
                directory = self._reserved
            fut = self._submit_write(directory, key, state, True) if state is not None \
                else Future()
            self._finals[key] = fut
            self._final_payloads[key] = state
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
        return needed, directory

    def committed_epoch(self) -> int:
        return self._completed

    # ---- the same, as messages (subtasks in other processes: checkpoint.client) ------------

    def receive(self, message: Acknowledge | Finished | FinalWritten) -> FinishedReply | None:
        """Handle a remote subtask's message (it writes its state itself: the messages say
        what it wrote); a ``Finished`` gets its reply."""
        key = (message.vertex, message.subtask)
        if isinstance(message, Acknowledge):
            self._acknowledged(key, message)
            return None
        if isinstance(message, FinalWritten):
            with self._lock:
                fut = self._finals.get(key)
                if message.state is not None:
                    self._remote[key] = message.state
                    self.chains.forget(key)
            if fut is not None:
                _settle(fut, message.state, message.error)
            return None
        needed, directory = self._finished(key, None)
        return FinishedReply(message.vertex, message.subtask, needed, directory)

    def _acknowledged(self, key: Key, message: Acknowledge) -> None:
        with self._lock:
            if message.state is not None:
                self._remote[key] = message.state   # its chains now, for retention
                self.chains.forget(key)
            cp = self._inflight
            if cp is None or cp.epoch != message.epoch or key not in cp.waiting:
                return  # a checkpoint that was abandoned
            cp.waiting.discard(key)
            cp.snapshot_s += message.timing.get("snapshot_s", 0.0)
            cp.align_s += message.timing.get("align_s", 0.0)
            fut: Future = Future()
            _settle(fut, message.state, message.error)
            cp.states[key] = fut
            if not cp.waiting:
                self._all_acknowledged(cp)

    def chains_of(self, keys: list[Key]) -> dict[ChainKey, list[StateFile]]:
        """The restored state chains of these subtasks, for the writer of the process that
        runs them to extend."""
        return self.chains.of_subtasks(keys)

    def requests_due(self) -> list[tuple[Key, Any]]:
        """What remote subtasks must be told now (each taken once): a source subtask's
        barrier to inject, as ``(key, Barrier)``; a finished subtask's WriteFinalAgain."""
        if not self._inject and not self._requests:
            return []
        with self._lock:
            due = [(key, (key, barrier)) for key, barrier in self._inject.items()]
            due += self._requests
            self._inject, self._requests = {}, []
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
        """Queue a subtask's state for the writer threads (lock held)."""
        return self.writer.submit(epoch, key, payload, final)

    def _label(self, vertex: int) -> str:
        return f"[{vertex}] {self.graph.vertex(vertex).name}"

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
        for state in list(self._remote.values()):
            names.update(f.file.path for f in state.files())
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


def _settle(fut: Future, state: SubtaskState | None, error: str | BaseException | None) -> None:
    """Resolve a future standing for a state written elsewhere (once: a late message for a
    future already settled is dropped)."""
    try:
        if error is None:
            fut.set_result(state)
        else:
            fut.set_exception(error if isinstance(error, BaseException)
                              else CheckpointError(error))
    except InvalidStateError:
        pass
