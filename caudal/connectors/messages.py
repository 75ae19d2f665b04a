"""What every message-broker connector (nats, redis, rabbitmq, mqtt, http) shares: the value
formats, decoding a polled batch of message values in one vectorized call (the same format
decoders and bad_data bisection the Kafka source uses), encoding a batch of rows into one
message value per row, bounded reconnects, and an asyncio loop for async client libraries.

A broker hands caudal one Python object per message; the only per-message Python left is
taking its bytes (and sequence number) out of it. The bytes of a batch are joined into JSON
lines and parsed by Arrow at once; only a batch that fails is bisected to find the culprits.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pyarrow as pa

from caudal import formats
from caudal.connectors.base import Sink
from caudal.connectors.registry import table_is_changelog
from caudal.errors import ConfigError, DataError, RuntimeFailure
from caudal.formats import bad_data, debezium_json, text
from caudal.formats import json as json_format
from caudal.formats.debezium_json import changes, envelope
from caudal.plan.changelog import OP, OP_TYPE
from caudal.plan.tables import TableSpec
from caudal.types import conform_batch

FORMATS = ("json", "debezium_json", "raw_string", "raw_bytes")
#: Flink's spellings -> ours (``raw`` is decided by the column type)
FORMAT_ALIASES = {"debezium-json": "debezium_json", "raw": "raw"}
FORMAT_OPTION = ("json (default), debezium_json (a changelog), raw_string or raw_bytes (one "
                 "column holds the whole message)")
CONNECT_TIMEOUT_OPTION = ("how long to keep trying to reach the server before failing "
                          "(default 10s)")


def value_format(table: TableSpec, columns: list[tuple[str, Any]] | None = None) -> str:
    """The message value format of ``table``; ConfigError naming what is accepted."""
    raw = str(table.options.get("format", "json")).strip().lower()
    name = FORMAT_ALIASES.get(raw, raw)
    if columns is None:
        columns = [(f.name, f.type) for f in (table.schema or []) if f.name != OP
                   and f.name not in table.metadata]
    if name == "raw":
        name = "raw_bytes" if columns and pa.types.is_binary(columns[0][1]) else "raw_string"
    if name not in FORMATS:
        raise ConfigError(f"format = {raw!r} of {table.connector} table {table.name!r}",
                          line=table.line, hint="accepted: " + ", ".join(FORMATS))
    if name.startswith("raw_") and len(columns) != 1:
        raise ConfigError(f"format {name} of table {table.name!r} needs exactly one column "
                          f"(the message), not {len(columns)}", line=table.line,
                          hint="declare one TEXT (raw_string) or BYTEA (raw_bytes) column")
    return name


def require(table: TableSpec, key: str, example: str) -> str:
    value = table.options.get(key)
    if not value:
        raise ConfigError(f"{table.connector} table {table.name!r} has no {key!r} option",
                          line=table.line, hint=f"{key} = {example!r}")
    return value


def choice(table: TableSpec, key: str, choices: tuple[str, ...], default: str) -> str:
    raw = str(table.options.get(key, default)).strip().lower()
    if raw not in choices:
        raise ConfigError(f"option {key} = {table.options.get(key)!r} of table "
                          f"{table.name!r}", line=table.line,
                          hint="accepted: " + ", ".join(choices))
    return raw


def int_option(table: TableSpec, key: str, default: int, low: int, high: int,
               unit: str) -> int:
    """A whole-number option between ``low`` and ``high``; ConfigError naming it."""
    raw = table.options.get(key, str(default))
    try:
        value = int(raw)
        if not low <= value <= high:
            raise ValueError
        return value
    except ValueError:
        raise ConfigError(f"{key} = {raw!r} of table {table.name!r}", line=table.line,
                          hint=f"a number of {unit}, {low} to {high}") from None


def writes_debezium(table: TableSpec) -> bool:
    """True when a sink's format is debezium_json (it then takes a changelog)."""
    raw = str(table.options.get("format", "json")).strip().lower()
    return FORMAT_ALIASES.get(raw, raw) == "debezium_json"


class MessageSink(Sink):
    """A sink that writes each row as one message in a message format (json, raw_string,
    raw_bytes, debezium_json): ``open`` sets ``self.format`` from the written columns, and
    the sink takes a changelog when its format is debezium_json."""

    FORMAT_ALIASES = FORMAT_ALIASES

    @classmethod
    def takes_changelog(cls, table: TableSpec) -> bool:
        return writes_debezium(table)

    def open(self, schema: pa.Schema, restored: dict[str, Any] | None = None) -> None:
        super().open(schema, restored)
        self.format = value_format(self.table, [(f.name, f.type) for f in schema
                                                if f.name != OP])


def bounded_latest(table: TableSpec) -> bool:
    """True for ``'scan.bounded.mode' = 'latest-offset'`` (read what the log held at the
    start, then end); ConfigError for anything but that and ``unbounded``."""
    mode = str(table.options.get("scan.bounded.mode", "unbounded")).strip().lower()
    if mode not in ("latest-offset", "unbounded"):
        raise ConfigError(f"option scan.bounded.mode = {mode!r} of table {table.name!r}",
                          line=table.line, hint="accepted: latest-offset, unbounded")
    return mode == "latest-offset"


class MessagePolicy(bad_data.BadDataPolicy):
    """bad_data for messages: names the message by ``where(i)``; remembers dropped ones."""

    def __init__(self, mode: str, metrics: Any, where: Callable[[int], str]):
        super().__init__(mode, metrics, "")
        self.name = where
        self.dropped: list[int] = []

    def reject(self, line: int, reason: str) -> None:
        text_ = f"{self.name(line)}: {reason}"
        if self.mode != "drop":
            raise DataError(f"malformed message in {text_}",
                            hint="fix the producer, or set bad_data = 'drop' to skip such "
                                 "messages")
        self.dropped.append(line)
        self.metrics.bad_rows_dropped += 1
        if len(self.metrics.bad_row_examples) < bad_data.MAX_EXAMPLES:
            self.metrics.bad_row_examples.append(text_)


class MessageDecoder:
    """Turns the values of a batch of messages into one record batch of the source's schema
    (with ``_op`` for debezium_json). Metadata columns are the connector's to add."""

    def __init__(self, source: Any):
        table = source.table
        self.table = table
        self.metrics = source.metrics
        self.data_schema = table.data_schema()
        self.format = value_format(table, [(f.name, f.type) for f in self.data_schema])
        self.changelog = table_is_changelog(
            TableSpec(table.name, table.connector, {"format": self.format}))
        self.schema = source.schema
        if self.changelog:
            self.schema = self.schema.append(pa.field(OP, OP_TYPE))
        self._json = None
        if self.format in ("json", "debezium_json"):
            schema = envelope(self.data_schema, table.options) if self.changelog \
                else self.data_schema
            self._json = formats.get("json").Decoder(schema, table.options)

    def decode(self, values: list[bytes], where: Callable[[int], str],
               extra: Callable[[np.ndarray | None], dict[str, pa.Array]] | None = None
               ) -> pa.RecordBatch | None:
        """``where(i)`` names message i for bad_data; ``extra(kept)`` gives the metadata
        columns of the kept messages (``kept`` a boolean mask, None when all are)."""
        if not values:
            return None
        policy = MessagePolicy(self.table.bad_data, self.metrics, where)
        # a changelog's rejections are held until its ops are checked too (first bad first)
        held = bad_data.Held(policy) if self.changelog else policy
        if self.format in ("json", "debezium_json"):
            data = self._decode_json(values, held)
        elif self.format == "raw_bytes":
            data = pa.table({self.data_schema.names[0]: pa.array(values, pa.binary())})
        else:
            data = self._raw_string(values, policy)
        kept = None
        if policy.dropped:
            kept = np.ones(len(values), bool)
            kept[policy.dropped] = False
        if self.changelog:
            assert isinstance(held, bad_data.Held)
            data = changes(data, self.data_schema, policy, held.survivors(len(values)),
                           held.rejected)
            return as_batch(data, self.schema)
        if not self.schema.names:
            return formats.empty_rows(data.num_rows)
        columns = {name: data.column(name) for name in data.column_names}
        if extra is not None:
            columns.update(extra(kept))
        table = pa.table([columns[f.name] for f in self.schema], schema=self.schema)
        return as_batch(table, self.schema)

    def _decode_json(self, values: list[bytes], policy: bad_data.BadDataPolicy) -> pa.Table:
        return decode_json_values(self._json, values, policy)

    def _raw_string(self, values: list[bytes], policy: MessagePolicy) -> pa.Table:
        return decode_raw_strings(self.data_schema.names[0], values, policy)


def decode_json_values(decoder, values: list[bytes], policy: bad_data.BadDataPolicy
                       ) -> pa.Table:
    """A polled batch of JSON message values decoded in one call as JSON lines; only when
    that fails are the values bisected to find the bad ones (``bad_data``)."""
    data = b"\n".join([*values, b""])   # one copy, the last line ended too
    newlines = data.count(b"\n")
    if newlines != len(values):  # pretty-printed JSON: newlines are spaces
        values = [v.replace(b"\n", b" ").replace(b"\r", b" ") for v in values]
        data = b"\n".join([*values, b""])
        newlines = len(values)
    try:
        table = decoder.decode(data, newlines)
        if table.num_rows == len(values):
            return table
    except pa.ArrowInvalid:
        pass
    # one row per message, else some are bad: an empty or blank value is one too (it is not
    # a tombstone, and a JSON-lines decoder would skip it without a word)
    def one_row_each(lines_: bytes) -> pa.Table:
        table = decoder.decode(lines_)
        if table.num_rows != lines_.count(b"\n"):
            raise pa.ArrowInvalid("an empty value")
        return table

    def explain(row: bytes, error: Exception) -> str:
        return "the value is empty" if not row.strip() else decoder.explain(row, error)

    rows = [(i, v + b"\n") for i, v in enumerate(values)]
    good = bad_data.decode_rows(rows, one_row_each, explain, policy)
    return pa.concat_tables(good) if good else decoder.schema.empty_table()


def decode_raw_strings(name: str, values: list[bytes], policy: bad_data.BadDataPolicy
                       ) -> pa.Table:
    """Message values as one text column ``name``; values that are not UTF-8 are rejected
    one by one only when the whole batch fails to cast."""
    raw = pa.array(values, pa.binary())
    try:
        return pa.table({name: raw.cast(pa.string())})
    except pa.ArrowInvalid:
        ok = []
        for i, v in enumerate(values):
            try:
                v.decode("utf-8")
                ok.append(i)
            except UnicodeDecodeError:
                policy.reject(i, "the value is not UTF-8 text")
        return pa.table({name: raw.take(pa.array(ok, pa.int64())).cast(pa.string())})


def as_batch(table: pa.Table, schema: pa.Schema) -> pa.RecordBatch:
    table = table.combine_chunks()
    if table.num_columns == 0:
        return formats.empty_rows(table.num_rows)
    batches = table.to_batches()
    if len(batches) == 1:
        return batches[0]
    if not batches:
        return pa.RecordBatch.from_arrays([pa.array([], f.type) for f in schema], schema=schema)
    return pa.concat_batches(batches)


#: longest stretch of paused collection (sources overlapping) before a young collection runs
GC_PAUSE_MAX_S = 5.0


class _GcPause:
    lock = threading.Lock()
    holders = 0
    enabled = True
    since = 0.0


@contextlib.contextmanager
def paused_gc() -> Iterator[None]:
    """CPython's cycle collector paused while a polled batch of client message objects is
    alive. A client hands over one GC-tracked object per message: tens of thousands of them
    set off a collection every 700 allocations and full ones that walk every live message
    and the whole heap (~40 % of the CPU of a bare Kafka consume loop). Those objects hold
    no cycles and die by reference counting when the batch is decoded, so waiting loses
    nothing. Sources on several threads share one pause (a count); should they keep it
    held for ``GC_PAUSE_MAX_S``, the young generations are collected anyway."""
    state = _GcPause
    with state.lock:
        if state.holders == 0:
            state.enabled = gc.isenabled()
            state.since = time.monotonic()
            gc.disable()
        state.holders += 1
    try:
        yield
    finally:
        collect = False
        with state.lock:
            state.holders -= 1
            if state.holders == 0:
                if state.enabled:
                    gc.enable()
            elif state.enabled and time.monotonic() - state.since > GC_PAUSE_MAX_S:
                state.since = time.monotonic()
                collect = True
        if collect:
            gc.collect(1)


def split_lines(data: bytes) -> pa.Array:
    """JSON lines (each ending in a newline) -> one binary value per line, by one kernel."""
    from caudal.connectors.kafka_sink import split_lines as split

    return split(data)


def encode_values(batch: pa.RecordBatch, fmt: str, table: TableSpec,
                  schema: pa.Schema) -> tuple[pa.Array, pa.RecordBatch]:
    """One message value per row (per change for debezium_json), and the rows they are of
    (without ``_op``): binary values encoded by the format's own vectorized encoder."""
    ops = batch.column(OP) if OP in batch.schema.names else None
    data = batch.drop_columns([OP]) if ops is not None else batch
    data = conform_batch(data, pa.schema([f for f in schema if f.name != OP]))
    if fmt == "json":
        return split_lines(json_format.encode(data, table.options, schema)), data
    if fmt == "debezium_json":
        full = data.append_column(OP, ops) if ops is not None else data
        values = split_lines(debezium_json.encode(full, table.options, schema))
        rows = data.take(pa.array(debezium_json.line_rows(full))) \
            if len(values) != data.num_rows else data
        return values, rows
    if fmt == "raw_bytes":
        return data.column(0).cast(pa.binary()), data
    return text.to_text(data.column(0)).cast(pa.binary()), data


def connect_timeout(table: TableSpec) -> float:
    from caudal.durations import parse_duration_s

    return parse_duration_s(table.options.get("connect_timeout", "10s"), "connect_timeout")


def retrying(table: TableSpec, server: str, what: str, attempt: Callable[[], Any],
             errors: tuple[type[BaseException], ...] = (Exception,)) -> Any:
    """``attempt()`` until it succeeds or ``connect_timeout`` has passed, waiting 0.2 s, 0.4 s,
    … (at most 2 s) between tries; then one line naming the server and what was tried."""
    total = connect_timeout(table)
    deadline = time.monotonic() + total
    wait, tries, last = 0.2, 0, ""
    while True:
        tries += 1
        try:
            return attempt()
        except (ConfigError, DataError, RuntimeFailure):
            raise
        except errors as e:  # noqa: PERF203 - a failed try is retried after a wait
            last = str(e).splitlines()[0] if str(e) else type(e).__name__
        if time.monotonic() + wait >= deadline:
            break
        time.sleep(wait)
        wait = min(wait * 2, 2.0)
    raise RuntimeFailure(f"cannot reach {table.connector} at {server} for table "
                         f"{table.name!r}: {what} failed {tries} times in {total:g}s ({last})",
                         hint="check the server address and that it is up; connect_timeout "
                              "sets how long to try")


class AsyncLoop:
    """An asyncio loop on its own daemon thread, for connectors on async client libraries:
    ``run(coro)`` waits for the result from any thread (source, checkpoint or sink)."""

    def __init__(self, name: str):
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name=name, daemon=True)
        self.thread.start()

    def run(self, coro: Any, timeout: float | None = None) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=5)
