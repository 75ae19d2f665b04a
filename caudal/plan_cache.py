"""The plan cache: ``caudal run job.sql`` run again starts as fast as ``caudal run job.plan``.

Planning a .sql costs a process the SQL front end (sqlglot, the planner: ~0.1 s of a trivial
job's ~0.24 s). A compiled plan (caudal.plan_file) skips it, but the user has to compile it
and compile it again when anything changes. This cache does that by itself, and only where
it can know that nothing changed: as ccache's direct mode and build systems do, the entry of
a job records every input planning read, and a later run uses the plan only when every one
of them is still the same; otherwise it plans again and replaces the entry.

What an entry is looked up by (its key, a hash): the SQL text, the parallelism, the working
directory (relative paths), ``HOME`` (``~`` in paths), ``TZ`` and every ``CAUDAL_*``
variable, caudal's version and the hash of its sources, the Python, pyarrow and sqlglot
that plan (by their files' stat, not imported: so a run finds out that it will plan before
it imports pyarrow, and can load pyarrow's libraries while sqlglot is imported,
caudal.native_preload). What an entry records beside its
plan, checked on every use: for each filesystem table read, the stat (device, inode, size,
mtime and ctime in ns) of its file, or of every file and directory under its directory (the
listing), and for each filesystem table written, whether its path is a file. Then, as for
any compiled plan, the schemas the planner inferred are inferred again and every table's
planning checks run again (plan_file.check_inputs).

What is never cached (the run plans as before): a job with a table of any other connector
(Kafka, PostgreSQL, HTTP, brokers: what planning reads there is a service's state), a
filesystem URL (``s3://``), ``--udf`` (user code), an option that means the wall clock
(``base_time = 'now'`` is pinned at planning), a job whose inputs changed less than
``RACY_NS`` before planning began: a file rewritten within one tick of the filesystem's clock
keeps its stat (git's "racy" entries), so only inputs older than that are trusted.

Entries live in ``$XDG_CACHE_HOME/caudal/plans`` (``~/.cache/caudal/plans``), are written
whole and renamed into place (two runs writing the same entry each write a whole one), are
ignored and replaced when damaged, and the oldest are deleted above ``MAX_BYTES``. An entry
is pickled Python, so the directory is used only when it is the user's own and nobody else
can write it. ``--no-plan-cache`` or ``CAUDAL_PLAN_CACHE=0`` turns the cache off; ``CAUDAL_PLAN_CACHE=/dir``
puts it in ``/dir``.
"""

from __future__ import annotations

import json
import os
import stat
import sys
import time
from typing import Any

from caudal import plan_file
from caudal.version import __version__

#: the first bytes of every entry
MAGIC = b"CAUDAL PLAN CACHE 1\n"
#: the cache directory's size above which the oldest entries are deleted
MAX_BYTES = 64 << 20
#: an entry larger than this (a job with a big VALUES list) is not written
MAX_ENTRY = 8 << 20
#: inputs changed this recently before planning began are not trusted to show a later
#: change in their stat: 2 s covers filesystems that keep seconds (ext3) or two (FAT)
RACY_NS = 2_000_000_000
#: connectors whose planning reads nothing but the table's options (and the SQL)
OPTIONS_ONLY = frozenset({"nexmark", "impulse", "stdout", "blackhole", "memory"})
ENV = "CAUDAL_PLAN_CACHE"


class _Uncacheable(Exception):
    """The job reads something at planning that an entry could not record."""


def enabled(no_plan_cache: bool, udfs: list[str]) -> bool:
    """False with ``--no-plan-cache``, ``CAUDAL_PLAN_CACHE=0`` or a ``--udf`` file."""
    if no_plan_cache or udfs:
        return False
    return os.environ.get(ENV, "1").strip().lower() not in ("0", "false", "no", "off")


def directory() -> str | None:
    """The cache directory (``CAUDAL_PLAN_CACHE`` when it is an absolute path), created if
    missing; None when it is not safe to load pickles from: not owned by this user, or
    writable by its group or others (or not creatable)."""
    chosen = os.environ.get(ENV, "")
    if os.path.isabs(chosen):
        root = path = chosen
    else:
        base = os.environ.get("XDG_CACHE_HOME")
        if not base or not os.path.isabs(base):
            base = os.path.join(os.path.expanduser("~"), ".cache")
        root = os.path.join(base, "caudal")
        path = os.path.join(root, "plans")
    try:
        os.makedirs(path, mode=0o700, exist_ok=True)
        for folder in {root, path}:
            info = os.stat(folder)
            if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.geteuid() or \
                    info.st_mode & 0o022:
                return None
    except OSError:
        return None
    return path


def _stamp(path: str) -> list[Any]:
    """The stat of a file that tells a change: device, inode, size, mtime and ctime."""
    try:
        info = os.stat(path)
    except FileNotFoundError:
        return ["missing"]
    return ["dir" if stat.S_ISDIR(info.st_mode) else "file", info.st_dev, info.st_ino,
            info.st_size, info.st_mtime_ns, info.st_ctime_ns]


def _package(name: str, version_file: str) -> list[Any]:
    """Which installed package would be imported, without importing it: the stat of its
    files that an install or upgrade rewrites (its ``__init__`` and version file)."""
    from importlib.util import find_spec

    spec = find_spec(name)
    if spec is None or not spec.origin:
        return ["none"]
    folder = os.path.dirname(spec.origin)
    return [spec.origin, _stamp(spec.origin), _stamp(os.path.join(folder, version_file))]


def key(sql: str, parallelism: int) -> str:
    """The entry name of ``sql`` planned at ``parallelism`` in this process's surroundings."""
    try:
        from _blake2 import blake2b
    except ImportError:  # another Python
        from hashlib import blake2b
    env = sorted((k, v) for k, v in os.environ.items()
                 if (k.startswith("CAUDAL_") and k != ENV) or k in ("HOME", "TZ"))
    parts = [MAGIC.decode(), plan_file.FORMAT, __version__, plan_file.source_hash(),
             sys.version, _package("pyarrow", "_generated_version.py"),
             _package("sqlglot", "_version.py"), os.getcwd(), env,
             parallelism, sql]
    return blake2b(json.dumps(parts).encode(), digest_size=20).hexdigest()


def _listing(root: str) -> tuple[list[Any], list[int]]:
    """Every file and directory under ``root`` with its stamp, sorted, and their ctimes."""
    entries, ctimes, folders = [], [], [""]
    while folders:
        folder = folders.pop()
        with os.scandir(os.path.join(root, folder)) as found:
            for entry in found:
                name = os.path.join(folder, entry.name)
                if entry.is_symlink() and entry.is_dir():  # a loop, perhaps: not followed
                    raise _Uncacheable(f"directory symlink {entry.path}")
                stamp = _stamp(entry.path)
                entries.append([name, stamp])
                if stamp[0] != "missing":
                    ctimes.append(stamp[5])
                if stamp[0] == "dir":
                    folders.append(name)
    entries.sort()
    return entries, ctimes


def _source_input(path: str) -> tuple[list[Any], list[int]]:
    stamp = _stamp(path)
    if stamp[0] == "missing":
        return ["source", path, stamp], []
    if stamp[0] == "file":
        return ["source", path, stamp], [stamp[5]]
    entries, ctimes = _listing(path)
    return ["source", path, stamp, entries], [stamp[5], *ctimes]


def _now_option(spec: Any) -> bool:
    return any(str(v).strip().lower().startswith("now") for v in spec.options.values())


def _table_specs(obj: Any) -> list[Any]:
    """Every TableSpec ``obj`` holds, wherever (an operator's parameters hold some)."""
    import io
    import pickle

    from caudal.plan.tables import TableSpec

    found: list[Any] = []

    class Finder(pickle.Pickler):
        def persistent_id(self, o: Any) -> None:
            if type(o) is TableSpec:
                found.append(o)
            return None

    Finder(io.BytesIO(), protocol=pickle.HIGHEST_PROTOCOL).dump(obj)
    return found


def record(compiled: Any, plan: Any, started: int) -> list[Any]:
    """What planning ``compiled`` (a job.CompiledJob, begun at ``started``, time.time_ns)
    read besides the SQL and the key's surroundings; _Uncacheable when some of it cannot be
    recorded, or changed too recently to trust its stat."""
    written = {id(v.sink) for v in compiled.graph.vertices if v.sink is not None}
    in_graph = _table_specs(compiled.graph)
    sinks = {s.name for s in in_graph if id(s) in written}
    read = {s.name for s in in_graph if id(s) not in written}
    specs = list(compiled.job.catalog.tables.values()) + in_graph
    inputs: dict[tuple[str, str], list[Any]] = {}
    ctimes: list[int] = []
    for spec in specs:
        if _now_option(spec):
            raise _Uncacheable(f"table {spec.name} means the wall clock")
        if spec.connector in OPTIONS_ONLY:
            continue
        if spec.connector == "python":
            if spec.options.get("handle") not in plan.tables or spec.name in sinks:
                raise _Uncacheable(f"python table {spec.name}")
            continue
        if spec.connector != "filesystem":
            raise _Uncacheable(f"connector {spec.connector}")
        path = spec.options.get("path")
        if not isinstance(path, str) or "://" in path:
            raise _Uncacheable(f"path {path!r}")
        path = os.path.abspath(os.path.expanduser(path))
        if spec.name in sinks and spec.name not in read:  # planning asks: is it a file?
            inputs.setdefault(("sink", path), ["sink", path, os.path.isfile(path)])
        elif ("source", path) not in inputs:
            inputs[("source", path)], times = _source_input(path)
            ctimes.extend(times)
    if ctimes and max(ctimes) >= started - RACY_NS:
        raise _Uncacheable("an input changed just before planning")
    return sorted(inputs.values(), key=repr)


def _unchanged(inputs: list[Any]) -> bool:
    for item in inputs:
        if item[0] == "sink":
            if os.path.isfile(item[1]) != item[2]:
                return False
        else:
            now = _source_input(item[1])[0]
            if now != item:
                return False
    return True


def exists(directory: str, name: str) -> bool:
    """Whether entry ``name`` is there (intact and still valid or not: ``lookup`` says)."""
    return os.path.isfile(os.path.join(directory, name + ".plan"))


def lookup(directory: str, name: str, path: str) -> Any:
    """The plan of entry ``name`` when it exists, is intact and every input it recorded is
    unchanged (its inferred schemas and planning checks pass again); else None."""
    try:
        with open(os.path.join(directory, name + ".plan"), "rb") as f:
            if os.fstat(f.fileno()).st_uid != os.geteuid():
                return None
            data = f.read()
        if not data.startswith(MAGIC):
            return None
        line, _, payload = data[len(MAGIC):].partition(b"\n")
        entry = json.loads(line)
        inputs = entry["inputs"]
        if entry.get("key") != name or not isinstance(inputs, list) or \
                not _unchanged(inputs):
            return None
        plan = plan_file.load_plan(payload, path)
        plan_file.check_inputs(plan, path)
    except Exception:  # noqa: BLE001 - missing, damaged, stale: plan again
        return None
    try:  # the oldest entries are evicted first: this one was used now
        os.utime(os.path.join(directory, name + ".plan"))
    except OSError:
        pass
    return plan


def store(directory: str, name: str, compiled: Any, parallelism: int, path: str,
          started: int) -> bool:
    """Write the entry of a job whose planning began at ``started`` (time.time_ns), unless
    it cannot be cached; never raises. True when written."""
    try:
        plan = compiled.plan(parallelism, path)
        inputs = record(compiled, plan, started)
        data = MAGIC + json.dumps({"key": name, "inputs": inputs}).encode() + b"\n" + \
            plan_file.dump_plan(plan)
        if len(data) > MAX_ENTRY:
            return False
        temp = os.path.join(directory, f".tmp-{os.getpid()}-{time.monotonic_ns()}")
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(temp, os.path.join(directory, name + ".plan"))
    except Exception:  # noqa: BLE001 - uncacheable, or the disk said no: no entry
        return False
    _evict(directory)
    return True


def _evict(directory: str) -> None:
    """Delete the least recently used entries while the directory holds more than
    MAX_BYTES, down to three quarters of it; and temporary files left by killed runs."""
    try:
        entries = []
        now = time.time()
        with os.scandir(directory) as found:
            for entry in found:
                info = entry.stat(follow_symlinks=False)
                if entry.name.startswith(".tmp-"):
                    if now - info.st_mtime > 3600:
                        os.unlink(entry.path)
                elif entry.name.endswith(".plan"):
                    entries.append((info.st_mtime_ns, info.st_size, entry.path))
        total = sum(size for _, size, _ in entries)
        if total <= MAX_BYTES:
            return
        for _, size, victim in sorted(entries):
            if total <= MAX_BYTES * 3 // 4:
                break
            try:
                os.unlink(victim)
            except FileNotFoundError:  # another run evicted it
                pass
            total -= size
    except OSError:
        pass
