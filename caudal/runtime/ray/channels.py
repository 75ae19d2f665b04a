"""Channels between subtasks in different processes (Ray actors).

The sender calls ``push(key, channel, seq, item)`` on the actor that hosts subtask ``key``: a ``pyarrow.RecordBatch``
travels as Arrow buffers (Ray's pickle-5 out-of-band path puts them in the object store as
they are: no row is pickled), control markers as small dataclasses. A threaded actor may run
two calls of one caller out of order, so every item carries a per-channel sequence number and
the receiver puts items into its input gate in that order.

Backpressure is by credits: a sender has at most ``credits`` items of a channel that the
receiving subtask has not yet taken from its gate; beyond that it asks the receiver
(``credit``) and waits until the subtask has consumed enough. So a slow subtask stalls its
upstream subtasks, up to the sources, as in the local runtime, and the object store holds at
most ``credits`` batches per channel.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from caudal.runtime.channels import Cancelled, InputGate

#: batches (and markers) of one channel in flight between two actors
CREDITS = 8
#: how long a blocked sender or receiver waits before looking at the job's cancel flag
WAIT_S = 0.5


@dataclass(frozen=True, slots=True)
class RowsOnly:
    """A batch without columns (``SELECT count(*)`` reads none): pickling a RecordBatch
    rebuilds it from its columns and would lose its row count, so only the count travels."""

    rows: int

    def batch(self) -> pa.RecordBatch:
        return pa.record_batch([pa.nulls(self.rows)], names=["_"]).select([])


def outgoing(item: Any) -> Any:
    if isinstance(item, pa.RecordBatch) and item.num_columns == 0:
        return RowsOnly(item.num_rows)
    return item


class CountingGate(InputGate):
    """An input gate that counts what the subtask took from each channel (returned credits),
    and puts items into their channel in sequence order."""

    def __init__(self, channels: int, capacity: int, cancel: threading.Event):
        super().__init__(channels, capacity, cancel)
        self._consumed = [0] * channels
        self._expected = [0] * channels
        self._early: list[dict[int, Any]] = [{} for _ in range(channels)]
        self._order = threading.Lock()
        self._taken = threading.Condition()

    def push(self, channel: int, seq: int, item: Any) -> None:
        with self._order:
            early = self._early[channel]
            early[seq] = item.batch() if isinstance(item, RowsOnly) else item
            while self._expected[channel] in early:
                self.put(channel, early.pop(self._expected[channel]))
                self._expected[channel] += 1

    def get(self, timeout: float) -> tuple[int, Any] | None:
        got = super().get(timeout)
        if got is not None:
            with self._taken:
                self._consumed[got[0]] += 1
                self._taken.notify_all()
        return got

    def more_batches(self, channels: Any, rows: int) -> list[tuple[int, pa.RecordBatch]]:
        taken = super().more_batches(channels, rows)
        if taken:
            with self._taken:
                for channel, _ in taken:
                    self._consumed[channel] += 1
                self._taken.notify_all()
        return taken

    def wait_consumed(self, channel: int, until: int) -> int:
        """Block until the subtask took ``until`` items of ``channel`` (or a while passed);
        returns how many it took."""
        with self._taken:
            if self._consumed[channel] < until and not self._cancel.is_set():
                self._taken.wait_for(
                    lambda: self._consumed[channel] >= until or self._cancel.is_set(),
                    timeout=WAIT_S)
            return self._consumed[channel]


class RemotePort:
    """The sending end of every channel from one subtask into one remote subtask."""

    def __init__(self, actor: Any, key: tuple[int, int], cancel: threading.Event,
                 credits: int = CREDITS):
        self.actor = actor
        self.key = key
        self.cancel = cancel
        self.credits = credits
        self._sent: dict[int, int] = {}
        self._consumed: dict[int, int] = {}

    def put(self, channel: int, item: Any) -> None:
        import ray

        sent = self._sent.get(channel, 0)
        while sent - self._consumed.get(channel, 0) >= self.credits:
            if self.cancel.is_set():
                raise Cancelled
            ref = self.actor.credit.remote(self.key, channel, sent - self.credits + 1)
            self._consumed[channel] = ray.get(ref)
        self.actor.push.remote(self.key, channel, sent, outgoing(item))
        self._sent[channel] = sent + 1
