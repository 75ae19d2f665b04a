"""Watermark bookkeeping: a source's watermark from the event times it has read, and an
operator's watermark as the minimum over its input channels (idle and ended ones excluded)."""

from __future__ import annotations

import pyarrow as pa

from caudal import compute as pc
from caudal.watermark import WATERMARK_MAX, WATERMARK_MIN


def max_event_time(column: pa.Array) -> int | None:
    """Largest event time of a batch column in µs, or None when all are null."""
    if len(column) == 0:
        return None
    value = pc.max(column)
    if not value.is_valid:
        return None
    return pc.cast(value, pa.int64()).as_py() if not isinstance(value, pa.Int64Scalar) else \
        value.as_py()


class SourceWatermark:
    """``max(event time seen) - delay``, only ever increasing."""

    def __init__(self, delay_us: int):
        self.delay = delay_us
        self.current = WATERMARK_MIN

    def observe(self, column: pa.Array) -> bool:
        """Account for a batch; True when the watermark advanced."""
        latest = max_event_time(column)
        if latest is None:
            return False
        return self.advance(latest - self.delay)

    def advance(self, candidate: int | None) -> bool:
        """Move to ``candidate`` (a watermark the source computed) if it is ahead."""
        if candidate is not None and candidate > self.current:
            self.current = candidate
            return True
        return False


class InputWatermarks:
    """The minimum watermark over input channels. An idle channel is left out until it sends
    again; an ended channel counts as +infinity."""

    def __init__(self, channels: int):
        self.marks = [WATERMARK_MIN] * channels
        self.idle = [False] * channels
        self.ended = [False] * channels
        self.current = WATERMARK_MIN

    def _recompute(self) -> bool:
        active = [m for m, idle, end in zip(self.marks, self.idle, self.ended)
                  if not idle and not end]
        if not active:
            if all(self.ended):
                value = WATERMARK_MAX
            else:  # every live input is idle: hold at the highest seen
                live = [m for m, end in zip(self.marks, self.ended) if not end]
                value = max(live) if live else WATERMARK_MAX
        else:
            value = min(active)
        if value > self.current:
            self.current = value
            return True
        return False

    def update(self, channel: int, time: int) -> bool:
        self.idle[channel] = False
        if time > self.marks[channel]:
            self.marks[channel] = time
        return self._recompute()

    def activity(self, channel: int) -> None:
        """Data arrived on a channel: it is no longer idle."""
        if self.idle[channel]:
            self.idle[channel] = False

    def set_idle(self, channel: int) -> bool:
        self.idle[channel] = True
        return self._recompute()

    def end(self, channel: int) -> bool:
        self.ended[channel] = True
        return self._recompute()
