"""Arithmetic, comparison, boolean logic, casts and null tests, with PostgreSQL meaning:
integer division truncates, overflow and division by zero are errors, AND/OR are three-valued.
"""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc

from caudal.errors import RuntimeFailure
from caudal.plan.expressions import Call, Expr
from caudal.plan.functions.coerce import arity, cast, coerce_all, common_numeric, expect
from caudal.plan.functions.registry import BindError, register
from caudal.types import INTERVAL, TIMESTAMP, is_numeric, is_text, sql_name

# ---- arithmetic -------------------------------------------------------------------------


def _temporal(t: pa.DataType) -> bool:
    return pa.types.is_timestamp(t) or pa.types.is_date(t)


def _bind_arith(name: str, args: list[Expr]) -> Call:
    arity(name, args, 2)
    a, b = args
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
        if name == "add" and _temporal(ta) and pa.types.is_integer(tb) and pa.types.is_date(ta):
            return Call(pa.date32(), "date_add_days", (a, cast(b, pa.int32())))
        if pa.types.is_duration(ta) and pa.types.is_duration(tb):
            return Call(INTERVAL, name, (a, b))
    if name in ("multiply", "divide") and pa.types.is_duration(ta) and is_numeric(tb):
        return Call(INTERVAL, name + "_interval", (a, cast(b, pa.float64())))
    if not (is_numeric(ta) or pa.types.is_null(ta)) or not (is_numeric(tb) or pa.types.is_null(tb)):
        op = {"add": "+", "subtract": "-", "multiply": "*", "divide": "/", "modulo": "%"}[name]
        raise BindError(f"operator {op} does not take {sql_name(ta)} and {sql_name(tb)}",
                        hint="numbers, or timestamp/date with interval")
    out = common_numeric([ta, tb])
    if pa.types.is_decimal(out) and name in ("multiply", "divide"):
        out = pa.float64() if name == "divide" else out
        if name == "multiply":
            out = pa.decimal128(38, min(38, ta.scale if pa.types.is_decimal(ta) else 0)
                                + (tb.scale if pa.types.is_decimal(tb) else 0))
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
            if "overflow" in text.lower():
                raise RuntimeFailure(f"integer out of range in {call}",
                                     hint="cast to BIGINT or DOUBLE first") from None
            raise RuntimeFailure(f"{text} in {call}") from None
    return run


def _divide(a, b):
    if pa.types.is_integer(a.type):
        # pyarrow's integer divide truncates toward zero like PostgreSQL's
        return pc.divide_checked(a, b)
    if pa.types.is_floating(a.type):
        zero = pc.equal(b, 0)
        if pc.any(zero).as_py() if isinstance(zero, pa.Array) else zero.as_py():
            raise pa.ArrowInvalid("divide by zero")
        return pc.divide(a, b)
    return pc.divide_checked(a, b)


def _modulo(a, b):
    # a - trunc(a / b) * b: the sign follows the dividend, as in PostgreSQL
    if pa.types.is_integer(a.type):
        quotient = pc.divide_checked(a, b)
        return pc.subtract(a, pc.multiply(quotient, b))
    quotient = pc.trunc(pc.divide(a, b))
    return pc.subtract(a, pc.multiply(quotient, b))


for _name, _kernel in [("add", pc.add_checked), ("subtract", pc.subtract_checked),
                       ("multiply", pc.multiply_checked), ("divide", _divide),
                       ("modulo", _modulo)]:
    register(_name, _bind_arith, _checked(_kernel), f"{_name}(number, number) -> number")

register("multiply_interval", lambda n, a: Call(INTERVAL, n, tuple(a)),
         lambda args, call: pc.cast(pc.multiply(pc.cast(args[0], pa.int64()), args[1]),
                                    pa.int64()).cast(INTERVAL))
register("divide_interval", lambda n, a: Call(INTERVAL, n, tuple(a)),
         lambda args, call: pc.cast(pc.divide(pc.cast(args[0], pa.int64()), args[1]),
                                    pa.int64()).cast(INTERVAL))
register("date_diff_days", lambda n, a: Call(pa.int32(), n, tuple(a)),
         lambda args, call: pc.days_between(args[1], args[0]))
register("date_add_days", lambda n, a: Call(pa.date32(), n, tuple(a)),
         lambda args, call: pc.cast(pc.add(pc.cast(args[0], pa.int32()), args[1]),
                                    pa.date32()))


def _bind_negate(name: str, args: list[Expr]) -> Call:
    arity("negate", args, 1)
    expect(args[0], lambda t: is_numeric(t) or pa.types.is_duration(t), "negate",
           "a number or an interval")
    return Call(args[0].dtype, "negate", tuple(args))


register("negate", _bind_negate, _checked(pc.negate_checked), "-number")

# ---- comparison -------------------------------------------------------------------------

_COMPARE = {"eq": pc.equal, "neq": pc.not_equal, "lt": pc.less, "lte": pc.less_equal,
            "gt": pc.greater, "gte": pc.greater_equal}


def _bind_compare(name: str, args: list[Expr]) -> Call:
    arity(name, args, 2)
    coerced, _ = coerce_all(args, "comparison")
    return Call(pa.bool_(), name, tuple(coerced))


for _name, _kernel in _COMPARE.items():
    register(_name, _bind_compare, (lambda k: lambda args, call: k(*args))(_kernel),
             f"{_name}(a, b) -> boolean")

# ---- boolean logic ----------------------------------------------------------------------


def _bind_logic(name: str, args: list[Expr]) -> Call:
    for a in args:
        expect(a, pa.types.is_boolean, name.upper(), "booleans")
    return Call(pa.bool_(), name, tuple(cast(a, pa.bool_()) for a in args))


register("and", _bind_logic, lambda args, call: pc.and_kleene(*args), "a AND b")
register("or", _bind_logic, lambda args, call: pc.or_kleene(*args), "a OR b")
register("not", _bind_logic, lambda args, call: pc.invert(args[0]), "NOT a")

# ---- null tests -------------------------------------------------------------------------


def _bind_null_test(name: str, args: list[Expr]) -> Call:
    arity(name, args, 1)
    return Call(pa.bool_(), name, tuple(args))


def _is_null(args, call):
    a = args[0]
    if isinstance(a, pa.Scalar):
        return pa.scalar(not a.is_valid)
    return pc.is_null(a, nan_is_null=False)


register("is_null", _bind_null_test, _is_null, "x IS NULL")
register("is_not_null", _bind_null_test,
         lambda args, call: pc.invert(_is_null(args, call)), "x IS NOT NULL")


def _bind_distinct(name: str, args: list[Expr]) -> Call:
    arity(name, args, 2)
    coerced, _ = coerce_all(args, name.replace("_", " "))
    return Call(pa.bool_(), name, tuple(coerced))


def _is_distinct(args, call):
    a, b = args
    both_null = pc.and_(pc.is_null(a), pc.is_null(b))
    one_null = pc.xor(pc.is_null(a), pc.is_null(b))
    differ = pc.fill_null(pc.not_equal(a, b), False)
    return pc.and_(pc.invert(both_null), pc.or_(one_null, differ))


register("is_distinct_from", _bind_distinct, _is_distinct, "a IS DISTINCT FROM b")
register("is_not_distinct_from", _bind_distinct,
         lambda args, call: pc.invert(_is_distinct(args, call)), "a IS NOT DISTINCT FROM b")

# ---- casts ------------------------------------------------------------------------------


def _bind_cast(name: str, args: list[Expr]) -> Call:  # the target type is set by the caller
    raise BindError("cast is bound by the SQL layer")


def cast_array(value, target: pa.DataType):
    """Cast with PostgreSQL's rules: float->int rounds half away from zero, text->timestamp
    parses ISO 8601 (a text without zone is UTC), invalid text is an error naming the value."""
    source = value.type
    if source.equals(target):
        return value
    try:
        if pa.types.is_floating(source) and pa.types.is_integer(target):
            value = pc.round(value, round_mode="half_away_from_zero")
        if is_text(source) and pa.types.is_timestamp(target):
            return _text_to_timestamp(value, target)
        if is_text(source) and pa.types.is_boolean(target):
            lowered = pc.utf8_lower(pc.utf8_trim_whitespace(value))
            true = pc.is_in(lowered, pa.array(["t", "true", "yes", "y", "on", "1"]))
            false = pc.is_in(lowered, pa.array(["f", "false", "no", "n", "off", "0"]))
            bad = pc.and_(pc.is_valid(lowered), pc.invert(pc.or_(true, false)))
            if _any(bad):
                raise pa.ArrowInvalid("invalid input syntax for type boolean")
            return pc.if_else(pc.is_null(lowered), pa.scalar(None, pa.bool_()), true)
        if is_text(source) and (pa.types.is_integer(target) or pa.types.is_floating(target)
                                or pa.types.is_decimal(target)):
            value = pc.utf8_trim_whitespace(value)
        if pa.types.is_boolean(source) and is_text(target):
            return pc.if_else(value, "true", "false")
        if pa.types.is_timestamp(source) and is_text(target):
            return pc.strftime(value, format="%Y-%m-%d %H:%M:%S")
        if pa.types.is_timestamp(source) and pa.types.is_date(target):
            return pc.cast(pc.floor_temporal(value, unit="day"), pa.date32())
        return pc.cast(value, target, safe=True)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as e:
        raise RuntimeFailure(f"cannot cast {sql_name(source)} to {sql_name(target)}: {e}") \
            from None


def _any(mask) -> bool:
    if isinstance(mask, pa.Scalar):
        return bool(mask.as_py())
    return bool(pc.any(mask).as_py())


def _text_to_timestamp(value, target):
    text = pc.utf8_trim_whitespace(value)
    text = pc.replace_substring_regex(text, r"^(\d{4}-\d\d-\d\d)[ T]", r"\1T")
    has_zone = pc.match_substring_regex(text, r"(Z|[+-]\d\d(:?\d\d)?)$")
    if _any(has_zone):
        text = pc.replace_substring_regex(text, r"Z$", "+00:00")
        text = pc.replace_substring_regex(text, r"([+-]\d\d)$", r"\1:00")
        text = pc.if_else(has_zone, text, pc.binary_join_element_wise(text, "+00:00", ""))
        return pc.cast(pc.cast(text, pa.timestamp("us", tz="UTC")), target)
    return pc.cast(pc.cast(text, pa.timestamp("us")), pa.timestamp("us", tz="UTC")).cast(target)


register("cast", _bind_cast,
         lambda args, call: cast_array(args[0], call.dtype), "CAST(x AS type)")
