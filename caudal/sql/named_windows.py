"""The WINDOW clause: ``SELECT sum(x) OVER w … WINDOW w AS (PARTITION BY k ORDER BY t)``.

Named windows are inlined into the OVER clauses that name them before the query is planned
(the OVER planning then sees ordinary windows). As in SQL, ``OVER (w ROWS …)`` refines a
named window with a frame, or with ORDER BY when the named one has none; it may not replace
its PARTITION BY or ORDER BY. A window definition may build on an earlier one
(``WINDOW w1 AS (PARTITION BY k), w2 AS (w1 ORDER BY t)``).
"""

from __future__ import annotations

from sqlglot import exp

from caudal.errors import PlanError
from caudal.sql.scope import position


def _windows_in(node: exp.Expression):
    """Window nodes of this query level (not of nested subqueries)."""
    stack = [node]
    while stack:
        n = stack.pop()
        if isinstance(n, exp.Window):
            yield n
        for child in n.iter_expressions():
            if not isinstance(child, (exp.Subquery, exp.Select)):
                stack.append(child)


def _refine(window: exp.Window, base: exp.Window, name: str) -> None:
    """Fill ``window`` (an OVER naming ``base``) from ``base``."""
    ln, col = position(window)
    if base.args.get("partition_by"):
        if window.args.get("partition_by"):
            raise PlanError(f"OVER ({name} PARTITION BY …) cannot replace the PARTITION BY of "
                            f"window {name}", line=ln, col=col,
                            hint="define another window in the WINDOW clause")
        window.set("partition_by", [p.copy() for p in base.args["partition_by"]])
    if base.args.get("order") is not None:
        if window.args.get("order") is not None:
            raise PlanError(f"OVER ({name} ORDER BY …) cannot replace the ORDER BY of window "
                            f"{name}", line=ln, col=col,
                            hint="define another window in the WINDOW clause")
        window.set("order", base.args["order"].copy())
    if base.args.get("spec") is not None:
        if window.args.get("spec") is not None:
            raise PlanError(f"window {name} has a frame already", line=ln, col=col,
                            hint="give the frame in one place")
        window.set("spec", base.args["spec"].copy())
    window.set("alias", None)


def inline_named_windows(select: exp.Select) -> exp.Select:
    """``select`` with every ``OVER name`` replaced by the named window (a copy when there
    is anything to replace)."""
    definitions = select.args.get("windows") or []
    uses = [w for part in ("expressions", "having", "qualify", "order")
            for node in ([select.args[part]] if isinstance(select.args.get(part),
                                                           exp.Expression)
                         else select.args.get(part) or [])
            for w in _windows_in(node) if w.args.get("alias") is not None]
    if not definitions and not uses:
        return select
    select = select.copy()
    named: dict[str, exp.Window] = {}
    for d in select.args.get("windows") or []:
        name = d.this.name if isinstance(d.this, exp.Identifier) else str(d.this)
        if name.lower() in named:
            ln, col = position(d)
            raise PlanError(f"window {name} is defined twice", line=ln, col=col)
        if d.args.get("alias") is not None:  # w2 AS (w1 ORDER BY …)
            base_name = d.args["alias"].name
            base = named.get(base_name.lower())
            if base is None:
                ln, col = position(d)
                raise PlanError(f"window {base_name} is not defined before {name}",
                                line=ln, col=col)
            _refine(d, base, base_name)
        named[name.lower()] = d
    for part in ("expressions", "having", "qualify", "order"):
        value = select.args.get(part)
        nodes = [value] if isinstance(value, exp.Expression) else value or []
        for node in nodes:
            for w in list(_windows_in(node)):
                ref = w.args.get("alias")
                if ref is None:
                    continue
                base = named.get(ref.name.lower())
                if base is None:
                    ln, col = position(ref)
                    known = ", ".join(sorted(named)) or "none"
                    raise PlanError(f"window {ref.name} is not defined", line=ln, col=col,
                                    hint=f"define it after WHERE / GROUP BY / HAVING: WINDOW "
                                         f"{ref.name} AS (PARTITION BY … ORDER BY …) "
                                         f"(defined: {known})")
                _refine(w, base, ref.name)
    select.set("windows", None)
    return select


__all__ = ["inline_named_windows"]
