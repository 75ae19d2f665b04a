"""The Operator interface: what every stateless or stateful operator implements.

An operator receives batches (from input ``0``, or ``0``/``1`` for a join), watermarks and the
end of its input, and returns the batches it emits. What it must do at a checkpoint barrier is
one method (``snapshot``), restoring is another (``restore``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa


@dataclass
class OperatorContext:
    """Where an operator instance runs."""

    subtask: int = 0
    parallelism: int = 1
    #: the job's metric counters, keyed by name; operators add their own
    metrics: dict[str, int] = field(default_factory=dict)
    #: max number of key groups (for keyed state)
    max_key_groups: int = 128
    #: the id of the vertex the operator runs in: with ``subtask``, it names the instance
    #: (two INSERTs into one table are two sink vertices with the same subtask numbers)
    vertex: int = 0
    #: False when the job takes no checkpoints: sinks then commit only at the end of input
    checkpointing: bool = True
    #: a final LIMIT calls this once it has all its rows (the runtime may end the sources)
    limit_reached: Callable[[], None] | None = None


class Operator:
    """Base operator: passes everything through unchanged. Subclasses override what they use."""

    #: the schema of emitted batches (set by the constructor or ``open``)
    output_schema: pa.Schema
    #: the runtime may concatenate input batches queued together into one ``process`` call
    #: (runtime.channels, ``more_batches``): True where a batch means only its rows, not,
    #: e.g., one partial state per key
    accepts_merged_batches: bool = False
    #: names of state tables ``restore`` accepts as a ``state.incremental.Unfolded`` (a
    #: whole table and the merged deltas after it, not yet folded) when the parallelism
    #: is unchanged: an operator that applies a delta in place skips a copy of its state
    unfolded: frozenset[str] = frozenset()
    #: names of keyed state tables ``restore`` cuts to its own key groups itself when the
    #: parallelism changed (the old subtasks' tables concatenated, ``_key_group`` kept):
    #: one that copies the rows into a store of its own copies only its rows, once, where
    #: cutting them first copied every column of them
    own_key_groups: frozenset[str] = frozenset()

    def open(self, ctx: OperatorContext) -> None:
        self.ctx = ctx

    def process(self, batch: pa.RecordBatch, input: int = 0) -> Sequence[pa.RecordBatch]:
        """Consume a batch; return the batches to emit now."""
        return (batch,)

    def on_watermark(self, time: int) -> Sequence[pa.RecordBatch]:
        """The input watermark advanced to ``time``: emit what is now complete."""
        return ()

    def output_watermark(self, time: int) -> int:
        """The watermark to forward after ``on_watermark(time)``."""
        return time

    def on_end(self) -> Sequence[pa.RecordBatch]:
        """All inputs ended: emit whatever remains."""
        return ()

    def release_held(self) -> Sequence[pa.RecordBatch]:
        """Emit what this operator holds back outside its snapshot (a local
        pre-aggregation's partials, which exist at parallelism > 1 only and so must not be
        checkpointed). Called before a checkpoint barrier passes, so that those rows reach
        the downstream ahead of it (as Flink's ``prepareSnapshotPreBarrier``), and before a
        source subtask declares itself idle, after which the downstream's watermark may
        go on without it. Most operators hold nothing of the kind."""
        return ()

    def on_idle(self) -> None:
        """This chain's source subtask declares itself idle: the downstream's watermark may
        go on without it, past this operator's own (see ``LocalWindowPartials``)."""

    def snapshot(self, epoch: int) -> dict[str, Any]:
        """State to checkpoint at a barrier: name -> ``pyarrow.Table`` (written as Parquet).

        Keyed state tables carry an int32 ``_key_group`` column (see state.key_groups) so a
        job restored at another parallelism can hand each subtask its own key groups.

        The rule: **a snapshot never shares memory with live state.** The checkpoint
        coordinator writes it later, on its own threads, while this operator goes on
        processing; anything the operator changes in place after returning would leak
        post-barrier values into the checkpoint. Immutable values are fine as they are (an
        Arrow table the operator only ever replaces, never writes into). Anything mutable is
        copied here, at the barrier: NumPy arrays (``pa.array(ndarray)`` does not copy, so
        copy the array first), Python lists and dicts. tests/operators/test_snapshot_isolation.py
        checks every registered operator that overrides this method.
        """
        return {}

    def restore(self, state: dict[str, Any]) -> None:
        """Load state written by ``snapshot``. When the job was rescaled, the tables of all
        old subtasks arrive concatenated; keep the rows whose ``_key_group`` falls in
        ``key_group_range(self.ctx)``."""

    def close(self) -> None:
        pass
