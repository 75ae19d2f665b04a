"""Event-time windows as plain data: kind and sizes, and the arithmetic that puts a timestamp
in its windows.

Windows are half-open ``[start, end)`` and aligned to the Unix epoch. Tumbling, hopping and
cumulating windows are unions of *panes* (slices of ``pane_us``): a hop of slide s and width
w is w/s consecutive panes of size s, a cumulating window of step s and max size m is the
first 1..m/s panes of size s of its max window. Operators aggregate rows into panes once and
build each window from its panes, so overlapping windows share work. Session windows have no
panes: they depend on the data (``[first row, last row + gap)``, merged when they touch).
"""

from __future__ import annotations

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

    def __post_init__(self) -> None:
        assert self.kind in KINDS, self.kind

    @property
    def pane_us(self) -> int:
        """The slice every window of this kind is a union of (0 for sessions)."""
        if self.kind == "tumble":
            return self.size_us
        if self.kind in ("hop", "cumulate"):
            return self.slide_us
        return 0

    @property
    def panes_per_window(self) -> int:
        """The most panes one window spans."""
        if self.kind in ("hop", "cumulate"):
            return self.size_us // self.slide_us
        return 1

    def __str__(self) -> str:
        size = format_duration_us(self.size_us)
        if self.kind in ("hop", "cumulate"):
            return f"{self.kind}({format_duration_us(self.slide_us)}, {size})"
        return f"{self.kind}({size})"

    # ---- pane arithmetic (vectorized, int64 microseconds) ---------------------------------

    def pane_of(self, ts: np.ndarray) -> np.ndarray:
        """The pane index of each timestamp (floor division: correct before 1970 too)."""
        return np.floor_divide(ts, self.pane_us)

    def pane_last_end(self, pane: np.ndarray | int) -> np.ndarray | int:
        """The end of the last window that contains the pane: once the watermark passes it,
        the pane's state can be freed."""
        p = self.pane_us
        if self.kind == "tumble":
            return (pane + 1) * p
        if self.kind == "hop":
            return pane * p + self.size_us
        # cumulate: the end of the pane's max window
        m = self.size_us
        return (np.floor_divide(pane * p, m) + 1) * m

    def explode(self, pane: np.ndarray, low: int | None = None,
                high: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """For pane indices, every (row index, window end) pair of a window that contains
        the pane and ends in ``[low, high]``: a row repeats once per such window
        (``panes_per_window`` times at most), and only those copies are made."""
        p = self.pane_us
        first = pane + 1  # window ends in units of panes
        last = self.pane_last_end(pane) // p
        if low is not None:
            first = np.maximum(first, -(-low // p))
        if high is not None:
            last = np.minimum(last, high // p)
        counts = np.maximum(last - first + 1, 0)
        if self.kind == "tumble" or (len(counts) and counts.min() == counts.max() == 1):
            keep = np.flatnonzero(counts)
            return keep, first[keep] * p
        rows = np.repeat(np.arange(len(pane)), counts)
        starts = np.cumsum(counts) - counts
        j = np.arange(len(rows)) - np.repeat(starts, counts)
        return rows, (first[rows] + j) * p

    def window_start(self, end: np.ndarray) -> np.ndarray:
        """The start of a (tumbling, hopping or cumulating) window from its end."""
        if self.kind == "cumulate":
            m = self.size_us
            return np.floor_divide(end - 1, m) * m
        return end - self.size_us
