"""Testing helpers: bounded in-memory sources, and comparing a changelog's folded result
with an expected table.

>>> import caudal as cd
>>> src = cd.testing.from_records([{"k": "a", "v": 1}, {"k": "a", "v": 2}])
>>> cd.testing.assert_frame_equal(src.group_by("k").agg(cd.col("v").sum()),
...                               [{"k": "a", "v": 3}])
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pyarrow as pa

from caudal.frame.run import fold
from caudal.plan.changelog import OP


def from_records(data: Any, *, event_time: str | None = None, watermark_delay: Any = None):
    """A bounded frame over rows: a list of dicts, a dict of columns, a pyarrow Table or
    RecordBatch, or a Polars DataFrame (``event_time``/``watermark_delay`` as in DDL)."""
    from caudal.frame.frame import from_arrow

    return from_arrow(data, event_time=event_time, watermark_delay=watermark_delay)


def _sorted_rows(table: pa.Table) -> list[dict]:
    rows = table.to_pylist()
    return sorted(rows, key=lambda r: [(v is None, repr(v)) for v in r.values()])


def assert_table_equal(actual: pa.Table, expected: Any, *, check_order: bool = False) -> None:
    """Assert the rows are equal (as a multiset unless ``check_order``); a changelog (with
    ``_op``) is folded first. ``expected``: a Table, a list of dicts or a dict of columns."""
    from caudal.frame.frame import _as_arrow

    if OP in actual.column_names:
        actual = fold(actual)
    expected_table = _as_arrow(expected) if not isinstance(expected, list) or expected \
        else pa.table({c: pa.array([], actual.schema.field(c).type)
                       for c in actual.column_names})
    if actual.column_names != expected_table.column_names:
        raise AssertionError(f"columns differ: {actual.column_names} != "
                             f"{expected_table.column_names}")
    got = actual.to_pylist() if check_order else _sorted_rows(actual)
    want = expected_table.to_pylist() if check_order else _sorted_rows(expected_table)
    if got != want:
        missing = [r for r in want if r not in got][:5]
        extra = [r for r in got if r not in want][:5]
        raise AssertionError(f"{len(got)} rows vs {len(want)} expected; missing {missing}, "
                             f"unexpected {extra}")


def assert_frame_equal(frame, expected: Any, **options: Any) -> None:
    """Run ``frame`` to the end and assert its (folded) result equals ``expected``."""
    assert_table_equal(frame.collect(**options), expected)


class ManualClock:
    """Processing time that moves only when told (``advance``); see ``manual_clock``."""

    def __init__(self, start_us: int):
        self.us = start_us

    def __call__(self) -> int:
        return self.us

    def advance(self, by: Any) -> None:
        from caudal.durations import parse_duration_us

        self.us += parse_duration_us(by, "advance") if not hasattr(by, "total_seconds") \
            else int(by.total_seconds() * 1_000_000)

    def set(self, moment: Any) -> None:
        self.us = _instant_us(moment)


def _instant_us(moment: Any) -> int:
    import datetime as dt

    if isinstance(moment, (int, float)):
        return int(moment)
    if isinstance(moment, str):
        moment = dt.datetime.fromisoformat(moment)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    return int(moment.timestamp() * 1_000_000)


@contextmanager
def manual_clock(start: Any = "2026-01-01 00:00:00") -> Iterator[ManualClock]:
    """Processing time under the test's control while the block runs: ``now()``,
    ``PROCTIME()``, processing-time windows and updating flush/TTL timers read it.

    >>> import caudal as cd
    >>> with cd.testing.manual_clock("2026-01-01 12:00:00") as clock:
    ...     f = cd.testing.from_records([{"x": 1}])
    ...     t = f.select(cd.call("now").alias("t")).collect()
    >>> str(t.column("t")[0].as_py())
    '2026-01-01 12:00:00+00:00'
    """
    from caudal import clock as caudal_clock

    manual = ManualClock(_instant_us(start))
    caudal_clock.set_source(manual)
    try:
        yield manual
    finally:
        caudal_clock.set_source(None)
