"""Which connector names exist, and their source and sink classes (imported lazily).

Each connector module defines ``SOURCE`` and/or ``SINK`` (subclasses of Source/Sink), each with
an ``OPTIONS`` dict of option name -> one-line description, used to reject unknown options
(and optionally ``OPTION_PREFIXES``: families passed through, such as Kafka's ``properties.``).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from caudal.errors import ConfigError

if TYPE_CHECKING:  # annotations only: the registry stays light to import (start-up time)
    from collections.abc import Iterable

    from caudal.connectors.base import LookupSource, Sink, Source
    from caudal.plan.physical import PhysicalGraph
    from caudal.plan.tables import TableSpec

#: connector name -> module that implements it
CONNECTORS = {
    "filesystem": "caudal.connectors.filesystem",
    "nexmark": "caudal.connectors.nexmark",
    "impulse": "caudal.connectors.impulse",
    "stdout": "caudal.connectors.stdout",
    "blackhole": "caudal.connectors.blackhole",
    "kafka": "caudal.connectors.kafka",
    "upsert-kafka": "caudal.connectors.upsert_kafka",
    "postgres": "caudal.connectors.postgres",
    "postgres-cdc": "caudal.connectors.postgres_cdc",
    "python": "caudal.connectors.python",
    "nats": "caudal.connectors.nats",
    "redis": "caudal.connectors.redis",
    "webhook": "caudal.connectors.webhook",
    "http": "caudal.connectors.http_ingest",
    "rabbitmq": "caudal.connectors.rabbitmq",
    "mqtt": "caudal.connectors.mqtt",
    "polling_http": "caudal.connectors.polling_http",
    "sse": "caudal.connectors.sse",
    "websocket": "caudal.connectors.websocket",
}

#: connectors for caudal's own tools (benchmarks), registered by them and not offered to
#: users in error hints or the SQL reference
INTERNAL = {"bench", "replay", "python"}


def public_connectors() -> list[str]:
    """The connector names users are told about, sorted."""
    return sorted(name for name in CONNECTORS if name not in INTERNAL)


#: options every table accepts, whatever its connector
COMMON_OPTIONS = {
    "connector": "the connector's name",
    "bad_data": "what to do with a malformed record: fail (default) or drop",
    "event_time_field": "column holding event time (instead of a WATERMARK clause)",
    "watermark_delay": "how far behind the latest event time the watermark trails, e.g. 1s",
    "idle_timeout": "after this long without data an input stops holding the watermark back",
    "late_data": "where late rows go (docs/sql-windows.md): drop (default) or side:<table>",
    "type": "source or sink: how the table is used (optional; checked when given)",
}


def _module(table: TableSpec):
    name = table.connector
    if name not in CONNECTORS:
        raise ConfigError(f"unknown connector {name!r} in table {table.name!r}",
                          line=table.line, hint="accepted: " + ", ".join(public_connectors()))
    return importlib.import_module(CONNECTORS[name])


def source_class(table: TableSpec) -> type[Source]:
    cls = getattr(_module(table), "SOURCE", None)
    if cls is None:
        raise ConfigError(f"connector {table.connector!r} cannot be read from (table "
                          f"{table.name!r} is used as a source)", line=table.line)
    return cls


def any_unbounded(tables: Iterable[TableSpec]) -> bool:
    """True when some source among ``tables`` never ends by itself (a Kafka topic, a
    generator without a count of events)."""
    for table in tables:
        try:
            if not source_class(table)(table).bounded:
                return True
        except Exception:  # noqa: BLE001 - a source that cannot tell: assume it ends
            continue
    return False


def reads_changelog(table: TableSpec) -> bool:
    """True when the connector's source always reads a changelog (CDC)."""
    if table.connector not in CONNECTORS:
        return False
    return bool(getattr(getattr(_module(table), "SOURCE", None), "CHANGELOG", False))


def table_is_changelog(table: TableSpec) -> bool:
    """True when a source table is read in a changelog format (``format = 'debezium_json'``)
    or by a connector that reads changes (``postgres-cdc``). The planner reads the answer
    from ``TableSpec.changelog``, which sql.planner sets from this."""
    if reads_changelog(table):
        return True
    name = table.option("format")
    if not name:
        return False
    from caudal import formats

    if name not in formats.FORMATS:
        return False
    return bool(getattr(formats.get(name), "CHANGELOG", False))


def row_fetcher(table: TableSpec) -> type:
    """The class that reads a table's columns back by row locator (TableSpec.late_columns);
    only for connectors whose source ``locates_rows``."""
    return _module(table).ROW_FETCHER


def lookup_class(table: TableSpec) -> type[LookupSource] | None:
    """The connector's LookupSource (rows looked up by key), or None if it has none."""
    return getattr(_module(table), "LOOKUP", None)


#: connectors whose tables a lookup join may read whole: bounded ones
LOOKUP_CONNECTORS = ("filesystem",)


def lookup_mode(table: TableSpec) -> str | None:
    """How a lookup join reads ``table``: 'key' (its connector looks rows up by key, a
    LookupSource: a database), 'whole' (a bounded table read whole), or None (it cannot)."""
    if lookup_class(table) is not None:
        return "key"
    return "whole" if table.connector in LOOKUP_CONNECTORS else None


def sink_class(table: TableSpec) -> type[Sink]:
    cls = getattr(_module(table), "SINK", None)
    if cls is None:
        raise ConfigError(f"connector {table.connector!r} cannot be written to (table "
                          f"{table.name!r} is used as a sink)", line=table.line)
    return cls


def sink_tables(graph: PhysicalGraph) -> list[TableSpec]:
    """The tables a dataflow writes, once each: two INSERTs into one table are two sink
    vertices, and two tables with the same connector and options are one target."""
    seen: set[tuple[str, str]] = set()
    out = []
    for v in graph.vertices:
        if v.sink is None:
            continue
        key = (v.sink.connector, repr(sorted(v.sink.options.items())))
        if key not in seen:
            seen.add(key)
            out.append(v.sink)
    return out


def prepare_sinks(graph: PhysicalGraph, resuming: bool) -> None:
    """Let every sink table check or clear its target before the job starts (Sink.prepare):
    a run from scratch (``resuming`` False) or from the job's own checkpoint."""
    for table in sink_tables(graph):
        sink_class(table).prepare(table, resuming)


def check_options(table: TableSpec, cls: type) -> None:
    """Reject options the connector does not know, naming the ones it does."""
    accepted = dict(COMMON_OPTIONS)
    accepted.update(getattr(cls, "OPTIONS", {}))
    if "format" in accepted:  # the chosen format's own options (json.timestamp_format, …)
        from caudal import formats

        chosen = table.options.get("format")
        # a connector's alias of a file format (Kafka's debezium-json); names that are not
        # file formats are the connector's own (stdout's table, Kafka's raw_string)
        chosen = getattr(cls, "FORMAT_ALIASES", {}).get(chosen, chosen)
        if chosen is None or chosen in formats.FORMATS:
            accepted.update(formats.options_of(chosen))
    prefixes = getattr(cls, "OPTION_PREFIXES", ())
    for key in table.options:
        if key not in accepted and not key.startswith(prefixes):
            raise ConfigError(
                f"unknown option {key!r} for connector {table.connector!r} in table "
                f"{table.name!r}", line=table.line,
                hint="accepted: " + ", ".join(sorted(accepted)))
    policy = table.options.get("bad_data", "fail")
    if policy not in ("fail", "drop"):
        raise ConfigError(f"bad_data = {policy!r} in table {table.name!r}", line=table.line,
                          hint="accepted: fail, drop")
    # checked here too, not only by the windows that use them: a query without a window
    # took late_data = 'keep' and idle_timeout = 'x' silently
    late = table.options.get("late_data", "drop")
    if late != "drop" and not late.startswith("side:"):
        raise ConfigError(f"late_data = {late!r} in table {table.name!r}", line=table.line,
                          hint="accepted: drop, side:<table>")
    for key in ("idle_timeout", "connect_timeout"):   # (connect_timeout: read on connecting)
        if key in table.options:
            from caudal.durations import parse_duration_s

            try:
                parse_duration_s(table.options[key], key)
            except ConfigError as e:
                raise e.with_position(table.line, None) from None
    _check_type(table, cls)


def _check_type(table: TableSpec, cls: type) -> None:
    """Arroyo's ``type = 'source' | 'sink'``: optional, since the use of a table says what it
    is; when given it must agree with that use."""
    declared = table.options.get("type")
    if declared is None:
        return
    from caudal.connectors.base import Sink

    used_as = "sink" if issubclass(cls, Sink) else "source"
    if declared.strip().lower() not in ("source", "sink"):
        raise ConfigError(f"option type = {declared!r} of table {table.name!r}",
                          line=table.line, hint="accepted: source, sink")
    if declared.strip().lower() != used_as:
        raise ConfigError(f"table {table.name!r} is declared type = {declared!r} but is used "
                          f"as a {used_as}", line=table.line,
                          hint=f"set type = '{used_as}' or drop the option")


def check_metadata(table: TableSpec, cls: type, writing: bool = False) -> None:
    """Reject metadata keys the connector does not supply (or, for a sink, write), naming
    the ones it does. A sink ignores VIRTUAL metadata columns (they are read only)."""
    accepted = getattr(cls, "METADATA_KEYS", {})
    for column, key in table.metadata.items():
        if writing and column in table.virtual:
            continue
        if key not in accepted:
            what = "write" if writing else "supply"
            hint = ("accepted: " + ", ".join(sorted(accepted))) if accepted else \
                f"connector {table.connector!r} has no metadata"
            if writing and not accepted:
                hint += "; declare the column METADATA VIRTUAL to only read it"
            raise ConfigError(
                f"connector {table.connector!r} cannot {what} metadata {key!r} (column "
                f"{column!r} of table {table.name!r})", line=table.line, hint=hint)
