"""The registry's index of function families (``registry.FAMILIES``), which lets a lookup
import one family instead of all of them, names exactly what each family module registers."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from caudal.plan.functions.registry import FAMILIES, builtin, find, load_all

ROOT = Path(__file__).resolve().parents[2]

# records, for every register() call, the family module that made it (the innermost frame in
# one of FAMILIES' modules: a family may register through a helper of its own or of another)
_RECORD = """
import importlib, json, sys
import caudal.plan.functions.registry as r
assert not [m for m in sys.modules if m.rsplit('.', 1)[-1] in r.FAMILIES
            and m.startswith('caudal.plan.functions.')], 'a family was imported early'
calls = []
original = r.register
def register(names, *args, **kwargs):
    frame = sys._getframe(1)
    while frame.f_globals['__name__'].rsplit('.', 1)[-1] not in r.FAMILIES:
        frame = frame.f_back
    calls.append([frame.f_globals['__name__'].rsplit('.', 1)[-1],
                  [names] if isinstance(names, str) else list(names)])
    return original(names, *args, **kwargs)
r.register = register
for family in r.FAMILIES:
    importlib.import_module('caudal.plan.functions.' + family)
print(json.dumps(calls))
"""


def test_families_index_names_what_each_module_registers():
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    out = subprocess.run([sys.executable, "-c", _RECORD], capture_output=True, text=True,
                         env=env, cwd=ROOT, timeout=120, check=True)
    calls = json.loads(out.stdout.strip().splitlines()[-1])
    names = [name for _, group in calls for name in group]
    assert len(names) == len(set(names)), "a name registered twice: its lookup would depend " \
        "on which family was imported first"
    registered: dict[str, set[str]] = {}
    for family, group in calls:
        registered.setdefault(family, set()).update(group)
    assert {f: set(n) for f, n in FAMILIES.items()} == registered


def test_lookup_imports_the_family_and_load_all_lists_every_function():
    assert find("UPPER").name == "upper" and builtin("no_such_function") is None
    assert set(load_all()) == {name for group in FAMILIES.values() for name in group}
