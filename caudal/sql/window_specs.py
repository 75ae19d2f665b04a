"""Window sizes from SQL: constant INTERVAL arguments, checked the way Flink checks them
(positive; a hop's width a multiple of its slide; a cumulate's max size a multiple of its
step), with errors that point at the argument and say what is accepted."""

from __future__ import annotations

import datetime as dt

import pyarrow as pa
from sqlglot import exp

from caudal.errors import PlanError
from caudal.plan.expressions import Literal
from caudal.plan.functions.registry import is_constant
from caudal.plan.windows import WindowSpec
from caudal.sql.scope import Scope, position

#: Arroyo-style window functions in GROUP BY: name -> argument names
GROUP_BY_WINDOWS = {"tumble": ("width",), "hop": ("slide", "width"), "session": ("gap",)}
#: Flink window table functions: name -> interval argument names (then an optional
#: ``offset`` for all but SESSION)
TABLE_FUNCTIONS = {"tumble": ("size",), "hop": ("slide", "size"),
                   "cumulate": ("step", "size"), "session": ("gap",)}

_EXAMPLE = {"tumble": "tumble(INTERVAL '10' SECOND)",
            "hop": "hop(INTERVAL '2' SECOND, INTERVAL '10' SECOND)",
            "session": "session(INTERVAL '30' SECOND)",
            "cumulate": "CUMULATE(TABLE t, DESCRIPTOR(ts), INTERVAL '1' MINUTE, "
                        "INTERVAL '1' HOUR)"}


def constant_interval(node: exp.Expression, scope: Scope, what: str,
                      positive: bool = True) -> int:
    """The length in µs of an argument that must be a constant (positive) INTERVAL."""
    from caudal.sql.expressions import translate

    ln, col = position(node)
    expr = translate(node, scope)
    if not is_constant(expr):
        raise PlanError(f"the {what} must be a constant INTERVAL, not "
                        f"{node.sql(dialect='postgres')!r}", line=ln, col=col,
                        hint="write a literal such as INTERVAL '10' SECOND")
    if not pa.types.is_duration(expr.dtype):
        raise PlanError(f"the {what} must be an INTERVAL, got {node.sql(dialect='postgres')!r}",
                        line=ln, col=col, hint="write INTERVAL '10' SECOND")
    if isinstance(expr, Literal):
        value = expr.value
    else:
        from caudal.plan.compile import compile_expr

        scalar = compile_expr(expr)(pa.RecordBatch.from_pydict({"_": [None]}))
        value = scalar[0].as_py() if isinstance(scalar, pa.Array) else scalar.as_py()
    if isinstance(value, dt.timedelta):
        micros = value // dt.timedelta(microseconds=1)
    else:
        micros = int(value) if value is not None else 0
    if positive and micros <= 0:
        raise PlanError(f"the {what} must be positive, got {node.sql(dialect='postgres')}",
                        line=ln, col=col, hint="write a positive INTERVAL")
    return micros


def make_window(kind: str, sizes: list[int], nodes: list[exp.Expression],
                call: exp.Expression, offset_us: int = 0) -> WindowSpec:
    """A WindowSpec from a window function's interval arguments (µs), validated; windows
    start at the epoch plus ``offset_us`` (modulo their period)."""
    if kind == "tumble":
        return WindowSpec("tumble", sizes[0], offset_us=offset_us)
    if kind == "session":
        return WindowSpec("session", sizes[0])
    slide, size = sizes
    ln, col = position(nodes[1])
    if kind == "hop" and slide > size:
        raise PlanError(f"HOP slide {nodes[0].sql(dialect='postgres')} is longer than the "
                        f"window size {nodes[1].sql(dialect='postgres')} (rows between "
                        "windows would belong to none)", line=ln, col=col,
                        hint=f"choose a slide no longer than the size, e.g. {_EXAMPLE[kind]}")
    if kind == "cumulate" and size % slide != 0:
        raise PlanError(f"CUMULATE step must divide the window size evenly "
                        f"({nodes[0].sql(dialect='postgres')} does not divide "
                        f"{nodes[1].sql(dialect='postgres')})", line=ln, col=col,
                        hint=f"choose a size that is a multiple of the step, e.g. "
                             f"{_EXAMPLE[kind]}")
    return WindowSpec(kind, size, slide, offset_us=offset_us)


def window_call(node: exp.Expression) -> str | None:
    """'tumble' / 'hop' / 'session' when ``node`` is such a GROUP BY window call."""
    if isinstance(node, exp.Anonymous) and str(node.this).lower() in GROUP_BY_WINDOWS:
        return str(node.this).lower()
    return None


def legacy_time_argument(node: exp.Expression) -> exp.Expression | None:
    """The time column of Flink's legacy group window — ``TUMBLE(ts, size)``, ``HOP(ts,
    slide, size)``, ``SESSION(ts, gap)``: one argument more than Arroyo's form — else
    None."""
    kind = window_call(node)
    if kind is None or len(node.expressions) != len(GROUP_BY_WINDOWS[kind]) + 1:
        return None
    return node.expressions[0]


def group_by_window(node: exp.Anonymous, scope: Scope) -> WindowSpec:
    """``tumble(width)`` / ``hop(slide, width)`` / ``session(gap)`` in GROUP BY (Arroyo),
    or with the time column first (Flink's legacy group windows)."""
    kind = window_call(node)
    assert kind is not None
    names = GROUP_BY_WINDOWS[kind]
    args = list(node.expressions)
    if legacy_time_argument(node) is not None:
        args = args[1:]
    if len(args) != len(names):
        ln, col = position(node)
        raise PlanError(f"{kind}() takes {len(names)} argument(s) "
                        f"({', '.join(names)}), got {len(args)}", line=ln, col=col,
                        hint=f"write {_EXAMPLE[kind]} (or {kind.upper()}(ts, "
                             f"{', '.join(names)}), Flink's group window on column ts)")
    sizes = [constant_interval(a, scope, f"{kind}() {n}") for a, n in zip(args, names)]
    return make_window(kind, sizes, args, node)


__all__ = ["constant_interval", "make_window", "window_call", "group_by_window",
           "legacy_time_argument",
           "TABLE_FUNCTIONS", "GROUP_BY_WINDOWS"]
