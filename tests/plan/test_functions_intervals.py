"""Interval text parsing (vectorized) and the kernels' helpers."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from caudal.errors import RuntimeFailure
from caudal.plan.functions.intervals import parse_interval, parse_intervals
from caudal.plan.functions.kernels import broadcast, finish, scatter
from caudal.plan.functions.nested import interleave, list_get


def test_parse_intervals_forms():
    got = parse_intervals(pa.array(["1 minute", "1 hour 30 minutes", "00:00:10",
                                    "2 days 01:00:00", "-1 day", "1.5 second", "10", None,
                                    "-01:30", "1h30m", "3 weeks", "250 ms", " 2 HOURS "]))
    assert got.to_pylist() == [
        dt.timedelta(minutes=1), dt.timedelta(minutes=90), dt.timedelta(seconds=10),
        dt.timedelta(days=2, hours=1), dt.timedelta(days=-1), dt.timedelta(seconds=1.5),
        dt.timedelta(seconds=10), None, dt.timedelta(minutes=-90), dt.timedelta(minutes=90),
        dt.timedelta(weeks=3), dt.timedelta(milliseconds=250), dt.timedelta(hours=2)]
    assert parse_interval("10 seconds") == 10_000_000


@pytest.mark.parametrize("text,message", [
    ("1 month", "months or years"), ("2 years", "months or years"),
    ("abc", "invalid input syntax"), ("1 parsec", "invalid interval unit"),
])
def test_parse_intervals_errors(text, message):
    with pytest.raises(RuntimeFailure, match=message):
        parse_intervals(pa.array([text]))


def test_parse_intervals_lenient():
    got = parse_intervals(pa.array(["1 month", "abc", "5 s"]), strict=False)
    assert got.to_pylist() == [None, None, dt.timedelta(seconds=5)]


_PARTS = ["1", "2.5", "-3", ".5", "10", "second", "seconds", "minute", "h", "ms", "day",
          "month", "x", "00:00:01", "-01:30", ":", " "]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(_PARTS), st.sampled_from(["", " "])), min_size=1,
                max_size=5))
def test_parse_interval_agrees_with_the_vectorized_parser(parts):
    """The plan-time parser (plain Python, no Polars) reads a literal as the column
    parser does: the same microseconds, or an error of the same kind."""
    text = "".join(a + b for a, b in parts)

    def read(parse):
        try:
            return parse(text)
        except RuntimeFailure as e:
            return str(e).split(":")[0]

    assert read(parse_interval) == read(lambda t: parse_intervals(pa.array([t]))[0].value)


def test_broadcast_and_finish():
    arrays, scalar = broadcast([pa.scalar(1), pa.array([1, 2, 3])])
    assert [len(a) for a in arrays] == [3, 3] and not scalar
    arrays, scalar = broadcast([pa.scalar(1), pa.scalar("x")])
    assert scalar and finish(arrays[1], scalar).as_py() == "x"


def test_scatter_and_lists():
    mask = np.array([False, True, False, True])
    assert scatter(pa.array([10, 20]), mask).to_pylist() == [None, 10, None, 20]
    lists = interleave([pa.array([1, 2]), pa.array([3, None])], pa.array([True, False]))
    assert lists.to_pylist() == [[1, 3], None]
    values = pa.array([[1, 2, 3], [], None, [4]], pa.list_(pa.int64()))
    assert list_get(values, pa.scalar(1)).to_pylist() == [1, None, None, 4]
    assert list_get(values, pa.array([3, 1, 1, -1]), one_based=True).to_pylist() == [
        3, None, None, None]
    assert list_get(values, pa.array([-1, 0, 0, -1]), one_based=False).to_pylist() == [
        3, None, None, 4]
    sliced = values.slice(1)
    assert list_get(sliced, pa.scalar(1)).to_pylist() == [None, None, 4]
