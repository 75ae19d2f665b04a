"""Updating (non-windowed) GROUP BY: a running aggregate per key that emits a changelog.

No window ever closes, so a result row is *revised*: when a key's aggregates change, the
operator retracts the row it emitted before and inserts the new one (an update pair, see
plan.changelog). Changes are collected and emitted at most every ``flush_us`` (processing
time) and at the end of the input, so a hot key costs one update per flush, not one per row.

State layout (all Arrow tables, one row per key, never a Python object per key):

* ``table``: the keys, the aggregate states of ``operators.aggregate_kernels`` (the windows'
  partial / merge / final kernels, reused as they are), the current value of every
  *multiset* aggregate (``_ms{j}``) and the last time the key changed (``_seen``, for TTL);
* ``multisets[j]``: for aggregates that cannot subtract a value (min, max, bool_and/or,
  DISTINCT) over an updating input, the multiset of (key, value) with its multiplicity;
* ``pending`` / ``pending_neg``: partial states of the rows inserted / retracted since the
  last flush (kept apart: a delta whose count nets to zero cannot carry a mean).

Retractions: over an append-only input every aggregate is a kernel of the window aggregate.
Over an updating input a batch is split by sign; the retracted rows' partial state is
*negated* (count, sum, avg, variance are invertible: their merge is a sum, Chan's formula
included) and merged after the insertions, so a state's count never goes below the true
one; a hidden ``count(*)`` tells when a key has no rows left
(its row is then retracted), and a hidden ``count(x)`` per ``sum`` tells when a sum becomes
NULL again. min/max/DISTINCT keep their value multisets. first_value, last_value and
string_agg depend on order and are refused over an updating input at planning.

A retraction of a row that was never inserted (a corrupt upstream changelog) would drive a
count below zero: it is counted in the ``corrupt_retractions`` metric and ignored, and the
key's state is dropped rather than made negative.

Flush: the pending partials merge into delta rows per touched key (``_i``: the key's
position among the touched keys), the keys are looked up in ``table`` with one hash join,
old, inserted and retracted states merge by ``_i``, and the final values before and after
are compared to emit only what changed.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc

from caudal.operators.aggregate_kernels import Aggregator
from caudal.operators.base import Operator, OperatorContext
from caudal.operators.keyed_tables import (
    batches_of,
    lookup,
    own_rows,
    positional,
    tag_key_groups,
    take_or_null,
    to_arrow,
)
from caudal.plan.aggregates import AggCall
from caudal.plan.changelog import (
    DELETE,
    INSERT,
    OP,
    OP_TYPE,
    interleave_updates,
    rows_equal,
    weights,
)

#: aggregates kept as value multisets over an updating input
MULTISET = {"min", "max", "bool_and", "bool_or"}
#: aggregates whose state subtracts (negated partial states merge like any other)
INVERTIBLE = {"count", "sum", "avg", "var_pop", "var_samp", "stddev_pop", "stddev_samp"}
#: order-dependent aggregates: refused over an updating input
ORDERED = {"first_value", "last_value", "string_agg"}

_ROW = "_i"
_SEEN = "_seen"
_VALUE, _MULT = "_v", "_m"
_GLOBAL = "_g"
#: merge pending partial tables once this many pile up
_COMPACT_PENDING = 32


def retraction_problem(call: AggCall) -> str | None:
    """Why ``call`` cannot run over an updating input, or None when it can."""
    if call.func in ORDERED:
        return (f"{call.func}() depends on the order of rows, which a retraction cannot "
                f"undo")
    return None


def _multiset_kind(call: AggCall) -> bool:
    return call.func in MULTISET or call.func == "approx_count_distinct" or (
        call.distinct and call.func in ("count", "sum", "avg"))


class _Plan:
    """How each user aggregate is computed: ('kernel', index into the Aggregator's calls)
    or ('multiset', index into the multisets); plus the hidden calls."""

    def __init__(self, aggregates: Sequence[AggCall], updating_input: bool):
        #: calls run by the window kernels; 0 is the hidden count(*)
        self.calls: list[AggCall] = [AggCall("count", (), pa.int64(), text="count(*)")]
        self.multisets: list[AggCall] = []
        self.where: list[tuple[str, int]] = []
        #: for a sum over an updating input: the kernel index of its hidden count(x)
        self.sum_counts: dict[int, int] = {}
        hidden: list[tuple[int, AggCall]] = []
        for call in aggregates:
            if updating_input and _multiset_kind(call):
                self.where.append(("multiset", len(self.multisets)))
                self.multisets.append(call)
                continue
            if updating_input and call.func not in INVERTIBLE:
                raise ValueError(retraction_problem(call) or f"{call.func} cannot retract")
            self.where.append(("kernel", len(self.calls)))
            if updating_input and call.func == "sum":
                hidden.append((len(self.calls), AggCall(
                    "count", call.args, pa.int64(), filter=call.filter)))
            self.calls.append(call)
        for index, count in hidden:
            self.sum_counts[index] = len(self.calls)
            self.calls.append(count)


def _negate(aggregator: Aggregator, partial: pa.Table) -> pa.Table:
    """The partial state of retracted rows, negated so that merging it subtracts them."""
    columns = {}
    for name in partial.column_names:
        columns[name] = partial.column(name)
    for kernel in aggregator.kernels:
        p = kernel.p
        for suffix in ("_n", "_v", "_s", "_m2"):
            name = p + suffix
            if name in columns:
                columns[name] = pc.negate(columns[name])
    return pa.table(columns)


class UpdatingAggregate(Operator):
    """``GROUP BY keys`` with aggregates over an unbounded input, emitting a changelog.

    Input: the ``keys`` and the aggregates' argument and FILTER columns (plus ``_op`` when
    ``updating_input``). Output: the keys, then one column per aggregate (``output_schema``),
    then ``_op``.
    """

    def __init__(self, keys: list[str], aggregates: list[AggCall], input_schema: pa.Schema,
                 output_schema: pa.Schema, time_column: str | None = None,
                 updating_input: bool = False, flush_us: int = 1_000_000,
                 ttl_us: int | None = None):
        self.keys = list(keys)
        self.group = self.keys or [_GLOBAL]
        self.output_schema = output_schema
        self.updating_input = updating_input
        self.flush_us = max(0, int(flush_us))
        self.ttl_us = ttl_us
        self.plan = _Plan(aggregates, updating_input)
        self.aggregator = Aggregator(self.plan.calls, input_schema, time_column)
        self.table: pa.Table | None = None
        self.multisets: list[pa.Table | None] = [None] * len(self.plan.multisets)
        self.pending: list[pa.Table] = []
        self.pending_neg: list[pa.Table] = []
        self.pending_ms: list[list[pa.Table]] = [[] for _ in self.plan.multisets]
        #: the global (keyless) group's row has been emitted
        self.emitted_global = False
        self._next_flush = 0.0

    def open(self, ctx: OperatorContext) -> None:
        super().open(ctx)
        ctx.metrics.setdefault("corrupt_retractions", 0)
        self._next_flush = time.monotonic() + self.flush_us / 1e6

    # ---- input ----------------------------------------------------------------------------

    def _key_columns(self, batch: pa.RecordBatch) -> dict[str, pa.Array]:
        if not self.keys:
            return {_GLOBAL: pa.array(np.zeros(batch.num_rows, dtype=np.int8))}
        return {k: batch.column(k) for k in self.keys}

    def _partial(self, batch: pa.RecordBatch) -> pa.Table:
        columns = self._key_columns(batch)
        columns.update(self.aggregator.prepare(batch))
        return self.aggregator.partial(pa.table(columns), self.group)

    def process(self, batch: pa.RecordBatch, input: int = 0) -> Sequence[pa.RecordBatch]:
        if batch.num_rows == 0:
            return ()
        if not self.updating_input or OP not in batch.schema.names:
            self.pending.append(self._partial(batch))
        else:
            w = weights(batch)
            positive = w > 0
            if positive.all():
                self.pending.append(self._partial(batch))
            else:
                if positive.any():
                    self.pending.append(self._partial(batch.filter(pa.array(positive))))
                negative = batch.filter(pa.array(~positive))
                self.pending_neg.append(_negate(self.aggregator, self._partial(negative)))
            for j, call in enumerate(self.plan.multisets):
                delta = self._multiset_delta(call, batch, w)
                if delta is not None:
                    self.pending_ms[j].append(delta)
        if len(self.pending) + len(self.pending_neg) >= _COMPACT_PENDING:
            self._compact_pending()
            for j in range(len(self.pending_ms)):
                if len(self.pending_ms[j]) > 1:
                    self.pending_ms[j] = [_sum_multiset(self.pending_ms[j], self.group)]
        if self.flush_us == 0 or time.monotonic() >= self._next_flush:
            return self.flush()
        return ()

    def _multiset_delta(self, call: AggCall, batch: pa.RecordBatch,
                        w: np.ndarray) -> pa.Table | None:
        """(keys, value, signed count) of the rows that feed a multiset aggregate."""
        value = batch.column(call.args[0])
        keep = pc.is_valid(value)
        if call.filter is not None:
            keep = pc.and_(keep, pc.fill_null(batch.column(call.filter), False))
        columns = self._key_columns(batch)
        columns[_VALUE] = value
        columns[_MULT] = pa.array(w)
        table = pa.table(columns).filter(keep)
        if table.num_rows == 0:
            return None
        return _sum_multiset([table], self.group)

    # ---- time -----------------------------------------------------------------------------

    def on_processing_time(self, now_us: int) -> Sequence[pa.RecordBatch]:
        if self.flush_us and time.monotonic() >= self._next_flush:
            return self.flush()
        return ()

    def on_end(self) -> Sequence[pa.RecordBatch]:
        out = self.flush()
        if not self.keys and not self.emitted_global:
            self.emitted_global = True
            out.extend(self._empty_global())
        return out

    # ---- flush ----------------------------------------------------------------------------

    def flush(self) -> list[pa.RecordBatch]:
        """Fold the pending changes into the state and emit what changed."""
        self._next_flush = time.monotonic() + self.flush_us / 1e6
        now = time.time_ns() // 1000
        out: list[pa.RecordBatch] = []
        if self.ttl_us is not None:
            self._expire(now - self.ttl_us)
        if not self.pending and not self.pending_neg:
            return out
        self._compact_pending()
        inserted = self.pending[0] if self.pending else None
        retracted = self.pending_neg[0] if self.pending_neg else None
        self.pending, self.pending_neg = [], []
        if inserted is not None and retracted is not None:
            touched = pa.concat_tables([inserted.select(self.group),
                                        retracted.select(self.group)]).group_by(
                self.group, use_threads=False).aggregate([])
        else:
            touched = (inserted if inserted is not None else retracted).select(self.group)
        touched = touched.select(self.group).combine_chunks()
        n = touched.num_rows
        table = self.table
        found = lookup(touched, self.group, table, self.group) if table is not None \
            else np.full(n, -1, dtype=np.int64)
        matched = found >= 0
        old_rows = table.take(pa.array(found[matched])) if table is not None and \
            matched.any() else None
        # merge old, inserted and retracted partial states by the touched key's position
        some = inserted if inserted is not None else retracted
        state_cols = [c for c in some.column_names if c not in self.group]
        schema = some.select(state_cols).schema
        parts = []
        if old_rows is not None:
            parts.append(old_rows.select(state_cols).cast(schema).append_column(
                _ROW, pa.array(np.flatnonzero(matched))))
        for delta in (inserted, retracted):
            if delta is None:
                continue
            rows = np.arange(n) if inserted is None or retracted is None else \
                lookup(delta, self.group, touched, self.group)
            parts.append(delta.select(state_cols).cast(schema).append_column(
                _ROW, pa.array(rows)))
            if len(parts) > 1:
                parts = [self.aggregator.merge(pa.concat_tables(parts), [_ROW]).select(
                    [*state_cols, _ROW])]
        merged = parts[0]
        order = np.argsort(merged.column(_ROW).to_numpy())
        merged = _clear_empty(self.aggregator, merged.take(pa.array(order)).drop_columns([_ROW]))
        # multiset aggregates: fold their deltas, then recompute touched keys' values
        ms_values = [self._fold_multiset(j, touched) for j in range(len(self.plan.multisets))]

        count = merged.column(f"{self.aggregator.kernels[0].p}_n").to_numpy()
        corrupt = count < 0
        if corrupt.any():
            self.ctx.metrics["corrupt_retractions"] += int(-count[corrupt].sum())
        exists = count > 0 if self.keys else np.ones(n, dtype=bool)
        old_exists = matched.copy()
        if old_rows is not None and self.keys:
            old_count = old_rows.column(f"{self.aggregator.kernels[0].p}_n").to_numpy()
            old_exists[matched] = old_count > 0
        if not self.keys:
            old_exists[:] = self.emitted_global
            self.emitted_global = True

        new_values = self._finals(merged, ms_values)
        new_state = touched
        for name in state_cols:
            new_state = new_state.append_column(name, merged.column(name))
        for j, values in enumerate(ms_values):
            new_state = new_state.append_column(f"_ms{j}", values)
        new_state = new_state.append_column(_SEEN, pa.array(np.full(n, now, dtype=np.int64)))
        keep_rows = new_state.filter(pa.array(exists))
        if table is None:
            self.table = keep_rows
        else:
            untouched = np.ones(table.num_rows, dtype=bool)
            untouched[found[matched]] = False
            self.table = pa.concat_tables([table.filter(pa.array(untouched)),
                                           keep_rows.cast(table.schema)])

        # what to emit
        if old_rows is not None:
            old_ms = [old_rows.column(f"_ms{j}") for j in range(len(self.plan.multisets))]
            old_values_matched = self._finals(old_rows, old_ms)
            old_values = [take_or_null(v, _positions(matched)) for v in old_values_matched]
        else:
            old_values = [pa.nulls(n, f.type) for f in
                          list(self.output_schema)[len(self.keys):]]
        out.extend(self._emit(touched, old_values, new_values, old_exists, exists))
        return out

    def _compact_pending(self) -> None:
        """Merge the pending partial tables of each sign into one."""
        for name in ("pending", "pending_neg"):
            tables = getattr(self, name)
            if len(tables) > 1:
                setattr(self, name, [self.aggregator.merge(pa.concat_tables(tables),
                                                           self.group)])

    def _finals(self, states: pa.Table, ms_values: list[pa.Array | pa.ChunkedArray]
                ) -> list[pa.Array]:
        """The SQL value of every user aggregate from state rows."""
        kernel_values = self.aggregator.final(states)
        out = []
        for kind, index in self.plan.where:
            if kind == "multiset":
                value = ms_values[index]
            else:
                value = kernel_values[index]
                hidden = self.plan.sum_counts.get(index)
                if hidden is not None:
                    nonempty = pc.greater(kernel_values[hidden], 0)
                    value = pc.if_else(nonempty, value, pa.scalar(None, value.type))
            out.append(value.combine_chunks() if isinstance(value, pa.ChunkedArray) else value)
        return out

    def _emit(self, keys: pa.Table, old: list[pa.Array], new: list[pa.Array],
              old_exists: np.ndarray, exists: np.ndarray) -> list[pa.RecordBatch]:
        schema = self.output_schema
        key_arrays = [] if not self.keys else [keys.column(k) for k in self.keys]

        def rows(values: list[pa.Array], mask: np.ndarray) -> pa.Table:
            keep = pa.array(mask)
            arrays = [a.filter(keep) for a in key_arrays + values]
            arrays = [a.combine_chunks() if isinstance(a, pa.ChunkedArray) else a
                      for a in arrays]
            return pa.Table.from_arrays([a.cast(f.type) if not a.type.equals(f.type) else a
                                         for a, f in zip(arrays, schema)], schema=schema)

        both = old_exists & exists
        changed = both.copy()
        if both.any():
            idx = np.flatnonzero(both)
            same = rows_equal([v.take(pa.array(idx)) for v in old],
                              [v.take(pa.array(idx)) for v in new])
            changed[idx[same]] = False
        pieces: list[pa.Table] = []
        ops: list[np.ndarray] = []
        gone = old_exists & ~exists
        if gone.any():
            pieces.append(rows(old, gone))
            ops.append(np.full(int(gone.sum()), DELETE, dtype=np.int8))
        if changed.any():
            pairs, pair_ops = interleave_updates(rows(old, changed), rows(new, changed))
            pieces.append(pairs)
            ops.append(pair_ops)
        born = exists & ~old_exists
        if born.any():
            pieces.append(rows(new, born))
            ops.append(np.full(int(born.sum()), INSERT, dtype=np.int8))
        if not pieces:
            return []
        table = pa.concat_tables(pieces).append_column(
            pa.field(OP, OP_TYPE), pa.array(np.concatenate(ops), OP_TYPE))
        return batches_of(table)

    def _empty_global(self) -> list[pa.RecordBatch]:
        """The one row a keyless aggregate over no rows has: counts 0, the rest NULL."""
        arrays = []
        for field, call in zip(self.output_schema, self._user_calls()):
            if call.func in ("count", "approx_count_distinct"):
                arrays.append(pa.array([0], field.type))
            else:
                arrays.append(pa.nulls(1, field.type))
        arrays.append(pa.array([INSERT], OP_TYPE))
        schema = self.output_schema.append(pa.field(OP, OP_TYPE))
        return [pa.RecordBatch.from_arrays(arrays, schema=schema)]

    def _user_calls(self) -> list[AggCall]:
        return [self.plan.multisets[i] if kind == "multiset" else self.plan.calls[i]
                for kind, i in self.plan.where]

    # ---- multisets ------------------------------------------------------------------------

    def _fold_multiset(self, j: int, touched: pa.Table) -> pa.Array:
        """Fold multiset ``j``'s pending deltas in, and return its aggregate's value for each
        touched key (NULL when no value is left)."""
        parts = ([self.multisets[j]] if self.multisets[j] is not None else []) + \
            self.pending_ms[j]
        self.pending_ms[j] = []
        call = self.plan.multisets[j]
        if not parts:
            return pa.nulls(touched.num_rows, call.dtype)
        folded = _sum_multiset(parts, self.group)
        mult = folded.column(_MULT).to_numpy()
        negative = mult < 0
        if negative.any():
            self.ctx.metrics["corrupt_retractions"] += int(-mult[negative].sum())
        folded = folded.filter(pa.array(mult > 0))
        self.multisets[j] = folded
        return _multiset_values(call, folded, touched, self.group)

    def _expire(self, before_us: int) -> None:
        """Drop keys unchanged since ``before_us`` (state TTL): no retraction is emitted,
        as in Flink; a later row of the key starts it afresh."""
        table = self.table
        if table is None or table.num_rows == 0:
            return
        seen = table.column(_SEEN).to_numpy()
        old = seen < before_us
        if not old.any():
            return
        expired = table.filter(pa.array(old)).select(self.group)
        self.table = table.filter(pa.array(~old))
        for j, ms in enumerate(self.multisets):
            if ms is not None and ms.num_rows:
                gone = lookup(ms, self.group, expired, self.group) >= 0
                self.multisets[j] = ms.filter(pa.array(~gone))

    # ---- checkpoints ----------------------------------------------------------------------

    def snapshot(self, epoch: int) -> dict[str, Any]:
        out: dict[str, Any] = {}
        mkg = self.ctx.max_key_groups
        if self.table is not None:
            out["table"] = tag_key_groups(self.table, self.group, mkg)
        self._compact_pending()
        if self.pending:
            out["pending"] = tag_key_groups(self.pending[0], self.group, mkg)
        if self.pending_neg:
            out["pending_neg"] = tag_key_groups(self.pending_neg[0], self.group, mkg)
        for j in range(len(self.plan.multisets)):
            if self.multisets[j] is not None:
                out[f"ms{j}"] = tag_key_groups(self.multisets[j], self.group, mkg)
            if self.pending_ms[j]:
                self.pending_ms[j] = [_sum_multiset(self.pending_ms[j], self.group)]
                out[f"ms_pending{j}"] = tag_key_groups(self.pending_ms[j][0], self.group, mkg)
        out["meta"] = pa.table({"emitted_global": pa.array([self.emitted_global])})
        return out

    def restore(self, state: dict[str, Any]) -> None:
        keys = self.keys
        self.table = own_rows(state.get("table"), keys, self.ctx)
        pending = own_rows(state.get("pending"), keys, self.ctx)
        self.pending = [pending] if pending is not None and pending.num_rows else []
        pending = own_rows(state.get("pending_neg"), keys, self.ctx)
        self.pending_neg = [pending] if pending is not None and pending.num_rows else []
        for j in range(len(self.plan.multisets)):
            self.multisets[j] = own_rows(state.get(f"ms{j}"), keys, self.ctx)
            p = own_rows(state.get(f"ms_pending{j}"), keys, self.ctx)
            self.pending_ms[j] = [p] if p is not None and p.num_rows else []
        meta = state.get("meta")
        if meta is not None and meta.num_rows and (keys or self.ctx.subtask == 0):
            self.emitted_global = bool(pc.any(meta.column("emitted_global")).as_py())

    # ---- introspection --------------------------------------------------------------------

    def state_rows(self) -> int:
        rows = self.table.num_rows if self.table is not None else 0
        return rows + sum(m.num_rows for m in self.multisets if m is not None)


def _clear_empty(aggregator: Aggregator, states: pa.Table) -> pa.Table:
    """A variance state whose count fell back to zero holds only rounding noise: reset it."""
    columns = {name: states.column(name) for name in states.column_names}
    for kernel in aggregator.kernels:
        n_name, m2_name = f"{kernel.p}_n", f"{kernel.p}_m2"
        if m2_name in columns and n_name in columns:
            empty = pc.less_equal(columns[n_name], 0)
            for name in (m2_name, f"{kernel.p}_mean"):
                if name in columns:
                    col = columns[name]
                    columns[name] = pc.if_else(empty, pa.scalar(0.0, col.type), col)
    return pa.table(columns)


def _positions(mask: np.ndarray) -> np.ndarray:
    """For each position of ``mask``, its rank among the True positions, or -1."""
    out = np.full(len(mask), -1, dtype=np.int64)
    out[mask] = np.arange(int(mask.sum()))
    return out


def _sum_multiset(tables: list[pa.Table], group: list[str]) -> pa.Table:
    """(keys, value, multiplicity) rows with equal key and value summed."""
    table = pa.concat_tables(tables) if len(tables) > 1 else tables[0]
    result = table.group_by([*group, _VALUE], use_threads=False).aggregate([(_MULT, "sum")])
    columns = {name: result.column(name) for name in (*group, _VALUE)}
    columns[_MULT] = result.column(f"{_MULT}_sum")
    return pa.table(columns)


def _multiset_values(call: AggCall, multiset: pa.Table, touched: pa.Table,
                     group: list[str]) -> pa.Array:
    """The aggregate of each touched key's multiset of values (Polars group_by)."""
    n = touched.num_rows
    if multiset.num_rows == 0:
        return pa.nulls(n, call.dtype) if call.func not in ("count", "approx_count_distinct") \
            else pa.array(np.zeros(n, dtype=np.int64))
    names = [f"_k{i}" for i in range(len(group))]
    keys = positional(touched, group).with_row_index(_ROW)
    columns = {name: multiset.column(g) for name, g in zip(names, group)}
    columns[_VALUE] = multiset.column(_VALUE)
    frame = pl.from_arrow(pa.table(columns), rechunk=False)
    rows = frame.join(keys, on=names, how="inner", nulls_equal=True)
    v = pl.col(_VALUE)
    func = call.func
    if func == "min":
        agg = v.min()
    elif func == "max":
        agg = v.max()
    elif func == "bool_and":
        agg = v.all()
    elif func == "bool_or":
        agg = v.any()
    elif func in ("count", "approx_count_distinct"):
        agg = v.count()
    elif func == "sum":
        agg = v.sum()
    elif func == "avg":
        agg = v.cast(pl.Float64).mean()
    else:  # pragma: no cover - the planner refuses other functions
        raise ValueError(f"no multiset form of {func}")
    values = rows.group_by(_ROW).agg(agg.alias(_VALUE))
    result = to_arrow(values)
    index = np.full(n, -1, dtype=np.int64)
    index[result.column(_ROW).to_numpy()] = np.arange(result.num_rows)
    column = result.column(_VALUE)
    if not column.type.equals(call.dtype):
        column = column.cast(call.dtype)
    out = take_or_null(column, index)
    if func in ("count", "approx_count_distinct"):
        out = pc.fill_null(out, 0)
    return out
