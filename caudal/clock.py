"""Processing time: the one place caudal reads the wall clock for data (``now()``,
``PROCTIME()``, processing-time windows, updating flush and TTL timers), so that tests can
control it (``caudal.testing.manual_clock``). Pacing and timeouts use their own clocks."""

from __future__ import annotations

import time
from collections.abc import Callable

#: returns the processing time in microseconds since the epoch (UTC)
_source: Callable[[], int] = lambda: time.time_ns() // 1000  # noqa: E731


def now_us() -> int:
    return _source()


def set_source(source: Callable[[], int] | None) -> None:
    """Use ``source`` for processing time (None: the wall clock again)."""
    global _source
    _source = source if source is not None else (lambda: time.time_ns() // 1000)
