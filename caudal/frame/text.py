"""How frames are written as SQL text (quoted names, literal option values, durations),
and how the planner's messages about that text are said in terms of the frame step that
wrote it."""

from __future__ import annotations

from typing import Any

from caudal.errors import CaudalError, PlanError


def quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def string_literal(value: Any) -> str:
    return "'" + str(value).replace("'", "''") + "'"


def options_text(options: dict[str, Any]) -> str:
    return ", ".join(f"{string_literal(k)} = {string_literal(option_text(v))}" for k, v in options.items()
                     if v is not None)


def option_text(value: Any) -> str:
    import datetime as dt

    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dt.timedelta):
        from caudal.durations import format_duration_us

        return format_duration_us(int(value / dt.timedelta(microseconds=1)))
    return str(value)


def duration_us(value: Any, what: str) -> int:
    import datetime as dt

    from caudal.durations import parse_duration_us

    if isinstance(value, dt.timedelta):
        return int(value / dt.timedelta(microseconds=1))
    us = parse_duration_us(value, what)
    if us <= 0:
        raise PlanError(f"{what} must be positive, got {value!r}", hint="e.g. '10s', '500ms'")
    return us


def frame_error(e: CaudalError, frame: Any, op: str | None = None) -> CaudalError:
    """The planner's message without its position (a line of generated SQL): the operation
    that was written instead."""
    import re

    message = re.sub(r"(in )?table '_f\d+'(: )?", "", e.message)
    message = re.sub(r"'?\b_f\d+\b'?", "the input", message)
    return type(e)(f"{op or frame.op}(): {message}", hint=e.hint)
