"""Reading ``SET name = value`` settings that planning depends on.

A duration is written as caudal durations (``500ms``, ``1s``, ``2h``) or as SQL interval text
(``'1 hour'``, ``'30 minutes'``); a bad value is a planning error naming the setting.
"""

from __future__ import annotations

from typing import Any

from caudal.durations import parse_duration_us, require_unit
from caudal.errors import CaudalError, PlanError

#: Flink's names of settings caudal has under its own name
ALIASES = {"table.exec.state.ttl": "updating_ttl"}
#: every setting a SET may name: another name is refused, not ignored (a Flink script's
#: SET 'table.local-time-zone' was taken silently and changed nothing; it is now taken
#: when it is UTC: check_setting)
KNOWN = ("updating_flush", "updating_ttl", "allow_unkeyed_join")

_TRUE = {"true", "1", "yes", "on"}
_FALSE = {"false", "0", "no", "off"}


def spelled_name(target: Any) -> str:
    """The name a ``SET name = …`` names, as spelled: dotted names whole
    (``SET table.exec.state.ttl``, quoted or not), lower case."""
    from sqlglot import exp

    if isinstance(target, exp.Column):
        return ".".join(part.name for part in target.parts).lower()
    return target.name.lower()


def setting_name(target: Any) -> str:
    """The setting a ``SET name = …`` sets: its spelled name, Flink's names mapped to
    caudal's (``ALIASES``)."""
    name = spelled_name(target)
    return ALIASES.get(name, name)


def check_flink_value(spelled: str, text: str, line: int | None) -> None:
    """A Flink-named setting's duration carries its unit (every alias is a duration:
    caudal.durations.require_unit)."""
    if spelled in ALIASES:
        try:
            require_unit(text, f"SET {spelled}")
        except CaudalError as e:
            raise PlanError(e.message, line=line, col=1, hint=e.hint) from None


#: Flink's session time zone, and the values that name caudal's only zone (Java's ZoneId)
TIME_ZONE = "table.local-time-zone"
_UTC = {"utc", "gmt", "z", "zulu", "universal", "uct", "etc/utc", "etc/gmt", "etc/uct",
        "etc/universal", "etc/zulu", "+00:00", "utc+00:00", "gmt+00:00", "utc0", "gmt0",
        "etc/gmt0", "etc/gmt+0", "etc/gmt-0"}


def check_setting(name: str, line: int | None, col: int | None, value: str = "") -> None:
    """Refuse a SET of a name caudal does not read, in one line. Flink's
    ``table.local-time-zone`` is taken when it is UTC, the zone caudal reads and writes
    every time in; another zone is refused."""
    if name == TIME_ZONE:
        if value.strip().lower() in _UTC:
            return
        raise PlanError(f"SET {TIME_ZONE} = '{value}': caudal reads, windows and writes "
                        "every time in UTC (TIMESTAMP_LTZ too), so this zone would not apply",
                        line=line, col=col, hint=f"remove the SET, or SET '{TIME_ZONE}' = "
                                                 "'UTC'; shift times explicitly, e.g. "
                                                 "ts + INTERVAL '8' HOUR")
    if name not in KNOWN:
        raise PlanError(f"SET {name}: caudal has no such setting, and would ignore it",
                        line=line, col=col,
                        hint=f"settings: {', '.join(KNOWN)} (Flink's table.exec.state.ttl is "
                             "updating_ttl); remove the SET")
    # the value too, here: the operator reading it named its own query's line, and a job
    # without one took any value
    try:
        if name == "updating_flush":
            flush_setting({name: value})
        elif name == "updating_ttl":
            duration_setting({name: value}, name, None)
        elif name == "allow_unkeyed_join":
            bool_setting({name: value}, name)
    except PlanError as e:
        raise PlanError(e.message, line=line, col=col, hint=e.hint) from None


def duration_setting(settings: dict[str, Any], name: str, default: int | None) -> int | None:
    """The setting ``name`` in microseconds, or ``default`` when it is not set."""
    raw = settings.get(name)
    if raw is None:
        return default
    text = str(raw).strip().strip("'")
    if text.lower() in ("none", "off", ""):
        return None
    try:
        return parse_duration_us(text, name)
    except CaudalError:
        pass
    from caudal.plan.functions.intervals import parse_interval

    try:
        return parse_interval(text)
    except CaudalError:
        raise PlanError(f"SET {name} = {raw!r} is not a duration",
                        hint="write e.g. '1s', '500ms' or '1 hour'") from None


def flush_setting(settings: dict[str, Any]) -> int:
    """``updating_flush`` in microseconds (default 1 s; 0: after every batch). 'off' is
    refused in one line: updating operators need a flush interval (it failed inside the
    planner with a TypeError)."""
    from caudal.plan.updating_nodes import DEFAULT_FLUSH_US

    value = duration_setting(settings, "updating_flush", DEFAULT_FLUSH_US)
    if value is None:
        raise PlanError(f"SET updating_flush = {settings.get('updating_flush')!r} is not "
                        "accepted: updating results are emitted at an interval",
                        hint="a duration such as '1s' or '100ms', or '0' to emit after "
                             "every batch")
    return value


def bool_setting(settings: dict[str, Any], name: str, default: bool = False) -> bool:
    raw = settings.get(name)
    if raw is None:
        return default
    text = str(raw).strip().strip("'").lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise PlanError(f"SET {name} = {raw!r} is not a boolean", hint="write true or false")
