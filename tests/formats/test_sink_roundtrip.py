"""Values survive writing: what a file sink writes reads back, with DuckDB and caudal, as
the values it was given (no silent change)."""

from __future__ import annotations

import datetime as dt
import decimal
import io
import math

import duckdb
import pyarrow as pa
import pytest

from caudal.connectors.base import SourceMetrics
from caudal.formats import csv, debezium_json, text
from caudal.formats import json as jsonl
from caudal.formats.bad_data import BadDataPolicy

SPECIAL = [float("nan"), float("inf"), -float("inf"), -0.0, 1e-300, 0.1, None, 2.0]


def same(a: list, b: list) -> bool:
    return len(a) == len(b) and all(
        (x is None and y is None) or (x is not None and y is not None and (
            (math.isnan(x) and math.isnan(y)) or
            (x == y and math.copysign(1, x) == math.copysign(1, y)))) for x, y in zip(a, b))


def duck_read(data: bytes, tmp_path, columns: str) -> list[tuple]:
    path = tmp_path / "out.json"
    path.write_bytes(data)
    return duckdb.sql(f"select * from read_json('{path}', columns = {columns})").fetchall()


@pytest.mark.parametrize("kind", [pa.float64(), pa.float32()])
def test_json_sink_writes_nan_and_infinities_as_flink_does(kind: pa.DataType, tmp_path) -> None:
    batch = pa.record_batch({"k": pa.array(range(len(SPECIAL))),
                             "x": pa.array(SPECIAL, kind),
                             "s": pa.array(["\x01"] * len(SPECIAL))})
    data = jsonl.encode(batch)
    assert data.splitlines()[:3] == [b'{"k":0,"x":"NaN","s":"\\u0001"}',
                                     b'{"k":1,"x":"Infinity","s":"\\u0001"}',
                                     b'{"k":2,"x":"-Infinity","s":"\\u0001"}']
    duck_type = "DOUBLE" if kind == pa.float64() else "FLOAT"
    rows = duck_read(data, tmp_path, f"{{'k': 'BIGINT', 'x': '{duck_type}', 's': 'TEXT'}}")
    expected = pa.array(SPECIAL, kind).cast(pa.float64()).to_pylist()
    assert same([r[1] for r in rows], expected)
    # only specials: the Arrow path, without Polars
    only = jsonl.encode(pa.record_batch({"x": pa.array([float("nan"), None])}))
    assert only == b'{"x":"NaN"}\n{"x":null}\n'
    # and caudal reads back what it wrote (it stopped at the first "NaN": 'expects REAL');
    # a TEXT column holding the text "NaN" beside it stays text
    back = jsonl.Decoder(batch.schema).decode(data)
    assert same(back.column("x").to_pylist(), expected)
    texts = pa.record_batch({"t": pa.array(["NaN", "Infinity"]), "x": pa.array([1.0, None])})
    data = jsonl.encode(texts).replace(b'"x":1.0', b'"x":"-Infinity"')
    assert jsonl.Decoder(texts.schema).decode(data).to_pylist() == [
        {"t": "NaN", "x": -float("inf")}, {"t": "Infinity", "x": None}]


def test_nested_nan_written_as_text(tmp_path) -> None:
    batch = pa.record_batch({
        "a": pa.array([[1.5, float("nan")], None, [-float("inf")]], pa.list_(pa.float64())),
        "r": pa.array([{"y": float("inf")}, {"y": 2.5}, None],
                      pa.struct([("y", pa.float64())]))})
    data = jsonl.encode(batch)
    assert data.splitlines()[0] == b'{"a":[1.5,"NaN"],"r":{"y":"Infinity"}}'
    rows = duck_read(data, tmp_path, "{'a': 'DOUBLE[]', 'r': 'STRUCT(y DOUBLE)'}")
    assert math.isnan(rows[0][0][1]) and rows[2][0] == [-float("inf")]
    assert rows[0][1] == {"y": float("inf")} and rows[1][1] == {"y": 2.5}
    back = jsonl.Decoder(batch.schema).decode(data)
    assert math.isnan(back.column("a")[0].as_py()[1]) and back.column("a")[2].as_py() == [
        -float("inf")]
    assert back.column("r").to_pylist() == [{"y": float("inf")}, {"y": 2.5}, None]


def test_debezium_sink_writes_nan_and_infinities(tmp_path) -> None:
    batch = pa.record_batch({"k": pa.array(range(len(SPECIAL))),
                             "x": pa.array(SPECIAL, pa.float64())})
    data = debezium_json.encode(batch)
    assert data.splitlines()[0] == b'{"before":null,"after":{"k":0,"x":"NaN"},"op":"c"}'
    path = tmp_path / "out.json"
    path.write_bytes(data)
    rows = duckdb.sql(f"select after.x from read_json('{path}', columns = "
                      "{'after': 'STRUCT(k BIGINT, x DOUBLE)'})").fetchall()
    assert same([r[0] for r in rows], SPECIAL)
    policy = BadDataPolicy("fail", SourceMetrics(), "f")
    back = pa.concat_tables(debezium_json.read(io.BytesIO(data), batch.schema, policy))
    assert same(back.column("x").to_pylist(), SPECIAL)


def test_csv_sink_writes_small_decimals_without_an_exponent(tmp_path) -> None:
    values = [decimal.Decimal("0.0000001"), decimal.Decimal("-0.0000000001"), None,
              decimal.Decimal("-9999999999999999999999999999.9999999999"),
              decimal.Decimal("12.5")]
    out = io.BytesIO()
    writer = csv.Writer(out, pa.schema([("d", pa.decimal128(38, 10))]))
    writer.write(pa.record_batch({"d": pa.array(values, pa.decimal128(38, 10))}))
    assert out.getvalue().splitlines() == [
        b'"d"', b'"0.0000001000"', b'"-0.0000000001"', b"",
        b'"-9999999999999999999999999999.9999999999"', b'"12.5000000000"']
    path = tmp_path / "out.csv"
    path.write_bytes(out.getvalue())
    rows = duckdb.sql(f"select d from read_csv('{path}', columns = "
                      "{'d': 'DECIMAL(38,10)'})").fetchall()
    assert [r[0] for r in rows] == values
    assert text.to_text(pa.array(values[:2], pa.decimal128(38, 10))).to_pylist() == \
        ["0.0000001000", "-0.0000000001"]


def test_json_time_columns_read_back() -> None:
    times = pa.array([dt.time(23, 59, 59, 999999), dt.time(0, 0), None, dt.time(12, 0, 0, 5000)],
                     pa.time64("us"))
    batch = pa.record_batch({"t": times, "r": pa.StructArray.from_arrays([times], ["u"])})
    data = jsonl.encode(batch)
    assert data.splitlines()[0] == b'{"t":"23:59:59.999999","r":{"u":"23:59:59.999999"}}'
    policy = BadDataPolicy("fail", SourceMetrics(), "f")
    back = pa.concat_tables(jsonl.read(io.BytesIO(data), batch.schema, policy))
    assert back.column("t").to_pylist() == times.to_pylist()
    assert back.column("r").to_pylist() == batch.column("r").to_pylist()


def test_unix_millis_floors_timestamps_before_1970() -> None:
    utc = dt.UTC
    times = pa.array([dt.datetime(1969, 12, 31, 23, 59, 59, 999999, tzinfo=utc),
                      dt.datetime(1969, 12, 31, 23, 59, 59, 500, tzinfo=utc),
                      dt.datetime(1970, 1, 1, 0, 0, 0, 1999, tzinfo=utc), None],
                     pa.timestamp("us", tz="UTC"))
    data = jsonl.encode(pa.record_batch({"t": times}), {"json.timestamp_format": "unix_millis"})
    # was 0 and -999: 1970-01-01, a later second (and day, and year) than the value's
    assert data == b'{"t":-1}\n{"t":-1000}\n{"t":1}\n{"t":null}\n'


def test_unix_millis_dates_read_as_the_day_holding_the_instant() -> None:
    data = b'{"d":-1}\n{"d":-86400000}\n{"d":-86400001}\n{"d":86399999}\n{"d":null}\n'
    policy = BadDataPolicy("fail", SourceMetrics(), "f")
    back = pa.concat_tables(jsonl.read(io.BytesIO(data), pa.schema([("d", pa.date32())]),
                                       policy, options={"json.timestamp_format": "unix_millis"}))
    # -1 was read as 1970-01-01 (the division truncated toward zero)
    assert back.column("d").to_pylist() == [dt.date(1969, 12, 31), dt.date(1969, 12, 31),
                                            dt.date(1969, 12, 30), dt.date(1970, 1, 1), None]


def test_json_sink_writes_map_values_as_other_columns(tmp_path) -> None:
    # a MAP of BYTEA stopped the job with a Polars panic; of DOUBLE wrote NaN as null; of
    # TIMESTAMP and DATE wrote what Polars makes of them
    batch = pa.record_batch({
        "m": pa.array([[("a", float("nan")), ("b", 1.5)], None, []],
                      pa.map_(pa.string(), pa.float64())),
        "mt": pa.array([[("a", dt.datetime(2024, 1, 1, 1, 2, 3, 4, tzinfo=dt.UTC))], [], None],
                       pa.map_(pa.string(), pa.timestamp("us", tz="UTC"))),
        "mb": pa.array([[("a", b"\x00\x01")], None, [("b", None)]],
                       pa.map_(pa.string(), pa.binary())),
        "md": pa.array([[("a", dt.date(2024, 1, 1))], None, None],
                       pa.map_(pa.string(), pa.date32()))})
    data = jsonl.encode(batch)
    assert data.splitlines() == [
        b'{"m":{"a":"NaN","b":1.5},"mt":{"a":"2024-01-01T01:02:03.000004"},'
        b'"mb":{"a":"\\\\x0001"},"md":{"a":"2024-01-01"}}',
        b'{"m":null,"mt":{},"mb":null,"md":null}',
        b'{"m":{},"mt":null,"mb":{"b":null},"md":null}']
    assert debezium_json.encode(batch).splitlines()[0] == \
        b'{"before":null,"after":' + data.splitlines()[0] + b',"op":"c"}'
    rows = duck_read(data, tmp_path, "{'m': 'MAP(VARCHAR, DOUBLE)', 'md': 'MAP(VARCHAR, DATE)'}")
    assert math.isnan(rows[0][0]["a"]) and rows[0][1] == {"a": dt.date(2024, 1, 1)}
