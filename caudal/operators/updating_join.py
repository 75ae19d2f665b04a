"""Updating (regular) joins: INNER, LEFT, RIGHT and FULL on equality keys over unbounded
inputs, which may themselves be changelogs; SEMI and ANTI (``IN`` / ``EXISTS`` subqueries)
emit the left rows that have / have no match, from the same match counts. The output is a changelog (``_op``) unless the
join is inner and both inputs only append, in which case it only appends too.

State, per side, as columns (no Python object per row): the side's rows (a CompactRows
store: NumPy buffers, text with few distinct values as dictionary codes), and only the
counters the join needs: the multiplicity ``_m`` over a changelog input (a row inserted twice
is one row with 2; over an append-only input every row is there once), the number of matching
rows on the other side ``_n`` for a side an outer join pads (what decides whether its row is
padded with NULLs), and the time it arrived ``_seen`` with ``updating_ttl``. The keys'
Polars frame (what a batch of the other side probes) is a view of the store's key buffers.

A batch from one side is processed as a whole:

1. over a changelog input, rows are netted (equal rows' weights summed) and matched to the
   stored rows; a retraction of a row that is not stored (a corrupt upstream changelog) is
   counted in ``corrupt_retractions`` and ignored, so multiplicities never go negative;
2. the rows probe the other side's persistent key -> rows index (operators.join_index; a
   Polars hash join for floating-point or NULL-equal keys) and the residual condition
   filters the candidate pairs; each pair is emitted with weight ``w * other._m``;
3. outer joins: a changed row of the preserved side with no match is emitted padded; a row
   of the other (preserved) side whose match count goes from 0 to >0 has its padded row
   retracted, and from >0 to 0 re-inserted;
4. the side's state takes the changes (new rows appended, multiplicities updated, rows at
   zero removed).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import pyarrow as pa

from caudal import clock
from caudal.operators.base import Operator, OperatorContext
from caudal.operators.join_rows import JoinLayout, repeat_rows
from caudal.operators.join_side import JoinSide
from caudal.operators.keyed_tables import (
    LOWEST,
    NET,
    apply_net,
    batches_of,
    lookup,
    net_rows,
    own_rows_mask,
    tag_key_groups,
)
from caudal.plan.changelog import OP, OP_TYPE, data_columns, weights
from caudal.plan.expressions import Expr

_MULT, _MATCHES, _SEEN = "_m", "_n", "_seen"
#: each counter's value for a row when the join does not keep it
_DEFAULTS = {_MULT: 1, _MATCHES: 0, _SEEN: 0}


class UpdatingJoin(Operator):
    """Input 0 is the left side, input 1 the right (``_op`` on changelog inputs)."""

    accepts_merged_batches = True
    #: at another parallelism each side takes its key groups' rows from the old subtasks'
    #: tables as it copies them into its store (JoinSide.load)
    own_key_groups = frozenset({"left", "right"})

    def __init__(self, kind: str, left_schema: pa.Schema, right_schema: pa.Schema,
                 left_keys: list[str], right_keys: list[str], right_rename: dict[str, str],
                 output_schema: pa.Schema, residual: Expr | None = None,
                 updating_inputs: Sequence[bool] = (False, False),
                 ttl_us: int | None = None, updating_output: bool = True,
                 nulls_equal: bool = False):
        self.kind = kind
        self.layout = JoinLayout(left_schema, right_schema, right_rename, output_schema,
                                 residual)
        self.output_schema = output_schema
        self.keys = [list(left_keys), list(right_keys)]
        self.updating_inputs = list(updating_inputs)
        self.ttl_us = ttl_us
        #: keys compare NULL equal to NULL (INTERSECT / EXCEPT), not as SQL ``=``
        self.nulls_equal = nulls_equal
        self.updating_output = updating_output
        #: semi / anti join: emit the left rows with / without a match (their match
        #: counts are kept like a LEFT join's, whose padded rows are the anti join's rows)
        self.semi = kind in ("semi", "anti")
        #: which sides an outer join pads and keeps when unmatched
        self.preserved = [kind in ("left", "full", "semi", "anti"), kind in ("right", "full")]
        self.sides = [self._side(i, schema) for i, schema in enumerate((left_schema,
                                                                         right_schema))]
        self._next_expiry = 0.0

    def _side(self, i: int, schema: pa.Schema) -> JoinSide:
        """Side ``i``'s state with the counters this join needs of it. Over a changelog its
        rows are looked up whole (``_net``), so its text is not dictionary-encoded, and its
        rows come and go: its key -> rows index drops removed rows (``JoinSide.keep``)."""
        kept = [n for n, needed in ((_MULT, self.updating_inputs[i]),
                                    (_MATCHES, self.preserved[i]),
                                    (_SEEN, self.ttl_us is not None)) if needed]
        return JoinSide(schema, self.keys[i], {n: _DEFAULTS[n] for n in kept}, _DEFAULTS,
                        dictionary=not self.updating_inputs[i],
                        indexed=not self.nulls_equal)

    def open(self, ctx: OperatorContext) -> None:
        super().open(ctx)
        ctx.metrics.setdefault("corrupt_retractions", 0)

    # ---- input ----------------------------------------------------------------------------

    def process(self, batch: pa.RecordBatch, input: int = 0) -> Sequence[pa.RecordBatch]:
        if batch.num_rows == 0:
            return ()
        s, o = input, 1 - input
        side, other = self.sides[s], self.sides[o]
        data = pa.Table.from_batches([data_columns(batch)]).select(side.schema.names)
        if self.updating_inputs[s] and OP in batch.schema.names:
            rows, d, existing = self._net(side, data, weights(batch))
        else:
            rows, d = data, np.ones(data.num_rows, dtype=np.int64)
            existing = np.full(data.num_rows, -1, dtype=np.int64)
        if rows.num_rows == 0:
            return ()
        now = clock.now_us()
        pieces: list[tuple[pa.Table, np.ndarray]] = []

        # 2. pairs with the other side
        pi, oi = other.match(rows, self.keys[s], self.nulls_equal)
        # the other side's candidate rows, taken once from its store
        pi, oi, joined = self.layout.probed(s, rows, other.take(oi), pi, oi)
        other_m = other.get(_MULT, oi)
        if len(pi) and not self.semi:
            pieces.append((self.layout.output(joined), d[pi] * other_m))
        found = np.bincount(pi, weights=other_m, minlength=rows.num_rows).astype(
            np.int64) if len(pi) else np.zeros(rows.num_rows, dtype=np.int64)

        # 3. outer rows (semi / anti: left rows by whether they match)
        if self.semi and s == 0:
            keep = found > 0 if self.kind == "semi" else found == 0
            if keep.any():
                pieces.append((self._left_rows(rows.filter(pa.array(keep))), d[keep]))
        elif self.preserved[s]:
            alone = found == 0
            if alone.any():
                pieces.append((self.layout.padded(rows.filter(pa.array(alone)), s), d[alone]))
        if self.preserved[o] and len(oi):
            delta = np.bincount(oi, weights=d[pi], minlength=other.size).astype(np.int64)
            before = other[_MATCHES]
            after = np.maximum(before + delta, 0)
            gained = (before == 0) & (after > 0)
            lost = (before > 0) & (after == 0)
            # a left row of a semi join appears with its first match, an anti join's goes
            sign = 1 if self.kind == "semi" else -1
            rows_of = self._left_rows if self.semi else \
                (lambda t: self.layout.padded(t, o))
            for changed, sign_of in ((gained, sign), (lost, -sign)):
                if changed.any():
                    at = np.flatnonzero(changed)
                    pieces.append((rows_of(other.take(at)), sign_of * other.get(_MULT, at)))
            other[_MATCHES] = after

        # 4. this side's state
        known = existing >= 0
        if known.any():  # only over a changelog, whose side keeps ``_m``
            side[_MULT][existing[known]] += d[known]
            if side.has(_SEEN):
                side[_SEEN][existing[known]] = now
        new = ~known & (d > 0)
        if new.any():
            count = int(new.sum())
            side.append(rows if new.all() else rows.filter(pa.array(new)), **{
                _MULT: d[new], _MATCHES: found[new],
                _SEEN: np.full(count, now, dtype=np.int64)})
        if (d < 0).any():
            side.keep(side[_MULT] > 0)
        return self._emit(pieces)

    def _left_rows(self, rows: pa.Table) -> pa.Table:
        """Output rows of a semi / anti join: left rows in the output columns."""
        return self.layout.output(rows)

    def _net(self, side: JoinSide, data: pa.Table, w: np.ndarray
             ) -> tuple[pa.Table, np.ndarray, np.ndarray]:
        """Net a changelog batch: (distinct rows, net weight, index of the stored equal row
        or -1), without retractions of rows that are not stored (counted)."""
        names = data.column_names
        netted = net_rows(data.append_column(NET, pa.array(w)), names, data.schema)
        rows = netted.select(names)
        existing = lookup(rows, names, side.view(), names) if side.size else \
            np.full(rows.num_rows, -1, dtype=np.int64)
        have = np.where(existing >= 0, side[_MULT][np.maximum(existing, 0)], 0) \
            if side.size else np.zeros(rows.num_rows, dtype=np.int64)
        net, ignored = apply_net(netted.column(NET).to_numpy(),
                                 netted.column(LOWEST).to_numpy(), have)
        if ignored.any():
            self.ctx.metrics["corrupt_retractions"] += int(ignored.sum())
        keep = net != 0
        if not keep.all():
            rows, net, existing = rows.filter(pa.array(keep)), net[keep], existing[keep]
        return rows, net, existing

    def _emit(self, pieces: list[tuple[pa.Table, np.ndarray]]) -> list[pa.RecordBatch]:
        """Rows with weights -> a changelog batch: retractions first, then insertions."""
        if not pieces:
            return []
        table = pa.concat_tables([t for t, _ in pieces])
        w = np.concatenate([x for _, x in pieces])
        if not self.updating_output:
            return batches_of(repeat_rows(table, w))
        order = np.argsort(w > 0, kind="stable")
        counts = np.abs(w[order])
        rows = table.take(pa.array(np.repeat(order, counts)))
        ops = np.repeat(np.sign(w[order]).astype(np.int8), counts)
        keep = ops != 0
        if not keep.all():
            rows, ops = rows.filter(pa.array(keep)), ops[keep]
        return batches_of(rows.append_column(pa.field(OP, OP_TYPE), pa.array(ops, OP_TYPE)))

    # ---- time -----------------------------------------------------------------------------

    def on_processing_time(self, now_us: int) -> Sequence[pa.RecordBatch]:
        """State TTL: forget rows unchanged for ``ttl_us`` (no output, as in Flink)."""
        if self.ttl_us is None or time.monotonic() < self._next_expiry:
            return ()
        self._next_expiry = time.monotonic() + min(self.ttl_us / 1e6, 1.0)
        for side in self.sides:
            if side.size:
                side.keep(side[_SEEN] >= now_us - self.ttl_us)
        return ()

    # ---- checkpoints ----------------------------------------------------------------------

    def snapshot(self, epoch: int) -> dict[str, Any]:
        mkg = self.ctx.max_key_groups
        # each side's rows whole the first time, then what changed (state.incremental)
        return {name: side.snapshot(lambda t, s=side: tag_key_groups(t, s.keys, mkg))
                for name, side in zip(("left", "right"), self.sides)}

    def restore(self, state: dict[str, Any]) -> None:
        for name, side in zip(("left", "right"), self.sides):
            side.load(*own_rows_mask(state.get(name), side.keys, self.ctx))

    def state_rows(self) -> int:
        return sum(s.size for s in self.sides)
