"""WindowSpec's pane arithmetic against the definition of the windows, with offsets: every
window ``explode`` gives a timestamp contains it, starts at ``k * period + offset`` and has
the kind's length, and it gives all of them (size / slide windows for a hop, the growing
windows of a cumulate up to the end of the period)."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from caudal.plan.windows import WindowSpec

specs = st.one_of(
    st.builds(lambda size, off: WindowSpec("tumble", size, offset_us=off),
              st.integers(1, 10_000), st.integers(-50_000, 50_000)),
    st.builds(lambda slide, k, off: WindowSpec("hop", slide * k, slide, offset_us=off),
              st.integers(1, 1_000), st.integers(1, 6), st.integers(-50_000, 50_000)),
    # a slide that need not divide the width (Arroyo's hop(40 min, 1 hour))
    st.builds(lambda slide, size, off: WindowSpec("hop", max(size, slide), slide,
                                                  offset_us=off),
              st.integers(1, 1_000), st.integers(1, 3_000), st.integers(-50_000, 50_000)),
    st.builds(lambda step, k, off: WindowSpec("cumulate", step * k, step, offset_us=off),
              st.integers(1, 1_000), st.integers(1, 6), st.integers(-50_000, 50_000)),
)


def _expected(spec: WindowSpec, t: int) -> set[tuple[int, int]]:
    """The windows containing ``t``, straight from their definition."""
    off = spec.offset_us
    if spec.kind == "tumble":
        start = (t - off) // spec.size_us * spec.size_us + off
        return {(start, start + spec.size_us)}
    if spec.kind == "hop":  # starts k * slide + offset in (t - size, t]
        last = (t - off) // spec.slide_us * spec.slide_us + off
        first = ((t - spec.size_us - off) // spec.slide_us + 1) * spec.slide_us + off
        return {(s, s + spec.size_us) for s in range(first, last + 1, spec.slide_us)}
    start = (t - off) // spec.size_us * spec.size_us + off
    first_end = (t - start) // spec.slide_us * spec.slide_us + spec.slide_us + start
    return {(start, e) for e in range(first_end, start + spec.size_us + 1, spec.slide_us)}


@settings(max_examples=300, deadline=None)
@given(spec=specs, ts=st.lists(st.integers(-10**9, 10**9), min_size=1, max_size=20))
def test_explode_gives_exactly_the_windows_of_the_definition(spec, ts):
    times = np.array(ts, dtype=np.int64)
    rows, ends = spec.explode(spec.pane_of(times))
    starts = spec.window_start(ends)
    for i, t in enumerate(ts):
        got = {(int(s), int(e)) for r, s, e in zip(rows, starts, ends) if r == i}
        assert got == _expected(spec, t), (spec, t)
        for s, e in got:
            assert s <= t < e
    assert 0 <= spec.offset_us < spec.period_us


@settings(max_examples=200, deadline=None)
@given(spec=specs, t=st.integers(-10**9, 10**9))
def test_pane_ends_and_next_end_agree(spec, t):
    pane = int(spec.pane_of(np.array([t]))[0])
    start = pane * spec.pane_us + spec.offset_us
    assert start <= t < start + spec.pane_us
    # the pane's first window end, and the next end after t, is the earliest window of t's
    end = int(spec.pane_end(pane))
    assert end == min(e for _, e in _expected(spec, t)) == spec.next_end_after(t)
    assert spec.next_end_after(end - 1) == end
    assert spec.next_end_after(end) == end + spec.end_period_us
    # a pane's state may be freed once the last window containing it has ended
    assert int(spec.pane_last_end(pane)) == max(e for _, e in _expected(spec, t))
