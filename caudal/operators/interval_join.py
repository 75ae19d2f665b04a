"""Interval joins: rows of two append-only streams joined on keys and time conditions, such
as ``b.t BETWEEN a.t - INTERVAL '5' SECOND AND a.t + INTERVAL '1' SECOND``. The output only
appends.

Both sides keep their rows only while a partner can still arrive. The planner derives, per
side, a *deadline* for each row (``min(col + delta)`` over the constraints, plan.join_nodes):
a row stays while the watermark has not passed it, so the state holds a bounded slice of
time. A row arriving with its time already behind what the watermark allows is late: it is
counted in ``late_rows`` and dropped (its partners may be gone), never joined partially.

A batch probes the other side's stored rows through that side's persistent key index
(join_side.JoinSide: a probe costs the batch and its matches, not a hash table rebuilt over
all stored keys per batch), then the full condition, time comparisons included, is checked
on the candidate pairs; the batch is then stored. Expiring rows does not rewrite the state
at every watermark: an expired row stays in the store, skipped by probes (its deadline is
behind the watermark), until the expired rows are half the store, which is then compacted
(so each row is copied O(1) times), and before a snapshot. In an outer join a
row that never matched is emitted padded with NULLs when it expires (or at once, if it
arrives already unable to find a partner). The output watermark trails the input's by
``holdback_us``: a pair is emitted when its later row arrives, and the earlier row's time may
be behind the watermark by that much.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pyarrow as pa

from caudal import compute as pc
from caudal.operators.base import Operator, OperatorContext
from caudal.operators.join_index import KeyRows
from caudal.operators.join_rows import JoinLayout
from caudal.operators.join_side import JoinSide
from caudal.operators.keyed_tables import (
    as_array,
    batches_of,
    from_numpy,
    own_rows,
    tag_key_groups,
)
from caudal.plan.changelog import data_columns
from caudal.plan.expressions import Expr
from caudal.state.rescale import restored_watermark, watermark_table
from caudal.watermark import WATERMARK_MAX, WATERMARK_MIN

_DEADLINE, _MATCHED = "_deadline", "_matched"
_NEVER = np.iinfo(np.int64).min
_EMPTY = np.zeros(0, dtype=np.int64)
#: a side's key index starts again from its rows when it holds more than 4x this many or
#: 4x the rows' keys (see ``_compact``)
_INDEX_FLOOR = 1 << 16


def micros(column: pa.Array | pa.ChunkedArray) -> tuple[np.ndarray, np.ndarray]:
    """A timestamp column as int64 µs, and which values are valid."""
    if isinstance(column, pa.ChunkedArray):
        column = as_array(column)
    t = column.type
    if pa.types.is_timestamp(t) and t.unit != "us":
        column = column.cast(pa.timestamp("us", t.tz))
    if column.null_count == 0:   # (the usual case: the buffer as it is, no copies)
        values = column.cast(pa.int64()).to_numpy(zero_copy_only=False)
        return values.astype(np.int64, copy=False), np.ones(len(column), dtype=bool)
    valid = pc.is_valid(column).to_numpy(zero_copy_only=False)
    values = pc.fill_null(column.cast(pa.int64()), 0).to_numpy(zero_copy_only=False)
    return values.astype(np.int64, copy=False), valid


class _Times:
    """``micros`` of a batch's columns, each converted once (a column is often both the
    late check's and the deadline's)."""

    def __init__(self) -> None:
        self.seen: dict[str, tuple[np.ndarray, np.ndarray]] = {}

    def __call__(self, rows: pa.Table, column: str) -> tuple[np.ndarray, np.ndarray]:
        if column not in self.seen:
            self.seen[column] = micros(rows.column(column))
        return self.seen[column]


class IntervalJoin(Operator):
    """Input 0 is the left side, input 1 the right; both append-only."""

    accepts_merged_batches = True

    def __init__(self, kind: str, left_schema: pa.Schema, right_schema: pa.Schema,
                 left_keys: list[str], right_keys: list[str], right_rename: dict[str, str],
                 output_schema: pa.Schema, residual: Expr | None,
                 retention: list[list[tuple[str, int]]],
                 late_checks: list[list[tuple[str, int]]], holdback_us: int = 0):
        self.kind = kind
        self.layout = JoinLayout(left_schema, right_schema, right_rename, output_schema,
                                 residual)
        self.output_schema = output_schema
        self.keys = [list(left_keys), list(right_keys)]
        self.retention = [list(r) for r in retention]
        self.late_checks = [list(c) for c in late_checks]
        self.holdback = max(0, int(holdback_us))
        self.preserved = [kind in ("left", "full"), kind in ("right", "full")]
        self.schemas = [left_schema, right_schema]
        self.sides = [self._side(0), self._side(1)]
        self.watermark = WATERMARK_MIN
        #: per side of an inner join's, a time up to which a watermark cannot make half of
        #: its rows expired (the middle one of their deadlines, when last counted; None:
        #: count at the next watermark): a watermark below it does not read every deadline
        self._quiet: list[int | None] = [None, None]

    def _side(self, s: int) -> JoinSide:
        """A side's store: its deadlines, and whether each row matched (outer sides only)."""
        kept = {_DEADLINE: 0, **({_MATCHED: 0} if self.preserved[s] else {})}
        return JoinSide(self.schemas[s], self.keys[s], kept, {_DEADLINE: 0, _MATCHED: 0})

    def open(self, ctx: OperatorContext) -> None:
        super().open(ctx)
        ctx.metrics.setdefault("late_rows", 0)

    # ---- input ----------------------------------------------------------------------------

    def _deadlines(self, s: int, rows: pa.Table, times: _Times) -> np.ndarray:
        """When each row stops being able to find a partner (``_NEVER``: it cannot)."""
        out = np.full(rows.num_rows, np.iinfo(np.int64).max, dtype=np.int64)
        for column, delta in self.retention[s]:
            values, valid = times(rows, column)
            out = np.minimum(out, np.where(valid, values + delta, _NEVER))
        return out

    def _late(self, s: int, rows: pa.Table, times: _Times) -> np.ndarray:
        late = np.zeros(rows.num_rows, dtype=bool)
        if self.watermark == WATERMARK_MIN:
            return late
        for column, lateness in self.late_checks[s]:
            values, valid = times(rows, column)
            late |= valid & (values < self.watermark - lateness)
        return late

    def process(self, batch: pa.RecordBatch, input: int = 0) -> Sequence[pa.RecordBatch]:
        s, o = input, 1 - input
        side, other = self.sides[s], self.sides[o]
        rows = pa.Table.from_batches([data_columns(batch)]).select(self.schemas[s].names)
        times = _Times()
        late = self._late(s, rows, times)
        if late.any():
            self.ctx.metrics["late_rows"] += int(late.sum())
            rows = rows.filter(from_numpy(~late))
            times = _Times()
        if rows.num_rows == 0:
            return ()
        out: list[pa.Table] = []
        pi, oi = other.match(rows, self.keys[s]) if other.size else (_EMPTY, _EMPTY)
        if len(oi):
            # expired rows wait in the store until it is compacted: not partners any more
            alive = other[_DEADLINE][oi] >= self.watermark
            if not alive.all():
                pi, oi = pi[alive], oi[alive]
        if len(oi):
            pi, oi, joined = self.layout.checked(s, rows, other.store.take, pi, oi,
                                                     other.store.integers)
            if len(pi):
                out.append(self.layout.output(joined))
                if self.preserved[o]:
                    other[_MATCHED][oi] = 1
        deadline = self._deadlines(s, rows, times)
        alive = deadline >= self.watermark
        if self.preserved[s]:
            matched = np.zeros(rows.num_rows, dtype=bool)
            matched[pi] = True
            gone = ~alive & ~matched
            if gone.any():
                out.append(self.layout.padded(rows.filter(from_numpy(gone)), s))
            values = {_DEADLINE: deadline[alive], _MATCHED: matched[alive]}
        else:
            values = {_DEADLINE: deadline[alive]}
        quiet = self._quiet[s]
        if quiet is not None and alive.any() and int(values[_DEADLINE].min()) < quiet:
            self._quiet[s] = None   # rows that expire sooner: count again
        if alive.all():
            side.append(rows, **values)
        elif alive.any():
            side.append(rows.filter(from_numpy(alive)), **values)
        return _batches(out)

    # ---- time -----------------------------------------------------------------------------

    def on_watermark(self, time: int) -> Sequence[pa.RecordBatch]:
        if time <= self.watermark:
            return ()
        before, self.watermark = self.watermark, time
        out: list[pa.Table] = []
        for s, side in enumerate(self.sides):
            if not side.size:
                continue
            quiet = self._quiet[s]
            if quiet is not None and time <= quiet:
                continue   # fewer than half of the rows can have expired: nothing to do
            deadline = side[_DEADLINE]
            expired = deadline < time
            if self.preserved[s]:
                # rows expired before stay in the store, already answered
                lonely = expired & (deadline >= before) & (side[_MATCHED] == 0)
                if lonely.any():
                    out.append(self.layout.padded(side.take(np.flatnonzero(lonely)), s))
            dead = int(np.count_nonzero(expired))
            if dead and 2 * dead >= side.size:
                self._compact(side, ~expired)
            if not self.preserved[s] and side.size:
                # rows expire when the watermark passes their deadline: half of them not
                # before it passes the middle deadline (an outer side's rows are read at
                # every watermark for the ones to pad)
                half = (side.size - 1) // 2
                self._quiet[s] = int(np.partition(side[_DEADLINE], half)[half])
        return _batches(out)

    @staticmethod
    def _compact(side: JoinSide, keep: np.ndarray) -> None:
        """Drop the expired rows once they are half the store (each row is copied O(1)
        times in all, not at every watermark). The key index drops them too; when it has
        seen many more keys than are left (ids only grow), it starts again from the rows
        left, so its memory follows the state's, not every key the join has ever seen."""
        side.keep(keep)
        index = side.index
        if index is not None and index.keys is not None and \
                index.keys.size > 4 * max(side.size, _INDEX_FLOOR):
            side.index = KeyRows(side.keys, side.schema)

    def output_watermark(self, time: int) -> int:
        if time >= WATERMARK_MAX or time <= WATERMARK_MIN + self.holdback:
            return time
        return time - self.holdback

    # ---- checkpoints ----------------------------------------------------------------------

    def snapshot(self, epoch: int) -> dict[str, Any]:
        """Each side's live rows (the expired ones are dropped first: a restore, at a
        watermark that may be lower, must not answer them again), whole the first time and
        then what changed (state.incremental), and the watermark."""
        mkg = self.ctx.max_key_groups
        out: dict[str, Any] = {}
        for name, side in zip(("left", "right"), self.sides):
            if side.size:
                expired = side[_DEADLINE] < self.watermark
                if expired.any():
                    self._compact(side, ~expired)
            out[name] = side.snapshot(lambda t, s=side: tag_key_groups(t, s.keys, mkg))
        out["meta"] = watermark_table(self.watermark)
        return out

    def restore(self, state: dict[str, Any]) -> None:
        """Snapshots of either form restore: whole tables of each side's rows with
        ``_deadline`` and ``_matched`` (bool before the key index, int64 since)."""
        for name, side in zip(("left", "right"), self.sides):
            side.load(own_rows(state.get(name), side.keys, self.ctx, combine=False))
        self._quiet = [None, None]
        self.watermark = restored_watermark(state, self.watermark)

    def state_rows(self) -> int:
        return sum(s.size for s in self.sides)


def _batches(tables: list[pa.Table]) -> list[pa.RecordBatch]:
    if not tables:
        return []
    return batches_of(pa.concat_tables(tables))
