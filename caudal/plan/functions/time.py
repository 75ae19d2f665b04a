"""Date and time functions: date_trunc, extract/date_part, to_timestamp, to_char, to_date,
make_date, make_timestamp, now().

Timestamps are UTC microseconds, so every field is read in UTC (PostgreSQL with
``TimeZone = 'UTC'``). now() is the processing time of the batch being computed.
"""

from __future__ import annotations

import datetime as dt
import re
import threading
import weakref

import pyarrow as pa

from caudal import compute as pc
from caudal.errors import RuntimeFailure
from caudal.plan.expressions import Call, Expr
from caudal.plan.functions.casts import cast_array, naive_utc
from caudal.plan.functions.coerce import arity, cast, constant_value
from caudal.plan.functions.kernels import any_true, null_of, polars_eval
from caudal.plan.functions.registry import BindError, register
from caudal.plan.functions.strings import raise_signature
from caudal.types import TIMESTAMP, is_numeric, is_text

F64 = pa.float64()


def _temporal(t: pa.DataType) -> bool:
    return pa.types.is_timestamp(t) or pa.types.is_date(t)


# ---- date_trunc -------------------------------------------------------------------------

_TRUNC_UNITS = {
    "microsecond": ("microsecond", 1), "microseconds": ("microsecond", 1),
    "millisecond": ("millisecond", 1), "milliseconds": ("millisecond", 1),
    "second": ("second", 1), "minute": ("minute", 1), "hour": ("hour", 1),
    "day": ("day", 1), "week": ("week", 1), "month": ("month", 1),
    "quarter": ("quarter", 1), "year": ("year", 1), "decade": ("year", 10),
    "century": ("century", 100), "millennium": ("century", 1000),
}


def _bind_date_trunc(name: str, args: list[Expr]) -> Call:
    arity(name, args, 2)
    unit_arg, value = args
    if not is_text(unit_arg.dtype) or not (_temporal(value.dtype)
                                           or pa.types.is_null(value.dtype)):
        raise_signature(name, args)
    unit = str(constant_value(unit_arg, name, "unit")).lower()
    unit = unit[:-1] if unit.endswith("s") and unit[:-1] in _TRUNC_UNITS else unit
    if unit not in _TRUNC_UNITS:
        raise BindError(f"date_trunc() does not know unit {unit!r}",
                        hint="units: " + ", ".join(k for k in _TRUNC_UNITS if not k.endswith("s")))
    return Call(TIMESTAMP, "date_trunc", (cast(value, TIMESTAMP),), {"unit": unit})


def _date_trunc(args, call):
    value = args[0]
    unit, multiple = _TRUNC_UNITS[call.options["unit"]]
    if unit == "century":
        # centuries and millennia start at year 1, 101, ..., 2001 as in PostgreSQL
        def expr(ts):
            import polars as pl

            start = ((ts.dt.year() - 1) // multiple) * multiple + 1
            return pl.datetime(start, 1, 1, time_unit="us", time_zone="UTC")

        return polars_eval(expr, [value], TIMESTAMP)
    floored = pc.floor_temporal(naive_utc(value), multiple=multiple, unit=unit,
                                week_starts_monday=True)
    return floored.cast(TIMESTAMP)


register("date_trunc", _bind_date_trunc, _date_trunc,
         "date_trunc(unit, timestamp) -> timestamp (unit: microsecond ... millennium)")

# ---- extract / date_part ------------------------------------------------------------------

_FIELD_ALIASES = {
    "years": "year", "yr": "year", "yrs": "year", "y": "year", "months": "month",
    "mon": "month", "mons": "month", "days": "day", "d": "day", "hours": "hour", "h": "hour",
    "minutes": "minute", "min": "minute", "m": "minute", "seconds": "second", "sec": "second",
    "s": "second", "milliseconds": "millisecond", "ms": "millisecond",
    "microseconds": "microsecond", "us": "microsecond", "dayofweek": "dow",
    "dayofweekiso": "isodow", "dayofyear": "doy", "weekofyear": "week", "weeks": "week",
    "quarters": "quarter", "decades": "decade", "centuries": "century",
    "millenniums": "millennium", "millennia": "millennium", "epoch_second": "epoch",
}
_INT_FIELDS = {"year", "month", "day", "hour", "minute", "microsecond", "dow", "isodow",
               "doy", "week", "isoyear", "quarter", "decade", "century", "millennium"}
_FLOAT_FIELDS = {"second", "millisecond", "epoch"}
_INTERVAL_FIELDS = {"epoch", "day", "hour", "minute", "second", "millisecond", "microsecond"}


def _bind_date_part(name: str, args: list[Expr]) -> Call:
    arity(name, args, 2)
    field_arg, value = args
    if not is_text(field_arg.dtype):
        raise_signature(name, args)
    field = str(constant_value(field_arg, name, "field")).lower()
    field = _FIELD_ALIASES.get(field, field)
    t = value.dtype
    if pa.types.is_duration(t):
        if field not in _INTERVAL_FIELDS:
            raise BindError(f"extract() cannot read {field!r} of an interval",
                            hint="fields of intervals: " + ", ".join(sorted(_INTERVAL_FIELDS)))
    elif not (_temporal(t) or pa.types.is_null(t)):
        raise_signature(name, args)
    elif field not in _INT_FIELDS | _FLOAT_FIELDS:
        raise BindError(f"extract() does not know field {field!r}",
                        hint="fields: " + ", ".join(sorted(_INT_FIELDS | _FLOAT_FIELDS)))
    dtype = F64 if field in _FLOAT_FIELDS else pa.int64()
    source = value if pa.types.is_duration(t) else cast(value, TIMESTAMP)
    return Call(dtype, "date_part", (source,), {"field": field})


def _micros_of_minute(ts):
    """In integers: a timestamp past 2^53 µs (year 2255) has no exact DOUBLE."""
    micros = pc.cast(ts, pa.int64())
    rest = pc.subtract(micros, pc.multiply(pc.divide(micros, 60_000_000), 60_000_000))
    return pc.if_else(pc.less(rest, 0), pc.add(rest, 60_000_000), rest)


def _double(micros):
    """The nearest DOUBLE (Arrow's safe cast refuses an integer past 2^53 µs)."""
    return pc.cast(micros, options=pc.CastOptions(F64, allow_float_truncate=True))


def _date_part(args, call):
    value = args[0]
    field = call.options["field"]
    if pa.types.is_duration(value.type):
        return _interval_part(value, field)
    value = naive_utc(value)
    if field == "epoch":
        return pc.divide(_double(pc.cast(value, pa.int64())), 1e6)
    if field in ("second", "millisecond", "microsecond"):
        micros = _micros_of_minute(value)
        if field == "microsecond":
            return micros
        return pc.divide(pc.cast(micros, F64), 1e6 if field == "second" else 1e3)
    if field == "dow":
        return pc.day_of_week(value, count_from_zero=True, week_start=7)
    if field == "isodow":
        return pc.day_of_week(value, count_from_zero=False, week_start=1)
    if field in ("decade", "century", "millennium"):
        year = pc.year(value)
        if field == "decade":
            return pc.cast(pc.floor(pc.divide(pc.cast(year, F64), 10)), pa.int64())
        size = 100 if field == "century" else 1000
        return pc.cast(pc.ceil(pc.divide(pc.cast(year, F64), size)), pa.int64())
    kernel = {"year": pc.year, "month": pc.month, "day": pc.day, "hour": pc.hour,
              "minute": pc.minute, "doy": pc.day_of_year, "week": pc.iso_week,
              "isoyear": pc.iso_year, "quarter": pc.quarter}[field]
    return pc.cast(kernel(value), pa.int64())


def _interval_part(value, field):
    """Fields of a fixed-length interval: whole days, then hours of the day, and so on
    (PostgreSQL keeps days apart from hours; caudal's intervals have no separate days)."""
    micros = pc.cast(value, pa.int64())
    if field == "epoch":
        return pc.divide(_double(micros), 1e6)
    sign = pc.sign(micros)
    total = pc.abs(micros)
    unit = {"day": 86_400_000_000, "hour": 3_600_000_000, "minute": 60_000_000}
    if field in unit:
        whole = pc.divide(total, unit[field])
        if field != "day":
            whole = pc.subtract(whole, pc.multiply(pc.divide(whole, 24 if field == "hour"
                                                             else 60), 24 if field == "hour"
                                                   else 60))
        return pc.cast(pc.multiply(whole, pc.cast(sign, pa.int64())), pa.int64())
    rest = pc.subtract(total, pc.multiply(pc.divide(total, 60_000_000), 60_000_000))
    rest = pc.multiply(rest, pc.cast(sign, pa.int64()))
    if field == "microsecond":
        return pc.cast(rest, pa.int64())
    return pc.divide(pc.cast(rest, F64), 1e6 if field == "second" else 1e3)


register(["date_part", "extract"], _bind_date_part, _date_part,
         "extract(field FROM timestamp | interval), date_part('field', x) -> bigint, or "
         "double for second, millisecond and epoch")

# ---- PostgreSQL format patterns -------------------------------------------------------------

_PATTERNS = [
    ("FMHH24", "%-H"), ("FMHH12", "%-I"), ("FMHH", "%-I"), ("FMDDD", "%-j"), ("FMDD", "%-d"),
    ("FMMM", "%-m"), ("FMMI", "%-M"), ("FMSS", "%-S"), ("FMMonth", "%B"), ("FMDay", "%A"),
    ("HH24", "%H"), ("HH12", "%I"), ("HH", "%I"), ("MI", "%M"), ("SS", "%S"),
    ("MS", "%3f"), ("US", "%6f"), ("YYYY", "%Y"), ("IYYY", "%G"), ("YY", "%y"),
    ("MONTH", "%B"), ("Month", "%B"), ("MON", "%b"), ("Mon", "%b"), ("MM", "%m"),
    ("DDD", "%j"), ("DD", "%d"), ("DAY", "%A"), ("Day", "%A"), ("DY", "%a"), ("Dy", "%a"),
    ("IW", "%V"), ("AM", "%p"), ("PM", "%p"), ("am", "%P"), ("pm", "%P"), ("TZ", "%Z"),
    ("OF", "%:z"),
]
#: numeric patterns PostgreSQL also reads in lower case (yyyy-mm-dd hh24:mi:ss)
_CASELESS = {"FMHH24", "FMHH12", "FMHH", "FMDDD", "FMDD", "FMMM", "FMMI", "FMSS", "HH24",
             "HH12", "HH", "MI", "SS", "MS", "US", "YYYY", "IYYY", "YY", "MM", "DDD", "DD",
             "IW"}
ACCEPTED_PATTERNS = ("YYYY, YY, MM, DD, DDD, HH24, HH12/HH, MI, SS, MS, US, Mon, Month, Dy, "
                     "Day, AM/PM, IW, IYYY, TZ, OF, FM prefix, \"quoted text\"")


def pg_format(pattern: str, parsing: bool = False) -> str:
    """A PostgreSQL to_char/to_timestamp template as a chrono (Polars) format. The template
    is query text, translated once when planning."""
    out, i = [], 0
    while i < len(pattern):
        if pattern[i] == '"':
            end = pattern.find('"', i + 1)
            end = len(pattern) if end < 0 else end
            out.append(pattern[i + 1:end].replace("%", "%%"))
            i = end + 1
            continue
        for token, spec in _PATTERNS:
            piece = pattern[i:i + len(token)]
            if piece == token or (token in _CASELESS and piece.upper() == token):
                if parsing and token in ("MS", "US") and out and out[-1] == ".":
                    out[-1] = "%.f"  # chrono reads any number of fraction digits after '.'
                elif parsing and token in ("MS", "US"):
                    out.append("%f")
                else:
                    out.append(spec)
                i += len(token)
                break
        else:
            out.append("%%" if pattern[i] == "%" else pattern[i])
            i += 1
    return "".join(out)


# ---- to_timestamp, to_date, to_char -----------------------------------------------------


def _java_pattern(template: str) -> bool:
    """Whether a to_timestamp / to_date template is Flink's (Java letters: ``yyyy-MM-dd
    HH:mm:ss.SSS``, ``'T'``) rather than PostgreSQL's. Each sign below is nonsense in a
    PostgreSQL template: ``HH`` (12-hour) with ``mm`` (a month) for minutes, the month twice
    (``MM`` and ``mm``), ``.S…`` after the seconds, a single-quoted literal."""
    return ("'" in template or re.search(r"\.S", template) is not None
            or ("mm" in template and (re.search(r"HH(?!24|12)", template) is not None
                                      or "MM" in template)))


def _bind_template(name: str, template: str | None) -> dict:
    """The chrono format of a constant template (None: NULL), and whether it is Flink's
    (a Java pattern, whose parse failures are NULL as in Flink). A strftime format
    (``'%Y-%m-%d %H:%M:%S'``, Arroyo's and DataFusion's; ``%`` is no field of the other two)
    is taken as it is."""
    if template is None:
        return {"format": None}
    if re.search(r"%[A-Za-z.:+-]", template):
        return {"format": template}
    if _java_pattern(template):
        return {"format": java_format(template, name), "lenient": True}
    return {"format": pg_format(template, parsing=True)}


def _bind_to_timestamp(name: str, args: list[Expr]) -> Call:
    arity(name, args, 1, 2)
    if len(args) == 1:
        if is_text(args[0].dtype):  # Flink's TO_TIMESTAMP(text): NULL when not a timestamp
            return Call(TIMESTAMP, "try_cast", (args[0],))
        if not (is_numeric(args[0].dtype) or pa.types.is_null(args[0].dtype)):
            raise_signature(name, args)
        return Call(TIMESTAMP, "to_timestamp", (cast(args[0], F64),))
    if not all(is_text(a.dtype) or pa.types.is_null(a.dtype) for a in args):
        raise_signature(name, args)
    template = constant_value(args[1], name, "format")
    return Call(TIMESTAMP, "to_timestamp", (cast(args[0], pa.string()),),
                _bind_template(name, template))


def _epoch_micros(micros) -> pa.Array:
    """TIMESTAMP of DOUBLE microseconds, rounded half to even; NaN, infinities and values
    beyond int64 microseconds (~292,000 years) are out of range."""
    micros = pc.round(micros, round_mode="half_to_even")
    if any_true(pc.invert(pc.less(pc.abs(micros), 9.2e18))):
        raise RuntimeFailure("timestamp out of range in to_timestamp()")
    return pc.cast(pc.cast(micros, pa.int64()), TIMESTAMP)


def _to_timestamp(args, call):
    value = args[0]
    if len(call.args) == 1 and "format" not in call.options:
        return _epoch_micros(pc.multiply(value, 1e6))
    fmt = call.options["format"]
    if fmt is None:
        return null_of(TIMESTAMP)
    return _parsed("to_timestamp", value, TIMESTAMP, call.options.get("lenient", False),
                   lambda s, strict: s.str.strip_chars().str.to_datetime(
                       fmt, time_unit="us", time_zone="UTC", strict=strict))


def _parsed(name: str, value, dtype: pa.DataType, lenient: bool, parse) -> pa.Array:
    """Text parsed by ``parse(series, strict)`` (Polars); unless ``lenient``, text that
    does not match is an error naming the first such text."""
    if lenient:
        return polars_eval(lambda s: parse(s, False), [value], dtype)
    try:
        return polars_eval(lambda s: parse(s, True), [value], dtype)
    except Exception as e:  # polars raises its own ComputeError/InvalidOperationError
        reason = f"text does not match the format ({str(e).splitlines()[0]})"
        try:
            text = value.combine_chunks() if isinstance(value, pa.ChunkedArray) else value
            text = text if isinstance(text, pa.Array) else pa.array([text.as_py()], text.type)
            parsed = polars_eval(lambda s: parse(s, False), [text], dtype)
            bad = text.filter(pc.and_(pc.is_valid(text), pc.is_null(parsed)))
        except Exception:  # noqa: BLE001 - the first message then
            bad = None
        if bad is not None and len(bad):
            more = len(bad) - 1
            reason = f"the text {bad[0].as_py()!r} does not match the format" + (
                "" if not more else " (nor does 1 more value)" if more == 1 else
                f" (nor do {more} more values)")
        raise RuntimeFailure(f"{name}(): {reason}",
                             hint=f"format patterns: {ACCEPTED_PATTERNS}") from None


register("to_timestamp", _bind_to_timestamp, _to_timestamp,
         "to_timestamp(seconds since 1970) -> timestamp; to_timestamp(text, format) "
         "(PostgreSQL's template, or Flink's Java pattern); to_timestamp(text) (Flink: NULL "
         "when not a timestamp)")


def _bind_to_timestamp_ltz(name: str, args: list[Expr]) -> Call:
    arity(name, args, 1, 2)
    if not (is_numeric(args[0].dtype) or pa.types.is_null(args[0].dtype)):
        if is_text(args[0].dtype):
            raise BindError("to_timestamp_ltz() takes an epoch number",
                            hint="for text write to_timestamp(text, format)")
        raise_signature(name, args)
    precision = constant_value(args[1], name, "precision") if len(args) == 2 else 3
    if not isinstance(precision, int) or isinstance(precision, bool) \
            or not 0 <= precision <= 9:
        raise BindError(f"to_timestamp_ltz() precision must be 0 to 9, got {precision!r}",
                        hint="the epoch number's unit: 0 seconds, 3 milliseconds (the "
                             "default), 6 microseconds, 9 nanoseconds")
    value = args[0]
    if not pa.types.is_integer(value.dtype):
        value = cast(value, F64)
    elif not pa.types.is_int64(value.dtype):
        value = cast(value, pa.int64())
    return Call(TIMESTAMP, name, (value,), {"precision": precision})


def _to_timestamp_ltz(args, call):
    value, precision = args[0], call.options["precision"]
    if pa.types.is_floating(value.type) or pa.types.is_null(value.type):
        return _epoch_micros(pc.multiply(pc.cast(value, F64), 10.0 ** (6 - precision)))
    if precision > 6:
        divisor = 10 ** (precision - 6)
        micros = pc.divide(value, divisor)  # integer division truncates: checked below
        if any_true(pc.not_equal(pc.multiply(micros, divisor), value)):
            raise RuntimeFailure(f"to_timestamp_ltz(): an epoch value in units of 10^-"
                                 f"{precision} s has digits below a microsecond",
                                 hint="timestamps hold microseconds; divide the value first")
        return pc.cast(micros, TIMESTAMP)
    try:
        return pc.cast(pc.multiply_checked(value, 10 ** (6 - precision)), TIMESTAMP)
    except pa.ArrowInvalid:
        raise RuntimeFailure("timestamp out of range in to_timestamp_ltz()") from None


register("to_timestamp_ltz", _bind_to_timestamp_ltz, _to_timestamp_ltz,
         "to_timestamp_ltz(epoch [, precision]) -> timestamp (Flink): epoch seconds "
         "(precision 0), milliseconds (3, the default), microseconds (6), nanoseconds (9)")


def _bind_to_date(name: str, args: list[Expr]) -> Call:
    arity(name, args, 1, 2)
    if not all(is_text(a.dtype) or pa.types.is_null(a.dtype) for a in args):
        raise_signature(name, args)
    if len(args) == 1:  # Flink's TO_DATE(text): NULL when not a date
        return Call(pa.date32(), "try_cast", (args[0],))
    template = constant_value(args[1], name, "format")
    return Call(pa.date32(), name, (cast(args[0], pa.string()),),
                _bind_template(name, template))


def _to_date(args, call):
    fmt = call.options["format"]
    if fmt is None:
        return null_of(pa.date32())
    return _parsed("to_date", args[0], pa.date32(), call.options.get("lenient", False),
                   lambda s, strict: s.str.strip_chars().str.to_date(fmt, strict=strict))


register("to_date", _bind_to_date, _to_date,
         "to_date(text, format) -> date; to_date(text) (Flink: NULL when not a date)")


def _bind_to_char(name: str, args: list[Expr]) -> Call:
    arity(name, args, 2)
    value, template = args
    if not (_temporal(value.dtype) or pa.types.is_null(value.dtype)) or not is_text(
            template.dtype):
        raise_signature(name, args)
    text = constant_value(template, name, "format")
    return Call(pa.string(), name, (cast(value, TIMESTAMP),),
                {"format": None if text is None else pg_format(text)})


def _to_char(args, call):
    fmt = call.options["format"]
    if fmt is None:
        return null_of(pa.string())
    return polars_eval(lambda ts: ts.dt.to_string(fmt), args, pa.string())


register("to_char", _bind_to_char, _to_char, "to_char(timestamp, format) -> text")

# ---- constructors -------------------------------------------------------------------------


def _bind_make(fn: str, count: int, dtype: pa.DataType):
    def bind(name: str, args: list[Expr]) -> Call:
        arity(fn, args, count)
        for i, a in enumerate(args):
            ok = pa.types.is_integer(a.dtype) or pa.types.is_null(a.dtype) or (
                i == 5 and is_numeric(a.dtype))
            if not ok:
                raise_signature(fn, args)
        coerced = [cast(a, F64 if i == 5 else pa.int64()) for i, a in enumerate(args)]
        return Call(dtype, fn, tuple(coerced))
    return bind


def _make_date(args, call):
    import polars as pl

    try:
        return polars_eval(lambda y, m, d: pl.date(y, m, d), args, pa.date32())
    except pl.exceptions.PolarsError as e:
        raise RuntimeFailure(f"date field value out of range in make_date() "
                             f"({str(e).splitlines()[0]})") from None


def _make_timestamp(args, call):
    import polars as pl

    def expr(y, mo, d, h, mi, s):
        whole = s.floor()
        micros = ((s - whole) * 1_000_000).round(0).cast(pl.Int64)
        return pl.datetime(y, mo, d, h, mi, whole.cast(pl.Int64), micros, time_unit="us",
                           time_zone="UTC")

    try:
        return polars_eval(expr, args, TIMESTAMP)
    except pl.exceptions.PolarsError as e:
        raise RuntimeFailure(f"date/time field value out of range in make_timestamp() "
                             f"({str(e).splitlines()[0]})") from None


register("make_date", _bind_make("make_date", 3, pa.date32()), _make_date,
         "make_date(year, month, day) -> date")
register("make_timestamp", _bind_make("make_timestamp", 6, TIMESTAMP), _make_timestamp,
         "make_timestamp(year, month, day, hour, minute, seconds) -> timestamp")

# ---- processing time ----------------------------------------------------------------------


def _bind_now(dtype: pa.DataType):
    def bind(name: str, args: list[Expr]) -> Call:
        arity(name, args, 0)
        return Call(dtype, name, ())
    return bind


#: per thread: (weak reference to the batch, the clock read for it)
_read = threading.local()


def _now(evals, call, batch):
    """The clock is read once per batch, however many now() calls it evaluates: each call
    reading it anew made ``CURRENT_TIMESTAMP = CURRENT_TIMESTAMP`` false (Flink reads it once
    per record, DuckDB once per query). In the runtime, once per batch a chain is handed
    (caudal.clock.start_batch): every operator of the chain sees a batch of its own, and a
    now() in a subquery must equal one in the query around it. Outside it, by the batch
    (a weak reference, as an id could be a later batch's)."""
    from caudal.clock import batch_now_us, now_us

    us = batch_now_us()
    if us is None:
        held = getattr(_read, "held", None)
        if held is None or held[0]() is not batch:
            held = _read.held = (weakref.ref(batch), now_us())
        us = held[1]
    now = dt.datetime.fromtimestamp(us / 1e6, dt.UTC)
    if pa.types.is_date(call.dtype):
        return pa.scalar(now.date(), pa.date32())
    if pa.types.is_time(call.dtype):
        return pa.scalar(now.time(), call.dtype)
    return pa.scalar(now, TIMESTAMP)


register(["now", "current_timestamp", "localtimestamp"], _bind_now(TIMESTAMP), _now,
         "now() -> timestamp: the processing time of the batch", volatile=True, lazy=True)
register("proctime", _bind_now(TIMESTAMP), _now,
         "proctime() -> timestamp: Flink's processing-time attribute: the processing time "
         "of the batch, and a TUMBLE/HOP/CUMULATE window over it is a processing-time "
         "window", volatile=True, lazy=True)
register("current_date", _bind_now(pa.date32()), _now,
         "current_date -> date: the processing date", volatile=True, lazy=True)
register("current_time", _bind_now(pa.time64("us")), _now,
         "current_time -> time: the processing time of day (UTC)", volatile=True, lazy=True)

# ---- Flink's DATE_FORMAT: Java date-time patterns ------------------------------------------

#: Java pattern letter -> chrono format per run length (timestamps are UTC, so zones print
#: as UTC / +0000 / Z); a letter or run length missing here is refused when planning
_JAVA_FIELDS: dict[str, dict[int, str]] = {
    "y": {1: "%Y", 2: "%y", 3: "%Y", 4: "%Y"}, "u": {1: "%Y", 2: "%y", 3: "%Y", 4: "%Y"},
    "M": {1: "%-m", 2: "%m", 3: "%b", 4: "%B"}, "L": {1: "%-m", 2: "%m", 3: "%b", 4: "%B"},
    "d": {1: "%-d", 2: "%d"}, "D": {1: "%-j", 3: "%j"},
    "H": {1: "%-H", 2: "%H"}, "h": {1: "%-I", 2: "%I"},
    "m": {1: "%-M", 2: "%M"}, "s": {1: "%-S", 2: "%S"},
    "E": {1: "%a", 2: "%a", 3: "%a", 4: "%A"}, "a": {1: "%p"},
    "z": {1: "%Z", 2: "%Z", 3: "%Z"}, "Z": {1: "%z", 2: "%z", 3: "%z"},
    "X": {1: "Z", 2: "Z", 3: "Z"},
}
#: fraction-of-second digits chrono can print (java.time: S per digit, truncated)
_FRACTIONS = {3: "%3f", 6: "%6f", 9: "%9f"}
ACCEPTED_JAVA_PATTERNS = ("yyyy, yy, MM, M, MMM, MMMM, dd, d, DDD, HH, H, hh, h, mm, m, "
                          "ss, s, SSS, SSSSSS, SSSSSSSSS, E, EEEE, a, z, Z, X, 'quoted text'")


def java_format(pattern: str, fn: str = "date_format") -> str:
    """A Java (SimpleDateFormat / DateTimeFormatter) pattern as a chrono format, translated
    once when planning. Letters are fields, ``'…'`` is literal text and ``''`` a quote;
    an unknown letter is refused (Java reserves every letter)."""
    out, i = [], 0
    while i < len(pattern):
        ch = pattern[i]
        if ch == "'":
            if pattern[i + 1:i + 2] == "'":
                out.append("'")
                i += 2
                continue
            end = i + 1
            text = []
            while end < len(pattern):
                if pattern[end] == "'":
                    if pattern[end + 1:end + 2] == "'":
                        text.append("'")
                        end += 2
                        continue
                    break
                text.append(pattern[end])
                end += 1
            if end >= len(pattern):
                raise BindError(f"{fn}(): unclosed quote in pattern {pattern!r}",
                                hint="quote literal text as 'text', a quote as ''")
            out.append("".join(text).replace("%", "%%"))
            i = end + 1
            continue
        if not ch.isalpha():
            out.append("%%" if ch == "%" else ch)
            i += 1
            continue
        run = 1
        while i + run < len(pattern) and pattern[i + run] == ch:
            run += 1
        spec = _FRACTIONS.get(run) if ch == "S" else _JAVA_FIELDS.get(ch, {}).get(run)
        if spec is None:
            raise BindError(f"{fn}() does not know pattern {ch * run!r}",
                            hint=f"accepted: {ACCEPTED_JAVA_PATTERNS}")
        out.append(spec)
        i += run
    return "".join(out)


def _bind_date_format(name: str, args: list[Expr]) -> Call:
    arity(name, args, 2)
    value, template = args
    if not (_temporal(value.dtype) or is_text(value.dtype) or pa.types.is_null(value.dtype)) \
            or not (is_text(template.dtype) or pa.types.is_null(template.dtype)):
        raise_signature(name, args)
    text = constant_value(template, name, "pattern")
    return Call(pa.string(), name, (cast(value, TIMESTAMP),),
                {"format": None if text is None else java_format(text)})


register("date_format", _bind_date_format, _to_char,
         "date_format(timestamp, 'yyyy-MM-dd HH:mm:ss') -> text (Java date-time pattern, "
         "as in Flink)")


# ---- Flink's TIMESTAMPADD / TIMESTAMPDIFF -------------------------------------------------

#: microseconds of the fixed units; MONTH, QUARTER and YEAR count calendar months
_FIXED_UNITS_US = {"second": 1_000_000, "minute": 60_000_000, "hour": 3_600_000_000,
                   "day": 86_400_000_000, "week": 604_800_000_000}
_MONTHS = {"month": 1, "quarter": 3, "year": 12}


def _time_unit(name: str, arg: Expr) -> str:
    unit = str(constant_value(arg, name, "unit")).lower()
    unit = unit.removeprefix("sql_tsi_")
    if unit not in _FIXED_UNITS_US and unit not in _MONTHS:
        raise BindError(f"{name}() does not know unit {unit!r}",
                        hint="SECOND, MINUTE, HOUR, DAY, WEEK, MONTH, QUARTER or YEAR")
    return unit


def _bind_timestampadd(name: str, args: list[Expr]) -> Call:
    arity(name, args, 3)
    unit_arg, count, value = args
    if not is_text(unit_arg.dtype) or not (pa.types.is_integer(count.dtype) or pa.types.is_null(
            count.dtype)) or not (_temporal(value.dtype) or pa.types.is_null(value.dtype)):
        raise_signature(name, args)
    unit = _time_unit(name, unit_arg)
    # a DATE plus days or more stays a DATE (Flink: TIMESTAMPADD(WEEK, 1, DATE '2003-01-02'))
    dtype = pa.date32() if pa.types.is_date(value.dtype) and (
        unit in _MONTHS or unit in ("day", "week")) else TIMESTAMP
    return Call(dtype, name, (cast(count, pa.int64()), cast(value, TIMESTAMP)), {"unit": unit})


def _add_months(ts, months):
    """ts + months calendar months, the day cut to the month's last (Jan 31 + 1 month is
    Feb 28 or 29), as Flink (Java's plusMonths) and DuckDB add them."""
    import polars as pl

    return polars_eval(lambda t, m: t.dt.offset_by(pl.format("{}mo", m)), [ts, months],
                       TIMESTAMP)


def _timestampadd(args, call):
    count, value = args
    unit = call.options["unit"]
    try:
        if unit in _MONTHS:
            out = _add_months(value, pc.multiply_checked(count, _MONTHS[unit]))
        else:
            micros = pc.add_checked(pc.cast(value, pa.int64()),
                                    pc.multiply_checked(count, _FIXED_UNITS_US[unit]))
            out = pc.cast(micros, TIMESTAMP)
    except (pa.ArrowInvalid, OverflowError):
        raise RuntimeFailure("timestamp out of range in timestampadd()") from None
    return cast_array(out, call.dtype) if pa.types.is_date(call.dtype) else out


def _bind_timestampdiff(name: str, args: list[Expr]) -> Call:
    arity(name, args, 3)
    unit_arg, start, end = args
    if not is_text(unit_arg.dtype) or not all(_temporal(a.dtype) or pa.types.is_null(a.dtype)
                                              for a in (start, end)):
        raise_signature(name, args)
    return Call(pa.int64(), name, (cast(start, TIMESTAMP), cast(end, TIMESTAMP)),
                {"unit": _time_unit(name, unit_arg)})


def _timestampdiff(args, call):
    start, end = args
    unit = call.options["unit"]
    a, b = pc.cast(start, pa.int64()), pc.cast(end, pa.int64())
    if unit in _FIXED_UNITS_US:  # whole units between them, toward zero
        return pc.divide(pc.subtract(b, a), _FIXED_UNITS_US[unit])
    # whole months: the most m with lo + m months <= hi (Calcite's subtractMonths), signed
    forward = pc.greater_equal(b, a)
    lo, hi = pc.if_else(forward, start, end), pc.if_else(forward, end, start)
    naive_lo, naive_hi = naive_utc(lo), naive_utc(hi)
    months = pc.subtract(
        pc.add(pc.multiply(pc.year(naive_hi), 12), pc.month(naive_hi)),
        pc.add(pc.multiply(pc.year(naive_lo), 12), pc.month(naive_lo)))
    months = pc.cast(months, pa.int64())
    over = pc.greater(_add_months(lo, months), hi)
    months = pc.subtract(months, pc.cast(over, pa.int64()))
    months = pc.if_else(forward, months, pc.negate(months))
    return pc.divide(months, _MONTHS[unit])


register("timestampadd", _bind_timestampadd, _timestampadd,
         "TIMESTAMPADD(unit, n, timestamp) -> timestamp (Flink): n units later (SECOND ... "
         "WEEK; MONTH, QUARTER, YEAR in calendar months, the day cut to the month's last); "
         "a DATE plus DAY or more is a DATE")
register("timestampdiff", _bind_timestampdiff, _timestampdiff,
         "TIMESTAMPDIFF(unit, t1, t2) -> bigint (Flink): whole units from t1 to t2, signed "
         "(MONTH, QUARTER, YEAR: whole calendar months, as DuckDB's date_sub)")
