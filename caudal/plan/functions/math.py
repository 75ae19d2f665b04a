"""Mathematical functions with PostgreSQL meaning: round() of a float rounds half to even
(rint) and of a decimal half away from zero; the logarithm of zero, the square root of a
negative number and overflow are errors, not NaN or infinity.
"""

from __future__ import annotations

import decimal
import functools
import math

import numpy as np
import pyarrow as pa

from caudal import compute as pc
from caudal.errors import RuntimeFailure
from caudal.exact_float import two_product
from caudal.plan.expressions import Call, Expr, Literal
from caudal.plan.functions.coerce import arity, cast, constant_value
from caudal.plan.functions.kernels import any_true, broadcast, duckdb_eval, finish
from caudal.plan.functions.registry import BindError, register
from caudal.plan.functions.strings import raise_signature
from caudal.types import is_numeric

F64 = pa.float64()


def _number(fn: str, args: list[Expr]) -> None:
    for a in args:
        if not (is_numeric(a.dtype) or pa.types.is_null(a.dtype)):
            raise_signature(fn, args)


def _guard(fn: str, kernel):
    """Run a kernel, turning pyarrow's domain errors into PostgreSQL's messages."""
    def run(args, call):
        try:
            return kernel(*args)
        except pa.ArrowInvalid as e:
            text = str(e).lower()
            if "logarithm of zero" in text:
                message = "cannot take logarithm of zero"
            elif "logarithm of negative" in text:
                message = "cannot take logarithm of a negative number"
            elif "square root of negative" in text:
                message = "cannot take square root of a negative number"
            elif "overflow" in text:
                message = "value out of range: overflow"
            else:
                message = str(e).splitlines()[0]
            raise RuntimeFailure(f"{message} in {fn}()") from None
    return run


def _finite(fn: str, kernel):
    """Floating results must stay finite where their inputs are (PostgreSQL's overflow)."""
    def run(*args):
        out = kernel(*args)
        if any_true(pc.is_inf(out)) and not any(
                any_true(pc.is_inf(a)) for a in args if pa.types.is_floating(a.type)):
            raise pa.ArrowInvalid("overflow")
        return out
    return run


# ---- sign-keeping functions: abs, sign ---------------------------------------------------


def _bind_same_type(name: str, args: list[Expr]) -> Call:
    arity(name, args, 1)
    _number(name, args)
    dtype = args[0].dtype if not pa.types.is_null(args[0].dtype) else F64
    return Call(dtype, name, (cast(args[0], dtype),))


register("abs", _bind_same_type, _guard("abs", pc.abs_checked), "abs(number) -> number")
def _bind_sign(name: str, args: list[Expr]) -> Call:
    call = _bind_same_type(name, args)
    if pa.types.is_decimal(call.dtype):  # -1, 0 or 1 need one digit whatever the scale
        return Call(pa.decimal128(1, 0), name, call.args)
    return call


def _sign(args, call):
    x = args[0]
    if pa.types.is_decimal(call.dtype):
        def one(v):
            return pa.scalar(decimal.Decimal(v), call.dtype)
        return pc.if_else(pc.greater(x, 0), one(1), pc.if_else(pc.less(x, 0), one(-1), one(0)))
    return pc.cast(pc.sign(x), call.dtype)


register("sign", _bind_sign, _sign, "sign(number) -> -1, 0 or 1")

# ---- rounding ---------------------------------------------------------------------------


def _bind_round(name: str, args: list[Expr]) -> Call:
    arity(name, args, 1, 2)
    _number(name, args[:1])
    if len(args) == 2 and not (pa.types.is_integer(args[1].dtype)
                               or isinstance(args[1], Literal) and args[1].value is None):
        raise_signature(name, args)
    x = args[0]
    t = x.dtype if not pa.types.is_null(x.dtype) else F64
    digits = constant_value(args[1], name, "number of digits") if len(args) == 2 else 0
    if digits is None:
        return Call(t, name, (cast(x, t),), {"digits": None, "explicit": True})
    if pa.types.is_decimal(t):
        whole = t.precision - t.scale
        scale = min(t.scale, max(digits, 0))
        # rounding up may carry into one more integer digit (9.99 -> 10.0)
        dtype = pa.decimal128(min(38, whole + scale + 1), scale)
    else:
        dtype = t
    return Call(dtype, name, (cast(x, t),), {"digits": digits, "explicit": len(args) == 2})


def _rounding(mode_float_plain: str, mode: str):
    def run(args, call):
        x = args[0]
        digits = call.options["digits"]
        t = x.type
        if digits is None:
            return pa.scalar(None, call.dtype) if isinstance(x, pa.Scalar) else \
                pa.nulls(len(x), call.dtype)
        if pa.types.is_integer(t):
            if digits >= 0:
                return x
            try:
                return _round_integer(x, digits, mode)
            except pa.ArrowInvalid:
                raise RuntimeFailure(f"value out of range: overflow in {call.func}()") \
                    from None
        if pa.types.is_floating(t) and not call.options["explicit"]:
            return pc.round(x, round_mode=mode_float_plain)
        if pa.types.is_decimal(t):
            # one more digit first: rounding 99.99 gives 100.0
            wide = x.cast(pa.decimal128(min(38, t.precision + 1), t.scale))
            return pc.round(wide, ndigits=digits, round_mode=mode).cast(call.dtype)
        return _round_float(x, digits, mode)
    return run


def _round_integer(x, digits: int, mode: str):
    """Arrow refuses more digits than the type has (round(bigint, -20)) and fails with a
    garbled message when the result leaves the type: past its digits every value is 0 (or
    overflows, as in DuckDB), and an overflow is PostgreSQL's 'value out of range'."""
    signed = pa.types.is_signed_integer(x.type)
    high = 2 ** (x.type.bit_width - (1 if signed else 0)) - 1
    width = len(str(high))
    if -digits < width:
        try:
            return pc.round(x, ndigits=digits, round_mode=mode)
        except pa.ArrowInvalid:
            raise pa.ArrowInvalid("overflow") from None
    half = 5 * 10 ** (width - 1)  # rounds to 10^width, outside the type
    if mode != "towards_zero" and -digits == width and half <= high:
        big = pc.greater_equal(x, pa.scalar(half, x.type))
        if signed:
            big = pc.or_(big, pc.less_equal(x, pa.scalar(-half, x.type)))
        if any_true(big):
            raise pa.ArrowInvalid("overflow")
    return pc.multiply(x, pa.scalar(0, x.type))


def _round_float(x, digits: int, mode: str):
    """DuckDB's rounding to ``digits`` in DOUBLE: x * 10^digits rounded half away from zero
    (a tie decided by the product's exact value, as DuckDB's answers are), divided back;
    a result that is not finite keeps x (1e300 to 15 digits: Arrow failed the job). Arrow
    corrects the representation error instead (round(2.675, 2) gave 2.68, DuckDB 2.67)."""
    if mode == "towards_zero":
        return _trunc_float(x, digits)
    (arr,), scalar = broadcast([x])
    values = pc.fill_null(arr, 0.0).to_numpy(zero_copy_only=False).astype(np.float64)
    with np.errstate(all="ignore"):
        out = _round_scaled(values, digits)
    out = np.where(np.isfinite(values), out, values)
    result = pa.array(out.astype(arr.type.to_pandas_dtype()), arr.type,
                      mask=pc.is_null(arr).to_numpy(zero_copy_only=False))
    return finish(result, scalar)


def _round_scaled(values: np.ndarray, digits: int) -> np.ndarray:
    if digits > 308:  # 10^digits is inf: DuckDB keeps every value
        return values
    if digits < -308:
        return np.zeros_like(values)
    modifier = 10.0 ** abs(digits)
    if digits < 0:
        scaled = values / modifier
        whole = np.trunc(scaled)
        rounded = np.where(np.abs(scaled - whole) >= 0.5, whole + np.sign(scaled), whole)
        out = rounded * modifier
        return np.where(np.isinf(out), values, np.where(np.isnan(out), 0.0, out))
    scaled, error = two_product(values, modifier)
    whole = np.trunc(scaled)
    fraction = np.abs(scaled - whole)
    away = (fraction > 0.5) | ((fraction == 0.5) & (np.sign(error) * np.sign(scaled) >= 0))
    out = np.where(away, whole + np.sign(scaled), whole) / modifier
    return np.where(np.isfinite(out), out, values)


def _trunc_float(x, digits: int):
    """DuckDB's truncation to ``digits`` in DOUBLE: x * 10^digits truncated, divided back
    (x / 10^-digits truncated, multiplied back for negative digits); a result that is not
    finite keeps x. Arrow corrects the representation error instead (trunc(1735516800.0, 17)
    gave 1735516800.0 where DuckDB gives 1735516800.0000002)."""
    (arr,), scalar = broadcast([x])
    values = pc.fill_null(arr, 0.0).to_numpy(zero_copy_only=False).astype(np.float64)
    with np.errstate(all="ignore"):
        modifier = np.float64(10.0) ** abs(digits)
        out = np.trunc(values * modifier) / modifier if digits >= 0 else \
            np.trunc(values / modifier) * modifier
    out = np.where(np.isfinite(out), out, values)
    result = pa.array(out.astype(arr.type.to_pandas_dtype()), arr.type,
                      mask=pc.is_null(arr).to_numpy(zero_copy_only=False))
    return finish(result, scalar)


register("round", _bind_round, _rounding("half_to_even", "half_towards_infinity"),
         "round(number [, digits]) -> number (half away from zero; a float without digits "
         "half to even)")
register("trunc", _bind_round, _rounding("towards_zero", "towards_zero"),
         "trunc(number [, digits]) -> number rounded toward zero")


def _bind_floor(name: str, args: list[Expr]) -> Call:
    arity(name, args, 1)
    _number(name, args)
    t = args[0].dtype if not pa.types.is_null(args[0].dtype) else F64
    dtype = pa.decimal128(min(38, t.precision - t.scale + 1), 0) if pa.types.is_decimal(t) else t
    return Call(dtype, name, (cast(args[0], t),))


def _floor_kernel(kernel):
    def run(args, call):
        x = args[0]
        if pa.types.is_integer(x.type):
            return x
        if pa.types.is_decimal(x.type):
            wide = x.cast(pa.decimal128(min(38, x.type.precision + 1), x.type.scale))
            return kernel(wide).cast(call.dtype)
        return kernel(x)
    return run


register("floor", _bind_floor, _floor_kernel(pc.floor),
         "floor(number) -> number; FLOOR(ts TO unit) -> date_trunc(unit, ts)")
register(["ceil", "ceiling"], _bind_floor, _floor_kernel(pc.ceil),
         "ceil(number) -> number; CEIL(ts TO unit) -> the next unit boundary at or after ts "
         "(units up to DAY)")

# ---- DOUBLE functions -------------------------------------------------------------------


def _bind_double(arg_count: int):
    def bind(name: str, args: list[Expr]) -> Call:
        arity(name, args, arg_count)
        _number(name, args)
        return Call(F64, name, tuple(cast(a, F64) for a in args))
    return bind


def _power(a, b):
    a_arr, b_arr = a, b
    zero_neg = pc.and_(pc.equal(a_arr, 0), pc.less(b_arr, 0))
    if any_true(zero_neg):
        raise pa.ArrowInvalid("zero raised to a negative power is undefined")
    complex_ = pc.and_(pc.less(a_arr, 0), pc.not_equal(pc.trunc(b_arr), b_arr))
    if any_true(complex_):
        raise pa.ArrowInvalid("a negative number raised to a non-integer power yields a "
                              "complex result")
    return pc.power(a_arr, b_arr)


def _sqrt(x):
    return pc.sqrt_checked(x)


def _cbrt(x):
    """DuckDB's cube root (the C library's cbrt): NumPy's differs in the last bit for about
    half of all values."""
    return duckdb_eval("cbrt(c0)", [x], F64, "cbrt")


def _log(base, x):
    """log10(x) / log10(base), as DuckDB divides (ln / ln differs in the last bit for ~half
    of all values)."""
    return pc.divide(pc.log10_checked(x), pc.log10_checked(base))


_DOUBLE_FUNCTIONS = [
    ("sqrt", 1, _sqrt, "sqrt(number) -> double"),
    ("cbrt", 1, _cbrt, "cbrt(number) -> double (cube root)"),
    ("exp", 1, _finite("exp", pc.exp), "exp(number) -> double"),
    ("ln", 1, pc.ln_checked, "ln(number) -> double (natural logarithm)"),
    ("log10", 1, pc.log10_checked, "log10(number) -> double"),
    ("power", 2, _finite("power", _power), "power(a, b) -> double; pow(a, b)"),
    ("degrees", 1, lambda x: pc.multiply(x, 180.0 / math.pi), "degrees(radians) -> double"),
    ("radians", 1, lambda x: pc.multiply(x, math.pi / 180.0), "radians(degrees) -> double"),
    ("sin", 1, pc.sin, "sin(radians) -> double"),
    ("cos", 1, pc.cos, "cos(radians) -> double"),
    ("tan", 1, pc.tan, "tan(radians) -> double"),
    ("asin", 1, pc.asin_checked, "asin(x) -> double"),
    ("acos", 1, pc.acos_checked, "acos(x) -> double"),
    ("atan", 1, pc.atan, "atan(x) -> double"),
    ("atan2", 2, pc.atan2, "atan2(y, x) -> double"),
]
for _name, _count, _kernel, _sig in _DOUBLE_FUNCTIONS:
    _names = [_name, "pow"] if _name == "power" else [_name]
    register(_names, _bind_double(_count), _guard(_name, _kernel), _sig)


def _bind_log(name: str, args: list[Expr]) -> Call:
    """log(x) is the base-10 logarithm in PostgreSQL; log(b, x) the base-b one."""
    arity(name, args, 1, 2)
    _number(name, args)
    if len(args) == 1:
        return Call(F64, "log10", (cast(args[0], F64),))
    return Call(F64, "log", tuple(cast(a, F64) for a in args))


register("log", _bind_log, _guard("log", _log),
         "log(number) -> double (base 10); log(base, number)")


def _bind_pi(name: str, args: list[Expr]) -> Call:
    arity(name, args, 0)
    return Call(F64, "pi", ())


register("pi", _bind_pi, lambda args, call: pa.scalar(math.pi), "pi() -> double")


def _bind_random(name: str, args: list[Expr]) -> Call:
    if args:
        raise BindError("random() takes no arguments")
    return Call(F64, "random", ())


@functools.cache
def _generator() -> np.random.Generator:
    """Made on first use: importing numpy.random (with secrets, hmac and hashlib, which loads
    OpenSSL) is ~10-25 ms, paid by every job that compiles an expression otherwise."""
    return np.random.default_rng()


def _random(evals, call, batch):
    return pa.array(_generator().random(batch.num_rows))


register("random", _bind_random, _random, "random() -> double in [0, 1), per row",
         volatile=True, lazy=True)
