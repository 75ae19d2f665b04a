"""Start-up of a planned ``caudal run``: NumPy's and Arrow's native libraries are loaded in a
background thread while the main thread imports the SQL front end.

Importing pyarrow (with NumPy, which it imports) and sqlglot is most of a planned trivial
job's start-up, one after the other on one thread. Both are mostly Python code run under the
GIL (module bodies, class creation), which a second thread cannot overlap, but the dynamic
loader's part is not: mapping and relocating ``_multiarray_umath`` with OpenBLAS and
``pyarrow.lib`` with libarrow, libparquet and the rest (~20 ms of CPU here). CPython's own
extension import (and ``ctypes.CDLL``) call ``dlopen`` holding the GIL; a ctypes foreign
call releases it, so this module calls libc's ``dlopen`` that way from a thread, with the
flags the import system uses (``sys.getdlopenflags()``), on the very files the imports will
open (found by ``importlib.util.find_spec`` of the top-level packages, which executes
nothing). The later imports then find the libraries loaded: the same handles, run by the same
code, so nothing changes but when (and on which thread) the loader did its work. When
anything is unusual (no libc ``dlopen``, a file missing, a package already imported) it does
nothing and the imports load as before.

OpenBLAS starts a thread per core when NumPy loads, which spins for tens of ms waiting for
work caudal never gives it (caudal calls no BLAS routine): ~20-40 ms of CPU per process,
taken from the main thread and the loader thread when the cores are busy. Unless the user
set ``OPENBLAS_NUM_THREADS`` (or ``OMP_NUM_THREADS`` / ``GOTO_NUM_THREADS``, which OpenBLAS
also reads), it is set to 1 while NumPy loads and removed again once it has, before the job
starts anything: OpenBLAS then runs its routines (a UDF's ``numpy.linalg``) on the calling
thread, and processes the job starts see the user's environment.

The loader thread is opt-in (``CAUDAL_NATIVE_PRELOAD=thread``): a ``caudal run`` child of
the job server died of SIGSEGV during its start-up once, in a full test run on a loaded
machine, and the cause was not found (80 planned runs of the same command since: none); the
thread saves ~16 ms of the main thread's CPU, not worth a crash. ``CAUDAL_NATIVE_PRELOAD=0``
turns the OpenBLAS setting off too. The Ray runtime does neither (its workers are other
processes, started with Ray's own thread settings).
"""

from __future__ import annotations

import os
import sys
import threading
from importlib.machinery import EXTENSION_SUFFIXES
from importlib.util import find_spec

#: (top-level package, the extension module whose load pulls in the package's native libraries)
LIBRARIES = (("numpy", ("_core", "_multiarray_umath")), ("pyarrow", ("lib",)))
#: variables OpenBLAS reads for its thread count (the first one set wins there)
BLAS_THREADS = ("OPENBLAS_NUM_THREADS", "GOTO_NUM_THREADS", "OMP_NUM_THREADS")
ENV = "CAUDAL_NATIVE_PRELOAD"


def _extension(package: str, parts: tuple[str, ...]) -> bytes | None:
    """The file the import of ``package.parts`` would load, without importing anything."""
    try:
        spec = find_spec(package)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.origin or not spec.submodule_search_locations:
        return None
    base = os.path.join(os.path.dirname(spec.origin), *parts)
    for suffix in EXTENSION_SUFFIXES:  # the order the import system tries them in
        if os.path.isfile(base + suffix):
            return os.fsencode(base + suffix)
    return None


class NativePreload:
    """Start-up's native loading, for one ``caudal run`` on the local runtime: made before
    anything imports NumPy (it sets OpenBLAS to one thread unless the user chose), then
    ``load_libraries`` when the job will be planned, ``finish`` once NumPy is imported."""

    def __init__(self) -> None:
        self.thread: threading.Thread | None = None
        setting = os.environ.get(ENV, "1").strip().lower()
        self.on = setting not in ("0", "false", "no", "off") and "numpy" not in sys.modules
        #: the loader thread only when asked for (see the module)
        self.thread_on = self.on and setting == "thread"
        self.blas_set = self.on and not any(os.environ.get(name) for name in BLAS_THREADS)
        if self.blas_set:
            os.environ[BLAS_THREADS[0]] = "1"

    def load_libraries(self) -> bool:
        """Start the loader thread (once); True when it runs."""
        if not self.thread_on or self.thread is not None or "pyarrow" in sys.modules or \
                _usable_cpus() < 2:  # (on one core the thread overlaps nothing)
            return False
        paths = [p for p in (_extension(pkg, parts) for pkg, parts in LIBRARIES) if p]
        dlopen = _libc_dlopen() if paths else None
        if dlopen is None:
            return False
        flags = sys.getdlopenflags()

        def load() -> None:
            for path in paths:
                try:
                    dlopen(path, flags)  # NULL on failure: the import says why, later
                except Exception:  # noqa: BLE001, S112 - the import loads it then
                    pass

        self.thread = threading.Thread(target=load, name="caudal-native-preload", daemon=True)
        self.thread.start()
        return True

    def finish(self) -> None:
        """Join the loader thread (done by now: the main thread's imports of the same files
        waited for it) and remove the BLAS thread count set here. Idempotent."""
        if self.thread is not None:
            self.thread.join()
            self.thread = None
        if self.blas_set:
            self.blas_set = False
            if os.environ.get(BLAS_THREADS[0]) == "1":
                del os.environ[BLAS_THREADS[0]]


def _usable_cpus() -> int:
    """The processors this process may run on (``taskset``, cgroups' cpusets)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not on Linux
        return os.cpu_count() or 1


def _libc_dlopen():  # type: ignore[no-untyped-def]
    """libc's ``dlopen`` as a ctypes foreign function (called without the GIL), or None."""
    try:
        import ctypes

        function = ctypes.CDLL(None).dlopen
    except (ImportError, OSError, AttributeError):
        return None
    function.argtypes = [ctypes.c_char_p, ctypes.c_int]
    function.restype = ctypes.c_void_p
    return function
