"""DuckDB's order of floating-point values, on top of Arrow's IEEE kernels.

DuckDB (and PostgreSQL) order REAL/DOUBLE totally: NaN equals NaN and is greater than every
other value, +inf included, in comparisons, ORDER BY, min/max and greatest/least; -0.0
equals 0.0 and is one group with it. Arrow's kernels follow IEEE 754 instead (NaN compares
false with everything, min/max skip it, sorts place it beside the NULLs), so the places that
compare floating-point values correct Arrow's answer with an ``is_nan`` mask here. Every
helper returns at once for other types, so float-free queries pay nothing, and a float batch
without NaN pays one ``is_nan`` pass."""

from __future__ import annotations

from typing import Any

import pyarrow as pa

from caudal import compute as pc


def is_float(t: pa.DataType) -> bool:
    return pa.types.is_floating(t)


def _any(mask: Any) -> bool:
    if isinstance(mask, pa.Scalar):
        return bool(mask.as_py())
    return bool(pc.any(mask).as_py())


def _nan(value: Any) -> Any:
    """is_nan (NULL for NULL) of an array or a scalar."""
    return pc.is_nan(value)


def compare(op: str, a: Any, b: Any, ieee: Any) -> Any:
    """Correct Arrow's IEEE answer ``ieee`` of ``a op b`` (op: eq, neq, lt, lte, gt, gte)
    for NaN operands: NaN = NaN, and NaN > x for every other x."""
    if not is_float(a.type):
        return ieee
    nan_a, nan_b = _nan(a), _nan(b)
    if not (_any(nan_a) or _any(nan_b)):
        return ieee
    if op in ("eq", "neq"):
        both = pc.and_kleene(nan_a, nan_b)
        return pc.or_kleene(ieee, both) if op == "eq" else pc.and_kleene(ieee, pc.invert(both))
    if op in ("lt", "gt"):  # a < b also when b is NaN and a is not
        low, high = (nan_a, nan_b) if op == "lt" else (nan_b, nan_a)
        return pc.or_kleene(ieee, pc.and_kleene(pc.invert(low), high))
    # a <= NaN and NaN >= a, for any a but NULL
    nan, other = (nan_b, a) if op == "lte" else (nan_a, b)
    return pc.or_kleene(ieee, pc.and_kleene(nan, pc.is_valid(other)))


def greatest_nan(args: list[Any], result: Any) -> Any:
    """greatest(): Arrow's element-wise max skips NaN, DuckDB's answers NaN when any
    argument is NaN (least needs no correction: Arrow keeps NaN only over NULLs)."""
    if not is_float(result.type):
        return result
    masks = [_nan(a) for a in args]
    masks = [m for m in masks if _any(m)]
    if not masks:
        return result
    hit = masks[0]
    for m in masks[1:]:
        hit = pc.or_(pc.fill_null(hit, False), pc.fill_null(m, False))
    return pc.if_else(pc.fill_null(hit, False), pa.scalar(float("nan"), result.type), result)


def sort_nan_key(values: Any, descending: bool) -> tuple[Any, str] | None:
    """A sort key to put before ``values``'s own so NaN sorts above every number (first
    descending, last ascending; Arrow puts it last either way), or None when no value is
    NaN. The key is NULL where the value is: give it the value's NULL placement."""
    if not is_float(values.type):
        return None
    nan = _nan(values)
    if not _any(nan):
        return None
    return nan, "descending" if descending else "ascending"


def equal_or_both_nan(a: Any, b: Any) -> Any:
    """a = b where NaN equals NaN (NULL where either is NULL)."""
    return compare("eq", a, b, pc.equal(a, b))


def normalize_key(values: Any) -> Any:
    """A float grouping key as one value per group, as DuckDB groups: -0.0 made 0.0 (adding
    0.0 maps -0.0 to +0.0 and nothing else) and every NaN the same NaN (0 * inf and a NaN
    literal differ in their sign bit, which a hash table sees)."""
    if not is_float(values.type):
        return values
    out = pc.add(values, pa.scalar(0.0, values.type))
    nan = _nan(out)
    if _any(nan):
        out = pc.if_else(nan, pa.scalar(float("nan"), values.type), out)
    return out
