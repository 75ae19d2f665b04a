"""Rewrites of a logical plan that change how much work is done, never the result:
column pruning (read only what is used) and predicate pushdown into sources."""

from __future__ import annotations

import dataclasses

import pyarrow as pa

from caudal.plan.expressions import Call, Column, Expr
from caudal.plan.logical import Filter, LogicalNode, Project, Scan, SinkWrite


def optimize(node: LogicalNode) -> LogicalNode:
    node = _merge_filters(node)
    _prune(node, None)
    _push_predicates(node)
    return node


def _merge_filters(node: LogicalNode) -> LogicalNode:
    """Filter(Filter(x, a), b) -> Filter(x, a AND b)."""
    for attr in ("input", "left", "right"):
        child = getattr(node, attr, None)
        if isinstance(child, LogicalNode):
            setattr(node, attr, _merge_filters(child))
    if isinstance(node, Filter) and isinstance(node.input, Filter):
        inner = node.input
        both = Call(pa.bool_(), "and", (inner.predicate, node.predicate))
        return Filter(node.schema, node.time_column, input=inner.input, predicate=both)
    return node


def required_columns(node: LogicalNode) -> set[str] | None:
    """Input columns a node reads (None: all of them)."""
    if isinstance(node, Project):
        out: set[str] = set()
        for e in node.exprs:
            out |= e.columns()
        return out
    hook = getattr(node, "input_columns", None)
    if hook is not None:
        return hook()
    return None


def _prune(node: LogicalNode, required: set[str] | None) -> None:
    """Walk down telling each node which of its output columns are used above.

    A node asked for no column at all (``SELECT count(*)`` reads none) keeps one: a
    relation of zero columns would lose its row count wherever an operator rebuilds rows
    from columns (a join's output, a scan's decoder)."""
    if required is not None and not required and node.schema.names:
        required = {node.schema.names[0]}
    if isinstance(node, Scan):
        table = node.table
        if required is not None:
            needed = set(required)
            if table.event_time:
                needed.add(table.event_time)
            columns = table.columns_schema()  # with the computed columns
            names = [n for n in columns.names if n in needed]
            table.projection = names
            node.schema = pa.schema([columns.field(n) for n in names])
        return
    if isinstance(node, Filter):
        below = None if required is None else required | node.predicate.columns()
        _prune(node.input, below)
        node.schema = node.input.schema
        return
    if isinstance(node, (Project, SinkWrite)):
        if isinstance(node, SinkWrite):
            _prune(node.input, None if not isinstance(node.input, (Project,)) else
                   set(node.input.schema.names))
            return
        if required is not None:
            _drop_unused(node, required)
        _prune(node.input, required_columns(node))
        return
    per_input = getattr(node, "prune_inputs", None)
    if per_input is not None:  # a node with several inputs (a join) says what each needs
        for child, need in zip(node.children(), per_input(required)):
            _prune(child, need)
        return
    for child in node.children():
        _prune(child, required_columns(node))


def _drop_unused(node: Project, required: set[str]) -> None:
    """A projection computes only the columns used above it (and its time column), so
    the columns it alone reads are not read below (a renaming subquery of ``SELECT *``)."""
    names = node.schema.names
    keep = [i for i, n in enumerate(names) if n in required or n == node.time_column]
    if not keep:
        keep = [0]
    if len(keep) >= len(names):
        return
    node.exprs = [node.exprs[i] for i in keep]
    node.schema = pa.schema([node.schema.field(i) for i in keep])


def _push_predicates(node: LogicalNode) -> None:
    """A filter right above a scan lends its predicate to the source for skipping data
    (row-group statistics); the filter itself stays, so correctness never depends on it."""
    for child in node.children():
        _push_predicates(child)
    if isinstance(node, Filter) and isinstance(node.input, Scan):
        scan = node.input
        scan.table = dataclasses.replace(scan.table, prune_filter=node.predicate)


def substitute(expr: Expr, mapping: dict[str, Expr]) -> Expr:
    """Replace column references by expressions (to inline a projection)."""
    if isinstance(expr, Column):
        return mapping.get(expr.name, expr)
    if isinstance(expr, Call):
        return dataclasses.replace(expr, args=tuple(substitute(a, mapping) for a in expr.args))
    return expr
