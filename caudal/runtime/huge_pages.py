"""Transparent huge pages off for a process that runs a job.

Arrow's allocator (mimalloc) reserves its arena with ``madvise(MADV_HUGEPAGE)`` and NumPy
does the same for arrays of 4 MB and more, so on a kernel whose THP mode is ``madvise`` (the
common default) every fresh page an operator touches is a 2 MB page the kernel zeroes in
full, and the allocator's purges give pages back to be faulted (and zeroed) again. A job moves
its rows through short-lived buffers, in several threads at parallelism > 1 (one allocator
heap each), so that zeroing was 17 % of a parallelism-1 join's CPU and 33 % at parallelism
2 (``perf record``: ``clear_page_erms`` under ``do_huge_pmd_anonymous_page``; bench/README).
With 4 KB pages only what is touched is zeroed.

``PR_SET_THP_DISABLE`` applies to the whole process (and children it starts), so only the
``caudal run`` command sets it, not a program that imports caudal as a library, and so do
the Ray runtime's worker actors (a process that hosts one job's subtasks, then ends), which
otherwise ran with the huge pages that ``caudal run`` turns off (65-71 MB of them in a Nexmark
q5 worker). ``CAUDAL_HUGE_PAGES=1`` keeps huge pages (in the driver's environment: it is
passed to the Ray workers).
"""

from __future__ import annotations

import ctypes
import os
import sys

PR_SET_THP_DISABLE = 41
#: set to 1 to keep transparent huge pages
HUGE_PAGES_ENV = "CAUDAL_HUGE_PAGES"


def disable_huge_pages() -> bool:
    """Turn transparent huge pages off for this process; False where that is not possible
    (not Linux, an old kernel) or ``CAUDAL_HUGE_PAGES=1`` asks to keep them."""
    if not sys.platform.startswith("linux") or os.environ.get(HUGE_PAGES_ENV) == "1":
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(PR_SET_THP_DISABLE, 1, 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False
