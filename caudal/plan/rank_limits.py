"""Reading ``rank <= N`` out of a predicate: the top-N operators (window and updating)
keep only the rows such a filter above them keeps. Over the IR, shared by the front ends."""

from __future__ import annotations

from caudal.plan.expressions import Call, Column, Expr, Literal


def conjuncts(expr: Expr) -> list[Expr]:
    if isinstance(expr, Call) and expr.func == "and":
        return [c for a in expr.args for c in conjuncts(a)]
    return [expr]


def rank_bound(expr: Expr, rank_columns: set[str]) -> int | None:
    """N when ``expr`` is ``rank <= N`` (or <, =, and the mirrored forms)."""
    if not isinstance(expr, Call) or len(expr.args) != 2:
        return None
    a, b = expr.args
    func = expr.func
    if isinstance(a, Literal) and isinstance(b, Column):
        a, b = b, a
        func = {"gte": "lte", "gt": "lt", "eq": "eq"}.get(func, "")
    if not (isinstance(a, Column) and a.name in rank_columns and isinstance(b, Literal)
            and isinstance(b.value, int)):
        return None
    if func in ("lte", "eq"):
        return b.value
    if func == "lt":
        return b.value - 1
    return None
