"""Doctests of the Python API (caudal/frame and caudal/testing.py) run with the suite: their
examples are the documentation users copy, so they must keep working."""

from __future__ import annotations

from pathlib import Path

from _pytest.doctest import DoctestModule

_ROOT = Path(__file__).resolve().parent
_DOCTESTED = (_ROOT / "caudal" / "frame", _ROOT / "caudal" / "testing.py")


def pytest_collect_file(file_path: Path, parent):
    if file_path.suffix != ".py" or file_path.name == "conftest.py":
        return None
    if any(file_path == p or p in file_path.parents for p in _DOCTESTED):
        return DoctestModule.from_parent(parent, path=file_path)
    return None
