"""The registry of scalar functions: name -> type rule + vectorized kernel.

A function *binds* argument expressions (checks and coerces their types, picks the result type)
and later its *kernel* runs once per batch on Arrow arrays (or scalars, for constant
arguments). Bind errors are ``BindError``s with a plain message; the SQL layer adds the line
and column of the call.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from caudal.errors import PlanError
from caudal.plan.expressions import Call, Column, Expr


class BindError(PlanError):
    """Arguments of the wrong number or type for a function."""


#: kernel(args: list of pa.Array | pa.Scalar, call: Call) -> pa.Array | pa.Scalar
Kernel = Callable[[list[Any], Call], Any]
#: bind(name, args) -> Call (with coerced args and the result type)
Binder = Callable[[str, list[Expr]], Call]


@dataclass
class ScalarFunction:
    name: str
    bind: Binder
    kernel: Kernel
    #: a one-line signature for error messages, e.g. "upper(text) -> text"
    signature: str = ""
    #: re-evaluated for every batch even with constant arguments (now(), random())
    volatile: bool = False
    #: the kernel gets the argument *evaluators* and the batch, ``kernel(evals, call, batch)``:
    #: CASE and COALESCE must not evaluate a branch on rows that do not take it (a division
    #: by zero there is no error), and random() needs the row count
    lazy: bool = False
    #: an operator or helper the SQL layer emits itself, not callable by name from SQL
    internal: bool = False


FUNCTIONS: dict[str, ScalarFunction] = {}


def register(names: str | list[str], bind: Binder, kernel: Kernel, signature: str = "",
             volatile: bool = False, lazy: bool = False, internal: bool = False) -> None:
    """Register a function under one or more names (aliases share the definition)."""
    if isinstance(names, str):
        names = [names]
    fn = ScalarFunction(names[0], bind, kernel, signature, volatile, lazy, internal)
    for name in names:
        FUNCTIONS[name] = fn


#: functions of the job being planned (Python UDFs, caudal.frame.udf): name -> function,
#: looked up before FUNCTIONS. Per job, not global: two jobs of one process may define the
#: same name differently; the bound IR carries the Python callable itself (Call.options)
_JOB_FUNCTIONS: ContextVar[dict[str, ScalarFunction] | None] = ContextVar(
    "caudal_job_functions", default=None)


@contextmanager
def job_functions(functions: dict[str, ScalarFunction]) -> Iterator[None]:
    """Plan with ``functions`` callable by name (on top of the built-in ones)."""
    token = _JOB_FUNCTIONS.set({**(_JOB_FUNCTIONS.get() or {}),
                                **{k.lower(): v for k, v in functions.items()}})
    try:
        yield
    finally:
        _JOB_FUNCTIONS.reset(token)


def find(name: str) -> ScalarFunction | None:
    """The function called ``name`` in the job being planned, or None."""
    key = name.lower()
    return (_JOB_FUNCTIONS.get() or {}).get(key) or FUNCTIONS.get(key)


def lookup(name: str) -> ScalarFunction:
    fn = find(name)
    if fn is None:
        raise PlanError(f"unknown function {name}()",
                        hint="`caudal functions` and docs/sql.md list them all")
    return fn


def bind_call(name: str, args: list[Expr]) -> Call:
    """Type-check a call of a registered function and return the bound IR node."""
    return lookup(name).bind(name.lower(), args)


def is_constant(expr: Expr) -> bool:
    """True when the expression reads no column and calls nothing volatile."""
    if isinstance(expr, Column):
        return False
    if isinstance(expr, Call):
        fn = FUNCTIONS.get(expr.func)
        if fn is not None and fn.volatile:
            return False
    return all(is_constant(c) for c in expr.children())
