"""Evaluate one SQL expression through caudal (translate + compile_projection) and through
DuckDB over the same Arrow table, and compare the answers value by value."""

from __future__ import annotations

import datetime as dt
import decimal
import math
from decimal import Decimal

import duckdb
import pyarrow as pa

from caudal.plan.compile import compile_projection
from caudal.plan.expressions import Expr
from caudal.sql.dialect import parse_expression
from caudal.sql.expressions import translate
from caudal.sql.scope import Scope, ScopeColumn

UTC = dt.UTC


def sample_table() -> pa.Table:
    """Nulls, negatives, zero, empty and unicode strings, timestamps, JSON, arrays, structs."""
    ts = [dt.datetime(2020, 1, 2, 3, 4, 5, tzinfo=UTC), None,
          dt.datetime(2021, 6, 30, 23, 59, 59, 500000, tzinfo=UTC),
          dt.datetime(1999, 12, 31, tzinfo=UTC), dt.datetime(2024, 2, 29, 12, 0, 0, 123456,
                                                            tzinfo=UTC),
          dt.datetime(1970, 1, 1, tzinfo=UTC)]
    return pa.table({
        "i": pa.array([1, -2, None, 7, 0, -15], pa.int32()),
        "b": pa.array([10, 0, 5, None, -3, 2**40], pa.int64()),
        "f": pa.array([1.5, -2.5, None, 0.0, 2.675, -0.1]),
        "d": pa.array([Decimal("1.25"), Decimal("-3.50"), None, Decimal("0.00"),
                       Decimal("99.99"), Decimal("-0.05")], pa.decimal128(10, 2)),
        "s": pa.array(["Hello", "wörld ñ", None, "", "  pad me  ", "a,b,,c"]),
        "p": pa.array(["l", "ö", "x", "", "pad", ","]),
        "bo": pa.array([True, False, None, True, False, None]),
        "ts": pa.array(ts, pa.timestamp("us", tz="UTC")),
        "dt": pa.array([dt.date(2020, 1, 2), dt.date(2000, 2, 29), None, dt.date(1970, 1, 1),
                        dt.date(2024, 12, 31), dt.date(1969, 7, 20)], pa.date32()),
        "j": pa.array(['{"a": {"b": "x"}, "c": [1, 2], "n": 1.5}', '{"a": 1, "c": []}', None,
                       '{"a": null}', '{"a": "str", "c": [3]}', '[1, 2]']),
        "l": pa.array([[1, 2, 3], [], None, [4], [None, 5], [6, 7]], pa.list_(pa.int64())),
        "st": pa.array([{"x": 1, "y": "a"}, None, {"x": 3, "y": None}, {"x": 4, "y": "d"},
                        {"x": None, "y": "e"}, {"x": 6, "y": "f"}],
                       pa.struct([("x", pa.int64()), ("y", pa.string())])),
    })


def scope_of(table: pa.Table | pa.Schema, relation: str = "t") -> Scope:
    schema = table.schema if isinstance(table, pa.Table) else table
    return Scope(columns=[ScopeColumn(relation=relation, name=f.name, dtype=f.type,
                                      physical=f.name) for f in schema])


def bind(sql: str, table: pa.Table | None = None) -> Expr:
    table = sample_table() if table is None else table
    return translate(parse_expression(sql), scope_of(table))


def caudal_eval(sql: str, table: pa.Table | None = None) -> pa.Array:
    """The column caudal computes for ``sql`` over ``table`` (one batch)."""
    table = sample_table() if table is None else table
    expr = bind(sql, table)
    batches = table.combine_chunks().to_batches()
    batch = batches[0] if batches else pa.RecordBatch.from_pylist([], schema=table.schema)
    out = compile_projection([expr], ["x"])(batch)
    assert out.schema.field(0).type.equals(expr.dtype)
    return out.column(0)


_duck = None


def duck_eval(sql: str, table: pa.Table | None = None) -> list:
    global _duck
    if _duck is None:
        _duck = duckdb.connect()
        _duck.execute("SET TimeZone = 'UTC'")
    table = sample_table() if table is None else table
    _duck.register("t", table)
    try:
        return [row[0] for row in _duck.execute(f"SELECT {sql} FROM t").fetchall()]
    finally:
        _duck.unregister("t")


def normalize(value):
    """A comparable form: floats to 9 significant digits, decimals as floats, instants in
    UTC, containers element by element."""
    if value is None:
        return None
    if isinstance(value, bool):
        return value
    if isinstance(value, float | Decimal | int):
        number = float(value)
        if math.isnan(number):
            return "nan"
        if number == 0 or math.isinf(number):
            return number
        return float(f"{number:.9g}")
    if isinstance(value, dt.datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value.astimezone(UTC)
    if isinstance(value, list | tuple):
        return [normalize(v) for v in value]
    if isinstance(value, dict):
        return {k: normalize(v) for k, v in value.items()}
    return value


def values(sql: str, table: pa.Table | None = None) -> list:
    return [normalize(v) for v in caudal_eval(sql, table).to_pylist()]


def check(sql: str, table: pa.Table | None = None, duck_sql: str | None = None) -> list:
    """Assert caudal and DuckDB agree on ``sql`` (or on ``duck_sql`` for DuckDB's spelling
    of the same meaning); returns caudal's values."""
    ours = values(sql, table)
    theirs = [normalize(v) for v in duck_eval(duck_sql or sql, table)]
    assert ours == theirs, f"{sql}: caudal {ours} != duckdb {theirs}"
    return ours


__all__ = ["check", "values", "bind", "sample_table", "scope_of", "caudal_eval",
           "duck_eval", "decimal"]
