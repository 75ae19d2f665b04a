"""Reading INTERVAL text ('1 minute', '1 hour 30 minutes', '00:00:10', '2 days 01:00:00').

An INTERVAL is a fixed ``duration[us]`` in caudal (window sizes and watermark delays are
fixed lengths), so months and years, whose length depends on the date, are refused rather
than guessed. Parsing is vectorized with Polars so ``text::interval`` works on columns too.
"""

from __future__ import annotations

import re

import pyarrow as pa

from caudal.errors import RuntimeFailure
from caudal.types import INTERVAL

UNITS = {
    "microsecond": 1, "microseconds": 1, "us": 1, "usec": 1, "usecs": 1,
    "millisecond": 1_000, "milliseconds": 1_000, "ms": 1_000, "msec": 1_000, "msecs": 1_000,
    "second": 1_000_000, "seconds": 1_000_000, "sec": 1_000_000, "secs": 1_000_000,
    "s": 1_000_000,
    "minute": 60_000_000, "minutes": 60_000_000, "min": 60_000_000, "mins": 60_000_000,
    "m": 60_000_000,
    "hour": 3_600_000_000, "hours": 3_600_000_000, "hr": 3_600_000_000,
    "hrs": 3_600_000_000, "h": 3_600_000_000,
    "day": 86_400_000_000, "days": 86_400_000_000, "d": 86_400_000_000,
    "week": 604_800_000_000, "weeks": 604_800_000_000, "w": 604_800_000_000,
}
CALENDAR_UNITS = {"month", "months", "mon", "mons", "year", "years", "y", "yr", "yrs",
                  "decade", "decades", "century", "centuries", "millennium", "millennia"}
ACCEPTED = ("'10 seconds', '1 hour 30 minutes', '2 days', '00:01:30', '1 day 02:00:00'; units "
            "microsecond, millisecond, second, minute, hour, day, week")

_NUMBER = r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)"
_PAIR = rf"({_NUMBER})\s*([a-z]+)"
_CLOCK = r"([+-]?)(\d+):(\d+)(?::(\d+(?:\.\d+)?))?"
_VALID = rf"^(?:{_NUMBER}\s*[a-z]+\s*)*(?:{_CLOCK})?$|^{_NUMBER}$"


def parse_intervals(text: pa.Array, strict: bool = True) -> pa.Array:
    """``duration[us]`` values of interval texts; a text that is not an interval is an error
    (``strict``) or NULL."""
    import polars as pl

    frame = pl.DataFrame({"t": pl.from_arrow(text)}).with_row_index("row")
    s = pl.col("t").str.strip_chars().str.to_lowercase()
    frame = frame.with_columns(s.alias("t"))
    valid = pl.col("t").str.contains(_VALID)
    bare = pl.col("t").str.contains(rf"^{_NUMBER}$")
    clock = pl.col("t").str.extract_groups(_CLOCK)
    frame = frame.with_columns(valid.alias("valid"), bare.alias("bare"), clock.alias("clock"))
    sign = pl.when(pl.col("clock").struct.field("1") == "-").then(-1).otherwise(1)
    clock_us = sign * (
        pl.col("clock").struct.field("2").cast(pl.Float64) * 3_600_000_000
        + pl.col("clock").struct.field("3").cast(pl.Float64) * 60_000_000
        + pl.col("clock").struct.field("4").cast(pl.Float64).fill_null(0) * 1_000_000)
    bare_us = pl.col("t").cast(pl.Float64, strict=False) * 1_000_000
    frame = frame.with_columns(pl.when(pl.col("bare")).then(bare_us)
                               .otherwise(clock_us.fill_null(0)).alias("base"))

    pairs = (frame.select("row", pl.col("t").str.replace(_CLOCK + "$", "")
                          .str.extract_all(_PAIR).alias("p"))
             .explode("p").drop_nulls("p")
             .with_columns(pl.col("p").str.extract(_PAIR, 1).cast(pl.Float64).alias("n"),
                           pl.col("p").str.extract(_PAIR, 2).alias("u")))
    calendar = pairs.filter(pl.col("u").is_in(sorted(CALENDAR_UNITS)))
    if strict and calendar.height:
        raise RuntimeFailure(
            f"interval {calendar['p'][0]!r} has months or years, which have no fixed length",
            hint=f"use days or smaller units: {ACCEPTED}")
    pairs = pairs.with_columns(pl.col("u").replace_strict(UNITS, default=None,
                                                          return_dtype=pl.Float64).alias("m"))
    unknown = pairs.filter(pl.col("m").is_null())
    if strict and unknown.height:
        raise RuntimeFailure(f"invalid interval unit in {unknown['p'][0]!r}",
                             hint=f"accepted: {ACCEPTED}")
    sums = pairs.group_by("row").agg((pl.col("n") * pl.col("m")).sum().alias("units"),
                                     pl.col("m").null_count().alias("bad"))
    frame = frame.join(sums, on="row", how="left").sort("row")
    ok = pl.col("valid") & (pl.col("bad").fill_null(0) == 0)
    if strict:
        bad = frame.filter(pl.col("t").is_not_null() & ~ok.fill_null(False))
        if bad.height:
            raise RuntimeFailure(f"invalid input syntax for type interval: {bad['t'][0]!r}",
                                 hint=f"accepted: {ACCEPTED}")
    total = (pl.col("base") + pl.col("units").fill_null(0)).round(0).cast(pl.Int64)
    out = frame.select(pl.when(ok).then(total).otherwise(None).alias("us"))
    array = out.to_series().to_arrow()
    if isinstance(array, pa.ChunkedArray):
        array = array.combine_chunks()
    return array.cast(pa.int64()).cast(INTERVAL)


def parse_interval(text: str) -> int:
    """Microseconds of one interval literal (plan time): the rules of ``parse_intervals``
    for one text, in plain Python, so planning a window does not import Polars (~0.3 s of
    a job's start)."""
    t = text.strip().lower()
    pairs = [(p.group(0), p.group(1), p.group(2))
             for p in re.finditer(_PAIR, re.sub(_CLOCK + "$", "", t))]
    for whole, _, unit in pairs:  # checked in the order parse_intervals checks them
        if unit in CALENDAR_UNITS:
            raise RuntimeFailure(
                f"interval {whole!r} has months or years, which have no fixed length",
                hint=f"use days or smaller units: {ACCEPTED}")
    for whole, _, unit in pairs:
        if unit not in UNITS:
            raise RuntimeFailure(f"invalid interval unit in {whole!r}",
                                 hint=f"accepted: {ACCEPTED}")
    if not re.match(_VALID, t):
        raise RuntimeFailure(f"invalid input syntax for type interval: {t!r}",
                             hint=f"accepted: {ACCEPTED}")
    if re.fullmatch(_NUMBER, t):
        return round(float(t) * 1_000_000)
    base = 0.0
    clock = re.search(_CLOCK, t)
    if clock is not None:
        sign = -1 if clock.group(1) == "-" else 1
        base = sign * (float(clock.group(2)) * 3_600_000_000 + float(clock.group(3)) *
                       60_000_000 + float(clock.group(4) or 0) * 1_000_000)
    units = sum(float(number) * UNITS[unit] for _, number, unit in pairs)
    return round(base + units)


#: SQL's interval qualifiers ``<start> TO <end>`` (Flink, PostgreSQL): the text each takes
_QUALIFIED = {
    ("day", "hour"): (r"(\d+) +(\d+)", "'d hh'"),
    ("day", "minute"): (r"(\d+) +(\d+):(\d+)", "'d hh:mm'"),
    ("day", "second"): (r"(\d+) +(\d+):(\d+):(\d+(?:\.\d*)?)", "'d hh:mm:ss[.fff]'"),
    ("hour", "minute"): (r"(\d+):(\d+)", "'hh:mm'"),
    ("hour", "second"): (r"(\d+):(\d+):(\d+(?:\.\d*)?)", "'hh:mm:ss[.fff]'"),
    ("minute", "second"): (r"(\d+):(\d+(?:\.\d*)?)", "'mm:ss[.fff]'"),
}
_FIELD_US = {"day": 86_400_000_000, "hour": 3_600_000_000, "minute": 60_000_000,
             "second": 1_000_000}
_FIELD_LIMIT = {"hour": 24, "minute": 60, "second": 60}


def parse_qualified_interval(text: str, start: str, end: str) -> int:
    """Microseconds of ``INTERVAL 'text' start TO end`` (``'1:30' MINUTE TO SECOND`` is 90
    seconds, ``'10 00:00:00.004' DAY TO SECOND`` ten days and 4 ms), with an optional
    leading sign; a field after the first is below its limit (60 minutes, 24 hours)."""
    from decimal import Decimal

    start, end = start.lower(), end.lower()
    qualifier = f"{start.upper()} TO {end.upper()}"
    if start in ("year", "month"):
        raise RuntimeFailure(f"interval '{text}' {qualifier} has months or years, which have "
                             "no fixed length", hint=f"use days or smaller units: {ACCEPTED}")
    if (start, end) not in _QUALIFIED:
        raise RuntimeFailure(f"unknown interval qualifier {qualifier}",
                             hint="DAY TO HOUR, DAY TO MINUTE, DAY TO SECOND, HOUR TO MINUTE, "
                                  "HOUR TO SECOND or MINUTE TO SECOND")
    pattern, shape = _QUALIFIED[(start, end)]
    match = re.fullmatch(rf"\s*([+-]?)\s*{pattern}\s*", text)
    fields = list(_FIELD_US)
    names = fields[fields.index(start):fields.index(end) + 1]
    values = [Decimal(v) for v in match.groups()[1:]] if match else []
    if not match or any(v >= _FIELD_LIMIT[n] for n, v in zip(names[1:], values[1:])):
        raise RuntimeFailure(f"invalid input syntax for interval '{text}' {qualifier}",
                             hint=f"{qualifier} takes {shape}")
    micros = sum(v * _FIELD_US[n] for n, v in zip(names, values))
    micros = int(micros.to_integral_value())  # half to even past microseconds
    return -micros if match.group(1) == "-" else micros
