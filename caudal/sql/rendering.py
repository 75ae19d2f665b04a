"""The SQL text of the nodes of one expression, each node rendered once.

sqlglot's ``node.sql()`` copies the node's whole subtree and renders all of it, so asking for
the text of every node of a tree (``translate`` names each call's source text; ``Scope.lookup``
finds computed expressions by their text) costs the tree's size times its depth: a 150-deep
expression took ~3 s to plan, a fuzzer's run of deeper ones > 300 s. Inside ``rendering(root)``
(opened by the outermost ``translate``) the tree under ``root`` is copied once, and ``text()``
renders each node of the copy once per dialect, with a generator that remembers the text of
every node it rendered (a parent's text is made of its children's). Outside such a context, or
for a node not under its root, ``text()`` is ``node.sql()``.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

from sqlglot import exp
from sqlglot.dialects.dialect import Dialect, DialectType
from sqlglot.generator import Generator

from caudal.sql.dialect import allow_depth


class _Texts:
    """One tree's copy (made on the first request) and a remembering generator per dialect."""

    def __init__(self, root: exp.Expression):
        self.root = root
        #: id(original node) -> (the node, its copy); the node is kept so its id stays its own
        self.copies: dict[int, tuple[exp.Expression, exp.Expression]] | None = None
        self.generators: dict[DialectType, Generator] = {}
        #: id(node) -> (the node, its leftmost position) (scope.position)
        self.positions: dict[int, tuple[exp.Expression, tuple[int, int] | None]] = {}

    def copy_of(self, node: exp.Expression) -> exp.Expression | None:
        if self.copies is None:
            copied = self.root.copy()
            self.copies = {id(o): (o, c) for o, c in zip(self.root.walk(), copied.walk())}
        hit = self.copies.get(id(node))
        return hit[1] if hit is not None and hit[0] is node else None

    def generator(self, dialect: DialectType) -> Generator:
        found = self.generators.get(dialect)
        if found is None:
            found = self.generators[dialect] = _remembering(Dialect.get_or_raise(dialect))
        return found


def _remembering(dialect: Dialect) -> Generator:
    """A generator of ``dialect`` that renders each node once (by identity)."""
    base = dialect.generator_class
    memo: dict[tuple[int, bool], tuple[exp.Expression, str]] = {}
    #: AND / OR chains that the dialect renders as sqlglot does: in order, joined by spaces
    #: (sqlglot flattens a chain without rendering its inner nodes on their own, so each
    #: inner node would render the rest of the chain again)
    connectors = {cls: op for cls, op in ((exp.And, "AND"), (exp.Or, "OR"))
                  if getattr(base, f"{cls.key}_sql") is getattr(Generator, f"{cls.key}_sql")}

    def sql(self, expression, key=None, comment=True):  # noqa: ANN001, ANN202 (sqlglot's)
        if key or not isinstance(expression, exp.Expression):
            return base.sql(self, expression, key, comment)
        hit = memo.get((id(expression), comment))
        if hit is not None and hit[0] is expression:
            return hit[1]
        op = connectors.get(type(expression))
        if op is not None and not expression.comments and not self.pretty:
            text = f"{self.sql(expression.left)} {op} {self.sql(expression.right)}"
        else:
            text = base.sql(self, expression, None, comment)
        memo[(id(expression), comment)] = (expression, text)
        return text

    def binary(self, expression, op):  # noqa: ANN001, ANN202 (sqlglot's)
        # sqlglot flattens a chain of one operator (a + b + c) without rendering its inner
        # nodes on their own: one level here, its operands rendered (and remembered) alone
        if expression.comments or expression.args.get("operator"):
            return base.binary(self, expression, op)
        if type(expression) is exp.Is and op in ("IS", "IS NOT"):
            op = "IS NOT" if expression.args.get("negate") else "IS"
        return f"{self.sql(expression.this)} {op} {self.sql(expression.expression)}"

    cls = type(f"Remembering{base.__name__}", (base,), {"sql": sql, "binary": binary})
    return cls(dialect=dialect)


_ACTIVE: ContextVar[_Texts | None] = ContextVar("caudal_sql_rendering", default=None)


@contextmanager
def rendering(root: exp.Expression) -> Iterator[None]:
    """Render the nodes under ``root`` once each until the block ends (nested: the outer
    context serves)."""
    if _ACTIVE.get() is not None:
        yield
        return
    allow_depth()
    token = _ACTIVE.set(_Texts(root))
    try:
        yield
    finally:
        _ACTIVE.reset(token)


def positions() -> dict[int, tuple[exp.Expression, tuple[int, int] | None]] | None:
    """The positions of nodes found so far inside ``rendering`` (None outside)."""
    texts = _ACTIVE.get()
    return texts.positions if texts is not None else None


def text(node: exp.Expression, dialect: DialectType) -> str:
    """``node.sql(dialect=dialect)``, rendered once per node inside ``rendering``."""
    texts = _ACTIVE.get()
    copied = texts.copy_of(node) if texts is not None else None
    if copied is None:
        return node.sql(dialect=dialect)
    return texts.generator(dialect).sql(copied).strip()
