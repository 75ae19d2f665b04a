"""Compiled plans: a job planned once (``caudal compile job.sql -o job.plan``) and run many
times (``caudal run job.plan``) without the SQL front end, as Flink's ``COMPILE PLAN`` /
``EXECUTE PLAN``.

Planning a job costs its process the import of sqlglot (~0.12-0.14 CPU s here, it builds
~1 300 expression classes) and of the planner, and the planning itself (0.08-0.2 s): more
than caudal's own running of a small job. The physical graph is already plain data (the
Ray runtime pickles it to its workers), so a plan file is that graph pickled, after a header
line of JSON that says which caudal wrote it. This module imports neither sqlglot nor the
planner: reading a plan is the whole of "planning" in a process that runs one.

A plan is only right for the caudal that wrote it and for inputs that still look as they
did at planning, and a stale plan would be a wrong answer, not a slower one. So:

- the header carries the plan format, caudal's version, a hash of caudal's sources, and the
  Python and pyarrow versions (which pickled schemas depend on); any difference is refused
  in one line before anything is unpickled;
- what the planner learned from the inputs is checked again before the job starts: the
  schema of every table whose columns were inferred (a Parquet file's own, a CSV header) is
  inferred again and must be the same, and each source's and sink's planning-time checks
  (options, a CSV header against the declared columns, an external table's columns) run
  again, as they would when planning the .sql.

A plan file holds pickled Python objects: like a ``--udf`` file, it runs code when loaded,
so run only plans you (or a process you trust) compiled.
"""

from __future__ import annotations

import dataclasses
import json
import os
import pickle
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from caudal.errors import CaudalError, ConfigError
from caudal.version import __version__

#: the first bytes of every plan file
MAGIC = b"CAUDAL PLAN\n"
#: raised whenever what a plan file holds changes meaning; older or newer ones are refused
FORMAT = 1
_HINT = "compile it again with this caudal: caudal compile JOB.sql -o {path}"


@dataclass
class CompiledPlan:
    """What a plan file holds: the physical graph, and what it was planned from."""

    graph: Any  # plan.physical.PhysicalGraph (imported by unpickling, not here)
    #: the INSERT/SELECT statements' text (the checkpoint directory records it)
    sql: str
    parallelism: int
    #: table name -> the schema the planner inferred from its data (no declared columns)
    inferred: dict[str, Any] = field(default_factory=dict)
    #: the file it was compiled from, for messages
    compiled_from: str = ""
    #: the Arrow tables its python sources read (a literal SELECT's row, VALUES), by handle:
    #: they live in the compiling process's memory (connectors.python), so the plan carries them
    tables: dict[str, Any] = field(default_factory=dict)

    def notices(self) -> list[str]:
        return job_notices(self.graph)


def job_notices(graph: Any) -> list[str]:
    """One-line notices to print when a job starts: operators whose state grows without
    bound because a source never ends (plan.state_growth)."""
    from caudal.connectors.registry import any_unbounded
    from caudal.plan.state_growth import state_growth_notices

    sources = [v.source for v in graph.vertices if v.source is not None]
    return state_growth_notices(graph, any_unbounded(sources))


_SOURCE_HASH: list[str] = []  # this process's, once found (the plan cache asks twice)


def source_hash() -> str:
    """A hash of caudal's sources: the pickled graph names caudal's classes and their fields,
    and operators read their parameters by name, so a plan is run only by the very sources
    that planned it. Reading and hashing them (2.1 MB, ~27 M instructions) is done once per
    set of files: the hash is kept in the package's ``__pycache__`` under a key of every
    file's name, size and mtime in ns, what CPython's own ``.pyc`` check trusts (with mtime in
    seconds): sources edited without changing it would not be what runs either."""
    if not _SOURCE_HASH:
        _SOURCE_HASH.append(_source_hash())
    return _SOURCE_HASH[0]


def _source_hash() -> str:
    try:  # CPython's own module: hashlib would load OpenSSL (3-12 ms here) for one digest
        from _blake2 import blake2b
    except ImportError:  # another Python
        from hashlib import blake2b

    root = os.path.dirname(os.path.abspath(__file__))
    files, folders = [], [""]
    while folders:  # os.scandir and plain strings: ~30 % less CPU than os.walk and Path
        folder = folders.pop()
        with os.scandir(os.path.join(root, folder)) as entries:
            for entry in entries:
                if entry.is_dir():
                    if not entry.name.startswith((".", "__")):
                        folders.append(os.path.join(folder, entry.name))
                elif entry.name.endswith((".py", ".c")):
                    info = entry.stat()
                    files.append((os.path.join(folder, entry.name), info.st_size,
                                  info.st_mtime_ns))
    files.sort()
    key = blake2b(repr(files).encode(), digest_size=16).hexdigest()
    cache = os.path.join(root, "__pycache__", "sources.blake2")
    try:
        with open(cache) as f:
            cached_key, _, cached = f.read().strip().partition(" ")
        if cached_key == key and cached:
            return cached
    except OSError:
        pass
    digest = blake2b(digest_size=16)
    for name, _, _ in files:
        digest.update(name.encode() + b"\0")
        with open(os.path.join(root, name), "rb") as f:
            digest.update(f.read())
    value = digest.hexdigest()
    if not sys.dont_write_bytecode:
        try:  # a read-only install hashes every time; two writers each write a whole file
            temp = f"{cache}.{os.getpid()}"
            with open(temp, "w") as f:
                f.write(f"{key} {value}\n")
            os.replace(temp, cache)
        except OSError:
            pass
    return value


def _header(parallelism: int, compiled_from: str) -> dict[str, Any]:
    import pyarrow as pa

    return {"format": FORMAT, "caudal": __version__, "build": source_hash(),
            "python": "{}.{}".format(*sys.version_info), "pyarrow": pa.__version__,
            "parallelism": parallelism, "compiled_from": compiled_from}


def is_plan(data: bytes) -> bool:
    return data.startswith(MAGIC)


def dump_plan(plan: CompiledPlan) -> bytes:
    """The bytes of a plan file. A graph holding Python UDFs is refused: their functions are
    pickled by reference to a module that a later process may not have (or have changed)."""
    from caudal.runtime.ray.shipping import user_functions

    udfs = user_functions(plan.graph)
    if udfs:
        raise ConfigError(f"a compiled plan cannot hold Python functions ({udfs[0].name} is "
                          "one)", hint="run the .sql file with --udf instead")
    try:
        payload = pickle.dumps(plan, protocol=pickle.HIGHEST_PROTOCOL)
    except (pickle.PicklingError, TypeError, AttributeError) as e:
        raise ConfigError(f"this job cannot be compiled to a plan: {type(e).__name__}: "
                          f"{str(e).splitlines()[0][:200]}", hint="run the .sql file") from None
    header = json.dumps(_header(plan.parallelism, plan.compiled_from), sort_keys=True)
    return MAGIC + header.encode() + b"\n" + payload


def load_plan(data: bytes, path: str) -> CompiledPlan:
    """The plan in ``data`` (the bytes of file ``path``), refused in one line when another
    caudal (format, version, sources, Python, pyarrow) wrote it."""
    hint = _HINT.format(path=path)
    rest = data[len(MAGIC):]
    line, newline, payload = rest.partition(b"\n")
    try:
        header = json.loads(line) if newline else None
    except ValueError:
        header = None
    if not isinstance(header, dict):
        raise ConfigError(f"{path} is not a caudal plan (its header is damaged)", hint=hint)
    if header.get("format") != FORMAT:
        raise ConfigError(f"{path} is a plan of format {header.get('format')} (written by "
                          f"caudal {header.get('caudal')}); this caudal {__version__} runs "
                          f"plans of format {FORMAT}", hint=hint)
    mine = _header(header.get("parallelism", 1), header.get("compiled_from", ""))
    for key, what in (("caudal", "caudal {}"), ("build", "another build of caudal (sources {})"),
                      ("python", "Python {}"), ("pyarrow", "pyarrow {}")):
        if header.get(key) != mine[key]:
            raise ConfigError(f"{path} was compiled by {what.format(header.get(key))}; this "
                              f"is {what.format(mine[key]).replace('another', 'a')}",
                              hint=hint)
    try:
        plan = pickle.loads(payload)
    except Exception as e:  # noqa: BLE001 - a truncated or altered file
        raise ConfigError(f"{path} is damaged: {type(e).__name__}", hint=hint) from None
    if not isinstance(plan, CompiledPlan):
        raise ConfigError(f"{path} is damaged: it holds no plan", hint=hint)
    return plan


def read_plan(path: str) -> CompiledPlan:
    try:
        data = Path(path).read_bytes()
    except OSError as e:
        raise CaudalError(f"cannot read {path}: {e.strerror}") from None
    if not is_plan(data):
        raise ConfigError(f"{path} is not a caudal plan", hint="caudal compile JOB.sql -o PLAN "
                                                               "writes one")
    return load_plan(data, path)


def check_inputs(plan: CompiledPlan, path: str) -> None:
    """Raise ConfigError (one line) when the tables no longer fit the plan: a schema the
    planner inferred is not what the data holds now, or a source's or sink's planning-time
    check fails (as it would when planning the .sql). Registers the tables the plan carries
    for its python sources first."""
    if plan.tables:
        from caudal.connectors.python import TABLES

        TABLES.update(plan.tables)
    hint = _HINT.format(path=path)
    seen: set[tuple[str, str]] = set()
    for vertex in plan.graph.vertices:
        for spec, role in ((vertex.source, "source"), (vertex.sink, "sink")):
            if spec is None or (spec.name, role) in seen:
                continue
            seen.add((spec.name, role))
            before = plan.inferred.get(spec.name) if role == "source" else None
            if before is not None:
                now = _planning_check(_infer, spec, path, hint)
                if now is None or not now.equals(before, check_metadata=False):
                    raise ConfigError(f"the columns of table {spec.name!r} changed since "
                                      f"{path} was compiled: {_difference(before, now)}",
                                      hint=hint)
            _planning_check(_validate_sink if role == "sink" else _validate_source, spec,
                            path, hint)


def _planning_check(check: Any, spec: Any, path: str, hint: str) -> Any:
    """``check(spec)``; what planning the .sql would say, without its line in the .sql."""
    try:
        return check(spec)
    except CaudalError as e:
        message = e.message if spec.name in e.message else f"table {spec.name!r}: {e.message}"
        raise ConfigError(f"{path}: {message}", hint=e.hint or hint) from None


def _infer(spec: Any) -> Any:
    from caudal.connectors.registry import source_class

    return source_class(spec).infer_schema(dataclasses.replace(
        spec, schema=None, projection=None, prune_filter=None))


def _validate_source(spec: Any) -> None:
    from caudal.connectors.registry import source_class

    source_class(spec).validate(dataclasses.replace(spec, projection=None, prune_filter=None))


def _validate_sink(spec: Any) -> None:
    from caudal.connectors.registry import sink_class

    sink = sink_class(spec)
    sink.validate(spec)
    sink.check_table(spec)


def _difference(before: Any, now: Any) -> str:
    """What changed between two schemas, in a few words."""
    from caudal.types import sql_name

    if now is None:
        return "they cannot be read now"
    old = {f.name: f.type for f in before}
    new = {f.name: f.type for f in now}
    parts = [f"{n} is gone" for n in old if n not in new]
    parts += [f"{n} {sql_name(new[n])} is new" for n in new if n not in old]
    parts += [f"{n} was {sql_name(old[n])}, is {sql_name(new[n])}"
              for n in old if n in new and old[n] != new[n]]
    if not parts and list(old) != list(new):
        parts.append("their order")
    return "; ".join(parts[:4]) or "their nullability or nested fields"
