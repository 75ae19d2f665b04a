"""The planning check of changelogs: a plan that feeds an updating stream into an operator or
a sink that cannot take retractions is refused, naming the operator that makes the stream
updating and what would work instead. Kept apart from ``plan.changelog`` (how a batch carries
its change kinds), which operators and connectors use at run time."""

from __future__ import annotations

import re

from caudal.errors import PlanError
from caudal.plan.logical import SinkWrite

SINK_HINT = ("write it to a sink that takes a changelog: a filesystem table with format = "
             "'debezium_json' (or an upsert sink), or stdout; or make the query append-only "
             "(a windowed GROUP BY, an interval or window join)")


def _label(node) -> str:
    """'window aggregate' for WindowAggregate: the operator's name in words."""
    name = type(node).__name__
    return re.sub(r"(?<!^)(?=[A-Z])", " ", name).lower()


def check_changelog(plan) -> None:
    """Walk a planned output: every node whose input is a changelog must accept one, and the
    sink must take it. Raises PlanError naming the operator and what would work."""
    stack = [plan]
    while stack:
        node = stack.pop()
        children = node.children()
        stack.extend(children)
        if isinstance(node, SinkWrite):
            if node.input.updating and not node.table.takes_changelog:
                raise PlanError(
                    f"the query's result is updating ({updating_cause(node.input)} revises "
                    f"rows it already emitted), and sink {node.table.name!r} (connector "
                    f"{node.table.connector!r}, format "
                    f"{node.table.option('format', 'default')!r}) only appends rows",
                    hint=SINK_HINT)
            continue
        if any(c.updating for c in children) and not getattr(node, "accepts_updates", False):
            cause = next(updating_cause(c) for c in children if c.updating)
            raise PlanError(
                f"a {_label(node)} cannot take an updating input: its input is a changelog "
                f"(because of {cause}), and it needs append-only rows",
                line=getattr(node, "line", None), col=getattr(node, "col", None),
                hint="window the aggregate below it (GROUP BY a window emits final rows), or "
                     "use an updating GROUP BY / regular JOIN, which take retractions")


def updating_cause(node) -> str:
    """A short description of the node that makes a stream updating, for error messages."""
    while True:
        own = getattr(node, "updating_reason", None)
        if own:
            return own
        updating_children = [c for c in node.children() if c.updating]
        if not updating_children:
            return node.describe()
        node = updating_children[0]

