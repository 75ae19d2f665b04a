"""Peak resident memory (RSS) of this process, per phase of a benchmark.

Linux keeps the high-water mark in ``/proc/self/status`` (VmHWM) and lets a process reset it
by writing ``5`` to ``/proc/self/clear_refs``, so one process can measure caudal's run and then
DuckDB's without either's peak hiding the other. Elsewhere it falls back to ``ru_maxrss``
(the peak over the whole process life, an upper bound). The figure includes the interpreter
and the libraries loaded (about 100-150 MB with pyarrow, polars and DuckDB imported).
"""

from __future__ import annotations

import ctypes
import gc
import resource
import sys
from pathlib import Path

import pyarrow as pa

_STATUS = Path("/proc/self/status")
_CLEAR = Path("/proc/self/clear_refs")


def settle() -> None:
    """Give freed memory back to the OS (Python, Arrow's pool, glibc) so the next phase's
    peak starts from what is really in use, not from what an earlier phase left cached."""
    gc.collect()
    pa.default_memory_pool().release_unused()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def reset_peak() -> bool:
    """Start a new high-water mark at the current RSS; False when the OS cannot."""
    try:
        _CLEAR.write_text("5")
        return True
    except OSError:
        return False


def _status_kb(key: str) -> int | None:
    try:
        for line in _STATUS.read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except (OSError, ValueError):
        return None
    return None


def peak_rss_bytes() -> int:
    """The highest RSS since the last ``reset_peak`` (or since the process started)."""
    kb = _status_kb("VmHWM")
    if kb is not None:
        return kb * 1024
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024


def current_rss_bytes() -> int:
    kb = _status_kb("VmRSS")
    return kb * 1024 if kb is not None else peak_rss_bytes()
