"""The checkpoint hooks of a subtask whose coordinator is elsewhere (another process or
machine): the same interface as ``CheckpointCoordinator`` offers a local subtask
(runtime.subtask.CheckpointHooks), built from messages only.

The transport is not this module's business: ``send`` hands a message to whatever carries it
to the coordinator (the Ray runtime: an outbox the driver drains), and the carrier calls
``deliver`` with what the coordinator says back.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from caudal.checkpoint.messages import (
    Acknowledge,
    Barrier,
    CheckpointStatus,
    Finished,
    FinishedReply,
)


class CheckpointClient:
    def __init__(self, send: Callable[[Any], None], committed: int = 0):
        self._send = send
        self._cond = threading.Condition()
        self._barriers: dict[tuple[int, int], Barrier] = {}
        self._replies: dict[tuple[int, int], int] = {}
        self._status = CheckpointStatus(committed, 0)

    # ---- what the carrier delivers ---------------------------------------------------------

    def deliver(self, message: Any) -> None:
        with self._cond:
            if isinstance(message, CheckpointStatus):
                self._status = message
            elif isinstance(message, FinishedReply):
                self._replies[(message.vertex, message.subtask)] = message.needed
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
        self._send(Acknowledge(vertex, subtask, epoch, state))

    def finished(self, vertex: int, subtask: int, label: int, state: dict[str, Any]) -> int:
        key = (vertex, subtask)
        self._send(Finished(vertex, subtask, label, state))
        with self._cond:
            while key not in self._replies:
                if self._status.closed:
                    return label
                self._cond.wait(0.05)
            return self._replies.pop(key)

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
