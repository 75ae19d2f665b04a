"""The list of scalar functions users can call, for ``caudal functions`` and error hints."""

from __future__ import annotations

import difflib

from caudal.plan.functions.registry import load_all

FUNCTIONS = load_all()  # every family: a listing shows them all


def describe(include_operators: bool = False) -> list[tuple[str, str]]:
    """``(name, signature)`` of every function callable by name from SQL, sorted by name
    (aliases listed under each name); operators and CASE too with ``include_operators``."""
    rows = []
    for name, fn in FUNCTIONS.items():
        if fn.internal and not include_operators:
            continue
        rows.append((name, fn.signature))
    return sorted(rows)


def callable_names() -> list[str]:
    return [name for name, fn in FUNCTIONS.items() if not fn.internal]


def close_names(name: str, n: int = 3) -> list[str]:
    """Function names that look like ``name`` (for 'did you mean' hints)."""
    return difflib.get_close_matches(name.lower(), callable_names(), n=n, cutoff=0.6)
