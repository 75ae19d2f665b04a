"""Late materialization: read wide columns of a bounded file source for the rows a selective
operator kept, instead of decoding them for every row (plan.late_columns).

The source emits row locators (``LOCATOR_FILE``, ``LOCATOR_ROW``) in place of the late
columns; this operator, right after the selective one, puts the columns back in their
places from the files and drops the locators. It keeps no state: the locators themselves
are checkpointed by the operators that hold rows, and they stay valid over files that do
not change (connectors.filesystem.RowFetcher refuses a changed file).
"""

from __future__ import annotations

from collections.abc import Sequence

import pyarrow as pa

from caudal.connectors import registry as connectors
from caudal.operators.base import Operator
from caudal.plan.tables import LOCATOR_FILE, LOCATOR_ROW, TableSpec


class LateColumns(Operator):
    """Replaces the locators of each batch by the late columns.

    ``columns``: output column name -> the table's column it is read from; every other
    output column is the input's column of the same name."""

    accepts_merged_batches = True

    def __init__(self, table: TableSpec, columns: dict[str, str], output_schema: pa.Schema):
        self.table = table
        self.columns = dict(columns)
        self.output_schema = output_schema
        self._sources = sorted(set(self.columns.values()))
        self._fetcher = None

    def process(self, batch: pa.RecordBatch, input: int = 0) -> Sequence[pa.RecordBatch]:
        if batch.num_rows == 0:
            return ()
        if self._fetcher is None:
            self._fetcher = connectors.row_fetcher(self.table)(self.table, self._sources)
        keys = batch.column(LOCATOR_FILE).to_numpy(zero_copy_only=False)
        rows = batch.column(LOCATOR_ROW).to_numpy(zero_copy_only=False)
        fetched = dict(zip(self._sources, self._fetcher.fetch(keys, rows)))
        out = []
        for field in self.output_schema:
            source = self.columns.get(field.name)
            col = batch.column(field.name) if source is None else fetched[source]
            if isinstance(col, pa.ChunkedArray):
                col = col.combine_chunks()
            if not col.type.equals(field.type):
                col = col.cast(field.type)
            out.append(col)
        return (pa.RecordBatch.from_arrays(out, schema=self.output_schema),)

    def close(self) -> None:
        if self._fetcher is not None:
            self._fetcher.close()
            self._fetcher = None
