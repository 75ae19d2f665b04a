"""``@cd.udf``: Python functions of whole columns, callable from frames and SQL.

>>> import caudal as cd
>>> import pyarrow.compute as pc
>>> @cd.udf(returns="DOUBLE")
... def euro(price):
...     return pc.multiply(price, 0.9)
>>> f = cd.testing.from_records([{"price": 10}, {"price": 20}])
>>> f.select(euro(cd.col("price")).alias("e")).collect().column("e").to_pylist()
[9.0, 18.0]
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from caudal.errors import PlanError
from caudal.frame.expr import Expr, call, to_expr
from caudal.plan.functions.python_udf import PythonUdf, add_user_function, parse_type


class UdfHandle:
    """What ``@cd.udf`` returns: called with expressions it builds a call of the UDF (in a
    frame); ``.fn`` is the plain Python function."""

    def __init__(self, udf: PythonUdf):
        self.udf = udf
        self.fn = udf.fn
        self.name = udf.name
        functools.update_wrapper(self, udf.fn)

    def __call__(self, *args: Any) -> Expr:
        exprs = [to_expr(a) for a in args]
        out = call(self.udf.name, *exprs)
        out.udfs = tuple(dict.fromkeys(out.udfs + (self.udf,)))
        return out

    def function(self):
        return self.udf.function()

    def __repr__(self) -> str:
        return f"<caudal udf {self.udf.name} -> {self.udf.returns}>"


def _seconds(timeout: Any) -> float | None:
    if timeout is None:
        return None
    from caudal.durations import parse_duration_s

    return parse_duration_s(timeout, "udf timeout")


def register_udf(fn: Callable, *, returns: Any, name: str | None = None,
                 args: list[Any] | None = None, input: str = "arrow", is_async: bool = False,
                 max_concurrency: int = 64, ordered: bool = False,
                 timeout: Any = None) -> UdfHandle:
    """Make ``fn`` a UDF called ``name`` (default: the function's name), callable by name
    in SQL (``cd.sql``, ``caudal run --udf file.py``) and as ``handle(col(…))`` in frames.

    ``returns`` and ``args`` are SQL type names or pyarrow types; ``input`` is how columns
    are passed: ``arrow`` (pyarrow Arrays), ``numpy`` or ``polars`` (Series).
    """
    udf_name = name or getattr(fn, "__name__", None)
    if not udf_name or not str(udf_name).isidentifier():
        raise PlanError(f"udf: {udf_name!r} is not a usable function name",
                        hint="pass name='my_function'")
    udf = PythonUdf(udf_name, fn, parse_type(returns, f"udf {udf_name} returns"),
                    [parse_type(a, f"udf {udf_name} args") for a in args]
                    if args is not None else None, input, is_async, max_concurrency,
                    ordered, _seconds(timeout))
    add_user_function(udf)
    return UdfHandle(udf)


def udf(fn: Callable | None = None, *, returns: Any = None, **options: Any):
    """Decorator form of ``register_udf``: ``@cd.udf(returns="DOUBLE")``."""
    if returns is None:
        raise PlanError("udf needs returns= (the SQL type of its result)",
                        hint='@cd.udf(returns="DOUBLE")')

    def wrap(f: Callable) -> UdfHandle:
        return register_udf(f, returns=returns, **options)

    return wrap(fn) if fn is not None else wrap


def udaf(cls=None, **options):  # replaced below when UDAFs are defined
    raise PlanError("UDAFs are not available yet")
