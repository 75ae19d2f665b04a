"""Event-time temporal joins (Flink's ``JOIN versions FOR SYSTEM_TIME AS OF s.event_time``):
each row of the streaming side (input 0) is joined with the version of the versioned side
(input 1) that was current at the row's time: per join key, the version with the latest time
not after it. An INNER join drops rows without such a version, a LEFT join pads them.

A row can be answered once no version at or before its time can still arrive, which is when
the watermark (the lower of both inputs') has passed it: rows wait in state until then, and
leave, joined, in the batch the watermark releases (before the watermark is forwarded, so they
are never late downstream). Of the versions the state keeps, per key, those the watermark has
not passed and the latest one it has. A row of either side arriving behind the watermark
could no longer be answered exactly: it is counted in ``late_rows`` and dropped, never joined
against versions that may be gone. A row or version whose time is NULL is not late: it is
counted in ``null_time_rows`` (as windows count theirs) and dropped, but for a LEFT join's row,
padded at once (no version is current at no time).

The pairing is one vectorized as-of join (Polars ``join_asof``, backward, by key) of the
released rows against the versions, both sorted by time.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import polars as pl
import pyarrow as pa

from caudal.operators.base import Operator, OperatorContext
from caudal.operators.interval_join import micros
from caudal.operators.join_rows import JoinLayout, SideState
from caudal.operators.keyed_tables import TwoSidedState, batches_of
from caudal.plan.changelog import data_columns
from caudal.plan.expressions import Expr
from caudal.watermark import WATERMARK_MIN

_ROW, _TIME = "__row", "__time"


class TemporalJoin(TwoSidedState, Operator):
    """Input 0: the streaming rows; input 1: the versions (both append-only)."""

    accepts_merged_batches = True

    def __init__(self, kind: str, left_schema: pa.Schema, right_schema: pa.Schema,
                 left_keys: list[str], right_keys: list[str], right_rename: dict[str, str],
                 output_schema: pa.Schema, residual: Expr | None, left_time: str,
                 right_time: str):
        self.kind = kind
        self.layout = JoinLayout(left_schema, right_schema, right_rename, output_schema,
                                 residual)
        self.keys = [list(left_keys), list(right_keys)]
        self.times = [left_time, right_time]
        self.sides = [SideState(left_schema, self.keys[0], {}),
                      SideState(right_schema, self.keys[1], {})]
        self.watermark = WATERMARK_MIN

    def open(self, ctx: OperatorContext) -> None:
        super().open(ctx)
        ctx.metrics.setdefault("late_rows", 0)
        ctx.metrics.setdefault("null_time_rows", 0)

    def process(self, batch: pa.RecordBatch, input: int = 0) -> Sequence[pa.RecordBatch]:
        side = self.sides[input]
        rows = pa.Table.from_batches([data_columns(batch)]).select(side.schema.names)
        t, valid = micros(rows.column(self.times[input]))
        out: Sequence[pa.RecordBatch] = ()
        if input == 0 and self.kind == "left" and not valid.all():
            # no version is current at no time: padded now, as an ASOF LEFT JOIN answers
            out = batches_of(self.layout.padded(rows.filter(pa.array(~valid)), 0))
            rows, t, valid = rows.filter(pa.array(valid)), t[valid], valid[valid]
        if not valid.all():  # no time at all is not late: counted as windows count theirs
            self.ctx.metrics["null_time_rows"] += int((~valid).sum())
            rows, t = rows.filter(pa.array(valid)), t[valid]
        keep = t >= self.watermark
        if not keep.all():  # behind the watermark: cannot be exact
            self.ctx.metrics["late_rows"] += int((~keep).sum())
            rows = rows.filter(pa.array(keep))
        side.append(rows)
        return out

    def on_watermark(self, time: int) -> Sequence[pa.RecordBatch]:
        if time <= self.watermark:
            return ()
        self.watermark = time
        rows, versions = self.sides
        if not rows.size:
            self._prune(time)
            return ()
        t, _ = micros(rows.rows.column(self.times[0]))
        ready = t < time
        if not ready.any():
            self._prune(time)
            return ()
        released = rows.take(ready)
        rows.keep(~ready)
        out = self._join(released, t[ready])
        self._prune(time)
        return batches_of(out) if out.num_rows else ()

    def _join(self, released: pa.Table, times: np.ndarray) -> pa.Table:
        """The released rows joined with their current versions (padded or dropped)."""
        versions = self.sides[1].rows
        n = released.num_rows
        match = np.full(n, -1, dtype=np.int64)
        if versions.num_rows:
            vt, _ = micros(versions.column(self.times[1]))
            by = [f"__k{i}" for i in range(len(self.keys[0]))]
            left = pl.DataFrame({_ROW: np.arange(n), _TIME: times}).hstack(
                pl.from_arrow(released.select(self.keys[0])).rename(
                    dict(zip(self.keys[0], by))))
            right_keys = pl.from_arrow(versions.select(self.keys[1])).rename(
                dict(zip(self.keys[1], by)))
            right = pl.DataFrame({_ROW: np.arange(versions.num_rows), _TIME: vt}).hstack(
                right_keys.cast({k: left[k].dtype for k in by}))
            paired = left.sort(_TIME).join_asof(
                right.sort(_TIME).rename({_ROW: "__version"}), on=_TIME, by=by,
                strategy="backward", check_sortedness=False)
            null_key = paired.select(pl.any_horizontal([pl.col(k).is_null() for k in by]))
            found = paired["__version"].fill_null(-1).to_numpy().copy()
            found[null_key.to_series().to_numpy()] = -1  # NULL keys match nothing
            match[paired[_ROW].to_numpy()] = found
        hit = match >= 0
        li, _, joined = self.layout.matching(released, versions, np.flatnonzero(hit),
                                             match[hit])
        kept = np.zeros(n, dtype=bool)
        kept[li] = True
        parts = [self.layout.output(joined)] if joined.num_rows else []
        if self.kind == "left" and not kept.all():
            parts.append(self.layout.padded(released.filter(pa.array(~kept)), 0))
        return pa.concat_tables(parts) if parts else self.layout.output_schema.empty_table()

    def _prune(self, time: int) -> None:
        """Keep, per key, the versions at or after ``time`` and the latest one before it."""
        versions = self.sides[1]
        if versions.size < 2:
            return
        vt, _ = micros(versions.rows.column(self.times[1]))
        keys = pl.from_arrow(versions.rows.select(self.keys[1]))
        frame = keys.with_columns(pl.Series(_TIME, vt), pl.Series(_ROW, np.arange(len(vt))))
        before = frame.filter(pl.col(_TIME) < time)
        if before.height < 2:
            return
        latest = before.sort([_TIME, _ROW]).group_by(self.keys[1], maintain_order=True).last()
        keep = np.zeros(len(vt), dtype=bool)
        keep[vt >= time] = True
        keep[latest[_ROW].to_numpy()] = True
        versions.keep(keep)

    def output_watermark(self, time: int) -> int:
        return time


__all__ = ["TemporalJoin"]
