"""The registry of scalar functions: name -> type rule + vectorized kernel.

A function *binds* argument expressions (checks and coerces their types, picks the result type)
and later its *kernel* runs once per batch on Arrow arrays (or scalars, for constant
arguments). Bind errors are ``BindError``s with a plain message; the SQL layer adds the line
and column of the call.
"""

from __future__ import annotations

import importlib
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


#: the module of ``caudal.plan.functions`` that registers each built-in function, so that a
#: lookup imports one family, not all of them (~35 M instructions, ~5% of a compiled plan's
#: run: most jobs call a few operators). tests/plan/test_function_registry.py checks it against
#: what the modules register
FAMILIES: dict[str, tuple[str, ...]] = {
    "casts": ("cast", "try_cast"),
    "conditional": ("case", "coalesce", "nullif", "greatest", "least"),
    "constraints": ("enforce_not_null",),
    "json": ("json_get", "json_get_text", "json_extract_path", "json_extract_path_text",
             "json_extract_string", "json_path_text", "get_first_json_object",
             "json_path_json", "extract_json_string", "json_path_string", "extract_json",
             "get_json_objects", "json_path_all"),
    "math": ("abs", "sign", "round", "trunc", "floor", "ceil", "ceiling", "sqrt", "cbrt", "exp",
             "ln", "log10", "power", "pow", "degrees", "radians", "sin", "cos", "tan", "asin",
             "acos", "atan", "atan2", "log", "pi", "random"),
    "nested": ("struct_field", "named_struct", "row", "list_element", "make_array", "cardinality",
               "array_length", "with_ordinality", "map_entries", "copies"),
    "operators": ("add", "subtract", "multiply", "divide", "modulo", "mod", "multiply_interval",
                  "divide_interval", "date_diff_days", "date_add_days", "negate", "eq", "neq",
                  "lt", "lte", "gt", "gte", "float_key", "and", "or", "not", "is_null", "is_not_null",
                  "is_true", "is_false", "is_not_true", "is_not_false", "is_distinct_from",
                  "is_not_distinct_from", "in_list"),
    "python_udf": ("python_udf",),
    "strings": ("upper", "lower", "length", "char_length", "character_length", "octet_length",
                "bit_length", "reverse", "initcap", "repeat", "substr", "substring", "left",
                "right", "lpad", "rpad", "concat", "concat_ws", "concat_op", "btrim", "trim",
                "ltrim", "rtrim", "replace", "split_part", "string_to_array", "strpos",
                "position", "starts_with", "ends_with", "like", "ilike", "regexp_like",
                "regexp_ilike", "regexp_replace", "regexp_match", "regexp_split_to_array",
                "md5", "ascii", "chr", "translate", "regexp_extract", "regexp", "split_index",
                "locate", "instr"),
    "time": ("date_trunc", "date_part", "extract", "to_timestamp", "to_date", "to_char",
             "make_date", "make_timestamp", "now", "current_timestamp", "localtimestamp",
             "proctime", "current_date", "current_time", "date_format", "to_timestamp_ltz", "timestampadd",
             "timestampdiff"),
    "udf_classes": ("count_char",),
}
_FAMILY_OF = {name: family for family, names in FAMILIES.items() for name in names}


def load_all() -> dict[str, ScalarFunction]:
    """Register every built-in function (for listings, docs and name clashes) and return
    ``FUNCTIONS``. In the order of ``FAMILIES``, as the package's import once did."""
    for family in FAMILIES:
        importlib.import_module(f"caudal.plan.functions.{family}")
    return FUNCTIONS


def builtin(name: str) -> ScalarFunction | None:
    """The built-in function called ``name`` (lower case), importing its family first."""
    fn = FUNCTIONS.get(name)
    if fn is None and name in _FAMILY_OF:
        importlib.import_module(f"caudal.plan.functions.{_FAMILY_OF[name]}")
        fn = FUNCTIONS.get(name)
    return fn


def find(name: str) -> ScalarFunction | None:
    """The function called ``name`` in the job being planned, or None."""
    key = name.lower()
    return (_JOB_FUNCTIONS.get() or {}).get(key) or builtin(key)


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
        fn = builtin(expr.func)
        if fn is not None and fn.volatile:
            return False
    return all(is_constant(c) for c in expr.children())
