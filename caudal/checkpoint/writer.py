"""Writing subtasks' snapshots to the checkpoint storage: tables and deltas through the state
chains (checkpoint.chains), small values inline as JSON; the result is a ``SubtaskState``,
what the manifest records (paths, sizes, CRCs, offsets).

A writer runs where the state is. The local runtime has one, owned by the coordinator; on Ray
each worker actor has its own for the subtasks it hosts, so state goes from the worker to the
storage directly and the coordinator only receives the small ``SubtaskState`` (as Flink's
task managers write their state and acknowledge handles). Writes run in background threads
(the pipeline stalls no longer than the operators' ``snapshot`` calls); the writes of one
subtask run in order, since a delta chain must grow in order.

A worker's writer compacts chains inside the snapshot's write (``background=False``), so
every file it writes is named by the acknowledgement that follows: the coordinator, which
deletes what no checkpoint needs, never sees a file it does not know of.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import pyarrow as pa

from caudal.checkpoint.chains import ChainKey, StateChains
from caudal.checkpoint.errors import CheckpointError
from caudal.checkpoint.manifest import StateFile, StateRef, SubtaskState
from caudal.checkpoint.storage import CheckpointStorage
from caudal.state.incremental import StateDelta

Key = tuple[int, int]

#: writer threads per writer (per process)
WRITER_THREADS = 2


class StateWriter:
    """Writes the snapshots of some subtasks (all of a local job's, or one Ray worker's)."""

    def __init__(self, storage: CheckpointStorage, label: Callable[[int], str],
                 chains: dict[ChainKey, list[StateFile]] | None = None,
                 log: Callable[[str], None] = print, background: bool = True):
        self.storage = storage
        #: a vertex's name for errors: "[3] window aggregate"
        self.label = label
        #: the files of every state table, written and compacted
        self.chains = StateChains(storage, chains, log, background=background)
        #: per subtask, its latest write: writes of one subtask run in order
        self._last: dict[Key, Future] = {}
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(WRITER_THREADS, thread_name_prefix="caudal-ckpt-write")

    def submit(self, epoch: int, key: Key, payload: dict[str, Any], final: bool,
               then: Callable[[SubtaskState | None, BaseException | None], None] | None = None,
               ) -> Future:
        """Queue a subtask's snapshot; the future's result is its ``SubtaskState``. Files go
        to the directory of ``epoch``. ``then(state, error)`` runs in the writer thread
        before the future resolves (so whoever waits for it sees what ``then`` did)."""

        def write() -> SubtaskState:
            try:
                state = self.write_state(epoch, key, payload, final)
            except BaseException as e:
                if then is not None:
                    then(None, e)
                raise
            if then is not None:
                then(state, None)
            return state

        return self._after_previous(key, write)

    def defer(self, key: Key, payload: dict[str, Any]) -> None:
        """A snapshot for a checkpoint that was abandoned: its deltas are kept for the next
        write (the operator will not send those changes again)."""

        def defer() -> None:
            for index, state in enumerate(payload.get("operators", [])):
                for name, value in (state or {}).items():
                    if isinstance(value, pa.RecordBatch):
                        value = pa.Table.from_batches([value])
                    if isinstance(value, (pa.Table, StateDelta)):
                        ckey = (*key, index, name)
                        self.chains.defer(ckey, value, lambda c=ckey: self._no_chain(c))

        self._after_previous(key, defer)

    def _after_previous(self, key: Key, work: Callable[[], Any]) -> Future:
        with self._lock:
            previous = self._last.get(key)

            def ordered() -> Any:
                if previous is not None:
                    previous.exception()  # wait; its failure is reported by its checkpoint
                return work()

            fut = self._pool.submit(ordered)
            self._last[key] = fut
        return fut

    def wait(self, key: Key) -> None:
        """Until the writes of subtask ``key`` queued so far are done (or failed)."""
        with self._lock:
            fut = self._last.get(key)
        if fut is not None:
            fut.exception()

    def close(self, wait: bool = True) -> None:
        self._pool.shutdown(wait=wait, cancel_futures=not wait)
        self.chains.close(wait)

    # ---- one snapshot -----------------------------------------------------------------------

    def write_state(self, epoch: int, key: Key, payload: dict[str, Any],
                    final: bool) -> SubtaskState:
        vertex, subtask = key
        operators: list[dict[str, StateRef]] = []
        for index, state in enumerate(payload.get("operators", [])):
            refs: dict[str, StateRef] = {}
            for name, value in (state or {}).items():
                refs[name] = self.write_value(epoch, (vertex, subtask, index, name), value)
            operators.append(refs)
        offsets = payload.get("offsets")
        if offsets is not None:
            check_json(offsets, f"source offsets of {self.label(vertex)}")
        mark = payload.get("watermark")
        return SubtaskState(operators, offsets, final, int(mark) if mark is not None else None)

    def write_value(self, epoch: int, ckey: ChainKey, value: Any) -> StateRef:
        vertex, subtask, index, name = ckey
        if isinstance(value, pa.RecordBatch):
            value = pa.Table.from_batches([value])
        if isinstance(value, (pa.Table, StateDelta)):
            return StateRef(files=self.chains.write(epoch, ckey, value,
                                                    lambda: self._no_chain(ckey)))
        check_json(value, f"state {name!r} of operator {index} of {self.label(vertex)}")
        return StateRef(value=value)

    def _no_chain(self, ckey: ChainKey) -> str:
        vertex, _, index, name = ckey
        return (f"operator {index} of {self.label(vertex)} returned a StateDelta for "
                f"{name!r} without a full table before it (return the whole table from the "
                f"first snapshot after open or restore)")


def check_json(value: Any, what: str) -> None:
    try:
        json.dumps(value)
    except (TypeError, ValueError) as e:
        raise CheckpointError(f"{what} cannot be checkpointed: {e} (return pyarrow Tables, "
                              f"or JSON values: numbers, strings, lists, dicts)") from None
