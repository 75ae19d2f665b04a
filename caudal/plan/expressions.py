"""The typed expression IR: what SQL and the Python API compile scalar expressions into.

Three node kinds keep it small: a column of the input batch, a literal, and a call of a named
scalar function (operators, casts and CASE are functions too). Every node knows its Arrow type.
The IR is plain data (picklable) so it can travel inside the physical graph to a Ray worker;
``plan.compile`` turns it into a function of a RecordBatch.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

from caudal.types import sql_name


@dataclass(frozen=True, eq=False)
class Expr:
    dtype: pa.DataType

    def children(self) -> tuple[Expr, ...]:
        return ()

    def columns(self) -> set[str]:
        """Names of the input columns this expression reads."""
        out: set[str] = set()
        stack: list[Expr] = [self]
        while stack:
            node = stack.pop()
            if isinstance(node, Column):
                out.add(node.name)
            stack.extend(node.children())
        return out


@dataclass(frozen=True, eq=False)
class Column(Expr):
    name: str

    def __str__(self) -> str:
        return self.name if self.name.isidentifier() else f'"{self.name}"'


@dataclass(frozen=True, eq=False)
class Literal(Expr):
    value: Any

    def __str__(self) -> str:
        if self.value is None:
            return "NULL"
        if isinstance(self.value, str):
            return "'" + self.value.replace("'", "''") + "'"
        return str(self.value)

    def scalar(self) -> pa.Scalar:
        return pa.scalar(self.value, type=self.dtype)


@dataclass(frozen=True, eq=False)
class Call(Expr):
    """A scalar function applied to arguments; ``options`` are constant parameters (a
    regex flag, a date_trunc unit) that are not expressions."""

    func: str
    args: tuple[Expr, ...]
    options: dict[str, Any] = field(default_factory=dict)

    def children(self) -> tuple[Expr, ...]:
        return self.args

    def __str__(self) -> str:
        infix = _INFIX.get(self.func)
        if infix and len(self.args) == 2:
            return f"({self.args[0]} {infix} {self.args[1]})"
        if self.func == "cast":
            return f"CAST({self.args[0]} AS {sql_name(self.dtype)})"
        inner = ", ".join(str(a) for a in self.args)
        opts = "".join(f", {k}={v!r}" for k, v in self.options.items())
        return f"{self.func}({inner}{opts})"


_INFIX = {
    "add": "+", "subtract": "-", "multiply": "*", "divide": "/", "modulo": "%",
    "eq": "=", "neq": "<>", "lt": "<", "lte": "<=", "gt": ">", "gte": ">=",
    "and": "AND", "or": "OR", "concat_op": "||",
}


def set_source(expr: Expr, line: int | None, col: int | None, text: str) -> None:
    """Remember where in the SQL text ``expr`` was written, so an error raised while
    computing it (a failed cast, a division by zero) can name it. Kept outside the
    dataclass fields: it is not part of what the expression means (EXPLAIN and checkpoint
    fingerprints ignore it)."""
    if line is not None and "_source" not in expr.__dict__:
        object.__setattr__(expr, "_source", (line, col, text))


def source_of(expr: Expr) -> tuple[int, int | None, str] | None:
    """``(line, col, SQL text)`` where ``expr`` was written, if known."""
    return expr.__dict__.get("_source")


def conjuncts(expr: Expr) -> list[Expr]:
    """The terms of ``a AND b AND …`` (the expression itself when it is not an AND)."""
    if isinstance(expr, Call) and expr.func == "and":
        return [c for a in expr.args for c in conjuncts(a)]
    return [expr]


def conjunction(exprs: list[Expr]) -> Expr:
    """``exprs[0] AND exprs[1] AND …`` (at least one expression)."""

    out = exprs[0]
    for e in exprs[1:]:
        out = Call(pa.bool_(), "and", (out, e))
    return out
