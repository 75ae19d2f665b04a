"""Top-N per partition without a window (Flink's Top-N and Deduplication): ``ROW_NUMBER() /
RANK() / DENSE_RANK() OVER (PARTITION BY k ORDER BY x) <= N`` over an unbounded stream,
emitted as a changelog.

At each flush (every ``flush_us`` of processing time and at the end of the input, like the
updating aggregate) the partitions that received rows are ranked again in one vectorized
pass over their rows (operators.partition_rows): sort by partition, ORDER BY keys and arrival
(ties go to the earlier row; to the later one for ORDER BY processing time DESC, whose rows
read in one batch share a PROCTIME() value), number the rows of each partition, and compare
each row's rank with the rank emitted before. Only net changes leave the operator:

* ``ROW_NUMBER`` with the rank selected: per position ``(partition, rn)``, the row there now
  against the row there before — an update pair when it changed (what an upsert sink keyed
  by partition and rank number wants), a delete or an insert when the partition shrank or
  grew;
* the rank not selected (deduplication, q18): only membership — a row that left the top N is
  deleted and one that entered is inserted, paired as an update when they share a partition;
* ``RANK`` / ``DENSE_RANK`` with the rank selected: per row, an update pair when its rank
  changed.

A top-1 of ROW_NUMBER over an append-only input with integer-like partition and ORDER BY
columns (a deduplication, Nexmark q18) does not rank partitions again: operators.top_one
keeps one slot per partition across flushes and compares each partition's best waiting row
with its stored one; the changes it emits are the ones this path would.

State: over an append-only input, rows outside the top N are dropped at once (a rank only
grows as rows arrive), so a partition keeps at most N rows (more only with RANK ties). Over a
changelog every row is kept, since a retraction can bring a lower row back into the top N.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pyarrow as pa

from caudal.operators.base import Operator
from caudal.operators.partition_rows import (
    SEQ,
    PartitionRows,
    Sorted,
    Touched,
    changelog,
    images,
    partition_hash,
    pick_rows,
    sort_partitions,
)
from caudal.operators.periodic_flush import PeriodicFlush
from caudal.operators.top_one import TopOne, accepts

FUNCTIONS = ("row_number", "rank", "dense_rank")
#: rows waiting for a flush before they are cut to the top N among themselves
_REDUCE_ROWS = 1 << 16
#: rows still waiting after that: flush now (bounds memory between flushes)
_FLUSH_ROWS = 1 << 17
#: the limit of a top-N without one (over a changelog): above every rank
_UNLIMITED = 1 << 62


def ranks_of(ordered: Sorted, function: str) -> np.ndarray:
    """The rank of each sorted row within its partition."""
    n = len(ordered.heads)
    position = np.arange(n, dtype=np.int64)
    first = np.maximum.accumulate(np.where(ordered.heads, position, 0)) if n else position
    if function == "row_number":
        return position - first + 1
    runs = ordered.peer_start | ordered.heads
    if function == "rank":
        return np.maximum.accumulate(np.where(runs, position, 0)) - first + 1 if n else position
    count = np.cumsum(runs)
    return count - count[first] + 1


def _match(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Positions ``(i, j)`` with ``a[i] == b[j]`` (values unique within each array)."""
    _, i, j = np.intersect1d(a, b, assume_unique=True, return_indices=True)
    return i, j


def _occurrence(gid: np.ndarray) -> np.ndarray:
    """0, 1, 2, … among the rows of each partition, in row order."""
    if len(gid) == 0:
        return gid
    order = np.argsort(gid, kind="stable")
    sorted_gid = gid[order]
    first = np.searchsorted(sorted_gid, sorted_gid, side="left")
    out = np.empty(len(gid), dtype=np.int64)
    out[order] = np.arange(len(gid)) - first
    return out


class UpdatingRank(PeriodicFlush, Operator):
    """Keeps the top ``limit`` rows of each partition; emits their changes as a changelog.

    Input: the rows (plus ``_op`` when ``updating_input``). Output: the input columns, the
    rank (``output_schema``'s last column), then ``_op``.
    """

    #: at another parallelism its rows are taken from the old subtasks' tables as they are
    #: copied into its store (PartitionRows.restore)
    own_key_groups = frozenset({"rows"})

    def __init__(self, partition: list[str], order: list[tuple[str, bool, bool]],
                 function: str, limit: int, input_schema: pa.Schema,
                 output_schema: pa.Schema, rank_used: bool = True,
                 updating_input: bool = False, flush_us: int = 1_000_000,
                 later_ties: bool = False):
        assert function in FUNCTIONS and (limit is not None or updating_input)
        self.partition = list(partition)
        self.order = list(order)
        self.function = function
        #: None: every rank (over a changelog, whose rows are all kept anyway)
        self.limit = _UNLIMITED if limit is None else int(limit)
        self.rank_used = rank_used
        self.updating_input = updating_input
        #: ties go to the later row (ORDER BY processing time DESC): the sort, not the slots
        self.later_ties = later_ties
        self.output_schema = output_schema
        self.rank_name = output_schema.names[-1]
        self.flush_us = max(0, int(flush_us))
        #: a top-1 of integer-like keys over an append-only input (a deduplication): slots
        #: that persist across flushes instead of a sort of the touched partitions (the
        #: rows then keep no partition hash: the slots find their partitions)
        slots = function == "row_number" and self.limit == 1 and not updating_input and \
            not later_ties and accepts(self.partition, self.order, input_schema)
        self.state = PartitionRows(input_schema, self.partition,
                                   [pa.field(self.rank_name, pa.int64())], updating_input,
                                   hashes=not slots)
        self._reduce_at = _REDUCE_ROWS
        self.top_one = TopOne(self.partition, self.order, self.state, self.rank_name) \
            if slots else None

    def process(self, batch: pa.RecordBatch, input: int = 0) -> Sequence[pa.RecordBatch]:
        if batch.num_rows == 0:
            return ()
        self.state.add(batch)
        if self._flush_due():
            return self.flush()
        if self.top_one is not None:
            return self.flush() if self.state.pending_rows >= _FLUSH_ROWS else ()
        if not self.updating_input and self.state.pending_rows >= self._reduce_at:
            self._reduce_pending()
            if self.state.pending_rows >= _FLUSH_ROWS:  # many partitions: flush early
                return self.flush()
        return ()

    def _reduce_pending(self) -> None:
        """Drop waiting rows outside the top N of their partition among the waiting rows
        alone: they are outside it among all rows too (append-only input)."""
        state = self.state
        pending = pa.concat_tables(state.pending)
        ordered = sort_partitions(pending, partition_hash(pending, self.partition),
                                  pending.column(SEQ).to_numpy(), self.partition, self.order,
                                  self.later_ties)
        keep = np.sort(ordered.indices[ranks_of(ordered, self.function) <= self.limit])
        if len(keep) < pending.num_rows:
            pending = pick_rows(pending, keep)
        state.pending, state.pending_rows = [pending], pending.num_rows
        # rows of many small partitions barely shrink: stop trying until the next flush
        shrunk = len(keep) <= len(ordered.indices) // 2
        self._reduce_at = max(_REDUCE_ROWS, 2 * pending.num_rows) if shrunk else _FLUSH_ROWS

    # ---- a flush --------------------------------------------------------------------------

    def flush(self) -> list[pa.RecordBatch]:
        """Rank the touched partitions again and emit what changed."""
        self._schedule_flush()
        self._reduce_at = _REDUCE_ROWS
        if self.top_one is not None:
            return self._flush_top_one()
        touched = self.state.take_touched(self.ctx.metrics)
        if touched is None:
            return []
        rows = touched.rows
        ordered = sort_partitions(rows, touched.h, touched.seq, self.partition, self.order,
                                  self.later_ties)
        rank = np.empty(rows.num_rows, dtype=np.int64)
        rank[ordered.indices] = ranks_of(ordered, self.function)
        gid = np.empty(rows.num_rows, dtype=np.int64)
        gid[ordered.indices] = ordered.gid
        rank[rank > self.limit] = 0
        new_emitted = rank > 0
        keep = new_emitted if not self.updating_input else np.ones(rows.num_rows, dtype=bool)
        mask = pa.array(keep)
        ranks = pa.table({self.rank_name: pa.array(rank)})
        self.state.put(rows.filter(mask), ranks.filter(mask), touched.seq[keep],
                       touched.h[keep], new_emitted[keep])
        return self._emit(touched, gid, rank)

    def _flush_top_one(self) -> list[pa.RecordBatch]:
        """The waiting rows into the slots; a replaced row's change is one update of its
        partition (rank 1 before and after), a partition's first row an insert."""
        state = self.state
        if not state.pending:
            return []
        pending = pa.concat_tables(state.pending) if len(state.pending) > 1 \
            else state.pending[0]
        state.pending, state.pending_rows = [], 0
        left, replacing, fresh = self.top_one.merge(pending)
        return changelog(self.output_schema, [], [self._first(left)],
                         [self._first(replacing)], [self._first(fresh)])

    def _first(self, rows: pa.Table) -> pa.Table:
        """Output rows of rank 1."""
        return images(rows, pa.table({self.rank_name: pa.array(
            np.ones(rows.num_rows, dtype=np.int64))}), self.output_schema)

    def _emit(self, t: Touched, gid: np.ndarray, rank: np.ndarray) -> list[pa.RecordBatch]:
        old_rank = np.where(t.old_emitted, t.old.column(0).fill_null(0).to_numpy(
            zero_copy_only=False), 0).astype(np.int64)
        if t.removed.num_rows:
            # a retracted row belongs to a partition among the touched ones (or its own)
            removed_gid = self._removed_gid(t, gid)
            removed_rank = np.where(t.removed_emitted, t.removed_old.column(0).fill_null(0)
                                    .to_numpy(zero_copy_only=False), 0).astype(np.int64)
            all_rows = pa.concat_tables([t.rows, t.removed])
            gid = np.concatenate([gid, removed_gid])
            old_rank = np.concatenate([old_rank, removed_rank])
            rank = np.concatenate([rank, np.zeros(t.removed.num_rows, dtype=np.int64)])
            seq = np.concatenate([t.seq, t.removed_seq])
        else:
            all_rows, seq = t.rows, t.seq
        if self.function == "row_number" and self.rank_used:
            return self._by_position(all_rows, gid, seq, old_rank, rank)
        return self._by_row(all_rows, gid, old_rank, rank)

    @staticmethod
    def _removed_gid(t: Touched, gid: np.ndarray) -> np.ndarray:
        """Partition numbers for retracted rows: the number of a kept row with the same
        partition hash when there is one (rows pair within a partition only), else new."""
        out = np.full(t.removed.num_rows, -1, dtype=np.int64)
        if len(t.h):
            order = np.argsort(t.h, kind="stable")
            at = np.searchsorted(t.h[order], t.removed_h)
            at = np.minimum(at, len(order) - 1)
            hit = t.h[order][at] == t.removed_h
            out[hit] = gid[order][at][hit]
        fresh = out < 0
        base = int(gid.max()) + 1 if len(gid) else 0
        out[fresh] = base + np.arange(int(fresh.sum()))
        return out

    def _image(self, rows: pa.Table, index: np.ndarray, rank: np.ndarray) -> pa.Table:
        taken = pick_rows(rows, index)
        return images(taken, pa.table({self.rank_name: pa.array(rank[index])}),
                      self.output_schema)

    def _by_position(self, rows: pa.Table, gid: np.ndarray, seq: np.ndarray,
                     old_rank: np.ndarray, rank: np.ndarray) -> list[pa.RecordBatch]:
        """Per (partition, rank number): the row there before against the row there now."""
        width = int(max(old_rank.max(initial=0), rank.max(initial=0))) + 1
        was = np.flatnonzero(old_rank > 0)
        now = np.flatnonzero(rank > 0)
        i, j = _match(gid[was] * width + old_rank[was], gid[now] * width + rank[now])
        changed = seq[was[i]] != seq[now[j]]
        only_old = np.ones(len(was), dtype=bool)
        only_old[i] = False
        only_new = np.ones(len(now), dtype=bool)
        only_new[j] = False
        return changelog(
            self.output_schema, [self._image(rows, was[only_old], old_rank)],
            [self._image(rows, was[i[changed]], old_rank)],
            [self._image(rows, now[j[changed]], rank)],
            [self._image(rows, now[only_new], rank)])

    def _by_row(self, rows: pa.Table, gid: np.ndarray, old_rank: np.ndarray,
                rank: np.ndarray) -> list[pa.RecordBatch]:
        """Per row: it left, entered, or (rank selected) changed rank."""
        gone = np.flatnonzero((old_rank > 0) & (rank == 0))
        born = np.flatnonzero((old_rank == 0) & (rank > 0))
        before: list[pa.Table] = []
        after: list[pa.Table] = []
        if self.rank_used:
            moved = np.flatnonzero((old_rank > 0) & (rank > 0) & (old_rank != rank))
            before.append(self._image(rows, moved, old_rank))
            after.append(self._image(rows, moved, rank))
        else:
            # a row leaving and one entering the same partition: one update
            width = max(len(gone), len(born)) + 1
            i, j = _match(gid[gone] * width + _occurrence(gid[gone]),
                          gid[born] * width + _occurrence(gid[born]))
            before.append(self._image(rows, gone[i], old_rank))
            after.append(self._image(rows, born[j], rank))
            gone = np.delete(gone, i)
            born = np.delete(born, j)
        return changelog(self.output_schema, [self._image(rows, gone, old_rank)], before,
                         after, [self._image(rows, born, rank)])

    # ---- checkpoints ----------------------------------------------------------------------

    def snapshot(self, epoch: int) -> dict[str, Any]:
        return self.state.snapshot(self.ctx.max_key_groups)

    def restore(self, state: dict[str, Any]) -> None:
        self.state.restore(state, self.ctx)
        if self.top_one is not None:
            self.top_one.rebuild()

    def state_rows(self) -> int:
        return self.state.size + self.state.pending_rows
