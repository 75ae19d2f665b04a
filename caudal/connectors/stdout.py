"""The stdout connector: prints rows as they arrive, for people watching a query run.

Not two-phase: what is printed stays printed, so after a restart rows may repeat. The text is
built per batch with Arrow kernels (cast, pad, join), then written and flushed at once.
"""

from __future__ import annotations

import sys
from typing import Any

import pyarrow as pa

from caudal import compute as pc
from caudal.connectors.base import Sink
from caudal.errors import ConfigError
from caudal.formats.text import to_text
from caudal.plan.changelog import OP, OP_NAMES
from caudal.plan.tables import TableSpec
from caudal.terminal import rows_output

FORMATS = ("table", "json")
#: a column is padded to the width of its header and first batch, up to this many characters
MAX_WIDTH = 40
SEPARATOR = "  "
ELLIPSIS = "…"
#: the text pieces the kernels join, as typed scalars: a bare Python string is converted by
#: pyarrow's type inference, which imports dateutil (with calendar and locale, 3-15 ms)
_TEXT = {s: pa.scalar(s, pa.string()) for s in (SEPARATOR, ELLIPSIS, "", "NULL", "\n")}
#: the title of the output that printed last (outputs of one job share the process's stdout;
#: only read and written under the terminal lock of ``rows_output``)
_LAST_TITLE: dict[str, str | None] = {"title": None}


def _right_aligned(t: pa.DataType) -> bool:
    return pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_decimal(t)


def _join_lines(lines: pa.Array) -> str:
    """All strings of ``lines`` as one text, each ended by a newline."""
    joined = pc.binary_join(pa.ListArray.from_arrays(pa.array([0, len(lines)], pa.int32()),
                                                     lines), _TEXT["\n"])
    return joined[0].as_py() + "\n"


class StdoutSink(Sink):
    """Prints each batch to ``sys.stdout``: aligned columns under a header, or JSON lines."""

    OPTIONS = {"format": "table (default: columns under a header line) or json (JSON lines)"}
    #: an updating query prints each change with an ``op`` column first: +I, -U, +U, -D
    accepts_updates = True

    @classmethod
    def validate(cls, table: TableSpec) -> None:
        fmt = table.option("format", "table")
        if fmt not in FORMATS:
            raise ConfigError(f"format = {fmt!r} for stdout table {table.name!r}",
                              line=table.line, hint="accepted: " + ", ".join(FORMATS))

    def open(self, schema: pa.Schema, restored: dict[str, Any] | None = None) -> None:
        super().open(schema, restored)
        self.validate(self.table)
        self.format = self.table.option("format", "table")
        self._widths: list[int] | None = None
        self._header = ""

    def write(self, batch: pa.RecordBatch) -> None:
        if batch.num_rows == 0:
            return
        if OP in batch.schema.names:
            batch = _op_first(batch)
        heading = ""
        if self.format == "json":
            from caudal.formats import json as json_format  # only JSON lines need it

            text = json_format.encode(batch).decode("utf-8")
        else:
            first = self._widths is None
            text = self._table_text(batch)
            heading = self._header if first else ""
        with rows_output():  # never on the line of a status line drawn on the terminal
            out = sys.stdout
            out.write(self._titled(heading) + text)
            out.flush()

    def _titled(self, heading: str) -> str:
        """When several outputs of the job print here, this output's title and column header
        go before its rows whenever another output printed in between, so rows never sit
        under another query's header. Called under the terminal lock."""
        title = self.table.title
        if title is None or self.format == "json":  # JSON lines stay JSON lines
            return heading
        previous, _LAST_TITLE["title"] = _LAST_TITLE["title"], title
        if previous == title:
            return heading
        return ("\n" if previous is not None else "") + f"-- {title}\n" + self._header

    def _table_text(self, batch: pa.RecordBatch) -> str:
        if batch.num_columns == 0:
            return "\n" * batch.num_rows
        # times as SQL clients print them: a space before the time, no zone suffix (UTC)
        cells = [pc.replace_substring(pc.fill_null(to_text(c, " ", zone=False), _TEXT["NULL"]),
                                      "\n", "\\n")
                 for c in batch.columns]
        names = batch.schema.names
        if self._widths is None:
            self._widths = [min(MAX_WIDTH, max(len(n), pc.max(pc.utf8_length(c)).as_py() or 0))
                            for n, c in zip(names, cells)]
            self._header = _join_lines(self._line([_texts([n]) for n in names], batch.schema))
        return _join_lines(self._line(cells, batch.schema))

    def _pad(self, cells: list[pa.Array], schema: pa.Schema) -> list[pa.Array]:
        """Every column at the width the first batch set (the last one up to MAX_WIDTH,
        unpadded): longer text is cut and ends with an ellipsis, so columns stay aligned
        across batches."""
        padded = []
        last = len(cells) - 1
        for i, (cell, width) in enumerate(zip(cells, self._widths)):
            cell = _fit(cell, MAX_WIDTH if i == last else width)
            if _right_aligned(schema.field(i).type):
                padded.append(pc.utf8_lpad(cell, width))
            elif i < last:
                padded.append(pc.utf8_rpad(cell, width))
            else:
                padded.append(cell)
        return padded

    def _line(self, cells: list[pa.Array], schema: pa.Schema) -> pa.Array:
        padded = self._pad(cells, schema)
        return pc.binary_join_element_wise(*padded, _TEXT[SEPARATOR]) if len(padded) > 1 else padded[0]


def _texts(values: list[str]) -> pa.Array:
    """Python strings as an Arrow string array, typed: pyarrow's inference of a type for
    Python values imports dateutil (with calendar and locale, ~8 M instructions); through
    NumPy's strings would cost ~38 M."""
    return pa.array(values, pa.string())


def _fit(cells: pa.Array, width: int) -> pa.Array:
    """Text longer than ``width`` characters cut to ``width``, its last one an ellipsis."""
    too_long = pc.greater(pc.utf8_length(cells), pa.scalar(width, pa.int32()))
    if not pc.any(too_long).as_py():
        return cells
    cut = pc.binary_join_element_wise(pc.utf8_slice_codeunits(cells, 0, max(width - 1, 0)),
                                      _TEXT[ELLIPSIS], _TEXT[""])
    return pc.if_else(too_long, cut, cells)


def _op_first(batch: pa.RecordBatch) -> pa.RecordBatch:
    """A changelog batch with its ``_op`` column shown as text, first (``op``)."""
    ops = batch.column(OP).cast(pa.int8())
    codes = sorted(OP_NAMES)
    text = pc.take(_texts([OP_NAMES[c] for c in codes]),
                   pc.index_in(ops, pa.array(codes, pa.int8())))
    data = batch.drop_columns([OP])
    return pa.RecordBatch.from_arrays([text, *data.columns], names=["op", *data.schema.names])


SINK = StdoutSink
