"""Event-time windows as plain data: kind and sizes, and the arithmetic that puts a timestamp
in its windows.

Windows are half-open ``[start, end)`` and aligned to the Unix epoch plus an optional
*offset* (Flink's ``TUMBLE(…, size, offset)``: window starts are ``k * period + offset``,
the period being the size of a tumbling or cumulating window and the slide of a hopping
one, so the offset only matters modulo the period). Tumbling, hopping and
cumulating windows are unions of *panes* (slices of ``pane_us``): a hop of slide s and width
w is w/g consecutive panes of size g = gcd(s, w) (g = s when the slide divides the width, as
it usually does; windows then end at every pane's end, otherwise at every s), a cumulating
window of step s and max size m is the first 1..m/s panes of size s of its max window. Operators aggregate rows into panes once and
build each window from its panes, so overlapping windows share work. Session windows have no
panes: they depend on the data (``[first row, last row + gap)``, merged when they touch).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from caudal.durations import format_duration_us

KINDS = ("tumble", "hop", "cumulate", "session")


@dataclass
class LateOutput:
    """Where a window operator sends late rows besides its ``late_rows`` metric: these
    input columns, under the side table's names (operators.side_output)."""

    columns: list[str]
    names: list[str]


@dataclass(frozen=True)
class WindowSpec:
    kind: str
    #: width (tumble, hop), max size (cumulate) or gap (session), in microseconds
    size_us: int
    #: slide (hop) or step (cumulate), in microseconds; 0 otherwise
    slide_us: int = 0
    #: window starts are aligned to the epoch plus this (in [0, period), see ``period_us``)
    offset_us: int = 0

    def __post_init__(self) -> None:
        assert self.kind in KINDS, self.kind
        period = self.period_us
        if period and not 0 <= self.offset_us < period:
            object.__setattr__(self, "offset_us", self.offset_us % period)

    @property
    def period_us(self) -> int:
        """How often the window pattern repeats: an offset matters only modulo this."""
        if self.kind == "hop":
            return self.slide_us
        return self.size_us if self.kind != "session" else 0

    @property
    def pane_us(self) -> int:
        """The slice every window of this kind is a union of (0 for sessions)."""
        if self.kind == "tumble":
            return self.size_us
        if self.kind == "hop":
            return math.gcd(self.size_us, self.slide_us)
        if self.kind == "cumulate":
            return self.slide_us
        return 0

    @property
    def end_period_us(self) -> int:
        """How often a window ends: at every pane's end, except for a hop whose slide does
        not divide its width (every slide; its panes are smaller)."""
        return self.slide_us if self.kind == "hop" else self.pane_us

    @property
    def end_offset_us(self) -> int:
        """Window ends are ``k * end_period_us + end_offset_us``: a window starts at
        ``k * period + offset`` and lasts its size (the offset itself unless a hop's slide
        does not divide its width)."""
        return (self.offset_us + self.size_us) % self.end_period_us

    @property
    def panes_per_window(self) -> int:
        """The most panes one window spans."""
        if self.kind in ("hop", "cumulate"):
            return self.size_us // self.pane_us
        return 1

    def __str__(self) -> str:
        size = format_duration_us(self.size_us)
        offset = f", offset {format_duration_us(self.offset_us)}" if self.offset_us else ""
        if self.kind in ("hop", "cumulate"):
            return f"{self.kind}({format_duration_us(self.slide_us)}, {size}{offset})"
        return f"{self.kind}({size}{offset})"

    # ---- pane arithmetic (vectorized, int64 microseconds) ---------------------------------
    # Pane k is [k * pane + offset, (k + 1) * pane + offset); times and window ends taken
    # and returned are real instants (the offset is added and removed here only).

    def pane_of(self, ts: np.ndarray) -> np.ndarray:
        """The pane index of each timestamp (floor division: correct before 1970 too)."""
        return np.floor_divide(ts - self.offset_us, self.pane_us)

    def pane_end(self, pane: np.ndarray | int) -> np.ndarray | int:
        """The end of the first window that covers the pane (the pane's own end, unless
        windows end less often than panes do)."""
        p, s, eo = self.pane_us, self.end_period_us, self.end_offset_us
        if s == p:
            return (pane + 1) * p + self.offset_us
        return -(-((pane + 1) * p + self.offset_us - eo) // s) * s + eo

    def next_end_after(self, time: int) -> int:
        """The first window end after ``time``."""
        s, eo = self.end_period_us, self.end_offset_us
        return int(((time - eo) // s + 1) * s + eo)

    def pane_last_end(self, pane: np.ndarray | int) -> np.ndarray | int:
        """The end of the last window that contains the pane: once the watermark passes it,
        the pane's state can be freed."""
        p, off = self.pane_us, self.offset_us
        if self.kind == "tumble":
            return (pane + 1) * p + off
        if self.kind == "hop":  # the latest window end within a width of the pane
            s, eo = self.end_period_us, self.end_offset_us
            return (pane * p + off + self.size_us - eo) // s * s + eo
        # cumulate: the end of the pane's max window
        m = self.size_us
        return (np.floor_divide(pane * p, m) + 1) * m + off

    def last_end(self, ts: np.ndarray) -> np.ndarray:
        """The end of the last window that holds each timestamp: a row is late once the
        watermark reached it (every window holding it has fired), as in Flink, not as soon
        as the watermark passes the row."""
        return self.pane_last_end(self.pane_of(ts))

    def explode(self, pane: np.ndarray, low: int | None = None,
                high: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """For pane indices, every (row index, window end) pair of a window that contains
        the pane and ends in ``[low, high]``: a row repeats once per such window
        (``panes_per_window`` times at most), and only those copies are made."""
        p, s, off, eo = self.pane_us, self.end_period_us, self.offset_us, self.end_offset_us
        # window ends as k * s + eo; k from the pane's first window to its last
        first = -(-((pane + 1) * p + off - eo) // s)
        last = (self.pane_last_end(pane) - eo) // s
        if low is not None:
            first = np.maximum(first, -(-(low - eo) // s))
        if high is not None:
            last = np.minimum(last, (high - eo) // s)
        counts = np.maximum(last - first + 1, 0)
        if self.kind == "tumble" or (len(counts) and counts.min() == counts.max() == 1):
            keep = np.flatnonzero(counts)
            return keep, first[keep] * s + eo
        rows = np.repeat(np.arange(len(pane)), counts)
        starts = np.cumsum(counts) - counts
        j = np.arange(len(rows)) - np.repeat(starts, counts)
        return rows, (first[rows] + j) * s + eo

    def window_start(self, end: np.ndarray) -> np.ndarray:
        """The start of a (tumbling, hopping or cumulating) window from its end."""
        if self.kind == "cumulate":
            m, off = self.size_us, self.offset_us
            return np.floor_divide(end - off - 1, m) * m + off
        return end - self.size_us
