"""The ``nexmark`` connector: the Nexmark benchmark's people, auctions and bids, generated.

``table = 'bid' | 'auction' | 'person'`` gives a flat table of one kind of event; without it the
table has every event, Arroyo style (``event_type`` and one struct column per kind). All tables
with the same ``seed``, ``events`` and ``event_rate`` are views of one global event sequence, so
they join consistently. Event ``e`` happens at ``base_time + e / event_rate``; the model lives in
``nexmark_model``. Only the columns the query reads are generated.

Flink's nexmark options are accepted as aliases (``first-event.rate``, ``next-event.rate``,
``events.num``, ``person.proportion``, ``auction.proportion``, ``bid.proportion``), and a table
declared as Flink's ``datagen`` (``event_type`` and ``person``/``auction``/``bid`` ROW columns
with Flink's camelCase field names) gets the generator's fields under the declared names:
fields match by name, case and underscores aside (``dateTime`` is ``date_time``).

Pacing: as Arroyo's source does, a table given a rate (``event_rate`` or ``first-event.rate``)
hands event ``e`` out no earlier than ``e / rate`` seconds after the start, in wall-clock time;
``pace = 'false'`` runs flat out (event times still ``e / rate`` apart). Without a rate the
event times are 1/100000 s apart and the source runs flat out.

Partitions split the sequence into blocks of about 0.1 s of event time, dealt round-robin, so
every subtask advances through event time together; a partition's offset is the number of the
next event it will hand out.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pyarrow as pa

from caudal.connectors.base import Source
from caudal.connectors.nexmark_model import (
    EVENT_TYPE,
    KIND_SCHEMA,
    KINDS,
    PROPORTION,
    Clock,
    Layout,
    Model,
    block_events,
    expand,
    int64_array,
    table_schema,
    timestamp_array,
)
from caudal.errors import ConfigError
from caudal.plan.tables import TableSpec
from caudal.types import is_numeric, sql_name

DEFAULT_BASE_TIME = "2026-01-01T00:00:00Z"
DEFAULT_EVENT_RATE = 100_000
#: partitions of the event sequence, fixed so checkpoints restore at any parallelism; highly
#: composite, so the usual parallelisms (1-6, 8, 10, 12, 15, 16, 20, 24, …) divide it
PARTITIONS = 240


# -- option parsing (also used by the impulse connector) -----------------------------------
def int_option(table: TableSpec, key: str, default: int | None, minimum: int = 0) -> int | None:
    """An integer option >= ``minimum``, or ``default`` when absent."""
    raw = table.options.get(key)
    if raw is None:
        return default
    try:
        value = int(str(raw).strip().replace("_", ""))
    except ValueError:
        value = None
    if value is None or not minimum <= value < 2 ** 63:
        what = "a 64-bit integer" if minimum <= -(2 ** 63) else f"an integer >= {minimum}"
        raise ConfigError(f"option {key} = {raw!r} of table {table.name!r} is not {what}",
                          line=table.line, hint=f"write e.g. {key} = '1000'")
    return value


def rate_option(table: TableSpec, key: str, default: float | None) -> float | None:
    """A positive number of events per second, or ``default`` when absent."""
    raw = table.options.get(key)
    if raw is None:
        return default
    try:
        value = float(str(raw).strip().replace("_", ""))
    except ValueError:
        value = float("nan")
    if not value > 0 or value == float("inf"):
        raise ConfigError(f"option {key} = {raw!r} of table {table.name!r} is not a positive "
                          f"number", line=table.line, hint=f"events per second, e.g. {key} = "
                          f"'100000'")
    return value


def bool_option(table: TableSpec, key: str, default: bool) -> bool:
    raw = table.options.get(key)
    if raw is None:
        return default
    text = str(raw).strip().lower()
    if text in ("true", "1", "yes", "on"):
        return True
    if text in ("false", "0", "no", "off"):
        return False
    raise ConfigError(f"option {key} = {raw!r} of table {table.name!r} is not a boolean",
                      line=table.line, hint="accepted: true, false")


def now_us() -> int:
    return time.time_ns() // 1000


def time_option(table: TableSpec, key: str, default: str) -> int:
    """An RFC 3339 instant (zone-less means UTC) or ``now``, as µs since the epoch.
    ``now@<instant>`` is ``now`` pinned at planning (see ``pin_now``)."""
    raw = str(table.options.get(key, default)).strip()
    if raw.lower() == "now":
        return now_us()
    if raw.lower().startswith("now@"):
        raw = raw[4:]
    try:
        moment = datetime.fromisoformat(raw)
    except ValueError:
        raise ConfigError(f"option {key} = {raw!r} of table {table.name!r} is not a time",
                          line=table.line,
                          hint="RFC 3339, e.g. '2026-01-01T00:00:00Z', or 'now'") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    delta = moment - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def pin_now(table: TableSpec, key: str) -> None:
    """Replace ``now`` by ``now@<the current instant>`` at planning, so every subtask and
    restart agrees on the instant, and still knows it meant the wall clock."""
    if str(table.options.get(key, "")).strip().lower() == "now":
        moment = datetime.fromtimestamp(now_us() / 1e6, tz=UTC)
        table.options[key] = "now@" + moment.isoformat(timespec="microseconds")


def is_now(table: TableSpec, key: str) -> bool:
    """True when the time option means the wall clock (``now``, pinned or not)."""
    raw = str(table.options.get(key, "")).strip().lower()
    return raw == "now" or raw.startswith("now@")


def columns_of(table: TableSpec, full: pa.Schema, what: str) -> list[tuple[str, str, pa.DataType]]:
    """(emitted name, generator name, emitted type) of each column the source emits; declared
    columns must be generator columns (by name, case and underscores aside: Flink's
    ``dateTime`` is ``date_time``) whose type casts to the declared; a declared struct's
    fields likewise name fields of the generator's struct."""
    by_key = {field_key(name): name for name in full.names}
    out = []
    for field in table.read_schema() if table.schema is not None else full:
        name = by_key.get(field_key(field.name))
        if name is None:
            raise ConfigError(f"column {field.name!r} of table {table.name!r} is not a column "
                              f"of {what}", line=table.line,
                              hint="available: " + ", ".join(full.names))
        source_type = full.field(name).type
        problem = _cast_problem(source_type, field.type)
        if problem is not None:
            raise ConfigError(f"column {field.name!r} of table {table.name!r} is declared "
                              f"{sql_name(field.type)} but {what} makes "
                              f"{sql_name(source_type)}{problem}", line=table.line,
                              hint=f"declare it {sql_name(source_type)}")
        out.append((field.name, name, field.type))
    return out


def field_key(name: str) -> str:
    """How a declared column or field name matches a generator's: case and ``_`` aside."""
    return name.lower().replace("_", "")


def _cast_problem(source: pa.DataType, target: pa.DataType) -> str | None:
    """None when a generated value of type ``source`` may be emitted as ``target`` without
    failing on some value: the same type, another numeric type for a number, text, or a
    struct whose fields each are fields of the generated struct (by ``field_key``) that
    cast so; otherwise what is wrong (for the message)."""
    if pa.types.is_struct(source) and pa.types.is_struct(target):
        by_key = {field_key(f.name): f for f in source}
        for f in target:
            match = by_key.get(field_key(f.name))
            if match is None:
                return f" (no field {f.name!r}; fields: " + ", ".join(source.names) + ")"
            if _cast_problem(match.type, f.type) is not None:
                return f" (field {f.name!r} is {sql_name(match.type)})"
        return None
    if (source.equals(target) or pa.types.is_string(target)
            or (pa.types.is_integer(source) and is_numeric(target))):
        return None
    return ""


#: Flink's nexmark connector options -> caudal's (the proportions are checked, not mapped)
FLINK_ALIASES = {"first-event.rate": "event_rate", "events.num": "events"}
FLINK_OPTIONS = {
    "first-event.rate": "Flink's name of event_rate",
    "next-event.rate": "Flink's rate after the first period: must equal first-event.rate",
    "events.num": "Flink's name of events (0: unbounded, as in Flink)",
    "person.proportion": "Flink's share of people per 50 events: must be 1",
    "auction.proportion": "Flink's share of auctions per 50 events: must be 3",
    "bid.proportion": "Flink's share of bids per 50 events: must be 46",
}


def resolve_flink_options(table: TableSpec) -> None:
    """Rewrite Flink's option names into caudal's, in place (idempotent), refusing the
    values caudal's generator cannot honour: a rate that changes (``next-event.rate``) or
    proportions other than the standard 1/3/46."""
    options = table.options
    for flink, ours in FLINK_ALIASES.items():
        if flink not in options:
            continue
        raw = options.pop(flink)
        if ours in options and str(options[ours]).strip() != str(raw).strip():
            raise ConfigError(f"options {flink} = {raw!r} and {ours} = {options[ours]!r} of "
                              f"table {table.name!r} disagree", line=table.line,
                              hint="give one of them")
        if flink == "events.num" and str(raw).strip() == "0":
            continue  # Flink's 0: as many as possible, i.e. unbounded
        options[ours] = raw
    if "next-event.rate" in options:
        raw = options.pop("next-event.rate")
        first = options.get("event_rate", raw)
        if _number(raw) != _number(first):
            raise ConfigError(f"option next-event.rate = {raw!r} of table {table.name!r} "
                              f"differs from the first rate {first!r}", line=table.line,
                              hint="caudal's generator has one rate: make next-event.rate "
                                   "equal to first-event.rate")
    for kind in KINDS:
        key = f"{kind}.proportion"
        if key in options:
            raw = options.pop(key)
            if _number(raw) != PROPORTION[kind]:
                raise ConfigError(f"option {key} = {raw!r} of table {table.name!r} is not "
                                  f"supported", line=table.line,
                                  hint="caudal's generator makes 1 person, 3 auctions and "
                                       "46 bids per 50 events: person.proportion = '1', "
                                       "auction.proportion = '3', bid.proportion = '46'")


def _number(raw: Any) -> float | None:
    try:
        return float(str(raw).strip().replace("_", ""))
    except ValueError:
        return None


def _kind(table: TableSpec) -> str | None:
    raw = table.options.get("table")
    if raw is None:
        return None
    kind = str(raw).strip().lower()
    if kind not in KINDS:
        raise ConfigError(f"option table = {raw!r} of nexmark table {table.name!r} is unknown",
                          line=table.line, hint="accepted: bid, auction, person (or no table "
                          "option for all events)")
    return kind


class NexmarkSource(Source):
    """Generates the Nexmark event stream for the partitions assigned to one subtask."""

    finite = True   # with ``events``, the same sequence every time

    OPTIONS = {
        "table": "bid, auction or person: a flat table of that kind; absent: all events "
                 "(event_type and person/auction/bid structs)",
        "events": "total number of events of the sequence (all kinds); absent: unbounded",
        "event_rate": "events per second: event times are 1/event_rate apart and, unless "
                      "pace = false, the source hands them out at that rate (default: "
                      "100000 of event time, flat out)",
        "base_time": "event time of event 0: RFC 3339 or now (default 2026-01-01T00:00:00Z)",
        "pace": "true (the default when a rate is given): hand out events no earlier than "
                "their time (relative to the start) in wall-clock time; false (the default "
                "without a rate): as fast as possible",
        "seed": "integer; the same seed gives the same events (default 0)",
        "batch_size": "most rows per batch",
        **FLINK_OPTIONS,
    }

    @classmethod
    def infer_schema(cls, table: TableSpec) -> pa.Schema:
        return table_schema(_kind(table))

    @classmethod
    def default_event_time(cls, table: TableSpec) -> str | None:
        return "date_time"

    @classmethod
    def validate(cls, table: TableSpec) -> None:
        resolve_flink_options(table)
        kind = _kind(table)
        int_option(table, "events", None)
        rate_option(table, "event_rate", DEFAULT_EVENT_RATE)
        time_option(table, "base_time", DEFAULT_BASE_TIME)
        bool_option(table, "pace", _paced_by_default(table))
        int_option(table, "seed", 0, minimum=-(2**63))
        int_option(table, "batch_size", None, minimum=1)
        columns_of(table, table_schema(kind), _what(kind))
        pin_now(table, "base_time")

    def __init__(self, table: TableSpec):
        resolve_flink_options(table)
        if table.schema is None:
            table.schema = table_schema(_kind(table))
        super().__init__(table)
        self.kind = _kind(table)
        self.events_total = int_option(table, "events", None)
        self.bounded = self.events_total is not None
        self.event_rate = rate_option(table, "event_rate", DEFAULT_EVENT_RATE)
        #: with base_time = now an event is due when the wall clock reaches its event time
        self.base_now = is_now(table, "base_time")
        self.clock = Clock(time_option(table, "base_time", DEFAULT_BASE_TIME), self.event_rate)
        self.pace = bool_option(table, "pace", _paced_by_default(table))
        self.batch_size = int_option(table, "batch_size", None, minimum=1)
        self.model = Model(int_option(table, "seed", 0, minimum=-(2**63)), self.clock)
        self.columns = columns_of(table, table_schema(self.kind), _what(self.kind))
        self.block = block_events(self.event_rate)
        self._parts: dict[str, tuple[Layout, int, int | None]] = {}
        self._members: dict[str, list[str]] = {}
        self._anchor_us = self.clock.base_us

    def partitions(self, parallelism: int) -> list[str]:
        """A fixed number of partitions whatever the parallelism, so a checkpoint taken at
        one parallelism restores at another (the runtime deals them round-robin)."""
        return [f"nexmark-{i}-of-{PARTITIONS}" for i in range(PARTITIONS)]

    def open(self, assigned: list[str], offsets: dict[str, Any] | None = None) -> None:
        offsets = offsets or {}
        self._parts = {}
        self._members = {}
        merged = self._stride(assigned, offsets)
        if merged is not None:
            # the usual case: partitions i, i+P, i+2P, … of a P that divides PARTITIONS, all
            # at the same event: one layout "index i of P" generates them in event order,
            # in batches as large as asked for
            index, count = merged
            layout = Layout(self.kind, self.block, index, count)
            first = offsets.get(assigned[0])
            self._add("*", layout, first)
            self._members["*"] = list(assigned)
        else:
            for name in assigned:
                self._add(name, self._layout(name), offsets.get(name))
                self._members[name] = [name]
        stale = [n for n in offsets if n.startswith("nexmark-") and n not in assigned]
        if stale and not any(n in offsets for n in assigned):
            raise ConfigError(f"cannot resume nexmark table {self.table.name!r} from offsets of "
                              f"partitions {', '.join(sorted(stale))}",
                              hint=f"partitions are named nexmark-<i>-of-{PARTITIONS}; "
                                   "start over with --fresh")
        if not self.base_now and self._parts:
            # pacing starts now: the first event still to come is due immediately
            first = min(layout.event_at(pos) for layout, pos, _ in self._parts.values())
            self._anchor_us = now_us() - int(self.clock.relative_us(np.array([first]))[0])
        else:
            self._anchor_us = self.clock.base_us

    def _add(self, key: str, layout: Layout, offset: Any) -> None:
        position = layout.position_of(int(offset)) if offset is not None else 0
        end = layout.position_of(self.events_total) if self.bounded else None
        self._parts[key] = (layout, position, end)

    def _stride(self, assigned: list[str], offsets: dict[str, Any]) -> tuple[int, int] | None:
        """``(i, P)`` when ``assigned`` is exactly partitions i, i+P, … with P dividing
        PARTITIONS and one common offset; None otherwise (e.g. after a rescale)."""
        if not assigned or PARTITIONS % len(assigned):
            return None
        indices = sorted(self._layout(n).index for n in assigned)
        count = PARTITIONS // len(assigned)
        first = indices[0]
        if first >= count or indices != list(range(first, PARTITIONS, count)):
            return None
        if len({offsets.get(n) for n in assigned}) != 1:
            return None
        return first, count

    def _layout(self, name: str) -> Layout:
        try:
            _, index, _, count = name.split("-")
            index, count = int(index), int(count)
            assert 0 <= index < count
        except (ValueError, AssertionError):
            raise ConfigError(f"unknown nexmark partition {name!r}",
                              hint="names come from partitions(parallelism)") from None
        return Layout(self.kind, self.block, index, count)

    def finished(self) -> bool:
        return self.bounded and all(pos >= end for _, pos, end in self._parts.values())

    def offsets(self) -> dict[str, Any]:
        """The next event number per partition: every event of the partition numbered below
        it has been emitted (a merged layout emits in event order, so one number serves all
        of its partitions)."""
        out: dict[str, Any] = {}
        for key, (layout, pos, _) in self._parts.items():
            for name in self._members[key]:
                out[name] = layout.event_at(pos)
        return out

    def _due_us(self, event: int) -> int:
        """The wall-clock instant (µs) event number ``event`` is due (pace)."""
        return self._anchor_us + int(self.clock.relative_us(np.array([event]))[0])

    def _due_limit(self) -> int:
        """Events numbered below this are due in wall-clock time (pace)."""
        elapsed = now_us() - self._anchor_us
        # before base_time (a run set to start in the future) no event is due
        return max(0, self.clock.first_not_before(elapsed + 1))

    def poll(self, max_rows: int, timeout: float) -> pa.RecordBatch | None:
        live = [(layout.event_at(pos), name) for name, (layout, pos, end) in self._parts.items()
                if end is None or pos < end]
        if not live:
            return None
        first, name = min(live)
        layout, pos, end = self._parts[name]
        rows = max(0, min(max_rows, self.batch_size or max_rows))
        if end is not None:
            rows = min(rows, end - pos)
        if len(live) > 1:   # several partitions here: keep them in step, a block at a time
            rows = min(rows, layout.block_end(pos) - pos)
        if self.pace and rows > 0:
            limit = self._due_limit()
            if first >= limit:  # nothing due yet: wait for the first event (at most timeout)
                wait = min(timeout, (self._due_us(first) - now_us()) / 1e6)
                if wait > 0:
                    time.sleep(wait)
                limit = self._due_limit()
                if first >= limit:
                    return None
            # linger: once the first event is due, the batch may wait up to ``timeout`` for
            # more rows, or until ``rows`` rows are due, whichever is first; one batch per
            # linger instead of one per loop keeps the per-batch cost off the hot path
            full_us = self._due_us(layout.event_at(pos + rows - 1))
            flush_us = min(self._due_us(first) + int(timeout * 1e6), full_us)
            wait = (flush_us - now_us()) / 1e6
            if wait > 0:
                time.sleep(wait)
                limit = self._due_limit()
            rows = min(rows, layout.position_of(limit) - pos)
        if rows <= 0:
            return None
        events = layout.events(pos, rows)
        self._parts[name] = (layout, pos + rows, end)
        batch = self._generate(events)
        self.metrics.rows_read += rows
        return batch

    def _generate(self, events: np.ndarray) -> pa.RecordBatch:
        """The batch of ``self.schema`` for these event numbers."""
        arrays = []
        if self.kind is not None:
            wanted = {gen for _, gen, _ in self.columns}
            values = self.model.columns(self.kind, events, wanted)
            for _, gen, dtype in self.columns:
                arrays.append(self._typed(values[gen], dtype))
        else:
            offset = events % 50
            kind_code = (offset > 0).astype(np.int64) + (offset > 3)
            arrays = [self._all_events_column(gen, events, kind_code, dtype)
                      for _, gen, dtype in self.columns]
        return pa.RecordBatch.from_arrays(arrays, schema=self.schema)

    @staticmethod
    def _typed(array: pa.Array, dtype: pa.DataType) -> pa.Array:
        return array if array.type.equals(dtype) else array.cast(dtype)

    def _all_events_column(self, name: str, events: np.ndarray, kind_code: np.ndarray,
                           dtype: pa.DataType) -> pa.Array:
        """One column of the all-events table, of the declared type ``dtype``: a struct is
        null except on its kind's rows, only those rows are generated, and only the fields
        ``dtype`` names (under its names and types)."""
        if name == "event_type":
            return self._typed(int64_array(kind_code), dtype)
        if name == "date_time":
            return self._typed(timestamp_array(self.clock.times(events)), dtype)
        present = kind_code == EVENT_TYPE[name]
        bitmap = pa.py_buffer(np.packbits(present, bitorder="little"))
        by_key = {field_key(f.name): f.name for f in KIND_SCHEMA[name]}
        # fields the plan never reads (plan.optimizer) are left NULL, not generated
        read = self.table.struct_fields.get(name)
        wanted = [(f, by_key[field_key(f.name)]) for f in dtype
                  if read is None or f.name in read]
        values = self.model.columns(name, events[present], [gen for _, gen in wanted])
        made = {f.name: expand(self._typed(values[gen], f.type), present, bitmap)
                for f, gen in wanted}
        children = [made[f.name] if f.name in made else pa.nulls(len(events), f.type)
                    for f in dtype]
        return pa.StructArray.from_buffers(dtype, len(events), [bitmap],
                                           null_count=len(events) - int(present.sum()),
                                           children=children)


def _paced_by_default(table: TableSpec) -> bool:
    """Arroyo's rule: a table given a rate is paced at it (Flink's rate is resolved into
    ``event_rate`` first)."""
    return "event_rate" in table.options


def _what(kind: str | None) -> str:
    return f"nexmark table {kind!r}" if kind else "the nexmark all-events table"


SOURCE = NexmarkSource
