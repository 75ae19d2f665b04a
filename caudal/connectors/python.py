"""The python connector: tables held by the Python process that runs the job.

A source reads an Arrow table handed over by ``caudal.testing`` or the frame API (bounded,
one partition, the offset is a row count, so a checkpointed job resumes where it was). A sink
hands the rows a job writes to a ``Collector`` of the same process (``collect()`` and
``stream()`` of the frame API). Both find their data by the ``handle`` option, a name in this
module's registries: the connector only works on the embedded runtime, in one process.

The sink is two-phase like the others: with checkpoints a collector sees an epoch's rows only
once the checkpoint is complete; without them rows are delivered as they are written.
"""

from __future__ import annotations

import queue
import threading
from typing import Any

import pyarrow as pa

from caudal.connectors.base import Sink, Source
from caudal.errors import ConfigError
from caudal.plan.tables import TableSpec

#: handle -> the Arrow table a source reads
TABLES: dict[str, pa.Table] = {}
#: handle -> where a sink delivers
COLLECTORS: dict[str, Collector] = {}
_OPTIONS = {"handle": "the name of a table (source) or collector (sink) of this process"}


def _handle(table: TableSpec, registry: dict) -> str:
    handle = table.options.get("handle")
    if handle not in registry:
        raise ConfigError(f"table {table.name!r}: python connector handle {handle!r} is not "
                          "registered in this process",
                          hint="python tables come from caudal.testing or the frame API")
    return handle


class PythonSource(Source):
    OPTIONS = _OPTIONS

    @classmethod
    def validate(cls, table: TableSpec) -> None:
        _handle(table, TABLES)

    @classmethod
    def infer_schema(cls, table: TableSpec) -> pa.Schema:
        return TABLES[_handle(table, TABLES)].schema

    def partitions(self, parallelism: int) -> list[str]:
        return ["0"]

    def open(self, assigned: list[str], offsets: dict[str, Any] | None = None) -> None:
        data = TABLES[_handle(self.table, TABLES)]
        self.data = data.select(self.schema.names).cast(self.schema) if assigned else None
        self.position = int((offsets or {}).get("0", 0))

    def poll(self, max_rows: int, timeout: float) -> pa.RecordBatch | None:
        if self.finished():
            return None
        piece = self.data.slice(self.position, max_rows).combine_chunks()
        self.position += piece.num_rows
        self.metrics.rows_read += piece.num_rows
        return piece.to_batches()[0] if piece.num_rows else None

    def finished(self) -> bool:
        return self.data is None or self.position >= self.data.num_rows

    def offsets(self) -> dict[str, Any]:
        return {"0": self.position} if self.data is not None else {}


class Collector:
    """Receives the committed batches of one job's output (every sink subtask's)."""

    def __init__(self):
        self.batches: list[pa.RecordBatch] = []
        self.queue: queue.Queue = queue.Queue()
        #: (writer id, epoch) -> batches pre-committed, awaiting the checkpoint
        self.pending: dict[tuple[str, int], list[pa.RecordBatch]] = {}
        self.lock = threading.Lock()
        self.schema: pa.Schema | None = None

    def deliver(self, batches: list[pa.RecordBatch]) -> None:
        with self.lock:
            self.batches.extend(batches)
        for b in batches:
            self.queue.put(b)


class PythonSink(Sink):
    OPTIONS = _OPTIONS
    accepts_updates = True

    @classmethod
    def validate(cls, table: TableSpec) -> None:
        _handle(table, COLLECTORS)

    def open(self, schema: pa.Schema, restored: dict[str, Any] | None = None) -> None:
        super().open(schema, restored)
        self.collector = COLLECTORS[_handle(self.table, COLLECTORS)]
        self.collector.schema = schema
        self.buffer: list[pa.RecordBatch] = []

    def write(self, batch: pa.RecordBatch) -> None:
        if batch.num_rows == 0:
            return
        if self.checkpointing:
            self.buffer.append(batch)
        else:
            self.collector.deliver([batch])

    def pre_commit(self, epoch: int) -> dict[str, Any]:
        with self.collector.lock:
            self.collector.pending[(self.writer_id(), epoch)] = self.buffer
        self.buffer = []
        return {"pending": [epoch]}

    def commit(self, epoch: int) -> None:
        ready = []
        with self.collector.lock:
            for key in sorted(k for k in self.collector.pending
                              if k[0] == self.writer_id() and k[1] <= epoch):
                ready.extend(self.collector.pending.pop(key))
        self.collector.deliver(ready)

    def abort(self, epoch: int) -> None:
        with self.collector.lock:
            self.collector.pending.pop((self.writer_id(), epoch), None)


SOURCE = PythonSource
SINK = PythonSink
