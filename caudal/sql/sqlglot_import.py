"""Importing sqlglot for a planned run without the module it loads for nothing.

sqlglot imports ``importlib.metadata`` for one function, called only to look a dialect
plug-in up by a name it does not know; caudal's dialect is a class, never looked up so.
With the email, zipfile and csv modules it loads, that import is ~17 ms of each planned
``caudal run`` (bench/README.md, start-up). The CLI imports sqlglot through ``import_sqlglot``
before it plans; any other import of sqlglot (the Python API) is the usual one.
"""

from __future__ import annotations

import sys
import types


def import_sqlglot() -> None:
    """Import sqlglot with a stand-in ``importlib.metadata`` whose ``entry_points``
    imports the real module when called; the stand-in leaves ``sys.modules`` as soon as
    sqlglot is imported, so any other import gets the real module. Nothing happens when
    either is imported already."""
    if "sqlglot" in sys.modules or "importlib.metadata" in sys.modules:
        return
    stand_in = types.ModuleType("importlib.metadata")

    def entry_points(**params):  # type: ignore[no-untyped-def]
        import importlib

        if sys.modules.get("importlib.metadata") is stand_in:
            del sys.modules["importlib.metadata"]
        return importlib.import_module("importlib.metadata").entry_points(**params)

    stand_in.entry_points = entry_points  # type: ignore[attr-defined]
    sys.modules["importlib.metadata"] = stand_in
    try:
        import sqlglot  # noqa: F401
    finally:
        if sys.modules.get("importlib.metadata") is stand_in:
            del sys.modules["importlib.metadata"]
