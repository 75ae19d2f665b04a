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
                 timeout: Any = None, on_error: str = "fail") -> UdfHandle:
    """Make ``fn`` a UDF called ``name`` (default: the function's name), callable by name
    in SQL (``cd.sql``, ``caudal run --udf file.py``) and as ``handle(col(…))`` in frames.

    ``returns`` and ``args`` are SQL type names or pyarrow types; ``input`` is how columns
    are passed: ``arrow`` (pyarrow Arrays), ``numpy`` or ``polars`` (Series).
    ``on_error="drop"`` drops an input batch on which the function raises (counted in the
    ``udf_rows_dropped`` metric) instead of failing the job.
    """
    udf_name = name or getattr(fn, "__name__", None)
    if not udf_name or not str(udf_name).isidentifier():
        raise PlanError(f"udf: {udf_name!r} is not a usable function name",
                        hint="pass name='my_function'")
    udf = PythonUdf(udf_name, fn, parse_type(returns, f"udf {udf_name} returns"),
                    [parse_type(a, f"udf {udf_name} args") for a in args]
                    if args is not None else None, input, is_async, max_concurrency,
                    ordered, _seconds(timeout), on_error)
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


class UdafHandle:
    """What ``@cd.udaf`` returns: called with expressions it builds an aggregate (for
    ``agg``); ``.cls`` is the class."""

    def __init__(self, udaf):
        self.udaf = udaf
        self.cls = udaf.cls
        self.name = udaf.name

    def __call__(self, *args: Any) -> Expr:
        out = call(self.udaf.name, *[to_expr(a) for a in args])
        out.is_agg = True
        out.udfs = tuple(dict.fromkeys(out.udfs + (self.udaf,)))
        return out

    def __repr__(self) -> str:
        return f"<caudal udaf {self.udaf.name} -> {self.udaf.returns}>"


def udaf(cls: type | None = None, *, returns: Any = None, state: dict[str, Any] | None = None,
         name: str | None = None, args: list[Any] | None = None, input: str = "numpy"):
    """Class decorator: a vectorized aggregate function (plan.python_udaf describes the
    interface), callable by name in SQL and as ``handle(col(…))`` inside ``agg``.

    >>> import numpy as np
    >>> import caudal as cd
    >>> @cd.udaf(returns="DOUBLE", state={"total": "DOUBLE", "n": "BIGINT"})
    ... class my_mean:
    ...     def accumulate(self, groups, n_groups, x):
    ...         ok = ~np.isnan(x)
    ...         return {"total": np.bincount(groups[ok], x[ok], minlength=n_groups),
    ...                 "n": np.bincount(groups[ok], minlength=n_groups)}
    ...     def merge(self, groups, n_groups, state):
    ...         return {"total": np.bincount(groups, state["total"], minlength=n_groups),
    ...                 "n": np.bincount(groups, state["n"], minlength=n_groups)}
    ...     def finish(self, state):
    ...         return np.where(state["n"] > 0, state["total"] / np.maximum(state["n"], 1),
    ...                         np.nan)
    >>> f = cd.testing.from_records([{"k": 1, "x": 1.0}, {"k": 1, "x": 3.0}])
    >>> f.group_by("k").agg(my_mean(cd.col("x")).alias("m")).collect().to_pylist()
    [{'k': 1, 'm': 2.0}]
    """
    from caudal.plan.python_udaf import PythonUdaf

    if returns is None or state is None:
        raise PlanError("udaf needs returns= (the result type) and state= (its columns)",
                        hint='@cd.udaf(returns="DOUBLE", state={"total": "DOUBLE"})')

    def wrap(c: type) -> UdafHandle:
        udaf_name = name or c.__name__
        u = PythonUdaf(udaf_name, c, parse_type(returns, f"udaf {udaf_name} returns"),
                       {k: parse_type(t, f"udaf {udaf_name} state") for k, t in state.items()},
                       [parse_type(a, f"udaf {udaf_name} args") for a in args]
                       if args is not None else None, input)
        add_user_function(u)
        return UdafHandle(u)

    return wrap(cls) if cls is not None else wrap
