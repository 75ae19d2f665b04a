"""OVER frame kernels against a plain Python definition of each frame, on random partitions:
ROWS n / UNBOUNDED, RANGE with an offset (peers included), the whole partition; sums (short
frames by shifted additions, long ones by prefix sums), counts, and extremes (shifted,
running and sparse-table paths) of numbers and text."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
from hypothesis import given, settings
from hypothesis import strategies as st

from caudal.operators.frame_kernels import (
    ExtremeKeys,
    frame_bounds,
    frame_extreme,
    frame_sum,
    group_heads,
)


def _frames(gid, values, kind, preceding):
    """Each row's frame, the slow way: indices of its partition inside the frame."""
    out = []
    for i in range(len(gid)):
        rows = [j for j in range(len(gid)) if gid[j] == gid[i]]
        if kind == "partition":
            out.append(rows)
        elif kind == "rows":
            before = [j for j in rows if j <= i]
            out.append(before if preceding is None else before[-(preceding + 1):])
        else:
            low = -np.inf if preceding is None else values[i] - preceding
            out.append([j for j in rows if low <= values[j] <= values[i]])
    return out


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 3), st.integers(0, 40), st.integers(-50, 50),
                          st.booleans()), min_size=1, max_size=90),
       st.sampled_from(["rows", "range", "partition"]),
       st.one_of(st.none(), st.integers(0, 3), st.integers(30, 60)))
def test_frames_match_their_definition(rows, kind, preceding):
    rows.sort(key=lambda r: (r[0], r[1]))
    gid = np.array([r[0] for r in rows])
    values = np.array([r[1] for r in rows], dtype=np.int64)
    x = np.array([r[2] for r in rows], dtype=np.int64)
    valid = np.array([r[3] for r in rows])
    heads = group_heads(gid)
    bounds = frame_bounds(heads, kind, preceding, values)
    dense = np.cumsum(heads) - 1
    frames = _frames(gid, values, kind, preceding)
    for i, f in enumerate(frames):
        assert (bounds.start[i], bounds.end[i]) == (f[0], f[-1])
    assert list(frame_sum(x, bounds, dense)) == [int(x[f].sum()) for f in frames]
    floats = x / 7.0
    assert np.allclose(frame_sum(floats, bounds, dense), [floats[f].sum() for f in frames])
    for largest in (False, True):
        keys = ExtremeKeys(pa.array(x, mask=~valid), largest)
        got = keys.decode(frame_extreme(keys.keys, bounds, dense, largest),
                          np.array([valid[f].any() for f in frames]))
        pick = max if largest else min
        assert got.to_pylist() == [pick((int(x[j]) for j in f if valid[j]), default=None)
                                   for f in frames]
        text = pa.array([f"v{v:03d}" for v in x + 50], pa.string(), mask=~valid)
        keys = ExtremeKeys(text, largest)
        got = keys.decode(frame_extreme(keys.keys, bounds, dense, largest),
                          np.array([valid[f].any() for f in frames]))
        assert got.to_pylist() == [pick((f"v{int(x[j]) + 50:03d}" for j in f if valid[j]),
                                        default=None) for f in frames]


def test_long_frames_use_sparse_tables_and_running_extremes():
    rng = np.random.default_rng(3)
    n = 3000
    gid = np.sort(rng.integers(0, 4, n))
    x = rng.integers(-10**6, 10**6, n)
    heads = group_heads(gid)
    for preceding in (100, None):
        bounds = frame_bounds(heads, "rows", preceding)
        for largest in (False, True):
            keys = ExtremeKeys(pa.array(x), largest)
            got = frame_extreme(keys.keys, bounds, gid, largest)
            pick = np.max if largest else np.min
            want = [pick(x[s:e + 1]) for s, e in zip(bounds.start, bounds.end)]
            assert (got == np.array(want)).all()
        sums = frame_sum(x, bounds, gid)
        assert (sums == [x[s:e + 1].sum() for s, e in zip(bounds.start, bounds.end)]).all()
