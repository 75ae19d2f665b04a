"""Arithmetic, comparison, boolean logic, IN and null tests, with PostgreSQL meaning:
integer division truncates, overflow and division by zero are errors, AND/OR/IN are
three-valued, and a text literal takes the type of the other operand.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from caudal import compute as pc
from caudal import float_order
from caudal.errors import RuntimeFailure
from caudal.plan.expressions import Call, Expr, Literal
from caudal.plan.functions.casts import cast_array
from caudal.plan.functions.coerce import arity, cast, coerce_all, common_numeric, expect
from caudal.plan.functions.decimal64 import decimal_int64
from caudal.plan.functions.kernels import (
    any_true,
    broadcast,
    finish,
    is_scalar,
    null_of,
    propagate_nulls,
)
from caudal.plan.functions.registry import BindError, register
from caudal.types import INTERVAL, TIMESTAMP, is_numeric, is_text, sql_name

__all__ = ["cast_array"]  # kept importable from here for older callers

_SYMBOL = {"add": "+", "subtract": "-", "multiply": "*", "divide": "/", "modulo": "%"}

# ---- arithmetic -------------------------------------------------------------------------


def _temporal(t: pa.DataType) -> bool:
    return pa.types.is_timestamp(t) or pa.types.is_date(t)


def _adapt_text_literal(a: Expr, b: Expr) -> tuple[Expr, Expr]:
    """``n + '1'``: an untyped text literal takes the other operand's type (an interval
    next to a timestamp), as PostgreSQL resolves its unknown-type literals."""
    def adapt(lit: Expr, other: Expr) -> Expr:
        if isinstance(lit, Literal) and is_text(lit.dtype) and not is_text(other.dtype):
            target = INTERVAL if _temporal(other.dtype) else other.dtype
            return Call(target, "cast", (lit,))
        return lit
    return adapt(a, b), adapt(b, a)


def _decimal_digits(t: pa.DataType) -> tuple[int, int]:
    """(integer digits, scale) of a number type seen as a decimal."""
    if pa.types.is_decimal(t):
        return t.precision - t.scale, t.scale
    return {8: 3, 16: 5, 32: 10, 64: 19}.get(getattr(t, "bit_width", 64), 19), 0


def _bind_arith(name: str, args: list[Expr]) -> Call:
    arity(name, args, 2)
    a, b = _adapt_text_literal(*args)
    ta, tb = a.dtype, b.dtype
    if name in ("add", "subtract"):
        if _temporal(ta) and pa.types.is_duration(tb):
            return Call(TIMESTAMP, name, (cast(a, TIMESTAMP), cast(b, INTERVAL)))
        if name == "add" and pa.types.is_duration(ta) and _temporal(tb):
            return Call(TIMESTAMP, name, (cast(b, TIMESTAMP), cast(a, INTERVAL)))
        if name == "subtract" and _temporal(ta) and _temporal(tb):
            if pa.types.is_date(ta) and pa.types.is_date(tb):
                return Call(pa.int32(), "date_diff_days", (a, b))
            return Call(INTERVAL, name, (cast(a, TIMESTAMP), cast(b, TIMESTAMP)))
        if pa.types.is_date(ta) and pa.types.is_integer(tb):
            days = cast(b, pa.int32())
            if name == "subtract":
                days = Call(pa.int32(), "negate", (days,))
            return Call(pa.date32(), "date_add_days", (a, days))
        if name == "add" and pa.types.is_integer(ta) and pa.types.is_date(tb):
            return Call(pa.date32(), "date_add_days", (b, cast(a, pa.int32())))
        if pa.types.is_duration(ta) and pa.types.is_duration(tb):
            return Call(INTERVAL, name, (a, b))
    if name in ("multiply", "divide") and pa.types.is_duration(ta) and is_numeric(tb):
        return Call(INTERVAL, name + "_interval", (a, cast(b, pa.float64())))
    if name == "multiply" and is_numeric(ta) and pa.types.is_duration(tb):
        return Call(INTERVAL, "multiply_interval", (b, cast(a, pa.float64())))
    if not (is_numeric(ta) or pa.types.is_null(ta)) or not (is_numeric(tb) or pa.types.is_null(tb)):
        raise BindError(f"operator {_SYMBOL[name]} does not take {sql_name(ta)} and "
                        f"{sql_name(tb)}",
                        hint="numbers, timestamp/date +- interval, timestamp - timestamp, "
                             "date +- integer, interval */ number")
    out = common_numeric([ta, tb])
    if pa.types.is_decimal(out):
        (wa, sa), (wb, sb) = _decimal_digits(ta), _decimal_digits(tb)
        if name in ("add", "subtract", "modulo"):
            scale = max(sa, sb)
            out = pa.decimal128(min(38, max(wa, wb) + scale + 1), scale)
        elif name == "multiply":
            scale = min(38, sa + sb)
            out = pa.decimal128(min(38, wa + wb + scale), scale)
        else:
            # PostgreSQL divides numerics into a numeric of at least 16 significant digits;
            # caudal (like DuckDB) divides decimals as DOUBLE
            out = pa.float64()
        if pa.types.is_decimal(out):
            return Call(out, name, (a, b))
    return Call(out, name, (cast(a, out), cast(b, out)))


def _checked(kernel):
    def run(args, call):
        try:
            return kernel(*args)
        except pa.ArrowInvalid as e:
            text = str(e)
            if "divide by zero" in text.lower():
                raise RuntimeFailure(f"division by zero in {call}") from None
            if "overflow" in text.lower() or "out of range" in text.lower():
                kind = "numeric" if pa.types.is_decimal(call.dtype) else "integer"
                raise RuntimeFailure(f"{kind} out of range in {call}",
                                     hint="cast to BIGINT, DECIMAL or DOUBLE first") from None
            raise RuntimeFailure(f"{text} in {call}") from None
    return run


def _wide(x, digits: int = 76):
    """Decimal operands in 256 bits, so the exact result is checked back into the bound
    DECIMAL(p, s) instead of overflowing pyarrow's 38 digits midway. A product's operands
    take at most 37 digits each (Arrow types a product p1 + p2 + 1 digits, at most 76:
    DECIMAL(38, 10) * DECIMAL(38, 10) failed even for 1.5 * 2); a value with more does
    not fit the result anyway."""
    t = x.type
    if pa.types.is_decimal(t):
        return x.cast(pa.decimal256(max(t.scale, min(t.precision, digits)), t.scale))
    if pa.types.is_integer(t):
        return x.cast(pa.decimal256(min(_decimal_digits(t)[0], digits), 0))
    return x


def _arith_kernel(name, kernel):
    checked = _checked(kernel)

    def run(args, call):
        if pa.types.is_decimal(call.dtype):
            fast = decimal_int64(name, args, call.dtype)
            if fast is not None:
                return fast
            digits = 37 if name == "multiply" else 76
            try:
                operands = [_wide(args[0], digits), _wide(args[1], digits)]
            except pa.ArrowInvalid:
                raise RuntimeFailure(f"numeric field overflow in {call}",
                                     hint=f"the result does not fit {sql_name(call.dtype)}") \
                    from None
            wide = _checked(kernel)(operands, call)
            try:
                return wide.cast(call.dtype)
            except pa.ArrowInvalid:
                raise RuntimeFailure(f"numeric field overflow in {call}",
                                     hint=f"the result does not fit {sql_name(call.dtype)}") \
                    from None
        return checked(args, call)
    return run


def _divide(a, b):
    if pa.types.is_floating(a.type) or pa.types.is_floating(b.type):
        if any_true(pc.equal(b, 0)):
            raise pa.ArrowInvalid("divide by zero")
        return pc.divide(a, b)
    # integer division truncates toward zero, as in PostgreSQL
    return pc.divide_checked(a, b)


def _float_modulo(a, b):
    """C's fmod, as DuckDB: exact, with the sign of ``a``, ``x % inf`` is x (a - trunc(a / b)
    * b answered NaN there, and lost digits for large quotients)."""
    (x, y), scalar = broadcast([a, b])
    with np.errstate(invalid="ignore", divide="ignore"):
        r = np.fmod(pc.fill_null(x, 0.0).to_numpy(zero_copy_only=False),
                    pc.fill_null(y, 1.0).to_numpy(zero_copy_only=False))
    return finish(propagate_nulls(pa.array(r, x.type), x, y), scalar)


def _modulo(a, b):
    # a - trunc(a / b) * b: the sign follows the dividend, as in PostgreSQL
    if pa.types.is_integer(a.type):
        if pa.types.is_signed_integer(b.type):  # MIN % -1 is 0 (MIN / -1 overflows)
            b = pc.if_else(pc.equal(b, -1), pa.scalar(1, b.type), b)
        quotient = pc.divide_checked(a, b)
        return pc.subtract(a, pc.multiply(quotient, b))
    if any_true(pc.equal(b, 0)):
        raise pa.ArrowInvalid("divide by zero")
    if pa.types.is_floating(a.type):
        return _float_modulo(a, b)
    quotient = pc.round(pc.divide(a, b), round_mode="towards_zero")  # decimals
    return pc.subtract(a, pc.multiply(quotient, b))


for _name, _kernel in [("add", pc.add_checked), ("subtract", pc.subtract_checked),
                       ("multiply", pc.multiply_checked), ("divide", _divide),
                       ("modulo", _modulo)]:
    register(_name, _bind_arith, _arith_kernel(_name, _kernel),
             f"a {_SYMBOL[_name]} b: numbers"
             + {"add": "; timestamp + interval; date + integer",
                "subtract": "; timestamp - interval; timestamp - timestamp -> interval",
                "multiply": "; interval * number", "divide": " (integers truncate)",
                "modulo": " (sign of a)"}[_name], internal=True)
register("mod", _bind_arith, _arith_kernel("modulo", _modulo), "mod(a, b) -> a % b")


def _interval_scale(op):
    def run(args, call):
        micros = pc.cast(args[0], pa.int64())
        scaled = op(pc.cast(micros, pa.float64()), args[1])
        if any_true(pc.is_nan(scaled)) or any_true(pc.is_inf(scaled)):
            raise RuntimeFailure(f"interval out of range in {call}")
        return pc.cast(pc.round(scaled, round_mode="half_to_even"), pa.int64()).cast(INTERVAL)
    return run


def _bind_internal(dtype):
    return lambda name, args: Call(dtype, name, tuple(args))


register("multiply_interval", _bind_internal(INTERVAL), _interval_scale(pc.multiply),
         "interval * number", internal=True)


def _interval_divide(args, call):
    if any_true(pc.equal(args[1], 0)):
        raise RuntimeFailure(f"division by zero in {call}")
    return _interval_scale(pc.divide)(args, call)


register("divide_interval", _bind_internal(INTERVAL), _interval_divide, "interval / number",
         internal=True)


register("date_diff_days", _bind_internal(pa.int32()),
         lambda args, call: pc.cast(pc.subtract(pc.cast(args[0], pa.int32()),
                                                pc.cast(args[1], pa.int32())), pa.int32()),
         "date - date -> integer days", internal=True)
register("date_add_days", _bind_internal(pa.date32()),
         lambda args, call: pc.cast(pc.add_checked(pc.cast(args[0], pa.int32()), args[1]),
                                    pa.date32()),
         "date + integer -> date", internal=True)


def _bind_negate(name: str, args: list[Expr]) -> Call:
    arity("negate", args, 1)
    expect(args[0], lambda t: is_numeric(t) or pa.types.is_duration(t), "negate",
           "a number or an interval")
    return Call(args[0].dtype, "negate", tuple(args))


def _negate(args, call):
    value = args[0]
    if pa.types.is_duration(value.type):
        return pc.negate_checked(pc.cast(value, pa.int64())).cast(value.type)
    return pc.negate_checked(value)


register("negate", _bind_negate, _checked(lambda a: _negate([a], None)), "-x",
         internal=True)

# ---- comparison -------------------------------------------------------------------------

_COMPARE = {"eq": pc.equal, "neq": pc.not_equal, "lt": pc.less, "lte": pc.less_equal,
            "gt": pc.greater, "gte": pc.greater_equal}
_COMPARE_SYMBOL = {"eq": "=", "neq": "<>", "lt": "<", "lte": "<=", "gt": ">", "gte": ">="}


def _bind_compare(name: str, args: list[Expr]) -> Call:
    arity(name, args, 2)
    coerced, target = coerce_all(args, f"comparison {_COMPARE_SYMBOL[name]}")
    if pa.types.is_struct(target) or pa.types.is_list(target):
        raise BindError(f"cannot compare {sql_name(target)} values with "
                        f"{_COMPARE_SYMBOL[name]}", hint="compare their fields or elements")
    return Call(pa.bool_(), name, tuple(coerced))


def _compare_kernel(name, kernel):
    def run(args, call):
        a, b = args
        if is_scalar(a) and is_scalar(b) and not (a.is_valid and b.is_valid):
            return null_of(pa.bool_())
        return float_order.compare(name, a, b, kernel(a, b))
    return run


for _name, _kernel in _COMPARE.items():
    register(_name, _bind_compare, _compare_kernel(_name, _kernel),
             f"a {_COMPARE_SYMBOL[_name]} b -> boolean", internal=True)



def _bind_float_key(name: str, args: list[Expr]) -> Call:
    arity(name, args, 1)
    return Call(args[0].dtype, name, tuple(args))


register("float_key", _bind_float_key, lambda args, call: float_order.normalize_key(args[0]),
         "a REAL/DOUBLE grouping key with -0.0 as 0.0 (one group, as DuckDB)", internal=True)

# ---- boolean logic ----------------------------------------------------------------------


def _bind_logic(name: str, args: list[Expr]) -> Call:
    for a in args:
        expect(a, pa.types.is_boolean, name.upper(), "booleans")
    return Call(pa.bool_(), name, tuple(cast(a, pa.bool_()) for a in args))


def _logic(kernel, decided_by):
    """AND/OR over the batch; when the right side fails (a division by zero) it is
    evaluated again on just the rows the left side leaves open, as PostgreSQL stops at the
    operand that decides a row."""
    def run(evals, call, batch):
        from caudal.plan.functions.conditional import evaluate_rows

        left = evals[0](batch)
        n = batch.num_rows
        if isinstance(left, pa.Scalar):
            open_rows = np.full(n, left.as_py() is not decided_by)
        else:
            open_rows = ~np.asarray(pc.fill_null(pc.equal(left, decided_by), False)
                                    .to_numpy(zero_copy_only=False), dtype=bool)
        result = left
        for ev in evals[1:]:
            right = evaluate_rows(ev, batch, open_rows, pa.bool_())
            result = kernel(result, right)
        return result
    return run


register("and", _bind_logic, _logic(pc.and_kleene, False), "a AND b", internal=True,
         lazy=True)
register("or", _bind_logic, _logic(pc.or_kleene, True), "a OR b", internal=True, lazy=True)
register("not", _bind_logic, lambda args, call: pc.invert(args[0]), "NOT a", internal=True)

# ---- null and truth tests ---------------------------------------------------------------


def _bind_null_test(name: str, args: list[Expr]) -> Call:
    arity(name, args, 1)
    return Call(pa.bool_(), name, tuple(args))


def _is_null(args, call):
    a = args[0]
    if isinstance(a, pa.Scalar):
        return pa.scalar(not a.is_valid)
    return pc.is_null(a, nan_is_null=False)


register("is_null", _bind_null_test, _is_null, "x IS NULL", internal=True)
register("is_not_null", _bind_null_test,
         lambda args, call: pc.invert(_is_null(args, call)), "x IS NOT NULL", internal=True)


def _bind_truth(name: str, args: list[Expr]) -> Call:
    arity(name, args, 1)
    expect(args[0], pa.types.is_boolean, name.replace("_", " ").upper(), "a boolean")
    return Call(pa.bool_(), name, (cast(args[0], pa.bool_()),))


def _truth(want: bool, negate: bool):
    def run(args, call):
        value = args[0]
        hit = pc.fill_null(value if want else pc.invert(value), False)
        return pc.invert(hit) if negate else hit
    return run


for _name, _want, _neg in [("is_true", True, False), ("is_false", False, False),
                           ("is_not_true", True, True), ("is_not_false", False, True)]:
    register(_name, _bind_truth, _truth(_want, _neg),
             f"x {_name.replace('_', ' ').upper()} -> boolean (never NULL)", internal=True)


def _bind_distinct(name: str, args: list[Expr]) -> Call:
    arity(name, args, 2)
    coerced, _ = coerce_all(args, name.replace("_", " ").upper())
    return Call(pa.bool_(), name, tuple(coerced))


def _is_distinct(args, call):
    a, b = args
    both_null = pc.and_(pc.is_null(a), pc.is_null(b))
    one_null = pc.xor(pc.is_null(a), pc.is_null(b))
    differ = pc.fill_null(float_order.compare("neq", a, b, pc.not_equal(a, b)), False)
    return pc.and_(pc.invert(both_null), pc.or_(one_null, differ))


register("is_distinct_from", _bind_distinct, _is_distinct, "a IS DISTINCT FROM b",
         internal=True)
register("is_not_distinct_from", _bind_distinct,
         lambda args, call: pc.invert(_is_distinct(args, call)), "a IS NOT DISTINCT FROM b",
         internal=True)

# ---- IN ---------------------------------------------------------------------------------


def _bind_in(name: str, args: list[Expr]) -> Call:
    if len(args) < 2:
        raise BindError("IN needs at least one value in its list")
    coerced, _ = coerce_all(args, "IN list")
    return Call(pa.bool_(), name, tuple(coerced))


def _in_list(args, call):
    """x IN (v1, v2, ...): true on a match, else NULL if x or any vi is NULL, else false.

    Constant list items go through one hash lookup (is_in); column items are compared one
    by one and OR-ed, which has the same three-valued result."""
    x, items = args[0], args[1:]
    constants = [v for v in items if is_scalar(v)]
    columns = [v for v in items if not is_scalar(v)]
    result = None
    if constants:
        valid = [v for v in constants if v.is_valid]
        if is_scalar(x):
            hit = pa.scalar(x.is_valid and any(v.as_py() == x.as_py() for v in valid)
                            if x.is_valid else None, pa.bool_())
        else:
            values = pa.array([v.as_py() for v in valid], type=x.type)
            # the lookup hashes bits: -0.0 must meet 0.0 (and NaN NaN) as = does
            hit = pc.is_in(float_order.normalize_key(x),
                           value_set=float_order.normalize_key(values), skip_nulls=True)
            hit = pc.if_else(pc.is_null(x), null_of(pa.bool_()), hit)
        if len(valid) < len(constants):
            hit = pc.or_kleene(hit, null_of(pa.bool_()))
        result = hit
    for column in columns:
        hit = float_order.equal_or_both_nan(x, column)
        result = hit if result is None else pc.or_kleene(result, hit)
    return result


register("in_list", _bind_in, _in_list, "x IN (v1, v2, ...) -> boolean", internal=True)
