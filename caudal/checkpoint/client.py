"""The checkpoint hooks of a subtask whose coordinator is elsewhere (another process or
machine): the same interface as ``CheckpointCoordinator`` offers a local subtask
(runtime.subtask.CheckpointHooks), built from messages only.

The subtask's state does not travel to the coordinator: the client writes it to the
checkpoint storage with the ``StateWriter`` of its process (checkpoint.writer) and then
sends what it wrote (paths, sizes, offsets). The messages of one subtask leave in the order
its hooks were called: a snapshot's acknowledgement goes out when its write is done, and
``finished`` waits for the subtask's writes before it says the input ended (a final state
that overtook a snapshot would stand in for the snapshot's epoch).

The transport is not this module's business: ``send`` hands a message to whatever carries it
to the coordinator (the Ray runtime: an outbox the driver drains), and the carrier calls
``deliver`` with what the coordinator says back.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from caudal.checkpoint.barrier import Barrier
from caudal.checkpoint.errors import CheckpointError
from caudal.checkpoint.manifest import SubtaskState
from caudal.checkpoint.messages import (
    Acknowledge,
    CheckpointStatus,
    FinalWritten,
    Finished,
    FinishedReply,
    WriteFinalAgain,
)
from caudal.checkpoint.writer import Key, StateWriter


class CheckpointClient:
    def __init__(self, send: Callable[[Any], None], writer: StateWriter, committed: int = 0):
        self._send = send
        self.writer = writer
        self._cond = threading.Condition()
        self._barriers: dict[Key, Barrier] = {}
        self._replies: dict[Key, FinishedReply] = {}
        #: finished subtasks' final states, kept in case their write must be done again
        self._finals: dict[Key, dict[str, Any]] = {}
        self._status = CheckpointStatus(committed, 0)

    # ---- what the carrier delivers ---------------------------------------------------------

    def deliver(self, message: Any) -> None:
        if isinstance(message, WriteFinalAgain):
            key = (message.vertex, message.subtask)
            self._write_final(key, message.epoch, self._finals[key])
            return
        with self._cond:
            if isinstance(message, CheckpointStatus):
                self._status = message
            elif isinstance(message, FinishedReply):
                self._replies[(message.vertex, message.subtask)] = message
            elif isinstance(message, tuple) and isinstance(message[1], Barrier):
                self._barriers[message[0]] = message[1]
            self._cond.notify_all()

    @property
    def final_error(self) -> str | None:
        return self._status.final_error

    # ---- CheckpointHooks ---------------------------------------------------------------------

    def barrier_due(self, vertex: int, subtask: int) -> Barrier | None:
        if not self._barriers:
            return None
        with self._cond:
            return self._barriers.pop((vertex, subtask), None)

    def acknowledge(self, vertex: int, subtask: int, epoch: int,
                    state: dict[str, Any]) -> None:
        """Queue the snapshot's write; its acknowledgement leaves once it is written."""
        timing = state.pop("timing", None) or {}

        def then(written: SubtaskState | None, error: BaseException | None) -> None:
            self._send(Acknowledge(vertex, subtask, epoch, written, _text(error), timing))

        self.writer.submit(epoch, (vertex, subtask), state, False, then)

    def finished(self, vertex: int, subtask: int, label: int, state: dict[str, Any]) -> int:
        key = (vertex, subtask)
        self.writer.wait(key)   # its acknowledgements leave first
        self._send(Finished(vertex, subtask, label))
        with self._cond:
            while key not in self._replies:
                if self._status.closed:
                    return label
                self._cond.wait(0.05)
            reply = self._replies.pop(key)
        self._finals[key] = state
        self._write_final(key, reply.directory, state)
        return reply.needed

    def _write_final(self, key: Key, epoch: int, state: dict[str, Any]) -> None:
        def then(written: SubtaskState | None, error: BaseException | None) -> None:
            self._send(FinalWritten(*key, written, _text(error)))

        self.writer.submit(epoch, key, state, True, then)

    def committed_epoch(self) -> int:
        return self._status.completed

    def wait_completed(self, epoch: int, cancel: threading.Event | None = None,
                       until_covered: bool = False) -> bool:
        """As ``CheckpointCoordinator.wait_completed``, from the statuses received."""
        with self._cond:
            while True:
                s = self._status
                if s.completed >= epoch:
                    return True
                if s.failed >= epoch and not until_covered:
                    return False
                if until_covered and s.final_error is not None:
                    return False
                if until_covered and s.final_done:
                    return True
                if s.closed or (cancel is not None and cancel.is_set()):
                    return False
                self._cond.wait(0.05)

    def close(self) -> None:
        self.writer.close(wait=False)


def _text(error: BaseException | None) -> str | None:
    """A write error as one line for the coordinator's log."""
    if error is None:
        return None
    if isinstance(error, CheckpointError):
        return error.message
    return f"{type(error).__name__}: {error}"
