"""DECIMAL arithmetic on int64 (plan.functions.decimal64) gives exactly Arrow's wide result,
and declines (None) whenever it could not be sure to."""

from __future__ import annotations

import decimal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from caudal.plan.functions.decimal64 import decimal_int64

KERNELS = {"add": pc.add_checked, "subtract": pc.subtract_checked,
           "multiply": pc.multiply_checked}


def _wide(x):
    t = x.type
    if pa.types.is_decimal(t):
        return x.cast(pa.decimal256(t.precision, t.scale))
    return x.cast(pa.decimal256(19, 0))


def _out(name: str, ta: pa.DataType, tb: pa.DataType) -> pa.DataType:
    def digits(t):
        return (t.precision - t.scale, t.scale) if pa.types.is_decimal(t) else (19, 0)
    (wa, sa), (wb, sb) = digits(ta), digits(tb)
    if name == "multiply":
        s = sa + sb
        return pa.decimal128(min(38, wa + wb + s), s)
    s = max(sa, sb)
    return pa.decimal128(min(38, max(wa, wb) + s + 1), s)


def _array(t: pa.DataType, ints: list[int], nulls: list[bool]):
    if pa.types.is_integer(t):
        return pa.array(ints, t, mask=np.array(nulls))
    values = [decimal.Decimal(v).scaleb(-t.scale) for v in ints]
    return pa.array(values, t, mask=np.array(nulls))


@settings(max_examples=150, deadline=None)
@given(name=st.sampled_from(sorted(KERNELS)), pa_=st.integers(1, 18), sa=st.integers(0, 6),
       pb=st.integers(1, 18), sb=st.integers(0, 6), integer_left=st.booleans(),
       scalar_right=st.booleans(), data=st.data())
def test_same_as_wide_arithmetic(name, pa_, sa, pb, sb, integer_left, scalar_right, data):
    ta = pa.int64() if integer_left else pa.decimal128(pa_, min(sa, pa_))
    tb = pa.decimal128(pb, min(sb, pb))
    n = data.draw(st.integers(1, 20))

    def draw(t):
        bound = 10**min(t.precision, 12) - 1 if pa.types.is_decimal(t) else 10**12
        ints = data.draw(st.lists(st.integers(-bound, bound), min_size=n, max_size=n))
        nulls = data.draw(st.lists(st.booleans(), min_size=n, max_size=n))
        return _array(t, ints, nulls)

    a, b = draw(ta), draw(tb)
    if scalar_right:
        b = b[0]
    out = _out(name, ta, tb)
    fast = decimal_int64(name, [a, b], out)
    if fast is None:
        return
    wide = KERNELS[name](_wide(a), _wide(b)).cast(out)
    assert fast.equals(wide)


def test_currency_conversion_takes_the_fast_path():
    prices = pa.array([100, None, 99_999_999, -5], pa.int64())
    rate = pa.scalar(decimal.Decimal("0.908"), pa.decimal128(3, 3))
    out = decimal_int64("multiply", [prices, rate], pa.decimal128(22, 3))
    assert out is not None
    assert out.to_pylist() == [decimal.Decimal("90.800"), None,
                               decimal.Decimal("90799999.092"), decimal.Decimal("-4.540")]


@pytest.mark.parametrize("args", [
    [pa.array([2**61], pa.int64()), pa.array([4], pa.int64())],        # product leaves int64
    [pa.array([1], pa.decimal128(20, 2)), pa.scalar(1, pa.int64())],    # more than 18 digits
])
def test_declines_when_unsure(args):
    assert decimal_int64("multiply", args, pa.decimal128(38, 2)) is None
