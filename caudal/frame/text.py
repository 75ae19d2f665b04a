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
    that was written instead (``op``: a method's name, or its call as written), in the frame API's words (``python_words``)."""
    import re

    message = re.sub(r"(in )?table '_f\d+'(: )?", "", e.message)
    message = re.sub(r"'?\b_f\d+\b'?", "the input", message)
    said = op if op and op.endswith(")") else f"{op or frame.op}()"
    return type(e)(f"{said}: {python_words(message)}",
                   hint=python_hint(e.hint))


#: the CLI's run flags that are a frame's run options of the same name (``fresh=True``…)
_VALUE_FLAGS = "parallelism|from-epoch|max-restarts|batch-rows"
_NAME_FLAGS = "checkpoint-dir|checkpoint-interval|max-restarts|batch-rows|linger|address"


def python_words(text: str) -> str:
    """A message written for ``caudal run`` (``--fresh``, ``--checkpoint-dir DIR``…) as a
    frame user would write it: the run options of collect/stream/write_* (``fresh=True``,
    ``checkpoint_dir``…). Users of the Python API never typed a flag."""
    import re

    text = re.sub(r"--fresh\b", "fresh=True", text)
    text = text.replace("a --udf file or an importable module", "an importable module")
    text = re.sub(rf"--({_VALUE_FLAGS}) (\d+)\b",
                  lambda m: f"{m.group(1).replace('-', '_')}={m.group(2)}", text)
    text = re.sub(r"--runtime (local|ray)\b", r'runtime="\1"', text)
    return re.sub(rf"--({_NAME_FLAGS})\b", lambda m: m.group(1).replace("-", "_"), text)


def python_hint(hint: str | None) -> str | None:
    """A hint in the frame API's words: the SQL DDL's ``WATERMARK FOR`` is a source's
    ``event_time=`` (``cd.read_parquet(path, event_time=…)``), run flags run options."""
    import re

    if hint is None:
        return None
    m = re.match(r"declare WATERMARK FOR (\w+)?", hint)
    if m is None:
        return python_words(hint.replace("add a CAST(... AS type)",
                                         "cast one side, e.g. .cast(\"BIGINT\"),"))
    column = m.group(1) or "ts"
    said = (f"give the source its event time: event_time={column!r} (and watermark_delay=), "
            f"e.g. cd.read_parquet(path, event_time={column!r})")
    if "ORDER BY that column" in hint:
        said += ", and order_by= that column"
    return said
