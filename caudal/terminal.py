"""The terminal shared by the status line (stderr) and printed rows (stdout).

On a terminal both streams show on one screen: a status line is drawn without a newline and
redrawn in place, so rows printed meanwhile would continue it. Whoever prints rows calls
``rows_output()``, which erases a drawn status line first; the status line is drawn again on
its next tick, below the rows. One lock orders the two writers.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager

_LOCK = threading.Lock()
_STATE = {"status_drawn": False}
ERASE_LINE = "\r\033[K"


def draw_status(text: str, stream=None) -> None:
    """Draw (or redraw) the status line on ``stream`` (stderr)."""
    stream = stream or sys.stderr
    with _LOCK:
        stream.write(ERASE_LINE + text)
        stream.flush()
        _STATE["status_drawn"] = True


def erase_status(stream=None) -> None:
    stream = stream or sys.stderr
    with _LOCK:
        _erase(stream)


def _erase(stream) -> None:
    if _STATE["status_drawn"]:
        stream.write(ERASE_LINE)
        stream.flush()
        _STATE["status_drawn"] = False


@contextmanager
def rows_output(status_stream=None) -> Iterator[None]:
    """Hold the terminal while rows are written to stdout, the status line erased."""
    with _LOCK:
        _erase(status_stream or sys.stderr)
        yield
