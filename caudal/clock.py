"""Processing time: the one place caudal reads the wall clock for data (``now()``,
``PROCTIME()``, processing-time windows, updating flush and TTL timers), so that tests can
control it (``caudal.testing.manual_clock``). Pacing and timeouts use their own clocks."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

#: returns the processing time in microseconds since the epoch (UTC)
_source: Callable[[], int] = lambda: time.time_ns() // 1000  # noqa: E731


def now_us() -> int:
    return _source()


def set_source(source: Callable[[], int] | None) -> None:
    """Use ``source`` for processing time (None: the wall clock again)."""
    global _source
    _source = source if source is not None else (lambda: time.time_ns() // 1000)



#: per thread: the processing time of the batch the runtime is passing through a chain
_batch = threading.local()


@contextmanager
def batch_read() -> Iterator[None]:
    """While the runtime hands a chain of operators a batch (an input or a timer's output):
    ``batch_now_us`` reads the clock once, and every operator of the chain shares that read,
    so a row's now() in a subquery and in the query around it agree."""
    _batch.us, _batch.started = None, True
    try:
        yield
    finally:
        _batch.started = False


def batch_now_us() -> int | None:
    """The processing time of the batch of ``batch_read`` on this thread (read on first
    use), or None outside one (an expression evaluated outside the runtime)."""
    if not getattr(_batch, "started", False):
        return None
    if _batch.us is None:
        _batch.us = now_us()
    return _batch.us
