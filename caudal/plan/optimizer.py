"""Rewrites of a logical plan that change how much work is done, never the result:
column pruning (read only what is used) and predicate pushdown into sources."""

from __future__ import annotations

import dataclasses
import sys

import pyarrow as pa

from caudal.plan.expressions import Call, Column, Expr
from caudal.plan.logical import Filter, LogicalNode, Project, Scan, SinkWrite, rewrite_bottom_up


def optimize(node: LogicalNode) -> LogicalNode:
    # the window-max fusion rewrites interval joins, and late columns what it made: a plan
    # can hold an interval join only once caudal.plan.join_nodes is imported, so a plan
    # without joins skips both passes and the modules they bring (~10 ms of a start-up)
    joins = "caudal.plan.join_nodes" in sys.modules
    node = _merge_filters(node)
    if joins:
        from caudal.plan.window_max_join import fuse_window_max_joins

        node = fuse_window_max_joins(node)
    _prune(node, None)
    _prune_struct_fields(node)
    _push_predicates(node)
    if not joins:
        return node
    from caudal.plan.late_columns import late_materialize

    return late_materialize(node)


def _merge_filters(node: LogicalNode) -> LogicalNode:
    """Filter(Filter(x, a), b) -> Filter(x, a AND b)."""
    return rewrite_bottom_up(node, _merge_two_filters)


def _merge_two_filters(node: LogicalNode) -> LogicalNode:
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
            needed = set(required) | set(table.normalized_key())
            if table.event_time:
                time = table.event_time
                table.event_time_unread = time not in needed and time not in table.computed \
                    and not any(time in table.computed[n].columns() for n in needed
                                if n in table.computed)
                needed.add(time)
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


def _prune_struct_fields(node: LogicalNode) -> None:
    """Tell a scan which fields of its struct columns are read, when the filters and
    projections right above it (ending in a projection) and its computed columns read a
    struct only through ``s.field``: Flink's Nexmark views read a few fields of the
    datagen's ROW columns, and the generator need not make the others."""
    chain: list[LogicalNode] = []
    below = node
    while isinstance(below, (Filter, Project)):
        chain.append(below)
        below = below.input
    if isinstance(below, Scan) and chain and isinstance(chain[0], Project):
        table = below.table
        exprs = [e for n in chain for e in
                 (n.exprs if isinstance(n, Project) else [n.predicate])]
        exprs += list(table.computed.values())
        fields: dict[str, list[str]] = {}
        for f in table.read_schema():  # what the source emits, for the scan and computed
            if not pa.types.is_struct(f.type):
                continue
            used = _fields_read(exprs, f.name, f.type)
            if used is not None and len(used) < f.type.num_fields:
                fields[f.name] = [f.type.field(i).name for i in sorted(used)]
        # the chain nearest the scan is the exact one (it alone sees the scan's columns),
        # and it is visited last
        table.struct_fields = fields
    for child in node.children():
        _prune_struct_fields(child)


def _fields_read(exprs: list[Expr], column: str, dtype: pa.StructType) -> set[int] | None:
    """Indexes of the fields of struct ``column`` the expressions read, or None when one
    reads the struct otherwise than field by field."""
    used: set[int] = set()
    stack: list[Expr] = list(exprs)
    while stack:
        e = stack.pop()
        if isinstance(e, Column):
            if e.name == column:
                return None
            continue
        if not isinstance(e, Call):
            continue
        if e.func == "struct_field" and len(e.args) == 1 and isinstance(e.args[0], Column) \
                and e.args[0].name == column and "index" in e.options:
            used.add(int(e.options["index"]))
            continue
        stack.extend(e.args)
    return used


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
