"""``@cd.udf``: Python functions of whole columns, callable from frames and SQL.

>>> import caudal as cd
>>> import pyarrow.compute as pc
>>> @cd.udf(returns="DOUBLE")
... def to_euro(price):
...     return pc.multiply(price, 0.9)
>>> f = cd.testing.from_records([{"price": 10}, {"price": 20}])
>>> f.select(to_euro(cd.col("price")).alias("e")).collect().column("e").to_pylist()
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
    ``agg``); ``.cls`` is the class (a class UDAF) and ``.fn`` the function (a group
    UDAF), None for the other kind."""

    def __init__(self, udaf):
        self.udaf = udaf
        self.cls = getattr(udaf, "cls", None)
        self.fn = getattr(udaf, "fn", None)
        self.name = udaf.name
        if self.fn is not None:
            functools.update_wrapper(self, self.fn)

    def __call__(self, *args: Any) -> Expr:
        problem = getattr(self.udaf, "arity_problem", lambda n: None)(len(args))
        if problem is not None:
            raise PlanError(problem)
        out = call(self.udaf.name, *[to_expr(a) for a in args])
        out.is_agg = True
        out.udfs = tuple(dict.fromkeys(out.udfs + (self.udaf,)))
        return out

    def __repr__(self) -> str:
        return f"<caudal udaf {self.udaf.name} -> {self.udaf.returns}>"


def udaf(target: type | Callable | None = None, *, returns: Any = None,
         state: dict[str, Any] | None = None, name: str | None = None,
         args: list[Any] | None = None, input: str | None = None, per_group: bool = False):
    """A vectorized aggregate function, callable by name in SQL and as ``handle(col(…))``
    inside ``agg``. Two forms (plan.python_udaf describes both):

    * on a class with ``state=``: ``accumulate``/``merge``/``finish`` over whole columns
      (``input`` ``numpy``, the default, ``arrow`` or ``polars``); compact state;
    * on a function (no ``state=``): a *group* UDAF, called once per batch of finished
      groups with one ``pa.ListArray`` per argument (a group's values, NULLs included,
      aligned across arguments) and returning one value per group; ``input`` ``arrow``
      (default) or ``polars``. ``per_group=True`` calls it once per group with one array
      per argument (``input`` may then be ``numpy``) and takes a scalar back: one Python
      call per result row, never per input row. Its state is the group's values.

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
    >>> import pyarrow as pa
    >>> import pyarrow.compute as pc
    >>> @cd.udaf(returns="BIGINT")
    ... def spread(x):  # a pa.ListArray: one list per group, every group has a value
    ...     t = pa.table({"g": pc.list_parent_indices(x), "v": pc.list_flatten(x)})
    ...     r = t.group_by("g").aggregate([("v", "min"), ("v", "max")]).sort_by("g")
    ...     return pc.subtract(r["v_max"], r["v_min"])
    >>> @cd.udaf(returns="BIGINT", per_group=True)
    ... def spread_each(x):  # a pa.Array: one group's values (a Python call per group)
    ...     bounds = pc.min_max(x)
    ...     return bounds["max"].as_py() - bounds["min"].as_py()
    >>> f = cd.testing.from_records([{"k": 1, "x": 1}, {"k": 1, "x": 5}, {"k": 2, "x": 3}])
    >>> f.group_by("k").agg(spread(cd.col("x")).alias("s"), spread_each(cd.col("x"))
    ...                     .alias("e")).collect().sort_by("k").to_pylist()
    [{'k': 1, 's': 4, 'e': 4}, {'k': 2, 's': 0, 'e': 0}]
    """
    from caudal.plan.python_udaf import GroupUdaf, PythonUdaf

    if returns is None:
        raise PlanError("udaf needs returns= (the SQL type of its result)",
                        hint='@cd.udaf(returns="DOUBLE")')

    def wrap(t: type | Callable) -> UdafHandle:
        udaf_name = name or getattr(t, "__name__", None)
        if not udaf_name or not str(udaf_name).isidentifier():
            raise PlanError(f"udaf: {udaf_name!r} is not a usable function name",
                            hint="pass name='my_aggregate'")
        result = parse_type(returns, f"udaf {udaf_name} returns")
        arg_types = ([parse_type(a, f"udaf {udaf_name} args") for a in args]
                     if args is not None else None)
        if isinstance(t, type):
            if state is None:
                raise PlanError(f"udaf {udaf_name}: a class UDAF declares its state columns",
                                hint='state={"total": "DOUBLE"}, or decorate a function '
                                     'of the group\'s values instead')
            if per_group:
                raise PlanError(f"udaf {udaf_name}: per_group= is for a function UDAF, "
                                f"not a class")
            u: Any = PythonUdaf(udaf_name, t, result,
                                {k: parse_type(v, f"udaf {udaf_name} state")
                                 for k, v in state.items()}, arg_types, input or "numpy")
        elif callable(t):
            if state is not None:
                raise PlanError(f"udaf {udaf_name}: state= is for a class UDAF; a function "
                                f"UDAF receives its group's values", hint="drop state=")
            u = GroupUdaf(udaf_name, t, result, arg_types, input or "arrow", bool(per_group))
        else:
            raise PlanError(f"udaf: {t!r} is neither a class nor a function",
                            hint="decorate a class (accumulate/merge/finish) or a function "
                                 "of the group's values")
        add_user_function(u)
        return UdafHandle(u)

    return wrap(target) if target is not None else wrap
