"""caudal.formats.json: strict, vectorized decoding of JSON lines and the encoder."""

from __future__ import annotations

import datetime as dt
import decimal
import io
import json

import pyarrow as pa
import pytest

from caudal.connectors.base import SourceMetrics
from caudal.errors import ConfigError, DataError
from caudal.formats import json as jsonl
from caudal.formats.bad_data import BadDataPolicy
from caudal.types import TIMESTAMP

UTC = dt.UTC
SCHEMA = pa.schema([("a", pa.int64()), ("t", TIMESTAMP), ("d", pa.decimal128(10, 2)),
                    ("day", pa.date32()), ("raw", pa.binary())])


def decode(text: str) -> list[dict]:
    return jsonl.Decoder(SCHEMA).decode(text.encode()).to_pylist()


def test_values_that_convert() -> None:
    rows = decode('{"a": 1, "t": "2026-01-01T02:00:00+02:00", "d": "1.5", "day": "2026-01-02",'
                  ' "raw": "\\\\x00ff", "other": {"x": [1]}}\n\n'
                  '{"t": "2026-01-01 00:00:00.25", "d": 2.25}\n')
    assert rows == [
        {"a": 1, "t": dt.datetime(2026, 1, 1, tzinfo=UTC), "d": decimal.Decimal("1.50"),
         "day": dt.date(2026, 1, 2), "raw": b"\x00\xff"},
        {"a": None, "t": dt.datetime(2026, 1, 1, 0, 0, 0, 250000, tzinfo=UTC),
         "d": decimal.Decimal("2.25"), "day": None, "raw": None}]


@pytest.mark.parametrize("line", ['{"a": "1"}', '{"a": 1.0}', '{"a": true}', '{"t": 0}',
                                  '{"d": "1.234"}', '{"day": "2026-02-30"}', '{"raw": "ab"}',
                                  '{"a": 1, "a": 2}', "null", " null", "nulls", "5",
                                  '{"a": 1} null', '{"a": 1}{"a": 2}', '{"a": 1}\n null'])
def test_values_of_the_wrong_type_are_rejected(line: str) -> None:
    with pytest.raises(pa.ArrowInvalid):
        decode(line + "\n")


def test_blocks_and_bad_lines_across_block_boundaries() -> None:
    lines = [json.dumps({"a": i}) for i in range(200)]
    lines[150] = '{"a": "x"}'
    data = ("\n".join(lines)).encode()
    metrics = SourceMetrics()
    policy = BadDataPolicy("drop", metrics, "file f")
    tables = list(jsonl.read(io.BytesIO(data), pa.schema([("a", pa.int64())]), policy,
                             block_size=100))
    got = [v for t in tables for v in t.column("a").to_pylist()]
    assert got == [i for i in range(200) if i != 150]
    assert metrics.bad_rows_dropped == 1
    assert metrics.bad_row_examples == ["file f line 151: column 'a' expects BIGINT, got \"x\""]
    with pytest.raises(DataError, match="file f line 151"):
        list(jsonl.read(io.BytesIO(data), pa.schema([("a", pa.int64())]),
                        BadDataPolicy("fail", SourceMetrics(), "file f"), block_size=100))


def test_long_lines_and_byte_order_mark() -> None:
    long = "y" * (3 << 20)
    data = ("\ufeff" + json.dumps({"s": long}) + "\n" + '{"s": "z"}').encode()
    tables = list(jsonl.read(io.BytesIO(data), pa.schema([("s", pa.string())]),
                             BadDataPolicy("fail", SourceMetrics(), "f")))
    assert [v for t in tables for v in t.column("s").to_pylist()] == [long, "z"]


def test_encode_is_json_lines() -> None:
    batch = pa.record_batch({"a": [1, None], "t": pa.array([dt.datetime(2026, 1, 1, tzinfo=UTC),
                                                            None], TIMESTAMP),
                             "s": ["é\"\n", None]})
    lines = jsonl.encode(batch).decode().splitlines()
    assert [json.loads(x) for x in lines] == [{"a": 1, "t": "2026-01-01T00:00:00", "s": "é\"\n"},
                                              {"a": None, "t": None, "s": None}]
    assert jsonl.encode(batch.slice(0, 0)) == b""


def test_infer_and_unsupported_types() -> None:
    schema = jsonl.infer_schema(io.BytesIO(b'{"a": 1, "b": 1.5, "c": "x", "n": null}\n'))
    assert schema == pa.schema([("a", pa.int64()), ("b", pa.float64()), ("c", pa.string()),
                                ("n", pa.string())])
    with pytest.raises(ConfigError, match="JSON input cannot hold INTERVAL"):
        jsonl.Decoder(pa.schema([("i", pa.duration("us"))]))


def test_decimal_is_written_as_an_exact_json_number_and_read_back() -> None:
    """Flink's JSON format writes DECIMAL as a number (caudal wrote its text, "1.50"): every
    digit, never through a float, on both encoders (Arrow's for plain rows, Polars's when
    a REAL column needs it), in a ROW too; read back as the DECIMAL it was."""
    values = [decimal.Decimal("1.2500000000"), decimal.Decimal("-0.0000000001"),
              decimal.Decimal("12345678901234567890123456.7890123456"), None,
              decimal.Decimal("0E-10")]
    d = pa.array(values, pa.decimal128(38, 10))
    for batch in (pa.record_batch({"d": d, "s": list("abcde")}),
                  pa.record_batch({"d": d, "f": pa.array([1.5] * 5, pa.float32())})):
        data = jsonl.encode(batch)
        assert data.splitlines()[0].startswith(b'{"d":1.2500000000,')
        assert b'"d":-1E-10' in data and b'"d":12345678901234567890123456.7890123456' in data
        schema = pa.schema([("d", pa.decimal128(38, 10))])
        assert jsonl.Decoder(schema).decode(data).column("d").to_pylist() == values
    nested = pa.record_batch({"r": pa.array([{"d": decimal.Decimal("2.50")}],
                                            pa.struct([("d", pa.decimal128(10, 2))]))})
    assert jsonl.encode(nested) == b'{"r":{"d":2.50}}\n'


def test_nan_and_infinity_tokens_read_as_duckdb_reads_them() -> None:
    """Not JSON, but DuckDB's read_json reads NaN, Infinity and -Infinity into REAL and
    DOUBLE columns, and fails for a DECIMAL or BIGINT one; so does caudal (one line)."""
    import math

    text = b'{"x": 1}\n{"x": NaN}\n{"x": Infinity}\n{"x": -Infinity}\n'
    for t in (pa.float64(), pa.float32()):
        got = jsonl.Decoder(pa.schema([("x", t)])).decode(text).column("x").to_pylist()
        assert got[0] == 1 and math.isnan(got[1]) and got[2:] == [math.inf, -math.inf]
    for t in (pa.decimal128(10, 2), pa.int64()):
        with pytest.raises(DataError) as caught:
            list(jsonl.read(io.BytesIO(text), pa.schema([("x", t)]),
                            BadDataPolicy("fail", SourceMetrics(), "file f")))
        assert "line 2" in str(caught.value) and "\n" not in str(caught.value)
