"""The ``bench`` sink: counts rows, measures end-to-end latency, optionally keeps the rows.

It is registered as connector ``bench`` only when ``caudal.bench`` is imported, so user jobs
never see it. The harness swaps it in for a query's ``results`` table.

Latency of a result row = the wall clock when its batch reaches this sink minus the time the
row was due, read from the ``latency_column`` option: for a row that passes an event through
(q1) its event time, for a window's result the window's end. With the nexmark source paced on
the wall clock (``pace = true, base_time = 'now'``) an event is generated, at the earliest, at
its event time, so this is the time from an event's generation (or from the moment a window's
result became computable) to the result's arrival. It is computed per batch with one NumPy
subtraction; the per-row values are kept as int32 microseconds for percentiles.
"""

from __future__ import annotations

import threading
import time

import numpy as np
import pyarrow as pa

from caudal.connectors.base import Sink
from caudal.connectors.nexmark import bool_option
from caudal.errors import ConfigError
from caudal.plan.changelog import OP, weights
from caudal.plan.tables import TableSpec

#: every bench sink of the process, so the harness can read them after a run
_INSTANCES: list[BenchSink] = []
_LOCK = threading.Lock()


class BenchSink(Sink):
    """Discards rows (like blackhole) after counting them and timing their arrival."""

    #: like blackhole it takes a changelog: an updating query's rows (inserts and
    #: retractions) are counted and timed like any others
    accepts_updates = True

    OPTIONS = {
        "latency_column": "a TIMESTAMP result column: latency = arrival - its value",
        "collect": "true: keep the batches (for checking results; small runs only)",
    }

    @classmethod
    def validate(cls, table: TableSpec) -> None:
        bool_option(table, "collect", False)

    def __init__(self, table: TableSpec, subtask: int = 0, parallelism: int = 1):
        super().__init__(table, subtask, parallelism)
        self.rows = 0
        #: rows of the result (inserts minus retractions, for an updating query)
        self.net_rows = 0
        self.batches = 0
        self.column = table.options.get("latency_column")
        self.collect = bool_option(table, "collect", False)
        self.kept: list[pa.RecordBatch] = []
        self.latencies: list[np.ndarray] = []
        with _LOCK:
            _INSTANCES.append(self)

    def open(self, schema: pa.Schema, restored=None) -> None:
        super().open(schema, restored)
        if self.column is not None:
            if self.column not in schema.names:
                raise ConfigError(f"latency_column {self.column!r} is not a result column",
                                  hint="columns: " + ", ".join(schema.names))
            if not pa.types.is_timestamp(schema.field(self.column).type):
                raise ConfigError(f"latency_column {self.column!r} is not a TIMESTAMP")

    def write(self, batch: pa.RecordBatch) -> None:
        arrived = time.time_ns() // 1000
        self.rows += batch.num_rows
        self.batches += 1
        if OP in batch.schema.names:  # a changelog: the result has sum(weights) rows
            self.net_rows += int(weights(batch).sum())
        else:
            self.net_rows += batch.num_rows
        if self.column is not None:
            due = batch.column(self.column).cast(pa.int64()).to_numpy(zero_copy_only=False)
            self.latencies.append((arrived - due).astype(np.int32))
        if self.collect:
            self.kept.append(batch)


def take_instances() -> list[BenchSink]:
    """The bench sinks created since the last call (and forget them)."""
    with _LOCK:
        out = list(_INSTANCES)
        _INSTANCES.clear()
    return out


def latency_percentiles(sinks: list[BenchSink],
                        quantiles: tuple[float, ...] = (0.5, 0.99, 0.999)) -> dict[str, float]:
    """p50/p99/p999 (and max) of the latencies of all rows, in milliseconds."""
    parts = [a for s in sinks for a in s.latencies]
    if not parts:
        return {}
    values = np.concatenate(parts)
    if not len(values):
        return {}
    qs = np.quantile(values, quantiles)
    out = {f"p{str(q * 100).rstrip('0').rstrip('.').replace('.', '')}": float(v) / 1000
           for q, v in zip(quantiles, qs)}
    out["max"] = float(values.max()) / 1000
    out["samples"] = float(len(values))
    return out


SINK = BenchSink
