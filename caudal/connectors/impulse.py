"""The ``impulse`` connector: a counter, for tests, demos and latency measurements.

Counter ``c`` belongs to partition ``c % P``, so P partitions never overlap and their union is
0, 1, 2, ... With ``event_rate`` the source is paced at that many events per second in total
(wall clock) and ``timestamp`` is the wall-clock time of generation; unpaced, ``timestamp`` is
``base_time + counter / (event_rate or 1_000_000)`` and the output is deterministic.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import pyarrow as pa

from caudal.connectors.base import Source
from caudal.connectors.nexmark import (
    bool_option,
    columns_of,
    int_option,
    now_us,
    rate_option,
    time_option,
)
from caudal.connectors.nexmark_model import Clock
from caudal.errors import ConfigError
from caudal.plan.tables import TableSpec
from caudal.types import TIMESTAMP

SCHEMA = pa.schema([("counter", pa.int64()), ("subtask_index", pa.int64()),
                    ("timestamp", TIMESTAMP)])
DEFAULT_BASE_TIME = "2026-01-01T00:00:00Z"
UNPACED_RATE = 1_000_000


def _events(table: TableSpec) -> int | None:
    if "events" in table.options and "message_count" in table.options:
        raise ConfigError(f"table {table.name!r} sets both events and message_count",
                          line=table.line, hint="message_count is an alias of events: keep one")
    key = "events" if "events" in table.options else "message_count"
    return int_option(table, key, None)


class ImpulseSource(Source):
    """Counts 0, 1, 2, ... split over partitions; paced by wall clock when asked."""

    finite = True   # with ``events``, the same counters every time

    OPTIONS = {
        "event_rate": "events per second in wall-clock time, over all partitions; absent: as "
                      "fast as possible",
        "events": "how many events in total (bounded); absent: unbounded",
        "message_count": "alias of events",
        "pace": "false: ignore event_rate for pacing, only for timestamps (default: true when "
                "event_rate is set)",
        "base_time": "timestamp of counter 0 when unpaced: RFC 3339 (default "
                     "2026-01-01T00:00:00Z)",
        "batch_size": "most rows per batch",
    }

    @classmethod
    def infer_schema(cls, table: TableSpec) -> pa.Schema:
        return SCHEMA

    @classmethod
    def default_event_time(cls, table: TableSpec) -> str | None:
        return "timestamp"

    @classmethod
    def validate(cls, table: TableSpec) -> None:
        _events(table)
        rate = rate_option(table, "event_rate", None)
        bool_option(table, "pace", rate is not None)
        if bool_option(table, "pace", False) and rate is None:
            raise ConfigError(f"table {table.name!r} sets pace = true without event_rate",
                              line=table.line, hint="set event_rate = '<events per second>'")
        time_option(table, "base_time", DEFAULT_BASE_TIME)
        int_option(table, "batch_size", None, minimum=1)
        columns_of(table, SCHEMA, "the impulse table")

    def __init__(self, table: TableSpec):
        if table.schema is None:
            table.schema = SCHEMA
        super().__init__(table)
        self.total = _events(table)
        self.bounded = self.total is not None
        self.event_rate = rate_option(table, "event_rate", None)
        self.pace = bool_option(table, "pace", self.event_rate is not None)
        self.clock = Clock(time_option(table, "base_time", DEFAULT_BASE_TIME),
                           self.event_rate or UNPACED_RATE)
        self.batch_size = int_option(table, "batch_size", None, minimum=1)
        self.columns = columns_of(table, SCHEMA, "the impulse table")
        #: partition name -> [index, count, next counter]
        self._parts: dict[str, list[int]] = {}
        self._anchor_us = 0

    def partitions(self, parallelism: int) -> list[str]:
        return [f"impulse-{i}-of-{parallelism}" for i in range(parallelism)]

    def open(self, assigned: list[str], offsets: dict[str, Any] | None = None) -> None:
        offsets = offsets or {}
        self._parts = {}
        for name in assigned:
            try:
                _, index, _, count = name.split("-")
                index, count = int(index), int(count)
                assert 0 <= index < count
            except (ValueError, AssertionError):
                raise ConfigError(f"unknown impulse partition {name!r}",
                                  hint="names come from partitions(parallelism)") from None
            start = int(offsets.get(name, index))
            if start % count != index:
                raise ConfigError(f"offset {start} of impulse partition {name!r} is not one of "
                                  f"its counters", hint="resume with the parallelism the "
                                  "checkpoint was taken with")
            self._parts[name] = [index, count, start]
        stale = [n for n in offsets if n.startswith("impulse-") and n not in self._parts]
        if stale and not any(n in offsets for n in assigned):
            raise ConfigError(f"cannot resume impulse table {self.table.name!r} from offsets of "
                              f"partitions {', '.join(sorted(stale))}",
                              hint="resume with the parallelism the checkpoint was taken with")
        if self._parts:
            # pacing starts now: the first counter still to come is due immediately
            first = min(nxt for _, _, nxt in self._parts.values())
            self._anchor_us = now_us() - int(self.clock.relative_us(np.array([first]))[0])

    def finished(self) -> bool:
        return self.bounded and all(nxt >= self.total for _, _, nxt in self._parts.values())

    def offsets(self) -> dict[str, Any]:
        return {name: nxt for name, (_, _, nxt) in self._parts.items()}

    def poll(self, max_rows: int, timeout: float) -> pa.RecordBatch | None:
        live = [(nxt, name) for name, (_, _, nxt) in self._parts.items()
                if self.total is None or nxt < self.total]
        if not live:
            return None
        first, name = min(live)
        index, count, nxt = self._parts[name]
        limit = self.total
        if self.pace:
            limit = self._due_limit()
            if first >= limit:
                due_us = self._anchor_us + int(self.clock.relative_us(np.array([first]))[0])
                wait = min(timeout, (due_us - now_us()) / 1e6)
                if wait > 0:
                    time.sleep(wait)
                limit = self._due_limit()
            if self.total is not None:
                limit = min(limit, self.total)
        rows = max(0, min(max_rows, self.batch_size or max_rows))
        if limit is not None:
            rows = min(rows, -(-(limit - nxt) // count))
        if rows <= 0:
            return None
        counters = np.arange(nxt, nxt + rows * count, count, dtype=np.int64)
        self._parts[name][2] = nxt + rows * count
        self.metrics.rows_read += rows
        return self._batch(counters, index)

    def _due_limit(self) -> int:
        return self.clock.first_not_before(now_us() - self._anchor_us + 1)

    def _batch(self, counters: np.ndarray, index: int) -> pa.RecordBatch:
        if self.pace:
            stamps = np.full(len(counters), now_us(), np.int64)
        else:
            stamps = self.clock.times(counters)
        values = {"counter": counters, "subtask_index": np.full(len(counters), index, np.int64),
                  "timestamp": stamps}
        arrays = []
        for _, gen, dtype in self.columns:
            base = TIMESTAMP if gen == "timestamp" else pa.int64()
            array = pa.Array.from_buffers(base, len(counters), [None, pa.py_buffer(values[gen])])
            arrays.append(array if base.equals(dtype) else array.cast(dtype))
        return pa.RecordBatch.from_arrays(arrays, schema=self.schema)


SOURCE = ImpulseSource
