"""Error-free transformations of doubles: a sum or product as the rounded result plus its
exact rounding error, so that kernels can decide a rounding or an interpolation as the exact
value would (DuckDB's round() and its quantile interpolation are matched this way).
Vectorized over NumPy arrays; valid barring overflow."""

from __future__ import annotations

import numpy as np

#: Veltkamp's splitter for doubles: 2^27 + 1
_SPLIT = 134217729.0


def two_sum(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """a + b as (rounded sum, its exact error) (Knuth)."""
    s = a + b
    bb = s - a
    return s, (a - (s - bb)) + (b - bb)


def two_product(a: np.ndarray, b: np.ndarray | float) -> tuple[np.ndarray, np.ndarray]:
    """a * b as (rounded product, its exact error) (Dekker's product, Veltkamp's split)."""
    p = a * b
    t = _SPLIT * a
    ah = t - (t - a)
    al = a - ah
    t = _SPLIT * b
    bh = t - (t - b)
    bl = b - bh
    return p, ((ah * bh - p) + ah * bl + al * bh) + al * bl
