"""What travels to the worker actors: the physical graph, including the users' Python
functions (``@cd.udf``, ``@cd.udaf``, ``--udf`` files) that its expressions and aggregates
carry, and the in-memory tables its python sources read (``from_arrow``, VALUES, a literal
SELECT): each is put in Ray's object store once per job and the workers that read it get
a reference (``put_tables``, ``get_tables``), not a copy of the table in every setup call. Ray pickles them with cloudpickle: a function of an importable module by reference
(the module must be importable on the workers too), one of a ``--udf`` file or of
``__main__`` by value, with what it closes over. Something that cannot be pickled (a lock,
an open connection, a generator held by a closure) is found before any actor starts and
refused in one line naming the function, instead of a serialization traceback from Ray."""

from __future__ import annotations

from typing import Any

import pyarrow as pa

from caudal.errors import ConfigError
from caudal.plan.functions.python_udf import PythonUdf
from caudal.plan.physical import PhysicalGraph
from caudal.plan.python_udaf import AnyUdaf, GroupUdaf

#: how deep the search for user functions goes into operator parameters
MAX_DEPTH = 40
_ATOMS = (str, bytes, int, float, bool, type(None))


def check_shippable(graph: PhysicalGraph, dumps: Any) -> None:
    """Raise ConfigError naming the first user function (or else the vertex) that
    ``dumps`` (Ray's cloudpickle) cannot pickle."""
    for vertex in graph.vertices:
        try:
            dumps(vertex)
            continue
        except Exception as e:  # noqa: BLE001 - any pickling failure
            reason = _one_line(e)
        for fn in user_functions(vertex):
            target = fn.fn if isinstance(fn, PythonUdf | GroupUdaf) else fn.cls
            try:
                dumps(target)
            except Exception as e:  # noqa: BLE001
                kind = "udf" if isinstance(fn, PythonUdf) else "udaf"
                raise ConfigError(
                    f"{kind} {fn.name} cannot be sent to the Ray workers: {_one_line(e)}",
                    hint="define it at module level (in a --udf file or an importable "
                         "module) and create what cannot be pickled (connections, locks, "
                         "clients) inside the function, on first call") from None
        raise ConfigError(f"vertex [{vertex.id}] {vertex.name} cannot be sent to the Ray "
                          f"workers: {reason}", hint="run it with --runtime local")


def user_functions(obj: Any) -> list[PythonUdf | AnyUdaf]:
    """The Python UDFs and UDAFs reachable from ``obj`` (operator parameters, expressions)."""
    found: dict[int, PythonUdf | AnyUdaf] = {}
    seen: set[int] = set()
    stack: list[tuple[Any, int]] = [(obj, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, _ATOMS) or id(item) in seen or depth > MAX_DEPTH:
            continue
        seen.add(id(item))
        if isinstance(item, PythonUdf | AnyUdaf):
            found[id(item)] = item
            continue
        if isinstance(item, dict):
            children = list(item.values())
        elif isinstance(item, list | tuple | set | frozenset):
            children = list(item)
        elif hasattr(item, "__dict__") and not isinstance(item, type):
            children = list(vars(item).values())
        elif hasattr(item, "__slots__"):
            children = [getattr(item, s, None) for s in item.__slots__]
        else:
            continue
        stack.extend((c, depth + 1) for c in children)
    return list(found.values())


def put_tables(tables: dict[str, pa.Table], put: Any, stored: dict[str, Any]) -> dict[str, Any]:
    """References to ``tables`` (by handle) in Ray's object store, each put there with
    ``put`` the first time a worker needs it and found in ``stored`` (the job's puts) after:
    a table read by several subtasks travels once. A table the store cannot take is refused
    in one line saying what to do instead."""
    refs = {}
    for handle, table in tables.items():
        if handle not in stored:
            try:
                stored[handle] = put(table)
            except Exception as e:  # noqa: BLE001 - the store is full, or the object too big
                raise ConfigError(
                    f"an in-memory table of {table.num_rows} rows ({table.nbytes / 2**20:.0f}"
                    f" MB) cannot be put in Ray's object store: {_one_line(e)}",
                    hint="write it to Parquet and read that (cd.read_parquet or a "
                         "filesystem table), or run with --runtime local") from None
        refs[handle] = stored[handle]
    return refs


def get_tables(refs: dict[str, Any], get: Any) -> dict[str, pa.Table]:
    """In a worker: the tables ``put_tables`` referenced (``get``: ``ray.get``; zero-copy
    from the object store of the worker's node)."""
    if not refs:
        return {}
    return dict(zip(refs, get(list(refs.values()))))


def _one_line(error: BaseException) -> str:
    text = (str(error).strip().splitlines() or [""])[0]
    return f"{type(error).__name__}: {text[:200]}"
