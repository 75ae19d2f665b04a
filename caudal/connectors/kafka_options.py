"""The options of the ``kafka`` and ``upsert-kafka`` connectors, and the librdkafka client
configuration they make.

Arroyo's option names are canonical; Flink's are accepted as aliases and translated once here
(``properties.bootstrap.servers`` -> ``bootstrap_servers``, ``scan.startup.mode =
'earliest-offset'`` -> ``source.offset = 'earliest'``, …), so the source and sink read one
spelling. Every ``properties.<key>`` option goes to librdkafka as ``<key>``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from caudal.durations import parse_duration_s, require_unit
from caudal.errors import ConfigError, RuntimeFailure
from caudal.plan.tables import TableSpec

#: options passed through to librdkafka (``properties.<librdkafka key>``)
PROPERTIES = "properties."
FORMATS = ("json", "debezium_json", "raw_string", "raw_bytes")
#: Flink's format names -> ours (``raw`` is decided by the column type)
FORMAT_ALIASES = {"debezium-json": "debezium_json", "raw": "raw"}
OFFSET_MODES = {"earliest": "earliest", "latest": "latest", "group": "group",
                "earliest-offset": "earliest", "latest-offset": "latest",
                "group-offsets": "group", "timestamp": "timestamp"}
COMMIT_MODES = {"exactly_once": "exactly_once", "at_least_once": "at_least_once",
                "exactly-once": "exactly_once", "at-least-once": "at_least_once"}
READ_MODES = {"read_committed": "read_committed", "read_uncommitted": "read_uncommitted",
              "read-committed": "read_committed", "read-uncommitted": "read_uncommitted"}

COMMON = {
    "bootstrap_servers": "comma-separated host:port of Kafka brokers (Flink: "
                         "properties.bootstrap.servers)",
    "topic": "the topic to read or write",
    "format": "json (default), debezium_json (a changelog), raw_string or raw_bytes (one "
              "column holds the whole message value); Flink's value.format is an alias",
    "value.format": "alias of format",
    "connect_timeout": "how long to keep trying to reach the brokers before failing "
                       "(default 10s)",
}
SOURCE_OPTIONS = {
    **COMMON,
    "source.offset": "where a job without checkpoint starts: earliest, latest (default) or "
                     "group (the group's committed offsets, else earliest)",
    "scan.startup.mode": "Flink alias of source.offset: earliest-offset, latest-offset, "
                         "group-offsets or timestamp",
    "scan.startup.timestamp-millis": "with scan.startup.mode = 'timestamp': the first "
                                     "message time, ms since the epoch",
    "source.group_id": "consumer group offsets are committed to after each checkpoint "
                       "(for lag monitoring; default caudal-<table>); Flink: "
                       "properties.group.id",
    "source.read_mode": "read_committed (default) or read_uncommitted",
    "scan.bounded.mode": "latest-offset: each partition stops at the offset it had when the "
                         "job started (a bounded job); default unbounded",
    "partition_discovery": "how often to look for partitions added to the topic (default "
                           "10s); Flink: scan.topic-partition-discovery.interval",
    "scan.topic-partition-discovery.interval": "alias of partition_discovery",
}
SINK_OPTIONS = {
    **COMMON,
    "sink.commit_mode": "exactly_once (default: one transaction per checkpoint) or "
                        "at_least_once (flushed at each checkpoint); Flink: "
                        "sink.delivery-guarantee",
    "sink.delivery-guarantee": "Flink alias of sink.commit_mode: exactly-once, at-least-once",
    "sink.transactional_id_prefix": "prefix of the producers' transactional.id (default "
                                    "caudal-<table>-<topic>); one id per subtask",
    "sink.transactional-id-prefix": "Flink alias of sink.transactional_id_prefix",
    "sink.commit_topic": "exactly_once: the topic holding which checkpoint each producer "
                         "committed last (default _caudal_kafka_commits)",
    "key.fields": "columns that make the message key (comma or semicolon separated)",
    "key.format": "json (default: a JSON object of the key columns) or raw_string (one key "
                  "column, as text)",
}
#: Flink's name -> ours
ALIASES = {
    "properties.bootstrap.servers": "bootstrap_servers",
    "value.format": "format",
    "scan.startup.mode": "source.offset",
    "properties.group.id": "source.group_id",
    "properties.isolation.level": "source.read_mode",
    "sink.delivery-guarantee": "sink.commit_mode",
    "sink.transactional-id-prefix": "sink.transactional_id_prefix",
    "scan.topic-partition-discovery.interval": "partition_discovery",
}
#: the aliases whose values are durations (a bare number there is refused: Flink reads it
#: as milliseconds, caudal as seconds)
DURATION_ALIASES = ("scan.topic-partition-discovery.interval",)
#: librdkafka keys caudal sets itself (a properties.<key> of these would break its promises)
OWNED = ("enable.auto.commit", "transactional.id", "enable.partition.eof")


def options(table: TableSpec) -> dict[str, str]:
    """The table's Kafka options under their canonical names (aliases translated)."""
    out: dict[str, str] = {}
    for key, value in table.options.items():
        canonical = ALIASES.get(key, key)
        if key in DURATION_ALIASES:
            require_unit(value, key, table.line)
        if canonical in out and out[canonical] != value:
            raise ConfigError(f"table {table.name!r} sets both {key!r} and "
                              f"{canonical!r}", line=table.line, hint="keep one")
        out[canonical] = value
    return out


def pick(table: TableSpec, key: str, choices: dict[str, str], default: str) -> str:
    raw = options(table).get(key, default)
    value = choices.get(str(raw).strip().lower())
    if value is None:
        raise ConfigError(f"option {key} = {raw!r} of table {table.name!r}", line=table.line,
                          hint="accepted: " + ", ".join(sorted(set(choices))))
    return value


def require(table: TableSpec, key: str, example: str) -> str:
    value = options(table).get(key)
    if not value:
        raise ConfigError(f"kafka table {table.name!r} has no {key!r} option",
                          line=table.line, hint=f"{key} = {example!r}")
    return value


def value_format(table: TableSpec, columns: list[tuple[str, Any]]) -> str:
    """The message value format; Flink's ``raw`` is raw_string for a text column."""
    import pyarrow as pa

    raw = str(options(table).get("format", "json")).strip().lower()
    name = FORMAT_ALIASES.get(raw, raw)
    if name == "raw":
        name = "raw_bytes" if columns and pa.types.is_binary(columns[0][1]) else "raw_string"
    if name not in FORMATS:
        raise ConfigError(f"format = {raw!r} of kafka table {table.name!r}", line=table.line,
                          hint="accepted: " + ", ".join(FORMATS))
    if name.startswith("raw_") and len(columns) != 1:
        raise ConfigError(f"format {name} of table {table.name!r} needs exactly one column "
                          f"(the message value), not {len(columns)}", line=table.line,
                          hint="declare one TEXT (raw_string) or BYTEA (raw_bytes) column "
                               "besides METADATA columns")
    return name


def client_config(table: TableSpec) -> dict[str, Any]:
    """librdkafka configuration: the brokers and every ``properties.*`` option."""
    opts = options(table)
    config: dict[str, Any] = {"bootstrap.servers": require(table, "bootstrap_servers",
                                                           "localhost:9092")}
    # librdkafka's own log lines would repeat each failed attempt on stderr; caudal's calls
    # fail with one line instead (properties.log_level = '6' brings them back)
    config["log_level"] = 0
    for key, value in opts.items():
        if key.startswith(PROPERTIES):
            name = key[len(PROPERTIES):]
            if name in OWNED:
                raise ConfigError(f"option {key!r} of table {table.name!r} is set by caudal",
                                  line=table.line, hint="drop it")
            config[name] = value
    return config



def client(kind: Callable[[dict[str, Any]], Any], config: dict[str, Any],
           table: TableSpec) -> Any:
    """``kind(config)`` (confluent-kafka's Consumer or Producer); settings librdkafka refuses
    (a ``properties.*`` option it does not know, a value of the wrong type, a combination
    it cannot start with) are one line naming the table and librdkafka's reason."""
    from confluent_kafka import KafkaException

    try:
        return kind(config)
    except KafkaException as e:
        err = e.args[0] if e.args else None
        reason = err.str() if hasattr(err, "str") else str(e)
        raise ConfigError(f"kafka table {table.name!r}: librdkafka refuses its settings: "
                          f"{reason}", line=table.line,
                          hint="check the table's properties.* options") from None

def connect_timeout(table: TableSpec) -> float:
    return parse_duration_s(options(table).get("connect_timeout", "10s"), "connect_timeout")


def retrying(table: TableSpec, what: str, attempt: Callable[[float], Any]) -> Any:
    """``attempt(timeout)`` until it succeeds or ``connect_timeout`` has passed (a few tries
    with growing waits), then one line naming the brokers and what was tried."""
    from confluent_kafka import KafkaException

    total = connect_timeout(table)
    deadline = time.monotonic() + total
    tries = 0
    last = ""
    wait = min(1.0, total / 4)
    while True:
        tries += 1
        left = max(0.2, deadline - time.monotonic())
        try:
            return attempt(min(left, max(1.0, total / 3)))
        except KafkaException as e:
            err = e.args[0] if e.args else None
            last = err.str() if hasattr(err, "str") else str(e)
        if time.monotonic() + wait >= deadline:
            break
        time.sleep(wait)
        wait = min(wait * 2, 5.0)
    servers = options(table).get("bootstrap_servers")
    raise RuntimeFailure(f"cannot reach Kafka at {servers} for table {table.name!r}: {what} "
                         f"failed {tries} times in {total:g}s ({last})",
                         hint="check bootstrap_servers and that the brokers are up; "
                              "connect_timeout sets how long to try")
