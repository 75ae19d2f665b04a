"""DOUBLE columns in JSON lines and Debezium JSON: written by Arrow's cast where its text is
Polars's (no Polars import), byte for byte what Polars writes everywhere (but NaN and
infinities, which Polars writes as null: "NaN", "Infinity", "-Infinity", as Flink)."""

from __future__ import annotations

import io
import math

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from caudal.formats import debezium_json
from caudal.formats import json as jsonl


def polars_lines(batch: pa.RecordBatch) -> bytes:
    """Polars's lines, but NaN and infinities as Flink writes them (Polars: null)."""
    import polars as pl

    out = io.BytesIO()
    pl.from_arrow(pa.Table.from_batches([batch])).write_ndjson(out)
    lines = out.getvalue().split(b"\n")
    for i, x in enumerate(batch.column("x").to_pylist()):
        if x is not None and not math.isfinite(x):
            text = b'"NaN"' if math.isnan(x) else b'"Infinity"' if x > 0 else b'"-Infinity"'
            lines[i] = lines[i].replace(b'"x":null', b'"x":' + text)
    return b"\n".join(lines)


def batch_of(values: list[float | None]) -> pa.RecordBatch:
    return pa.record_batch({"k": pa.array(range(len(values)), pa.int64()),
                            "x": pa.array(values, pa.float64())})


def medians(seed: int, n: int = 5000) -> list[float | None]:
    """Values like an updating median's: halves, interpolations, a few specials."""
    rng = np.random.default_rng(seed)
    lo = rng.integers(0, 10 ** rng.integers(1, 9, n))
    hi = lo + rng.integers(0, 1000, n)
    values = np.concatenate([lo + 0.9 * (hi - lo), lo / 2.0, rng.standard_normal(n) * 10.0])
    out: list[float | None] = values.tolist()
    return out + [0.0, -0.0, float("nan"), float("inf"), -float("inf"), 1e-5, None, 3.0]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_common_doubles_without_polars(seed: int) -> None:
    batch = batch_of(medians(seed))
    assert jsonl._double_text(batch.column(1)) is not None   # the Arrow path, not Polars
    assert jsonl.encode(batch) == polars_lines(batch)


def test_debezium_doubles_match_the_polars_path(monkeypatch: pytest.MonkeyPatch) -> None:
    batch = batch_of(medians(3))
    fast = debezium_json.encode(batch)
    monkeypatch.setattr(jsonl, "_double_pieces", lambda column: None)
    assert fast == debezium_json.encode(batch)


@settings(max_examples=150, deadline=None)
@given(st.lists(st.one_of(st.none(), st.floats(), st.floats(-1e9, 1e9),
                          st.integers(-10 ** 9, 10 ** 9).map(lambda i: i / 8)),
                min_size=1, max_size=40))
def test_any_doubles_as_polars_writes_them(values: list[float | None]) -> None:
    batch = batch_of(values)
    assert jsonl.encode(batch) == polars_lines(batch)


@settings(max_examples=150, deadline=None)
@given(st.lists(st.one_of(st.none(), st.integers(-2 ** 54, 2 ** 54).map(lambda i: i / 2),
                          st.sampled_from([0.0, -0.0, -0.5, 0.5, -1.0, 2.0 ** 52 - 0.5]),
                          st.integers(-10 ** 6, 10 ** 6)), min_size=1, max_size=40))
def test_halves_as_polars_writes_them(values: list[float | None]) -> None:
    """A median of integers is whole or a half: written as its integer part and .0 or .5
    (except -0.0 and -0.5, whose integer part has no sign, and beyond 2^52)."""
    batch = batch_of([None if v is None else float(v) for v in values])
    assert jsonl.encode(batch) == polars_lines(batch)
    assert debezium_json.encode(batch) == _polars_debezium(batch)


def test_halves_take_the_integer_cast(monkeypatch: pytest.MonkeyPatch) -> None:
    batch = batch_of([1.5, -2.0, 0.0, 4503599627370495.5, None, -3.5])
    casts: list[pa.DataType] = []
    real = jsonl.pc.cast
    monkeypatch.setattr(jsonl.pc, "cast", lambda a, t, *r, **k: casts.append(a.type) or
                        real(a, t, *r, **k))
    assert jsonl.encode(batch) == polars_lines(batch)
    assert pa.float64() not in casts and pa.int64() in casts


def _polars_debezium(batch: pa.RecordBatch) -> bytes:
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(jsonl, "_double_pieces", lambda column: None)
        return debezium_json.encode(batch)
