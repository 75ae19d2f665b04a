"""Which output columns identify a row of a changelog, and which ones its rows are
partitioned by: what an upsert sink needs to turn retractions into keyed writes.

An updating GROUP BY's result has one row per key, so its keys (under the names the query
gives them in its SELECT list) are a unique key of the changelog; the rows of one key all
come from the one subtask that owns it. Other changelogs (joins, a top-N) have no key caudal
can derive: the sink table must declare one (``PRIMARY KEY (…) NOT ENFORCED``).
"""

from __future__ import annotations

from caudal.plan.expressions import Column
from caudal.plan.logical import Filter, LogicalNode, Project


def _through_projections(node: LogicalNode, names: list[str]) -> tuple[LogicalNode, list[str]]:
    """Follow output column ``names`` down through projections and filters: the first other
    node and the names there. A name computed by an expression maps to None."""
    mapped: list[str | None] = list(names)
    while isinstance(node, (Project, Filter)):
        if isinstance(node, Project):
            by_name = dict(zip(node.schema.names, node.exprs))
            mapped = [by_name[n].name if n is not None and isinstance(by_name.get(n), Column)
                      else None for n in mapped]
        node = node.input
    return node, mapped  # type: ignore[return-value]


def _names_above(node: LogicalNode, below: list[str]) -> list[str] | None:
    """The output names of ``node`` under which the columns ``below`` (names at the first
    node under its projections) come out, or None if one of them does not come out as is."""
    out = []
    for name in below:
        found = [n for n in node.schema.names
                 if _through_projections(node, [n])[1][0] == name]
        if not found:
            return None
        out.append(found[0])
    return out


def changelog_key(node: LogicalNode) -> list[str] | None:
    """Output columns of ``node`` that identify its rows (one row per value), or None."""
    base, _ = _through_projections(node, [])
    own = base.row_key()
    return _names_above(node, own) if own else None


def partition_key(node: LogicalNode) -> list[str] | None:
    """Output columns of ``node`` such that all rows with equal values come from one subtask
    (the hash key of the vertex it runs in), or None when caudal does not know one."""
    return changelog_key(node)


def upsert_key(table, plan: LogicalNode) -> list[str] | None:
    """The key an upsert sink writes ``plan``'s rows by: the table's declared PRIMARY KEY,
    else (for an updating query) the query's own key; None when there is neither."""
    declared = getattr(table, "primary_key", None)
    if declared:
        return list(declared)
    if plan.updating:
        return changelog_key(plan)
    return None


def needs_key_shuffle(table, input: LogicalNode) -> bool:
    """True when the rows of one upsert key may come from several subtasks of ``input``:
    they must then be hash-partitioned by the key before the sink, so that each key's
    changes reach one writer in order."""
    if not table.upsert_key:
        return False
    have = partition_key(input)
    return have is None or not set(have) <= set(table.upsert_key)
