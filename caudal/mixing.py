"""splitmix64, the 64-bit mixer behind both the Nexmark generator's counter-based randomness
and the stable key hash: vectorized on uint64 arrays (wrapping arithmetic), bit-for-bit
identical everywhere, so generated data and key groups never change between runs."""

from __future__ import annotations

import numpy as np

GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MUL1 = np.uint64(0xBF58476D1CE4E5B9)
_MUL2 = np.uint64(0x94D049BB133111EB)


def mix64(z: np.ndarray) -> np.ndarray:
    """The splitmix64 finalizer, in place on a uint64 array; returns it."""
    t = np.right_shift(z, 30)
    z ^= t
    z *= _MUL1
    np.right_shift(z, 27, out=t)
    z ^= t
    z *= _MUL2
    np.right_shift(z, 31, out=t)
    z ^= t
    return z


def splitmix64(x: np.ndarray) -> np.ndarray:
    """splitmix64 of each element (golden-ratio increment, then the finalizer), in place."""
    x += GOLDEN
    return mix64(x)
