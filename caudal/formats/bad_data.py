"""What a source does with a malformed record: stop with a DataError, or drop and count it.

Text formats decode whole blocks of rows with Arrow's parsers; only when a block fails does
``decode_rows`` look for the culprits, by bisection, so the cost of bad records is paid only
where they are (a few decodes per bad row) and good rows keep their order.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pyarrow as pa

from caudal.errors import DataError

MODES = ("fail", "drop")
#: how many dropped records a source keeps as examples for the report
MAX_EXAMPLES = 5

#: one row of a text file: (line number of its first line, its bytes with the line ending)
Row = tuple[int, bytes]


class BadDataPolicy:
    """Applies a table's ``bad_data`` option to rejected rows of one file.

    ``metrics`` is the source's SourceMetrics (``bad_rows_dropped``, ``bad_row_examples``).
    """

    def __init__(self, mode: str, metrics: Any, where: str):
        self.mode = mode
        self.metrics = metrics
        self.where = where

    def reject(self, line: int, reason: str) -> None:
        """Raise (``fail``) or count (``drop``) one malformed row."""
        text = f"{self.where} line {line}: {reason}"
        if self.mode != "drop":
            raise DataError(f"malformed record in {text}",
                            hint="fix the record, or set bad_data = 'drop' to skip such records")
        self.metrics.bad_rows_dropped += 1
        if len(self.metrics.bad_row_examples) < MAX_EXAMPLES:
            self.metrics.bad_row_examples.append(text)



class Held(BadDataPolicy):
    """Takes a decoder's rejections without acting on them, for a format that finds more
    malformed records after decoding (debezium_json's ops): the rejections are then handed
    to ``policy`` together, in record order, so that ``fail`` names the first bad record."""

    def __init__(self, policy: BadDataPolicy):
        super().__init__(policy.mode, policy.metrics, policy.where)
        self.rejected: list[tuple[int, str]] = []

    def reject(self, line: int, reason: str) -> None:
        self.rejected.append((line, reason))

    def survivors(self, count: int) -> Callable[[], list[int]]:
        """For records numbered 0 .. count - 1 (the messages of a polled batch): the number
        of each decoded one, asked for on the error path only."""
        def numbers() -> list[int]:
            gone = {i for i, _ in self.rejected}
            return [i for i in range(count) if i not in gone]
        return numbers

def decode_rows(rows: list[Row], decode: Callable[[bytes], pa.Table],
                explain: Callable[[bytes, Exception], str],
                policy: BadDataPolicy) -> list[pa.Table]:
    """Decode ``rows`` whose block failed as a whole: the good ones in order, the bad ones
    handed to ``policy`` with ``explain(row, error)`` saying what is wrong."""
    good: list[pa.Table] = []

    def visit(lo: int, hi: int) -> None:
        if lo >= hi:
            return
        try:
            good.append(decode(b"".join(row for _, row in rows[lo:hi])))
            return
        except pa.ArrowInvalid as error:
            if hi - lo == 1:
                line, row = rows[lo]
                policy.reject(line, explain(row, error))
                return
        mid = (lo + hi) // 2
        visit(lo, mid)
        visit(mid, hi)

    visit(0, len(rows))
    return good
