"""The blackhole connector: discards rows and counts them (benchmarks, dry runs)."""

from __future__ import annotations

import pyarrow as pa

from caudal.connectors.base import Sink
from caudal.plan.tables import TableSpec


class BlackholeSink(Sink):
    """Accepts everything, keeps only ``rows``, the number of rows written."""

    OPTIONS: dict[str, str] = {}
    #: a changelog is discarded like any other rows
    accepts_updates = True

    def __init__(self, table: TableSpec, subtask: int = 0, parallelism: int = 1):
        super().__init__(table, subtask, parallelism)
        self.rows = 0

    def write(self, batch: pa.RecordBatch) -> None:
        self.rows += batch.num_rows


SINK = BlackholeSink
