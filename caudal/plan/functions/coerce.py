"""Implicit type coercion with PostgreSQL's habits: widen numbers, read text literals as the
type they are compared with, dates meet timestamps as timestamps."""

from __future__ import annotations

import pyarrow as pa

from caudal.plan.expressions import Call, Expr, Literal
from caudal.plan.functions.registry import BindError
from caudal.types import TIMESTAMP, is_numeric, is_text, sql_name

_INT_ORDER = [pa.int8(), pa.int16(), pa.int32(), pa.int64()]
_INT_DIGITS = {8: 3, 16: 5, 32: 10, 64: 19}


def cast(expr: Expr, to: pa.DataType) -> Expr:
    """Wrap ``expr`` in a cast to ``to`` unless it already has that type. A NULL literal
    simply takes the type."""
    if expr.dtype.equals(to):
        return expr
    if isinstance(expr, Literal) and expr.value is None:
        return Literal(to, None)
    return Call(to, "cast", (expr,))


def common_numeric(types: list[pa.DataType]) -> pa.DataType:
    """The type numbers of ``types`` are computed in (int < decimal < float)."""
    if any(pa.types.is_floating(t) for t in types):
        if all(pa.types.is_float32(t) or pa.types.is_integer(t) and t.bit_width <= 16
               for t in types if not pa.types.is_null(t)):
            return pa.float32()
        return pa.float64()
    decimals = [t for t in types if pa.types.is_decimal(t)]
    if decimals:
        scale = max(t.scale for t in decimals)
        # an integer joins a decimal with as many digits as its widest value has
        whole = max([t.precision - t.scale for t in decimals]
                    + [_INT_DIGITS.get(t.bit_width, 19) for t in types
                       if pa.types.is_integer(t)])
        return pa.decimal128(min(38, whole + scale), scale)
    ints = [t for t in types if pa.types.is_integer(t)]
    if not ints:
        return pa.int64()
    if any(pa.types.is_unsigned_integer(t) for t in ints):
        return pa.int64()
    return max(ints, key=lambda t: _INT_ORDER.index(t) if t in _INT_ORDER else 3)


def is_null_type(t: pa.DataType) -> bool:
    return pa.types.is_null(t)


def common_type(args: list[Expr], what: str) -> pa.DataType:
    """The one type a list of values (CASE branches, COALESCE, IN, comparison sides) is
    compared or returned as; raises BindError naming the types when they do not meet."""
    types = [a.dtype for a in args if not is_null_type(a.dtype)]
    if not types:
        return pa.null()
    if all(is_numeric(t) for t in types):
        return common_numeric(types)
    non_literal_text = [a for a in args if not (isinstance(a, Literal) and is_text(a.dtype))
                        and not is_null_type(a.dtype)]
    # text literals adapt to the other side's type, as PostgreSQL's unknown literals do
    if non_literal_text and len(non_literal_text) < len(types):
        target = non_literal_text[0].dtype
        if not is_text(target):
            return common_type(non_literal_text, what)
    if all(is_text(t) for t in types):
        return pa.string()
    if all(pa.types.is_timestamp(t) or pa.types.is_date(t) for t in types):
        return TIMESTAMP if any(pa.types.is_timestamp(t) for t in types) else pa.date32()
    first = types[0]
    if all(t.equals(first) for t in types):
        return first
    names = ", ".join(sorted({sql_name(t) for t in types}))
    raise BindError(f"{what} mixes types that do not compare: {names}",
                    hint="add a CAST(... AS type) to make them agree")


def coerce_all(args: list[Expr], what: str) -> tuple[list[Expr], pa.DataType]:
    target = common_type(args, what)
    if pa.types.is_null(target):
        return list(args), target
    return [cast(a, target) for a in args], target


def expect(arg: Expr, ok, fn: str, wanted: str) -> None:
    """Raise a BindError if ``ok(arg.dtype)`` is false."""
    if is_null_type(arg.dtype):
        return
    if not ok(arg.dtype):
        raise BindError(f"{fn}() takes {wanted}, got {sql_name(arg.dtype)}")


def arity(name: str, args: list[Expr], low: int, high: int | None = None) -> None:
    high = low if high is None else high
    if not (low <= len(args) <= high):
        count = str(low) if low == high else f"{low} to {high}"
        raise BindError(f"{name}() takes {count} argument(s), got {len(args)}")


_NO_VALUE = object()


def constant_value(arg: Expr, fn: str, what: str, default=_NO_VALUE):
    """The Python value of an argument that must be known when planning (a regex, a unit,
    a format): a literal or any expression of literals; else a BindError."""
    if isinstance(arg, Literal):
        return arg.value
    from caudal.plan.functions.evaluation import compile_expr
    from caudal.plan.functions.registry import is_constant

    if is_constant(arg):

        value = compile_expr(arg)(pa.RecordBatch.from_pydict({"_": [None]}))
        if isinstance(value, pa.Array):
            value = value[0]
        return value.as_py()
    if default is not _NO_VALUE:
        return default
    raise BindError(f"{fn}() needs a constant {what}",
                    hint="write it as a literal, not a column or expression of columns")
