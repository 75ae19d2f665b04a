"""Durations as users write them: ``500ms``, ``10s``, ``1m``, ``2h``, ``1d`` (and plain seconds),
or with Flink's unit names (``1 min``, ``30 sec``, ``2 hours``)."""

from __future__ import annotations

import re

from caudal.errors import ConfigError

_UNITS_US = {
    "us": 1, "ms": 1_000, "s": 1_000_000, "m": 60_000_000, "h": 3_600_000_000,
    "d": 86_400_000_000,
}
#: Flink's spellings of the units (TimeUtils: '1 min', '30 sec', '2 hours', '10 millis')
_ALIASES = {
    **{a: "us" for a in ("µs", "micro", "micros", "microsecond", "microseconds")},
    **{a: "ms" for a in ("milli", "millis", "millisecond", "milliseconds")},
    **{a: "s" for a in ("sec", "secs", "second", "seconds")},
    **{a: "m" for a in ("min", "mins", "minute", "minutes")},
    **{a: "h" for a in ("hour", "hours")},
    **{a: "d" for a in ("day", "days")},
}
_PATTERN = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([a-zµ]+)?\s*$")


def parse_duration_us(text: str | int | float, what: str = "duration") -> int:
    """Parse a duration into microseconds; a bare number means seconds."""
    if isinstance(text, (int, float)):
        return round(text * 1_000_000)
    match = _PATTERN.match(str(text).lower())
    unit = match and _ALIASES.get(match.group(2) or "s", match.group(2) or "s")
    if not match or unit not in _UNITS_US:
        raise ConfigError(
            f"bad {what} {text!r}", hint="write a number with a unit: 500ms, 10s, 1m, 2h, 1d")
    return round(float(match.group(1)) * _UNITS_US[unit])


def require_unit(text: str | int | float, what: str, line: int | None = None) -> None:
    """Refuse a bare number for an option or setting under Flink's name: Flink reads
    ``'10000'`` as milliseconds, caudal's own names read it as seconds, so either reading
    would be silently wrong for half of the users."""
    match = _PATTERN.match(str(text).lower())
    if match and not match.group(2):
        raise ConfigError(f"{what} = {str(text)!r} has no unit: Flink reads a bare number as "
                          "milliseconds, caudal as seconds", line=line,
                          hint=f"write the unit, e.g. '{text} ms' or '{text} s'")


def parse_duration_s(text: str | int | float, what: str = "duration") -> float:
    """Parse a duration into seconds (float)."""
    return parse_duration_us(text, what) / 1_000_000


def format_duration_us(us: int) -> str:
    """The shortest exact rendering of a duration, e.g. ``10s`` or ``1500ms``."""
    for unit in ("d", "h", "m", "s", "ms"):
        size = _UNITS_US[unit]
        if us and us % size == 0:
            return f"{us // size}{unit}"
    return f"{us}us"
