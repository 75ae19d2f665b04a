"""Helpers shared by kernels: broadcasting literal arguments, and bridges to Polars and DuckDB
for the few functions pyarrow.compute lacks. Everything here works on whole arrays."""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pyarrow as pa

from caudal import compute as pc
from caudal.errors import RuntimeFailure

Value = Any  # pa.Array | pa.ChunkedArray | pa.Scalar


def is_scalar(value: Value) -> bool:
    return isinstance(value, pa.Scalar)


def length(args: Sequence[Value]) -> int | None:
    """The row count of the first array argument (None when every argument is a scalar)."""
    for a in args:
        if not isinstance(a, pa.Scalar):
            return len(a)
    return None


def to_array(value: Value, n: int) -> pa.Array:
    """An array of ``n`` rows: a scalar is repeated, a chunked array is combined."""
    if isinstance(value, pa.Scalar):
        return pa.repeat(value, n)
    if isinstance(value, pa.ChunkedArray):
        return value.combine_chunks()
    return value


def list_offsets(lists: pa.Array) -> tuple[np.ndarray, int, int]:
    """The offsets of a list (or map) array counted from its first element, and the range
    [start, end) of its child arrays they cover: a list array rebuilt on them and that slice
    of the child (Arrow refuses a sliced offsets array beside a validity mask)."""
    offsets = lists.offsets.to_numpy(zero_copy_only=False).astype(np.int64)
    start, end = int(offsets[0]), int(offsets[-1])
    return offsets - start, start, end


def broadcast(args: Sequence[Value]) -> tuple[list[pa.Array], bool]:
    """Arrays of one length for every argument, and whether they were all scalars (then the
    arrays have one row and the caller should return a scalar)."""
    n = length(args)
    if n is None:
        return [to_array(a, 1) for a in args], True
    return [to_array(a, n) for a in args], False


def finish(result: pa.Array, scalar: bool) -> Value:
    """Undo ``broadcast``: a one-row result of all-scalar arguments becomes a scalar."""
    if isinstance(result, pa.ChunkedArray):
        result = result.combine_chunks()
    return result[0] if scalar else result


def elementwise(fn: Callable[..., pa.Array]) -> Callable[[list[Value], Any], Value]:
    """A kernel that runs ``fn`` over broadcast arrays (for kernels that take no scalars)."""

    def kernel(args: list[Value], call: Any) -> Value:
        arrays, scalar = broadcast(args)
        return finish(fn(*arrays), scalar)

    return kernel


def any_true(mask: Value) -> bool:
    if isinstance(mask, pa.Scalar):
        return bool(mask.as_py())
    return bool(pc.any(mask).as_py())


def null_of(dtype: pa.DataType) -> pa.Scalar:
    return pa.scalar(None, type=dtype)


def propagate_nulls(result: pa.Array, *inputs: Value) -> pa.Array:
    """``result`` with a null wherever any input is null (for kernels that fill them)."""
    for x in inputs:
        if isinstance(x, pa.Scalar):
            if not x.is_valid:
                return pa.nulls(len(result), result.type)
            continue
        if x.null_count:
            result = pc.if_else(pc.is_valid(x), result, null_of(result.type))
    return result


# ---- polars -----------------------------------------------------------------------------


def polars_eval(expr_fn: Callable[..., Any], args: Sequence[Value], dtype: pa.DataType) -> Value:
    """Evaluate a Polars expression built by ``expr_fn(*columns)`` over the arguments.

    Scalars become literals so Polars broadcasts them; the result is cast to ``dtype``.
    """
    import polars as pl

    n = length(args)
    data = {}
    exprs = []
    for i, a in enumerate(args):
        if isinstance(a, pa.Scalar):
            exprs.append(pl.lit(a.as_py(), dtype=_polars_type(a.type)))
        else:
            name = f"c{i}"
            data[name] = pl.from_arrow(to_array(a, len(a)))
            exprs.append(pl.col(name))
    frame = pl.DataFrame(data) if data else pl.DataFrame({"_": [None]})
    out = frame.select(expr_fn(*exprs).alias("out")).to_series().to_arrow()
    if isinstance(out, pa.ChunkedArray):
        out = out.combine_chunks()
    if not out.type.equals(dtype):
        out = _from_polars_type(out, dtype)
    if n is None:
        return out[0]
    return out


def _polars_type(t: pa.DataType):
    import polars as pl

    if pa.types.is_null(t):
        return pl.Null
    return pl.from_arrow(pa.array([], type=t)).dtype


def _from_polars_type(out: pa.Array, dtype: pa.DataType) -> pa.Array:
    if pa.types.is_timestamp(dtype) and pa.types.is_timestamp(out.type) and out.type.tz is None:
        out = out.cast(pa.timestamp(dtype.unit)).cast(dtype)
    return out.cast(dtype)


# ---- duckdb -----------------------------------------------------------------------------

_local = threading.local()


def _duck():
    con = getattr(_local, "con", None)
    if con is None:
        import duckdb

        con = duckdb.connect(":memory:")
        con.execute("SET TimeZone = 'UTC'")
        _local.con = con
    return con


def _duckdb_failure(fn: str, first_line: str) -> RuntimeFailure:
    """DuckDB's error in caudal's words: without its error class, and a malformed JSON text
    named as such (with the function that gives NULL for it)."""
    name = fn if not fn[:1].isalpha() else f"{fn}()"
    text = re.sub(r"^[A-Z][A-Za-z ]* Error: ", "", first_line)
    json = re.fullmatch(r'Malformed JSON at byte (\d+) of input: (.*?)\.?\s+Input: "(.*)"',
                        text, re.S)
    if json is None:
        return RuntimeFailure(f"{name} failed: {text}")
    at, why, value = json.groups()
    return RuntimeFailure(f"{name}: malformed JSON {value!r} (at byte {at}: {why})",
                          hint="json_extract_string(json, '$.key') gives NULL for it")


def duckdb_eval(sql: str, args: Sequence[Value], dtype: pa.DataType, fn: str,
                params: Sequence[Any] = ()) -> Value:
    """Evaluate ``sql`` (a scalar expression over columns c0, c1, ... and ``?`` parameters)
    with DuckDB over the arguments; for functions neither pyarrow nor Polars has."""
    arrays, scalar = broadcast(args)
    table = pa.table({f"c{i}": a for i, a in enumerate(arrays)}) if arrays else \
        pa.table({"_": pa.nulls(1)})
    con = _duck()
    try:
        con.register("_caudal_input", table)
        out = con.sql(f"SELECT {sql} AS out FROM _caudal_input",
                      params=list(params) or None).to_arrow_table()
    except Exception as e:  # duckdb raises its own exception classes
        raise _duckdb_failure(fn, str(e).splitlines()[0]) from None
    finally:
        con.unregister("_caudal_input")
    column = out.column(0).combine_chunks()
    if not column.type.equals(dtype):
        column = _from_polars_type(column, dtype)
    return finish(column, scalar)


# ---- evaluation of parts of a batch (lazy CASE / COALESCE) ------------------------------


def scatter(values: pa.Array, mask: np.ndarray) -> pa.Array:
    """A full-length array holding ``values`` (one per true row of ``mask``) at the true
    rows and nulls elsewhere."""
    ranks = np.cumsum(mask) - 1
    index = pa.array(ranks, mask=~mask)
    return pc.take(values, index)


def mask_of(value: Value, n: int) -> np.ndarray:
    """A numpy bool mask (null counts as false) of a boolean array or scalar."""
    if isinstance(value, pa.Scalar):
        return np.full(n, bool(value.as_py()))
    return np.asarray(pc.fill_null(value, False).to_numpy(zero_copy_only=False), dtype=bool)
