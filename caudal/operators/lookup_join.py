"""The lookup join operator (plan.lookup_join): reads the bounded table whole when it opens
(its source, computed columns and stateless chain), then joins each batch of the streaming
side against it: with one join key unique in the table (a primary key), each row finds its
row by one probe (lookup_cache.UniquePositions) and the table's columns come by one take;
otherwise one hash join per batch (join_rows.match). No state is checkpointed:
a restored subtask reads the table again, which is what a processing-time lookup means.

A table whose connector has a LookupSource (a database) is not read whole but looked up by
key: per batch, the distinct keys go through a LookupCache (operators.lookup_cache) and the
batch is joined with the rows it returns."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pyarrow as pa

from caudal import compute as pc
from caudal.connectors import registry as connectors
from caudal.connectors.base import LookupSource
from caudal.operators.base import Operator, OperatorContext
from caudal.operators.join_rows import JoinLayout, match
from caudal.operators.keyed_tables import as_array, conform_table, from_numpy, positional
from caudal.operators.lookup_cache import (
    LookupCache,
    UniquePositions,
    distinct_keys,
    unique_positions,
)
from caudal.plan.expressions import Expr
from caudal.plan.physical import OperatorSpec
from caudal.plan.tables import TableSpec
from caudal.types import conform_batch

#: rows per poll while reading the table
_READ_ROWS = 1 << 16


def read_table(table: TableSpec, chain: Sequence[OperatorSpec]) -> list[pa.RecordBatch]:
    """Every row of a bounded table, through its stateless chain (filters, projections)."""
    from caudal.operators.registry import create  # late: the registry imports operators

    source = connectors.source_class(table)(table)
    operators = [create(spec) for spec in chain]
    for op in operators:
        op.open(OperatorContext())
    source.open(source.partitions(1))
    computed = table.computed_step()
    out: list[pa.RecordBatch] = []
    try:
        while not source.finished():
            batch = source.poll(_READ_ROWS, 0.0)
            if batch is None:
                continue
            if not batch.schema.equals(source.schema):
                batch = conform_batch(batch, source.schema)
            batches = [computed(batch) if computed is not None else batch]
            for op in operators:
                batches = [b for one in batches for b in op.process(one, 0)]
            out.extend(batches)
    finally:
        source.close()
    return out


class LookupJoin(Operator):
    def __init__(self, kind: str, left_schema: pa.Schema, right_schema: pa.Schema,
                 left_keys: list[str], right_keys: list[str], right_rename: dict[str, str],
                 output_schema: pa.Schema, side_table: TableSpec,
                 side_chain: Sequence[OperatorSpec], residual: Expr | None = None,
                 by_key: bool = False, cache_rows: int = 0, cache_ttl_s: float | None = None):
        self.kind = kind
        self.layout = JoinLayout(left_schema, right_schema, right_rename, output_schema,
                                 residual)
        self.output_schema = output_schema
        self.left_keys = list(left_keys)
        self.right_keys = list(right_keys)
        self.side_table = side_table
        self.side_chain = list(side_chain)
        self.table_rows: pa.Table = right_schema.empty_table()
        self.by_key = by_key
        self.cache_rows = cache_rows
        self.cache_ttl_s = cache_ttl_s
        self.cache: LookupCache | None = None
        self._build = None
        #: positions by the whole table's key column when it is unique (False: it is not;
        #: None: not known yet)
        self._unique: UniquePositions | bool | None = None

    def open(self, ctx: OperatorContext) -> None:
        super().open(ctx)
        if self.by_key:
            source = connectors.lookup_class(self.side_table)(self.side_table, self.right_keys)
            self.cache = LookupCache(_Chained(source, self.side_table, self.side_chain,
                                              self.layout.right_schema),
                                     self.cache_rows, self.cache_ttl_s)
            return
        schema = self.layout.right_schema
        batches = read_table(self.side_table, self.side_chain)
        rows = pa.Table.from_batches(batches) if batches else schema.empty_table()
        self.table_rows = conform_table(rows, schema).combine_chunks()
        ctx.metrics["lookup_rows"] = ctx.metrics.get("lookup_rows", 0) + self.table_rows.num_rows

    def process(self, batch: pa.RecordBatch, input: int = 0) -> Sequence[pa.RecordBatch]:
        if batch.num_rows == 0:
            return ()
        left = pa.Table.from_batches([batch]).select(self.layout.left_schema.names)
        table_rows = self.table_rows
        at = self._unique_positions(left)
        if at is None and self.cache is not None:
            keys = distinct_keys(left, self.left_keys, self.right_keys)
            table_rows = self.cache.rows_for(keys)
            if table_rows is self.cache.rows:  # now cached: each row's match, if exact
                at = self._unique_positions(left, count=False)
        elif at is not None and self.cache is not None:
            table_rows = self.cache.rows
        if at is not None:  # one key, unique in the table: each row's match in its order
            return self._aligned(left, table_rows, at)
        if self.cache is not None:
            build = self.cache.build_of(table_rows)
        else:
            if self._build is None:
                self._build = positional(self.table_rows, self.right_keys)
            build = self._build
        li, ri = match(left, self.left_keys, build, self.right_keys)
        order = np.argsort(li, kind="stable")  # the streaming side's order
        return self._pairs(left, table_rows, li[order], ri[order])

    def _aligned(self, left: pa.Table, table_rows: pa.Table,
                 at: np.ndarray) -> Sequence[pa.RecordBatch]:
        """The join when row ``i`` of ``left`` matches row ``at[i]`` of the table or none
        (-1): without a residual condition, a LEFT join (or an inner join where every row
        matched) is the batch's own columns beside one ``take`` of the table's."""
        if self.layout.residual is None and (self.kind == "left" or at.min() >= 0):
            out = self.layout.beside(left, table_rows, at)
            return [b for b in out.to_batches() if b.num_rows]
        li = np.flatnonzero(at >= 0)
        return self._pairs(left, table_rows, li, at[li])

    def _pairs(self, left: pa.Table, table_rows: pa.Table, li: np.ndarray,
               ri: np.ndarray) -> Sequence[pa.RecordBatch]:
        """The join of the key-equal pairs ``(li, ri)`` (in the batch's order): those that
        satisfy the residual, then (LEFT) the batch's rows left without one, padded."""
        li, ri, joined = self.layout.matching(left, table_rows, li, ri)
        pieces = [self.layout.output(joined)] if len(li) else []
        if self.kind == "left":
            alone = np.ones(left.num_rows, dtype=bool)
            alone[li] = False
            if alone.any():
                pieces.append(self.layout.padded(pc.filter(left, from_numpy(alone)), 0))
        return [b for piece in pieces for b in piece.to_batches() if b.num_rows]

    def _unique_positions(self, left: pa.Table, count: bool = True) -> np.ndarray | None:
        """Each row's match (its row in the table, -1 for none) by one probe, when the join
        has one key and no two table rows share a value (a primary key): the matches come
        in the batch's order, with no join and no sort. None otherwise (a general hash join
        then)."""
        if len(self.left_keys) != 1:
            return None
        column = as_array(left.column(self.left_keys[0]))
        if self.cache is not None:
            return self.cache.warm_positions(column, count)
        if self._unique is None:  # the whole table, read once at open: decided once
            found = unique_positions(self.table_rows, self.right_keys[0])
            self._unique = found if found is not None else False
        if self._unique is False:
            return None
        return self._unique.positions(column)

    def close(self) -> None:
        if self.cache is not None:
            self.ctx.metrics["lookup_hits"] = self.ctx.metrics.get("lookup_hits", 0) + \
                self.cache.hits
            self.ctx.metrics["lookup_misses"] = self.ctx.metrics.get("lookup_misses", 0) + \
                self.cache.misses
            self.cache.close()
            self.cache = None


class _Chained(LookupSource):
    """A LookupSource whose rows go through the table's computed columns and stateless chain
    (the filters and projections over it in the query), so that the cache keeps joined-ready
    rows. The chain keeps the key columns under their names (checked at planning)."""

    def __init__(self, inner: LookupSource, table: TableSpec,
                 chain: Sequence[OperatorSpec], schema: pa.Schema):
        from caudal.operators.registry import create  # late: the registry imports operators

        self.inner = inner
        self.keys = inner.keys
        self.schema = schema
        self.computed = table.computed_step()
        self.operators = [create(spec) for spec in chain]
        for op in self.operators:
            op.open(OperatorContext())

    def lookup(self, keys: pa.Table) -> pa.Table:
        rows = self.inner.lookup(keys)
        batches = [self.computed(b) if self.computed is not None else b
                   for b in rows.to_batches()]
        for op in self.operators:
            batches = [b for one in batches for b in op.process(one, 0)]
        if not batches:
            return self.schema.empty_table()
        return conform_table(pa.Table.from_batches(batches), self.schema)

    def close(self) -> None:
        self.inner.close()
