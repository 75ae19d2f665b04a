"""CAST, ``::`` and TRY_CAST with PostgreSQL's conversions.

pyarrow's casts differ from PostgreSQL's in the details users notice: PostgreSQL rounds (a
float to an integer half to even, a numeric half away from zero) where pyarrow refuses, trims
blanks around numbers in text, prints floats as ``NaN``/``Infinity`` and timestamps without
trailing zeros. The rules live here so every cast in the engine agrees.
"""

from __future__ import annotations

import decimal
import re

import pyarrow as pa

from caudal import compute as pc
from caudal.errors import RuntimeFailure
from caudal.plan.expressions import Call, Expr, Literal
from caudal.plan.functions.kernels import any_true, list_offsets, polars_eval
from caudal.plan.functions.registry import BindError, register
from caudal.types import TIMESTAMP, is_numeric, is_text, sql_name


def _temporal(t: pa.DataType) -> bool:
    return pa.types.is_timestamp(t) or pa.types.is_date(t)


def castable(source: pa.DataType, target: pa.DataType) -> bool:
    """Whether PostgreSQL (and caudal) can cast ``source`` to ``target`` at all."""
    if source.equals(target) or pa.types.is_null(source):
        return True
    if is_text(target):
        return not (pa.types.is_nested(source) or pa.types.is_binary(source))
    if is_text(source):
        return not pa.types.is_nested(target)
    if is_numeric(source) and is_numeric(target):
        return True
    if pa.types.is_boolean(source) or pa.types.is_boolean(target):
        other = target if pa.types.is_boolean(source) else source
        return pa.types.is_integer(other) or pa.types.is_boolean(other)
    if _temporal(source) and _temporal(target):
        return True
    if pa.types.is_duration(source) and pa.types.is_duration(target):
        return True
    if pa.types.is_timestamp(source) and pa.types.is_time(target):
        return True
    if pa.types.is_list(source) and pa.types.is_list(target):
        return castable(source.value_type, target.value_type)
    if pa.types.is_struct(source) and pa.types.is_struct(target):
        return source.num_fields == target.num_fields and all(
            castable(source.field(i).type, target.field(i).type)
            for i in range(source.num_fields))
    return False


def bind_cast(expr: Expr, target: pa.DataType, *, safe: bool = False) -> Expr:
    """The IR of ``CAST(expr AS target)`` (``TRY_CAST`` when ``safe``), or a BindError naming
    both types when PostgreSQL has no such cast."""
    if expr.dtype.equals(target):
        return expr
    if not castable(expr.dtype, target):
        raise BindError(f"cannot cast {sql_name(expr.dtype)} to {sql_name(target)}",
                        hint="casts exist between numbers, text and every type, booleans "
                             "and integers, dates and timestamps, and arrays of castable types")
    if isinstance(expr, Literal) and expr.value is None:
        return Literal(target, None)
    return Call(target, "try_cast" if safe else "cast", (expr,))


# ---- kernels ------------------------------------------------------------------------------


def cast_array(value, target: pa.DataType):
    """Cast an array or scalar with PostgreSQL's rules; a value that does not convert is a
    RuntimeFailure naming the types and the value."""
    if isinstance(value, pa.Scalar):
        return cast_array(pa.array([value.as_py()], type=value.type), target)[0]
    if isinstance(value, pa.ChunkedArray):
        value = value.combine_chunks()
    source = value.type
    if source.equals(target):
        return value
    try:
        return _cast(value, source, target)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError) as e:
        reason = _reason(str(e).splitlines()[0], target)
        raise RuntimeFailure(f"cannot cast {sql_name(source)} to {sql_name(target)}: {reason}",
                             hint="TRY_CAST(... AS type) gives NULL instead") from None


#: Arrow's cast messages, in SQL's words (they named Arrow types: int32, date32[day], …)
_REASONS = [
    (re.compile(r"Failed to parse string: '(.*)' as a scalar of type .*", re.S),
     "'{0}' is not a valid {target}"),
    (re.compile(r"Float value (\S+) was truncated converting to .*"),
     "{0} is out of range for {target}"),
    (re.compile(r"Integer value (\S+) not in range: .*"), "{0} is out of range for {target}"),
    (re.compile(r"Integer value out of bounds.*"), "a value is out of range for {target}"),
    (re.compile(r"Decimal value does not fit in precision.*"),
     "a value does not fit {target}"),
    (re.compile(r"The string '(.*)' cannot be represented as decimal.*"),
     "{0} does not fit {target}"),
    (re.compile(r"The string '(.*)' is not a valid decimal.*"),
     "'{0}' is not a valid {target}"),
]


def _reason(text: str, target: pa.DataType) -> str:
    for pattern, words in _REASONS:
        match = pattern.fullmatch(text)
        if match:
            return words.format(*match.groups(), target=sql_name(target))
    return text


def _cast(value: pa.Array, source: pa.DataType, target: pa.DataType) -> pa.Array:
    if pa.types.is_null(source):
        return pa.nulls(len(value), target)
    if _nested(source, target):
        return _cast_nested(value, target, cast_array)
    if is_text(target):
        return _to_text(value, source)
    if is_text(source):
        return _from_text(value, target)
    if pa.types.is_floating(source) and pa.types.is_integer(target):
        # float8 -> int uses rint() in PostgreSQL: half to even
        return pc.cast(pc.round(value, round_mode="half_to_even"), target)
    if pa.types.is_decimal(source) and pa.types.is_integer(target):
        return pc.cast(round_decimal(value, 0), target)
    if pa.types.is_decimal(source) and pa.types.is_floating(target):
        # Arrow multiplies by a rounded 10^-scale (2.55 became 2.5500000000000003); the
        # decimal's text parsed is the nearest DOUBLE, as DuckDB and PostgreSQL give. A REAL
        # from that DOUBLE (Arrow divides in 32 bits: -0.05 became -0.049999997)
        double = pc.cast(pc.cast(value, pa.string()), pa.float64())
        return double if pa.types.is_float64(target) else _cast(double, pa.float64(), target)
    if pa.types.is_decimal(target):
        if pa.types.is_floating(source):
            # through the shortest text, as PostgreSQL converts float8 to numeric
            return _text_to_decimal(pc.cast(value, pa.string()), target)
        if pa.types.is_decimal(source) and source.scale > target.scale:
            value = round_decimal(value, target.scale)
        if pa.types.is_integer(source):
            # Arrow sizes the cast by the type, not the values (an int64 wants precision
            # 19 + scale): widen first, then the narrowing cast checks each value fits
            digits = len(str(2 ** source.bit_width)) + target.scale
            value = pc.cast(value, pa.decimal256(min(76, digits), target.scale))
        return pc.cast(value, target)
    if pa.types.is_timestamp(source) and pa.types.is_date(target):
        return pc.cast(pc.floor_temporal(naive_utc(value), unit="day"), pa.date32())
    if pa.types.is_timestamp(source) and pa.types.is_time(target):
        micros = pc.subtract(pc.cast(value, pa.int64()),
                             pc.cast(pc.floor_temporal(value, unit="day"), pa.int64()))
        return pc.cast(pc.cast(micros, pa.time64("us")), target)
    if pa.types.is_float64(source) and pa.types.is_float32(target):
        # Arrow gives inf for a DOUBLE past REAL's range; DuckDB and PostgreSQL refuse it
        if any_true(pc.invert(_numeric_fits(value, target))):
            raise pa.ArrowInvalid("value out of range for REAL")
        return pc.cast(value, target)
    if pa.types.is_integer(source) and pa.types.is_floating(target):
        # to the nearest float, as DuckDB and PostgreSQL (Arrow's safe cast refuses an
        # integer past 2^53, the float's exact range)
        return pc.cast(value, options=pc.CastOptions(target, allow_float_truncate=True))
    if pa.types.is_date(source) and pa.types.is_timestamp(target):
        return pc.cast(pc.cast(value, pa.timestamp("us", tz="UTC")), target)
    return pc.cast(value, target, safe=True)


def _nested(source: pa.DataType, target: pa.DataType) -> bool:
    return (pa.types.is_struct(source) and pa.types.is_struct(target)) or (
        pa.types.is_list(source) and pa.types.is_list(target))


def _cast_nested(value: pa.Array, target: pa.DataType, convert) -> pa.Array:
    """A ROW field by field and by position, as PostgreSQL and Flink cast rows (Arrow's cast
    matches fields by name: a field of another name was NULL), an ARRAY element by element;
    each with ``convert`` (CAST's or TRY_CAST's rules, not Arrow's, which refused DOUBLE 0.5
    as an INT)."""
    if pa.types.is_struct(target):
        fields = [child if child.type.equals(f.type) else convert(child, f.type)
                  for child, f in zip(value.flatten(), target)]
        return pa.StructArray.from_arrays(fields, fields=list(target), mask=value.is_null())
    offsets, start, end = list_offsets(value)
    elements = convert(value.values.slice(start, end - start), target.value_type)
    return pa.ListArray.from_arrays(pa.array(offsets, pa.int32()), elements, type=target,
                                    mask=value.is_null())


def round_decimal(value: pa.Array, ndigits: int) -> pa.Array:
    """Round half away from zero (numeric rounding in PostgreSQL), with room for a carry
    into one more digit (9.99 -> 10.0)."""
    t = value.type
    if t.precision < 38:
        value = value.cast(pa.decimal128(t.precision + 1, t.scale))
    return pc.round(value, ndigits=ndigits, round_mode="half_towards_infinity")


# ---- to text ------------------------------------------------------------------------------


def _to_text(value: pa.Array, source: pa.DataType) -> pa.Array:
    if pa.types.is_boolean(source):
        return pc.if_else(value, "true", "false")
    if pa.types.is_floating(source):
        return format_float(value)
    if pa.types.is_decimal(source) and source.scale > 6:
        # pyarrow switches to scientific notation for small decimals; PostgreSQL never does
        return polars_eval(lambda c: c.cast(__import__("polars").String), [value], pa.string())
    if pa.types.is_timestamp(source):
        return format_timestamp(value)
    if pa.types.is_duration(source):
        return format_interval(value)
    if pa.types.is_time(source):   # 01:02:03.5, 01:02:03 (Arrow writes .500000, .000000)
        return _drop_fraction_zeros(pc.cast(value, pa.string()))
    return pc.cast(value, pa.string())


def naive_utc(value):
    """A UTC timestamp as a zone-less one (the same ticks): pyarrow's temporal kernels run
    many times faster without a zone to consult."""
    t = value.type
    if pa.types.is_timestamp(t) and t.tz is not None:
        return value.cast(pa.timestamp(t.unit))
    return value


def format_float(value: pa.Array) -> pa.Array:
    """Floats as PostgreSQL prints them: shortest digits, ``NaN``, ``Infinity``, and a
    two-digit exponent (``1e+20``, ``1.5e-07``)."""
    text = pc.cast(value, pa.string())
    text = pc.replace_substring_regex(text, r"^nan$", "NaN")
    text = pc.replace_substring_regex(text, r"inf$", "Infinity")
    # RE2 rewrites take one-digit group numbers: \10 is group 1, then a zero
    return pc.replace_substring_regex(text, r"e([+-])(\d)$", r"e\10\2")


def format_timestamp(value: pa.Array) -> pa.Array:
    """``YYYY-MM-DD HH:MM:SS[.ffffff]`` with the fraction's trailing zeros dropped (Polars
    formats several times faster than pyarrow's strftime)."""
    naive = pc.cast(value, pa.timestamp("us", tz="UTC")).cast(pa.timestamp("us"))
    text = polars_eval(lambda ts: ts.dt.to_string("%Y-%m-%d %H:%M:%S%.f"), [naive],
                       pa.string())
    return _drop_fraction_zeros(text)


def _drop_fraction_zeros(text: pa.Array) -> pa.Array:
    """``…:05.500000`` -> ``…:05.5``, ``…:05.000000`` -> ``…:05``, as PostgreSQL prints."""
    text = pc.replace_substring_regex(text, r"(\.\d*[1-9])0+$", r"\1")
    return pc.replace_substring_regex(text, r"\.0+$", "")


def format_interval(value: pa.Array) -> pa.Array:
    """Intervals as PostgreSQL prints one without days: ``[-]HH:MM:SS[.ffffff]``."""
    micros = pc.cast(value, pa.int64())
    negative = pc.less(micros, 0)
    total = pc.abs(micros)
    hours = pc.divide(total, 3_600_000_000)
    minutes = pc.divide(pc.subtract(total, pc.multiply(hours, 3_600_000_000)), 60_000_000)
    rest = pc.subtract(total, pc.add(pc.multiply(hours, 3_600_000_000),
                                     pc.multiply(minutes, 60_000_000)))
    seconds = pc.divide(rest, 1_000_000)
    fraction = pc.subtract(rest, pc.multiply(seconds, 1_000_000))

    def two(x):
        return pc.utf8_lpad(pc.cast(x, pa.string()), width=2, padding="0")

    frac = pc.utf8_lpad(pc.cast(fraction, pa.string()), width=6, padding="0")
    frac = pc.replace_substring_regex(frac, r"0+$", "")
    frac = pc.if_else(pc.equal(fraction, 0), "", pc.binary_join_element_wise(".", frac, ""))
    sign = pc.if_else(negative, "-", "")
    return pc.binary_join_element_wise(sign, two(hours), ":", two(minutes), ":", two(seconds),
                                       frac, "")


# ---- from text ----------------------------------------------------------------------------


def _from_text(value: pa.Array, target: pa.DataType) -> pa.Array:
    if pa.types.is_timestamp(target):
        return _text_to_timestamp(value, target)
    if pa.types.is_duration(target):
        from caudal.plan.functions.intervals import parse_intervals

        return parse_intervals(value)
    if pa.types.is_boolean(target):
        lowered = pc.utf8_lower(pc.utf8_trim(value, characters=" \t\n\r"))
        true = pc.is_in(lowered, pa.array(["t", "true", "yes", "y", "on", "1"]))
        false = pc.is_in(lowered, pa.array(["f", "false", "no", "n", "off", "0"]))
        bad = pc.and_(pc.is_valid(lowered), pc.invert(pc.or_(true, false)))
        if any_true(bad):
            first = pc.filter(value, bad)[0].as_py()
            raise pa.ArrowInvalid(f"invalid input syntax for type boolean: {first!r}")
        return pc.if_else(pc.is_null(lowered), pa.scalar(None, pa.bool_()), true)
    text = pc.utf8_trim(value, characters=" \t\n\r")
    if is_numeric(target):
        text = pc.replace_substring_regex(text, r"^\+", "")
        if pa.types.is_decimal(target):
            return _text_to_decimal(text, target)
    if pa.types.is_date(target):
        # a timestamp's text is the date written at its start, its time checked and its
        # zone ignored, as DuckDB reads it ('2024-03-05 23:30:00-05:00' is 2024-03-05)
        day = pc.if_else(timestamp_text_fits(text), pc.utf8_slice_codeunits(text, 0, 10), text)
        return pc.cast(day, pa.date32())
    if pa.types.is_time(target):
        return pc.cast(_text_to_time(text), target)
    return pc.cast(text, target, safe=True)


_TIME_TEXT = r"^(?P<h>\d{1,2}):(?P<m>\d{2})(?::(?P<s>\d{2})(?:\.(?P<f>\d*))?)?$"


def _text_to_time(text: pa.Array, strict: bool = True) -> pa.Array:
    """``HH:MM[:SS[.fraction]]`` as a TIME, as DuckDB reads it: digits past microseconds
    are cut off; an hour past 23, a minute or second past 59 is not a time (Arrow has no
    cast from text to time). Not ``strict`` (TRY_CAST): NULL for those."""
    matched = pc.is_valid(pc.extract_regex(text, _TIME_TEXT))
    parts = pc.extract_regex(pc.if_else(matched, text, "0:00"), _TIME_TEXT)
    h, m = (pc.cast(parts.field(k), pa.int64()) for k in ("h", "m"))
    sec = pc.cast(pc.if_else(pc.equal(parts.field("s"), ""), "0", parts.field("s")), pa.int64())
    micros = pc.cast(pc.utf8_slice_codeunits(pc.binary_join_element_wise(
        parts.field("f"), "000000", ""), 0, 6), pa.int64())
    bad = pc.or_(pc.invert(matched), pc.or_(pc.greater(h, 23), pc.or_(pc.greater(m, 59),
                                                                      pc.greater(sec, 59))))
    bad = pc.and_(pc.is_valid(text), bad)
    if strict and any_true(bad):
        first = pc.filter(text, bad)[0].as_py()
        raise pa.ArrowInvalid(f"Failed to parse string: '{first}' as a scalar of type time")
    total = pc.add(pc.multiply(pc.add(pc.multiply(pc.add(pc.multiply(h, 60), m), 60), sec),
                               1_000_000), micros)
    keep = pc.and_(pc.is_valid(text), pc.invert(bad))
    return pc.cast(pc.if_else(keep, total, pa.scalar(None, pa.int64())), pa.time64("us"))


def _text_to_decimal(text: pa.Array, target: pa.DataType) -> pa.Array:
    """Parse decimals, rounding extra digits half away from zero like PostgreSQL."""
    try:
        return pc.cast(text, target)
    except pa.ArrowInvalid as e:
        if "data loss" not in str(e) and "precision" not in str(e):
            raise
    digits = pc.utf8_length(pc.fill_null(pc.extract_regex(
        text, r"\.(?P<f>\d+)").field("f"), ""))
    scale = min(38, max(target.scale, pc.max(digits).as_py() or 0))
    wide = pc.cast(text, pa.decimal128(38, scale))
    return pc.cast(round_decimal(wide, target.scale), target)


_TIMESTAMP_TEXT = (r"^(?P<d>\d{4}-\d\d-\d\d)(?:[ T](?P<h>\d\d):(?P<m>\d\d)(?::(?P<s>\d\d)"
                   r"(?:\.\d+)?)?(?: ?(?:Z|z|UTC|utc|[+-]\d\d(?::?\d\d)?))?)?$")


def timestamp_text_fits(text: pa.Array) -> pa.Array:
    """Whether each (trimmed) text is a timestamp CAST reads: a valid date, optionally a
    time (hour < 24, minute and second < 60, any fraction) and a zone. TRY_CAST sets the
    others to NULL before casting: Polars' lenient parse, which it used, infers one format
    from the first value and gave NULL for a '…Z' or '…+02:00' text after a bad one."""
    parts = pc.extract_regex(text, _TIMESTAMP_TEXT)
    fits = pc.is_valid(parts)
    day = pc.struct_field(parts, "d")
    fits = pc.and_(fits, pc.is_valid(polars_eval(
        lambda d: d.str.to_date("%Y-%m-%d", strict=False), [day], pa.date32())))
    for name, limit in (("h", 24), ("m", 60), ("s", 60)):
        field = pc.struct_field(parts, name)
        number = pc.cast(pc.if_else(pc.equal(field, ""), "0", field), pa.int64())
        in_range = pc.less(pc.fill_null(number, 0), limit)
        if name == "h":  # 24:00:00 is the next midnight
            in_range = pc.or_(in_range, pc.match_substring_regex(text, _END_OF_DAY))
        fits = pc.and_(fits, in_range)
    return pc.fill_null(fits, False)


#: '24:00[:00[.000]]' after a date: the midnight that ends the day (PostgreSQL, DuckDB)
_END_OF_DAY = r"^\d{4}-\d\d-\d\d[ T]24:00(?::00(?:\.0*)?)?(?: ?(?:Z|z|UTC|utc|[+-]\d\d(?::?\d\d)?))?$"


def _text_to_timestamp(value: pa.Array, target: pa.DataType) -> pa.Array:
    """ISO 8601 text (a space or ``T`` between date and time); no zone means UTC. Digits of
    the seconds past microseconds are cut off, as DuckDB reads them (Arrow refused them)."""
    text = pc.utf8_trim(value, characters=" \t\n\r")
    next_day = pc.match_substring_regex(text, _END_OF_DAY)
    if any_true(next_day):  # 24:00 is 00:00 of the next day
        text = pc.replace_substring_regex(text, r"^(\d{4}-\d\d-\d\d[ T])24:00(:00(\.0*)?)?",
                                          r"\100:00:00")
        day = pc.cast(pc.fill_null(next_day, False), pa.int64())
        at = _text_to_timestamp(text, target)
        return pc.cast(pc.add(pc.cast(at, pa.int64()), pc.multiply(day, 86_400_000_000)),
                       target)
    text = pc.replace_substring_regex(text, r"(:\d\d\.\d{6})\d+", r"\1")
    text = pc.replace_substring_regex(text, r"^(\d{4}-\d\d-\d\d)[ T]", r"\1T")
    text = pc.replace_substring_regex(text, r"^(\d{4}-\d\d-\d\d)$", r"\1T00:00:00")
    text = pc.replace_substring_regex(text, r" ?(UTC|utc|Z|z)$", "+00:00")
    has_zone = pc.match_substring_regex(text, r"T[\d:.]+ ?[+-]\d\d(:?\d\d)?$")
    if any_true(has_zone):
        text = pc.replace_substring_regex(text, r" ?([+-]\d\d)$", r"\1:00")
        text = pc.replace_substring_regex(text, r" ([+-]\d\d:?\d\d)$", r"\1")
        text = pc.if_else(has_zone, text, pc.binary_join_element_wise(text, "+00:00", ""))
        return pc.cast(pc.cast(text, pa.timestamp("us", tz="UTC")), target)
    return pc.cast(pc.cast(text, pa.timestamp("us")), pa.timestamp("us", tz="UTC")).cast(target)


def try_cast_array(value, target: pa.DataType):
    """TRY_CAST: the cast, with NULL for each value that does not convert. The values that
    do convert get CAST's answer (rounded as CAST rounds): the ones that do not are found by
    a vectorized test of the value and set to NULL, then CAST converts the rest. Only when
    that test cannot tell is each value converted by Polars' lenient cast, whose rules
    differ (it truncates 1.5 to 1 where CAST gives 2)."""
    try:
        return cast_array(value, target)
    except RuntimeFailure:
        pass
    if isinstance(value, pa.Scalar):
        if _nested(value.type, target):
            return try_cast_array(pa.array([value.as_py()], type=value.type), target)[0]
        return pa.scalar(None, type=target)
    if isinstance(value, pa.ChunkedArray):
        value = value.combine_chunks()
    if _nested(value.type, target):  # NULL for each field or element that does not convert
        return _cast_nested(value, target, try_cast_array)
    fits = _numeric_fits(value, target)
    if fits is None and is_text(value.type) and _temporal(target):
        fits = timestamp_text_fits(pc.utf8_trim(value, characters=" \t\n\r"))
    if fits is not None:
        try:
            return cast_array(pc.if_else(fits, value, pa.scalar(None, value.type)), target)
        except RuntimeFailure:
            pass
    return _lenient_cast(value, target)


def _numeric_fits(value: pa.Array, target: pa.DataType) -> pa.Array | None:
    """Whether each number converts to the numeric ``target`` under CAST's rules (after
    its rounding), or None for other casts."""
    source = value.type
    if not (is_numeric(source) and is_numeric(target)):
        return None
    if pa.types.is_floating(target):
        if pa.types.is_float64(source) and pa.types.is_float32(target):
            big = pc.greater(pc.abs(value), 3.4028234663852886e38)
            return pc.invert(pc.and_(big, pc.is_finite(value)))
        return pc.is_valid(value)
    if pa.types.is_integer(target):
        bits = target.bit_width
        low, high = (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1) if pa.types.is_signed_integer(
            target) else (0, 2 ** bits - 1)
        scale = 0
    else:  # decimal(p, s): |x| after rounding to s digits below 10^(p - s)
        high = 10 ** (target.precision - target.scale) - 1
        low, scale = -high, target.scale
    if pa.types.is_floating(source):
        # rounding to `scale` digits overflows (an Arrow error) far past the bounds: such
        # values, and NaN and infinities, do not fit and are rounded as 0
        near = pc.and_(pc.is_finite(value),
                       pc.less_equal(pc.abs(value), float(max(-low, high)) + 2))
        rounded = pc.round(pc.if_else(near, value, 0.0), ndigits=scale,
                           round_mode="half_to_even" if pa.types.is_integer(target)
                           else "half_towards_infinity")
        return pc.and_(near, pc.and_(
            pc.greater_equal(rounded, float(low) - (1 if scale == 0 else 0.5 * 10 ** -scale)),
            pc.less(rounded, float(high) + 1)))
    if pa.types.is_decimal(source):
        if source.scale > scale:
            value = round_decimal(value, scale)
        t = value.type
        if len(str(high)) + t.scale > 37:
            return pc.is_valid(value)
        bound = pa.decimal128(len(str(high)) + t.scale + 1, t.scale)
        return pc.and_(pc.greater_equal(value, pa.scalar(decimal.Decimal(low), bound)),
                       pc.less_equal(value, pa.scalar(decimal.Decimal(high), bound)))
    # an integer source: bounds clipped to its own range
    info_low = -(2 ** (source.bit_width - 1)) if pa.types.is_signed_integer(source) else 0
    info_high = 2 ** (source.bit_width - (1 if pa.types.is_signed_integer(source) else 0)) - 1
    low, high = max(low, info_low), min(high, info_high)
    if low > high:
        return pc.is_null(value)  # nothing fits (all NULL)
    return pc.and_(pc.greater_equal(value, pa.scalar(low, source)),
                   pc.less_equal(value, pa.scalar(high, source)))


def _lenient_cast(value: pa.Array, target: pa.DataType) -> pa.Array:
    import polars as pl

    source = value.type
    if is_text(source):
        value = pc.utf8_trim(value, characters=" \t\n\r")
    if is_text(source) and _temporal(target):
        parsed = polars_eval(lambda c: c.str.to_datetime(time_zone="UTC", strict=False,
                                                         time_unit="us"),
                             [value], TIMESTAMP)
        return cast_array(parsed, target)
    if is_text(source) and pa.types.is_time(target):
        return pc.cast(_text_to_time(pc.cast(value, pa.string()), strict=False), target)
    if is_text(source) and pa.types.is_duration(target):
        from caudal.plan.functions.intervals import parse_intervals

        return parse_intervals(value, strict=False)
    if is_text(source) and pa.types.is_boolean(target):
        lowered = pc.utf8_lower(value)
        true = pc.is_in(lowered, pa.array(["t", "true", "yes", "y", "on", "1"]))
        false = pc.is_in(lowered, pa.array(["f", "false", "no", "n", "off", "0"]))
        return pc.if_else(true, True, pc.if_else(false, False, pa.scalar(None, pa.bool_())))
    pl_type = pl.from_arrow(pa.array([], type=target)).dtype
    return polars_eval(lambda c: c.cast(pl_type, strict=False), [value], target)


register("cast", lambda name, args: _no_bind(), lambda args, call: cast_array(args[0], call.dtype),
         "CAST(x AS type), x::type", internal=True)
register("try_cast", lambda name, args: _no_bind(),
         lambda args, call: try_cast_array(args[0], call.dtype),
         "TRY_CAST(x AS type) -> NULL when x does not convert", internal=True)


def _no_bind():
    raise BindError("CAST is written CAST(x AS type) or x::type")

