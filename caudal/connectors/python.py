"""The python connector: tables held by the Python process that runs the job.

A source reads an Arrow table handed over by ``caudal.testing`` or the frame API (bounded,
one partition, the offset is a row count, so a checkpointed job resumes where it was). A sink
hands the rows a job writes to a ``Collector`` of the same process (``collect()`` and
``stream()`` of the frame API). Both find their data by the ``handle`` option, a name in this
module's registries. On Ray the subtasks run in worker processes: the driver ships the
tables their sources read (``shipment``/``install``) and the workers' sinks write to relays
whose recorded calls the driver replays on its collectors (``replay``).

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
COLLECTORS: dict[str, Collector | Relay] = {}
_OPTIONS = {"handle": "the name of a table (source) or collector (sink) of this process"}


def register_table(table: pa.Table) -> str:
    """Hold ``table`` for python sources and return its handle, named by its content (the
    same rows get the same handle: a plan stays the same from one run to the next, so a
    checkpointed job resumes)."""
    try:  # CPython's own SHA-1 (the same digest): hashlib loads OpenSSL (~3 ms) for it
        from _sha1 import sha1
    except ImportError:  # another Python
        from hashlib import sha1

    digest = sha1()
    for field in table.schema:
        digest.update(str(field).encode())
    for batch in table.to_batches():
        for buf in batch.to_struct_array().buffers():
            if buf is not None:
                digest.update(buf)
    handle = digest.hexdigest()[:16]
    TABLES[handle] = table
    return handle


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
        self.data = None
        if assigned:
            data = data.select(self.schema.names)
            # Table.cast imports pyarrow.compute: a literal SELECT's row needs none
            self.data = data if data.schema.equals(self.schema) else data.cast(self.schema)
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
    """Receives the committed batches of one job's output (every sink subtask's). The sinks
    call ``deliver`` (no checkpoints) or ``stage``/``commit``/``abort`` (two-phase); on Ray a
    ``Relay`` in the worker's process records those calls and the driver replays them here,
    so the staged rows of a killed worker are still here for recovery to commit."""

    def __init__(self):
        self.batches: list[pa.RecordBatch] = []
        self.queue: queue.Queue = queue.Queue()
        #: (writer id, epoch) -> batches pre-committed, awaiting the checkpoint
        self.pending: dict[tuple[str, int], list[pa.RecordBatch]] = {}
        self.lock = threading.Lock()
        self.schema: pa.Schema | None = None

    def set_schema(self, schema: pa.Schema) -> None:
        self.schema = schema

    def deliver(self, batches: list[pa.RecordBatch]) -> None:
        with self.lock:
            self.batches.extend(batches)
        for b in batches:
            self.queue.put(b)

    def stage(self, writer: str, epoch: int, batches: list[pa.RecordBatch]) -> None:
        with self.lock:
            self.pending[(writer, epoch)] = batches

    def commit(self, writer: str, epoch: int) -> None:
        ready = []
        with self.lock:
            for key in sorted(k for k in self.pending if k[0] == writer and k[1] <= epoch):
                ready.extend(self.pending.pop(key))
        self.deliver(ready)

    def abort(self, writer: str, epoch: int) -> None:
        with self.lock:
            self.pending.pop((writer, epoch), None)


class Relay:
    """A collector in another process than the job's driver (a Ray worker): it records the
    sinks' calls, in order, for the driver to take (``take``) and replay on the real
    collector (``replay``)."""

    def __init__(self) -> None:
        self._calls: list[tuple[str, tuple]] = []
        self._lock = threading.Lock()

    def __getattr__(self, name: str):
        if name not in _RELAYED:
            raise AttributeError(name)

        def record(*args: Any) -> None:
            with self._lock:
                self._calls.append((name, args))

        return record

    def take(self) -> list[tuple[str, tuple]]:
        with self._lock:
            calls, self._calls = self._calls, []
        return calls


_RELAYED = {"set_schema", "deliver", "stage", "commit", "abort"}


def shipment(vertices: list[Any]) -> dict[str, pa.Table]:
    """What the subtasks of ``vertices`` need of this process to run in another one (a Ray
    worker): the tables their python sources read, by handle."""
    return {v.source.options["handle"]: TABLES[v.source.options["handle"]]
            for v in vertices if v.source is not None
            and v.source.connector == "python"
            and v.source.options.get("handle") in TABLES}


def install(vertices: list[Any], tables: dict[str, pa.Table]) -> dict[str, Relay]:
    """In a worker process: register the shipped tables, and a relay for each python sink
    of ``vertices``; returns the relays by handle (``Relay.take`` what they recorded)."""
    TABLES.update(tables)
    relays = {}
    for v in vertices:
        if v.sink is not None and v.sink.connector == "python":
            handle = v.sink.options.get("handle")
            relays[handle] = COLLECTORS.setdefault(handle, Relay())
    return relays


def replay(calls: dict[str, list[tuple[str, tuple]]]) -> None:
    """In the driver: apply what workers' relays recorded to this process's collectors."""
    for handle, recorded in calls.items():
        collector = COLLECTORS.get(handle)
        if collector is None:  # the consumer went away (stream() closed early)
            continue
        for name, args in recorded:
            getattr(collector, name)(*args)


class PythonSink(Sink):
    OPTIONS = _OPTIONS
    accepts_updates = True

    @classmethod
    def validate(cls, table: TableSpec) -> None:
        _handle(table, COLLECTORS)

    def open(self, schema: pa.Schema, restored: dict[str, Any] | None = None) -> None:
        super().open(schema, restored)
        self.collector = COLLECTORS[_handle(self.table, COLLECTORS)]
        self.collector.set_schema(schema)
        self.buffer: list[pa.RecordBatch] = []

    def write(self, batch: pa.RecordBatch) -> None:
        if batch.num_rows == 0:
            return
        if self.checkpointing:
            self.buffer.append(batch)
        else:
            self.collector.deliver([batch])

    def pre_commit(self, epoch: int) -> dict[str, Any]:
        self.collector.stage(self.writer_id(), epoch, self.buffer)
        self.buffer = []
        return {"pending": [epoch]}

    def commit(self, epoch: int) -> None:
        self.collector.commit(self.writer_id(), epoch)

    def abort(self, epoch: int) -> None:
        self.collector.abort(self.writer_id(), epoch)


SOURCE = PythonSource
SINK = PythonSink
