"""Name resolution for expressions: which columns a SELECT can see, and which expressions
are already computed by an earlier step (group keys, aggregates, window columns)."""

from __future__ import annotations

from dataclasses import dataclass, field

import pyarrow as pa
from sqlglot import exp

from caudal.errors import PlanError, names_hint
from caudal.plan.expressions import Column, Expr
from caudal.sql.rendering import positions, text


def sql_conjuncts(node: exp.Expression) -> list[exp.Expression]:
    """The AND-ed terms of a condition (parentheses looked through)."""
    while isinstance(node, exp.Paren):
        node = node.this
    if isinstance(node, exp.And):
        return sql_conjuncts(node.this) + sql_conjuncts(node.expression)
    return [node]


def negative_ordinal(node: exp.Expression) -> int | None:
    """``-N`` for a GROUP BY or ORDER BY item written ``-N`` (an integer): in PostgreSQL and
    DuckDB a position out of range, refused; grouping or sorting by the constant would
    answer where they refuse."""
    if isinstance(node, exp.Paren):
        node = node.this
    if isinstance(node, exp.Neg) and isinstance(node.this, exp.Literal) and \
            not node.this.is_string and node.this.this.isdigit():
        return -int(node.this.this)
    return None


def _own_position(node: exp.Expression) -> tuple[int, int] | None:
    meta = getattr(node, "_meta", None) or {}
    if not meta.get("line"):
        return None
    # sqlglot's col is the column of the token's last character
    start = meta.get("col", 1) - (meta.get("end", 0) - meta.get("start", 0))
    return meta["line"], max(1, start)


def _leftmost(node: exp.Expression, memo: dict) -> tuple[int, int] | None:
    """``position`` of ``node`` from its children's, each found once (``memo``)."""
    hit = memo.get(id(node))
    if hit is not None and hit[0] is node:
        return hit[1]
    best = _own_position(node)
    for child in node.iter_expressions():
        here = _leftmost(child, memo)
        if here is not None and (best is None or here < best):
            best = here
    memo[id(node)] = (node, best)
    return best


def position(node: exp.Expression) -> tuple[int | None, int | None]:
    """Line and column where a sqlglot node starts: the leftmost token inside it that
    carries a position (sqlglot records positions on identifiers and literals). Inside
    ``rendering`` (a ``translate``) each node's is found once."""
    if node is None:
        return None, None
    memo = positions()
    if memo is not None:
        best = _leftmost(node, memo)
    else:
        best = None
        for candidate in node.walk():
            here = _own_position(candidate)
            if here is not None and (best is None or here < best):
                best = here
    if best is None:
        return None, None
    return best


@dataclass
class ScopeColumn:
    """A visible column: the relation it belongs to (alias or table), its name, its type and
    the physical column name in the batches."""

    relation: str | None
    name: str
    dtype: pa.DataType
    physical: str
    #: a join side's column that ``USING`` merged into one: named only with its relation
    #: (``l.k``); ``k`` and ``*`` mean the merged column
    qualified_only: bool = False


@dataclass
class Scope:
    columns: list[ScopeColumn] = field(default_factory=list)
    #: expressions computed upstream, keyed by their SQL text (normalized by sqlglot)
    computed: dict[str, Expr] = field(default_factory=dict)

    def resolve_column(self, node: exp.Column) -> Expr:
        """The IR column for ``[relation.]name``; raises PlanError with the position."""
        name = node.name
        relation = node.table or None
        matches = [c for c in self.columns if c.name.lower() == name.lower()
                   and (not c.qualified_only if relation is None
                        else (c.relation or "").lower() == relation.lower())]
        if not matches and relation is not None:
            # a.b may also be struct field access on column a
            return None  # type: ignore[return-value]
        if not matches:
            line, col = position(node)
            raise PlanError(f"unknown column {name!r}", line=line, col=col,
                            hint=names_hint(name, [c.name for c in self.columns],
                                            "columns here"))
        if len(matches) > 1:
            line, col = position(node)
            raise PlanError(f"column {name!r} is ambiguous", line=line, col=col,
                            hint="qualify it with a table name or alias")
        c = matches[0]
        return Column(c.dtype, c.physical)

    def star(self, relation: str | None = None) -> list[ScopeColumn]:
        """The columns ``*`` (or ``relation.*``) stands for."""
        if relation is None:
            return [c for c in self.columns if not c.qualified_only]
        return [c for c in self.columns if (c.relation or "").lower() == relation.lower()]

    def relation_names(self) -> set[str]:
        """The relations (lowercase) whose columns are in scope: ``a.b`` is column b of
        relation a when a is one, else field b of a struct column a."""
        return {(c.relation or "").lower() for c in self.columns if c.relation}

    def lookup(self, node: exp.Expression) -> Expr | None:
        """An upstream-computed expression equal to ``node``, if any."""
        if not self.computed:
            return None
        return self.computed.get(text(node, "postgres"))

    def schema(self) -> pa.Schema:
        return pa.schema([pa.field(c.physical, c.dtype) for c in self.columns])
