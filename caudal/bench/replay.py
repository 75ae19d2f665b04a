"""The ``replay`` source: streams Nexmark events generated ahead of time (caudal.bench.events).

It is registered only by ``caudal.bench``; the harness swaps it in for the nexmark connector
to time caudal on input already in memory, as DuckDB is timed. Batches are zero-copy slices of
the stored table, dealt to partitions round-robin a batch at a time, so parallel subtasks
advance through event time together (as the generator's partitions do).
"""

from __future__ import annotations

from typing import Any

import pyarrow as pa

from caudal.bench import events
from caudal.connectors.nexmark import DEFAULT_EVENT_RATE, NexmarkSource, int_option, rate_option
from caudal.errors import ConfigError
from caudal.plan.tables import TableSpec


class ReplaySource(NexmarkSource):
    """Same options, schema and event time as the nexmark source; the rows come from memory."""

    #: rows per slice dealt to one partition (a partition's batches are at most this big)
    SLICE_ROWS = 65536

    def __init__(self, table: TableSpec):
        super().__init__(table)
        if self.kind is None or self.events_total is None:
            raise ConfigError("the replay source needs table = bid|auction|person and events")
        self.slices: list[pa.RecordBatch] = []
        self.position = 0
        self._pending: pa.RecordBatch | None = None

    def partitions(self, parallelism: int) -> list[str]:
        return [f"replay-{i}-of-{parallelism}" for i in range(parallelism)]

    def open(self, assigned: list[str], offsets: dict[str, Any] | None = None) -> None:
        rate = rate_option(self.table, "event_rate", DEFAULT_EVENT_RATE)
        seed = int_option(self.table, "seed", 0, minimum=-(2**63))
        generated = [gen for _, gen, _ in self.columns]
        data = events.generate(self.kind, self.events_total, rate, seed, generated)
        data = data.select(generated).rename_columns(self.schema.names)
        if not data.schema.equals(self.schema):
            data = data.cast(self.schema)
        pieces = [batch.slice(start, self.SLICE_ROWS) for batch in data.to_batches()
                  for start in range(0, batch.num_rows, self.SLICE_ROWS)]
        mine: list[int] = []
        for name in assigned:
            _, index, _, count = name.split("-")
            mine.extend(range(int(index), len(pieces), int(count)))
        self.slices = [pieces[k] for k in sorted(mine)]
        self.position = 0
        self._pending = None

    def finished(self) -> bool:
        return self.position >= len(self.slices) and self._pending is None

    def offsets(self) -> dict[str, Any]:
        return {"slice": self.position}

    def poll(self, max_rows: int, timeout: float) -> pa.RecordBatch | None:
        if self._pending is None:
            if self.position >= len(self.slices):
                return None
            self._pending = self.slices[self.position]
            self.position += 1
        batch = self._pending
        if batch.num_rows > max_rows:
            self._pending = batch.slice(max_rows)
            batch = batch.slice(0, max_rows)
        else:
            self._pending = None
        self.metrics.rows_read += batch.num_rows
        return batch


SOURCE = ReplaySource
