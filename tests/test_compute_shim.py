"""caudal.compute hands out pyarrow.compute's functions, built on first use: every function
caudal calls exists there and gives pyarrow.compute's answer (and its errors) for the ways
caudal calls them: positional and keyword options, an options object, varargs, scalars,
expressions."""

from __future__ import annotations

import re
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as real
import pytest

from caudal import compute as pc

ROOT = Path(__file__).resolve().parents[1] / "caudal"


def _names_used() -> set[str]:
    names: set[str] = set()
    for path in ROOT.rglob("*.py"):
        text = path.read_text()
        if "from caudal import compute as pc" in text:
            names |= set(re.findall(r"\bpc\.([A-Za-z_][A-Za-z_0-9]*)", text))
    return names


def test_every_function_caudal_calls_is_there():
    names = _names_used()
    assert len(names) > 50
    for name in sorted(names):
        ours, theirs = getattr(pc, name), getattr(real, name)
        if isinstance(theirs, type):
            assert ours is theirs, name


A = pa.array([1.25, None, -3.5, 7.0])
S = pa.array(["abc", None, "héllo", ""])
CALLS = [
    ("add", (A, A), {}),
    ("add", (A, 1), {}),
    ("add", (pa.scalar(2), 3), {}),
    ("round", (A, 1), {}),
    ("round", (A,), {"ndigits": 1, "round_mode": "half_up"}),
    ("round", (A,), {"options": real.RoundOptions(1)}),
    ("utf8_slice_codeunits", (S, 1, 3), {}),
    ("utf8_slice_codeunits", (S,), {"start": 0, "stop": -1}),
    ("binary_join_element_wise", (S, S, "-"), {}),
    ("binary_join_element_wise", (S, S, "-"), {"null_handling": "replace",
                                                "null_replacement": "?"}),
    ("and_", (pa.array([True, None, False]), pa.array([True, True, None])), {}),
    ("or_kleene", (pa.array([True, None, False]), pa.array([False, True, None])), {}),
    ("is_in", (S,), {"value_set": pa.array(["abc", ""])}),
    ("if_else", (pa.array([True, False, None, True]), A, 0.0), {}),
    ("fill_null", (A, 0), {}),
    ("fill_null", (A, pa.scalar(0)), {}),
    ("fill_null", (A, pa.array([9.0, 9.0, 9.0, 9.0])), {}),
    ("cast", (A, pa.int64()), {"safe": False}),
    ("cast", (pa.array(["1", "2"]), pa.int32()), {}),
    ("cast", (pa.scalar(5), pa.string()), {}),
    ("take", (S, pa.array([3, 0, None])), {}),
    ("filter", (pa.table({"s": S}), pa.array([True, None, False, True])),
     {"null_selection_behavior": "emit_null"}),
    ("max", (A,), {}),
    ("count", (A,), {"mode": "all"}),
    ("sort_indices", (S,), {"sort_keys": [("", "descending")]}),
    ("split_pattern", (S, "l"), {}),
    ("strftime", (pa.array([0], pa.timestamp("us", "UTC")),), {"format": "%Y"}),
]


@pytest.mark.parametrize(("name", "args", "kwargs"), CALLS,
                         ids=[f"{c[0]}-{i}" for i, c in enumerate(CALLS)])
def test_same_answer_as_pyarrow_compute(name, args, kwargs):
    ours = getattr(pc, name)(*args, **kwargs)
    theirs = getattr(real, name)(*args, **kwargs)
    assert type(ours) is type(theirs)
    assert ours.equals(theirs)


@pytest.mark.parametrize(("name", "args", "kwargs"), [
    ("add", (A,), {}),                                    # too few arguments
    ("add", (A, A, A), {}),                               # too many, no options
    ("round", (A,), {"ndigits": 1, "options": real.RoundOptions(1)}),  # both
    ("round", (A,), {"options": real.CastOptions()}),     # the wrong options class
    ("cast", (pa.array(["x"]), pa.int64()), {}),          # an invalid cast
    ("cast", (A, pa.int64()), {}),                        # a lossy safe cast
    ("utf8_lower", (A,), {}),                             # no such kernel for the type
])
def test_same_errors_as_pyarrow_compute(name, args, kwargs):
    with pytest.raises(Exception) as theirs:
        getattr(real, name)(*args, **kwargs)
    with pytest.raises(type(theirs.value)):
        getattr(pc, name)(*args, **kwargs)


def test_expressions_and_unknown_names():
    expr = pc.add(pc.field("a"), 1)
    assert isinstance(expr, pc.Expression)
    assert str(expr) == str(real.add(real.field("a"), 1))
    # the kernel's own name ("and"; pyarrow.compute's wrapper would put "and_" in the
    # expression, which no kernel has)
    assert str(pc.and_(pc.field("a"), pc.field("b"))) == "and(a, b)"
    with pytest.raises(AttributeError):
        pc.no_such_kernel  # noqa: B018
