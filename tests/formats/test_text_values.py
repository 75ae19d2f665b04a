"""caudal.formats.text: how values look as text in JSON, CSV and on stdout."""

from __future__ import annotations

import datetime as dt
import decimal

import pyarrow as pa
import pytest

from caudal.formats import text
from caudal.types import TIMESTAMP

UTC = dt.UTC


def test_rfc3339_shows_fraction_only_when_present() -> None:
    ts = pa.array([dt.datetime(2026, 1, 1, tzinfo=UTC), dt.datetime(2026, 1, 1, 0, 0, 1, 500,
                                                                     tzinfo=UTC), None,
                   dt.datetime(1969, 12, 31, 23, 59, 59, 999999, tzinfo=UTC)], TIMESTAMP)
    assert text.rfc3339(ts).to_pylist() == ["2026-01-01T00:00:00Z", "2026-01-01T00:00:01.000500Z",
                                            None, "1969-12-31T23:59:59.999999Z"]
    naive_ms = pa.array([1_767_225_600_250], pa.timestamp("ms"))
    assert text.rfc3339(naive_ms).to_pylist() == ["2026-01-01T00:00:00.250Z"]
    assert text.rfc3339(pa.chunked_array([ts.slice(0, 1)]), sep=" ").to_pylist() == [
        "2026-01-01 00:00:00Z"]


def test_hex_round_trip_and_errors() -> None:
    raw = pa.array([b"ab", None, b"", b"\x00\xff\x10"])
    shown = text.hex_text(raw)
    assert shown.to_pylist() == ["\\x6162", None, "\\x", "\\x00ff10"]
    assert text.parse_hex(shown).equals(raw)
    assert text.hex_text(raw.slice(2)).to_pylist() == ["\\x", "\\x00ff10"]
    assert text.parse_hex(pa.array(["\\xABcd"])).to_pylist() == [b"\xab\xcd"]
    for bad in ["\\x1", "ab", "\\xzz"]:
        with pytest.raises(pa.ArrowInvalid):
            text.parse_hex(pa.array([bad]))


def test_to_text_of_each_kind() -> None:
    assert text.to_text(pa.array([1, None])).to_pylist() == ["1", None]
    assert text.to_text(pa.array([decimal.Decimal("1.50")], pa.decimal128(5, 2))).to_pylist() \
        == ["1.50"]
    assert text.to_text(pa.array([True, False])).to_pylist() == ["true", "false"]
    assert text.to_text(pa.array([dt.date(2026, 1, 2)])).to_pylist() == ["2026-01-02"]
    assert text.to_text(pa.array([[1, 2], None], pa.list_(pa.int64()))).to_pylist() == [
        "[1,2]", None]
    assert text.to_text(pa.array([{"a": 1, "b": "x"}])).to_pylist() == ['{"a":1,"b":"x"}']
    assert text.to_text(pa.array([1_000_000, None], pa.duration("us"))).to_pylist() == [
        "PT1S", None]
    assert text.to_text(pa.array([None, None])).to_pylist() == [None, None]
    assert text.to_text(pa.array(["a", "b"]).dictionary_encode()).to_pylist() == ["a", "b"]
