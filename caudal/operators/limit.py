"""LIMIT / OFFSET on a stream, ORDER BY on a bounded input, and ORDER BY event time on a
stream (plan.limit_nodes).

``Limit`` slices each batch against its counters (no per-row work). A final limit that has
all its rows calls ``ctx.limit_reached`` once: the runtime ends the sources when every output
of the job is satisfied. ``SortLimit`` keeps the rows (the best ``offset + limit`` after each
compaction, when it has a limit and an append-only input) and sorts them when the input ends;
over a changelog it keeps every change with its weight and nets them at the end.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pyarrow as pa

from caudal import compute as pc
from caudal import float_order
from caudal.operators.base import Operator, OperatorContext
from caudal.operators.event_time import ArrivalCheck, times_of
from caudal.operators.join_rows import repeat_rows
from caudal.operators.keyed_tables import batches_of
from caudal.plan.changelog import data_columns, weights

_WEIGHT, _OWNER = "__w", "__subtask"


class Limit(Operator):
    def __init__(self, limit: int | None, offset: int, output_schema: pa.Schema,
                 final: bool = True):
        self.limit = limit
        self.output_schema = output_schema
        self.final = final
        self.skip = offset
        self.remaining = limit  # None: no limit (OFFSET only)
        self.notified = False

    def open(self, ctx: OperatorContext) -> None:
        super().open(ctx)
        self._check_done()

    def _check_done(self) -> None:
        if self.final and self.remaining == 0 and not self.notified:
            self.notified = True
            if self.ctx.limit_reached is not None:
                self.ctx.limit_reached()

    def process(self, batch: pa.RecordBatch, input: int = 0) -> Sequence[pa.RecordBatch]:
        if self.remaining == 0 or batch.num_rows == 0:
            return ()
        if self.skip:
            dropped = min(self.skip, batch.num_rows)
            self.skip -= dropped
            batch = batch.slice(dropped)
            if batch.num_rows == 0:
                return ()
        if self.remaining is not None:
            batch = batch.slice(0, self.remaining)
            self.remaining -= batch.num_rows
            self._check_done()
        return (batch,)

    def snapshot(self, epoch: int) -> dict[str, Any]:
        if not self.final:  # a per-subtask pre-limit may pass rows again after a restore
            return {}
        return {"limit": pa.table({"skip": [self.skip], "remaining": [
            -1 if self.remaining is None else self.remaining]})}

    def restore(self, state: dict[str, Any]) -> None:
        table = state.get("limit")
        if table is None or table.num_rows == 0:
            return
        self.skip = int(table.column("skip")[0].as_py())
        remaining = int(table.column("remaining")[0].as_py())
        self.remaining = None if remaining < 0 else remaining
        self._check_done()


class SortLimit(Operator):
    def __init__(self, order: list[tuple[str, bool, bool]], limit: int | None, offset: int,
                 output_schema: pa.Schema, updating_input: bool = False, final: bool = True,
                 later_ties: bool = False):
        self.order = [tuple(o) for o in order]
        #: ties go to the later row (ORDER BY processing time DESC), not the earlier
        self.later_ties = later_ties
        self.limit = limit
        self.offset = offset
        self.output_schema = output_schema
        self.updating_input = updating_input
        self.final = final
        self.pending: list[pa.Table] = []
        self.pending_rows = 0
        #: rows kept before compacting (append-only input with a limit)
        self.keep = None if limit is None or updating_input else limit + offset

    def process(self, batch: pa.RecordBatch, input: int = 0) -> Sequence[pa.RecordBatch]:
        if batch.num_rows == 0:
            return ()
        table = pa.Table.from_batches([data_columns(batch)]).select(self.output_schema.names)
        if self.updating_input:
            table = table.append_column(_WEIGHT, pa.array(weights(batch)))
        self.pending.append(table)
        self.pending_rows += table.num_rows
        if self.keep is not None and self.pending_rows > max(4 * self.keep, 65536):
            self._compact()
        return ()

    def _compact(self) -> None:
        table = self._first(self._rows(), self.keep)
        self.pending = [table]
        self.pending_rows = table.num_rows

    def _rows(self) -> pa.Table:
        if not self.pending:
            return self.output_schema.empty_table()
        table = pa.concat_tables(self.pending).combine_chunks()
        if not self.updating_input:
            return table
        # net the changelog: each distinct row by its summed weight
        names = self.output_schema.names
        grouped = table.group_by(names, use_threads=False).aggregate([(_WEIGHT, "sum")])
        net = grouped.column(f"{_WEIGHT}_sum").to_numpy()
        rows = grouped.select(names)
        keep = net > 0
        return repeat_rows(rows.filter(pa.array(keep)), net[keep])

    def _first(self, table: pa.Table, keep: int | None) -> pa.Table:
        """The first ``keep`` rows in order (all: None), for a later sort: in arrival order
        when ties go to the later row (the order they are broken by then)."""
        if not self.later_ties:
            table = self._sorted(table)
            return table if keep is None else table.slice(0, keep)
        if not self.order or table.num_rows == 0:
            return table if keep is None else table.slice(0, keep)
        return table.take(pa.array(np.sort(self._order(table)[:keep])))

    def _sorted(self, table: pa.Table) -> pa.Table:
        if not self.order or table.num_rows == 0:
            return table
        return table.take(pa.array(self._order(table)))

    def _order(self, table: pa.Table) -> np.ndarray:
        """Row indices in ORDER BY order, ties in arrival order (reversed: ``later_ties``)."""
        keys, columns = [], {}
        for i, (name, desc, nulls_first) in enumerate(self.order):
            flag, value = f"__n{i}", f"__v{i}"
            columns[flag] = pc.is_null(table.column(name))
            columns[value] = table.column(name)
            # NULLs placed by their own key, so each column has its NULLS FIRST / LAST
            keys.append((flag, "descending" if nulls_first else "ascending"))
            nan = float_order.sort_nan_key(table.column(name), desc)
            if nan is not None:
                columns[f"__f{i}"] = nan[0]
                keys.append((f"__f{i}", nan[1]))
            keys.append((value, "descending" if desc else "ascending"))
        if self.later_ties:
            columns["__a"] = pa.array(np.arange(table.num_rows))
            keys.append(("__a", "descending"))
        return pc.sort_indices(pa.table(columns), sort_keys=keys).to_numpy()

    def on_end(self) -> Sequence[pa.RecordBatch]:
        rows = self._rows()
        self.pending = []
        if self.final:
            table = self._sorted(rows)
            end = None if self.limit is None else self.offset + self.limit
            table = table.slice(self.offset, None if end is None else end - self.offset)
        else:   # (a subtask's part, sorted again by the final step)
            table = self._first(rows, self.keep)
        if table.num_rows == 0:
            return ()
        return batches_of(table.cast(self.output_schema))

    def snapshot(self, epoch: int) -> dict[str, Any]:
        if not self.pending:
            return {}
        rows = pa.concat_tables(self.pending)
        # which subtask kept them: after a rescale each row goes to exactly one subtask
        return {"rows": rows.append_column(_OWNER, pa.array(
            np.full(rows.num_rows, self.ctx.subtask, dtype=np.int32)))}

    def restore(self, state: dict[str, Any]) -> None:
        rows = state.get("rows")
        if rows is None or rows.num_rows == 0:
            return
        owner = rows.column(_OWNER).to_numpy()
        mine = owner % self.ctx.parallelism == self.ctx.subtask
        rows = rows.drop_columns([_OWNER]).filter(pa.array(mine))
        self.pending = [rows]
        self.pending_rows = rows.num_rows


class TimeSort(SortLimit):
    """``ORDER BY ts [, …]`` over a stream whose event time is ``ts``: rows wait until the
    watermark passes them (no row below it can still come) and leave sorted; late rows are
    dropped and counted, as windows do."""

    def __init__(self, order: list[tuple[str, bool, bool]], time_column: str,
                 output_schema: pa.Schema):
        super().__init__(order, None, 0, output_schema)
        self.time_column = time_column
        self.arrival = ArrivalCheck(time_column, None)

    def process(self, batch: pa.RecordBatch, input: int = 0) -> Sequence[pa.RecordBatch]:
        if batch.num_rows == 0:
            return ()
        batch, _ = self.arrival.split(batch, self.ctx.metrics, [])
        return super().process(batch, input)

    def on_watermark(self, time: int) -> Sequence[pa.RecordBatch]:
        self.arrival.watermark = max(self.arrival.watermark, time)
        if not self.pending:
            return ()
        table = self._rows()
        ready = times_of(table.column(self.time_column)) < time
        if not ready.any():
            return ()
        self.pending = [table.filter(pa.array(~ready))]
        self.pending_rows = self.pending[0].num_rows
        return batches_of(self._sorted(table.filter(pa.array(ready))).cast(self.output_schema))
