"""Channels between subtasks in different processes (Ray actors).

The sender calls ``push(key, items)`` on the actor that hosts subtask ``key``, ``items`` a list
of ``(channel, seq, item)``: a ``pyarrow.RecordBatch`` travels as Arrow buffers (Ray's pickle-5
out-of-band path: no row is pickled; up to ``INLINE_BYTES`` inside the call, larger ones
through the object store as they are), control markers as small dataclasses. A threaded actor may run two calls of one caller out of order,
so every item carries a per-channel sequence number and the receiver puts items into its
input gate in that order.

One call per item would cost an actor call (a few milliseconds of the sender's thread on a
busy machine) for every watermark as well as every batch, and a subtask sends a watermark
after most batches. So a port holds the last batch it was given until the next item for the
same subtask, the end of the sending subtask's step (``flush``, which the subtask loop calls
before it waits for input) or a wait for credits: a batch and the markers that follow it
travel in one call. Only a batch is held, never a marker, and never across the sender's wait
for input or for credits: barriers go out at once, and a receiver never waits for one
particular batch, so a batch held a moment longer (while its sender waits for room in
another channel) cannot stall it.

Backpressure is by credits: a sender has at most ``credits`` items of a channel that the
receiving subtask has not yet taken from its gate; beyond that it asks the receiver
(``credit``) and waits until the subtask has consumed enough. So a slow subtask stalls its
upstream subtasks, up to the sources, as in the local runtime, and the object store holds at
most ``credits`` batches per channel.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from caudal.runtime.channels import Cancelled, InputGate

#: batches (and markers) of one channel in flight between two actors
CREDITS = 8
#: a push whose batches pickle to at most this many bytes travels inside the actor call (Ray's
#: ``max_direct_call_object_size``, set for the workers; Ray's default is 100 kB), worker to
#: worker, not through the object stores, where each object costs the raylets a create, seal,
#: pull (across nodes), release and free: Nexmark q8's shuffled batches are 0.1-1.3 MB, and
#: inline its daemons' CPU fell from 4.2 s to 1.2 s and its job time by a sixth (300 M events,
#: two nodes). Beyond a few MB the workers' own CPU per call grows faster inline than through
#: the store (bench/README.md, "q8 on Ray: where the workers' CPU went")
INLINE_BYTES = 2 << 20


def worker_env() -> dict[str, str]:
    """The environment variables of a worker actor's process that its channels need."""
    return {"RAY_max_direct_call_object_size": str(INLINE_BYTES)}


#: how long a blocked sender or receiver waits before looking at the job's cancel flag
WAIT_S = 0.5


@dataclass(frozen=True, slots=True)
class RowsOnly:
    """A batch without columns (``SELECT count(*)`` reads none): pickling a RecordBatch
    rebuilds it from its columns and would lose its row count, so only the count travels."""

    rows: int

    def batch(self) -> pa.RecordBatch:
        return pa.record_batch([pa.nulls(self.rows)], names=["_"]).select([])


#: a batch whose buffers are this many times larger than its rows (a slice of a bigger
#: batch: pickling a sliced RecordBatch ships its parent's whole buffers, ARROW-10739)
#: travels as a compact copy of its rows
SLICED = 2
#: ... unless the difference is below this many bytes (offsets, validity bitmaps)
SLICED_SLACK = 64 * 1024


def outgoing(item: Any) -> Any:
    """What travels for ``item``: a batch without columns as its row count, a slice of a
    larger batch as a copy of its own rows, anything else as it is."""
    if isinstance(item, pa.RecordBatch):
        if item.num_columns == 0:
            return RowsOnly(item.num_rows)
        if item.get_total_buffer_size() > SLICED * item.nbytes + SLICED_SLACK:
            return pa.RecordBatch.from_arrays([pa.concat_arrays([c]) for c in item.columns],
                                              schema=item.schema)
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
        #: items not sent yet: at most one batch (see the module's docstring)
        self._held: list[tuple[int, int, Any]] = []

    def put(self, channel: int, item: Any) -> float:
        """Send ``item`` (a batch maybe with the next item); the seconds spent waiting
        for credits (backpressure)."""
        import ray

        waited = 0.0
        sent = self._sent.get(channel, 0)
        if sent - self._consumed.get(channel, 0) >= self.credits:
            self.flush()  # the receiver may need the held batch to return credits
            started = time.monotonic()
            while sent - self._consumed.get(channel, 0) >= self.credits:
                if self.cancel.is_set():
                    raise Cancelled
                ref = self.actor.credit.remote(self.key, channel, sent - self.credits + 1)
                self._consumed[channel] = ray.get(ref)
            waited = time.monotonic() - started
        self._sent[channel] = sent + 1
        if isinstance(item, pa.RecordBatch):
            self.flush()
            self._held.append((channel, sent, outgoing(item)))
        else:
            self._held.append((channel, sent, outgoing(item)))
            self.flush()
        return waited

    def flush(self) -> None:
        """Send what is held."""
        if self._held:
            items, self._held = self._held, []
            self.actor.push.remote(self.key, items)
