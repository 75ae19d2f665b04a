"""Python aggregate functions (UDAFs) with a vectorized interface.

A UDAF is a class with three methods over whole columns, mirroring the partial / merge /
final steps of the built-in aggregates (operators.aggregate_kernels):

* ``accumulate(groups, n_groups, *args)``: the rows of a batch -> one state row per group.
  ``groups`` is an int64 NumPy array (the group of each row, ``0 <= g < n_groups``); the
  result is a dict of state columns (NumPy or Arrow arrays) of length ``n_groups``;
* ``merge(groups, n_groups, state)``: many state rows (``state`` is a dict of columns, with
  ``groups`` saying which output group each row belongs to) -> one per group;
* ``finish(state)``: state rows -> the result column.

The state's columns and types are declared (``state={"total": "DOUBLE", "n": "BIGINT"}``),
so states are Arrow tables: concatenated, merged across panes and subtasks, and written to
checkpoints exactly like the built-ins' (the snapshot is the Parquet of those columns). Over
an updating input, caudal keeps the multiset of input rows per key and recomputes a touched
key from its rows, as it does for min and max, so a UDAF needs no ``retract`` to be exact
(a ``retract`` method is accepted and not called).

A *group* UDAF (``GroupUdaf``) is a plain function of the whole group, like Arroyo's UDAFs
(Rust functions of ``Vec<T>``) and PyFlink's Pandas UDAFs: caudal keeps each group's values
as lists (array_agg's state, merged by concatenation) and calls the function once per batch
of finished groups with one ``pa.ListArray`` per argument (one list per group, the lists of
one group aligned across arguments: their j-th values come from the same input row, NULLs
included); it returns one value per group. ``per_group=True`` calls it once per group with
one ``pa.Array`` per argument and takes a scalar back: a Python call per output row.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa

from caudal import compute as pc
from caudal.errors import PlanError, RuntimeFailure
from caudal.types import sql_name

#: the AggCall function name of every UDAF call (the UDAF is in its options)
UDAF = "udaf"

_JOB_AGGREGATES: ContextVar[dict[str, AnyUdaf] | None] = ContextVar(
    "caudal_job_aggregates", default=None)


@contextmanager
def job_aggregates(udafs: dict[str, AnyUdaf]) -> Iterator[None]:
    """Plan with these UDAFs callable by name (per job, like registry.job_functions)."""
    token = _JOB_AGGREGATES.set({**(_JOB_AGGREGATES.get() or {}),
                                 **{k.lower(): v for k, v in udafs.items()}})
    try:
        yield
    finally:
        _JOB_AGGREGATES.reset(token)


def find_udaf(name: str) -> AnyUdaf | None:
    return (_JOB_AGGREGATES.get() or {}).get(str(name).lower())


@dataclass(eq=False)
class PythonUdaf:
    name: str
    cls: type
    returns: pa.DataType
    state: dict[str, pa.DataType]
    args: list[pa.DataType] | None = None
    input: str = "numpy"

    def __post_init__(self):
        for method in ("accumulate", "merge", "finish"):
            if not callable(getattr(self.cls, method, None)):
                raise PlanError(f"udaf {self.name}: the class has no {method}() method",
                                hint="a UDAF defines accumulate(groups, n_groups, *args), "
                                     "merge(groups, n_groups, state) and finish(state)")
        if not self.state:
            raise PlanError(f"udaf {self.name}: declare its state columns",
                            hint='state={"total": "DOUBLE", "n": "BIGINT"}')

    def __str__(self) -> str:
        return self.name

    __repr__ = __str__

    def instance(self) -> Any:
        return self.cls()

    def _columns(self, arrays: list[pa.Array]) -> list[Any]:
        if self.input == "numpy":
            return [a.to_numpy(zero_copy_only=False) for a in arrays]
        if self.input == "polars":
            import polars as pl

            return [pl.from_arrow(a) for a in arrays]
        return arrays

    def _state_in(self, state: dict[str, pa.Array]) -> dict[str, Any]:
        names = list(state)
        return dict(zip(names, self._columns([state[n] for n in names])))

    def _state_out(self, result: Any, n: int, method: str) -> dict[str, pa.Array]:
        where = f"UDAF {self.name}().{method}()"
        if not isinstance(result, dict) or set(result) != set(self.state):
            raise RuntimeFailure(f"{where} returned "
                                 f"{sorted(result) if isinstance(result, dict) else result!r}"
                                 f", not a dict of the state columns {sorted(self.state)}")
        out = {}
        for name, dtype in self.state.items():
            out[name] = _column(result[name], dtype, n, f"{where} state column {name!r}")
        return out

    def call(self, obj: Any, method: str, *args: Any) -> Any:
        return _guarded(f"UDAF {self.name}().{method}()", getattr(obj, method), *args)

    def accumulate(self, obj, groups: np.ndarray, n: int, args: list[pa.Array]
                   ) -> dict[str, pa.Array]:
        result = self.call(obj, "accumulate", groups, n, *self._columns(args))
        return self._state_out(result, n, "accumulate")

    def merge(self, obj, groups: np.ndarray, n: int, state: dict[str, pa.Array]
              ) -> dict[str, pa.Array]:
        result = self.call(obj, "merge", groups, n, self._state_in(state))
        return self._state_out(result, n, "merge")

    def finish(self, obj, state: dict[str, pa.Array], n: int) -> pa.Array:
        result = self.call(obj, "finish", self._state_in(state))
        return _column(result, self.returns, n, f"UDAF {self.name}().finish()")


def _guarded(where: str, fn: Callable, *args: Any) -> Any:
    """``fn(*args)``; what it raises becomes one line naming the UDAF."""
    try:
        return fn(*args)
    except RuntimeFailure:
        raise
    except Exception as e:
        first = (str(e).strip().splitlines() or [""])[0]
        raise RuntimeFailure(f"{where} failed: {type(e).__name__}: {first}") from e


def _column(value: Any, dtype: pa.DataType, n: int, where: str) -> pa.Array:
    try:
        if isinstance(value, pa.ChunkedArray):
            value = value.combine_chunks()
        elif type(value).__module__.startswith("polars"):
            value = value.to_arrow()
        if not isinstance(value, pa.Array):
            value = pa.array(value, type=dtype)
        if not value.type.equals(dtype):
            value = value.cast(dtype)
    except (pa.ArrowException, TypeError, ValueError) as e:
        raise RuntimeFailure(f"{where} is not a column of {sql_name(dtype)}: "
                             f"{(str(e).splitlines() or [''])[0]}") from None
    if len(value) != n:
        raise RuntimeFailure(f"{where} has {len(value)} values for {n} groups",
                             hint="return one value per group (length n_groups)")
    return value


#: how a group UDAF may receive its arguments
GROUP_INPUTS = ("arrow", "polars", "numpy")


@dataclass(eq=False)
class GroupUdaf:
    """A UDAF that is a function of the whole group (the module docstring). Its state is the
    group's values (operators.udaf_kernel lists them as array_agg does), so it needs no
    accumulate or merge, runs wherever array_agg runs and checkpoints like it; the price is
    state as large as the input of a group."""

    name: str
    fn: Callable
    returns: pa.DataType
    args: list[pa.DataType] | None = None
    input: str = "arrow"
    per_group: bool = False

    def __post_init__(self):
        if self.input not in GROUP_INPUTS:
            raise PlanError(f"udaf {self.name}: input={self.input!r} is not known",
                            hint="input='arrow' (pyarrow), 'polars' or, with per_group=True, "
                                 "'numpy'")
        if self.input == "numpy" and not self.per_group:
            raise PlanError(f"udaf {self.name}: input='numpy' has no form for a batch of "
                            f"lists", hint="use input='arrow' or 'polars' (ListArray, List "
                                           "Series), or per_group=True")

    def __str__(self) -> str:
        return self.name

    __repr__ = __str__

    def arity_problem(self, n: int) -> str | None:
        """Why a call with ``n`` arguments cannot be made, or None."""
        if n == 0:
            return f"{self.name}() needs an argument: a UDAF receives its group's values"
        try:
            inspect.signature(self.fn).bind(*range(n))
        except TypeError as e:
            return f"{self.name}() cannot take {n} argument(s): {e}"
        except ValueError:  # no signature to inspect (a builtin): let the call decide
            return None
        return None

    def _convert(self, array: pa.Array) -> Any:
        if self.input == "polars":
            import polars as pl

            return pl.from_arrow(array)
        if self.input == "numpy":
            return array.to_numpy(zero_copy_only=False)
        return array

    def call(self, lists: list[pa.ListArray]) -> pa.Array:
        """The function on ``lists`` (one per argument, no NULL list): one value per group."""
        n = len(lists[0])
        where = f"UDAF {self.name}()"
        if not self.per_group:
            result = _guarded(where, self.fn, *[self._convert(a) for a in lists])
            return _column(result, self.returns, n, where)
        flat = [a.flatten() for a in lists]
        lengths = pc.list_value_length(lists[0]).to_numpy(zero_copy_only=False)
        ends = np.cumsum(lengths)
        starts = ends - lengths
        out = []
        for start, end in zip(starts.tolist(), ends.tolist()):  # one call per result row
            value = _guarded(where, self.fn, *[self._convert(f.slice(start, end - start))
                                               for f in flat])
            out.append(value.as_py() if isinstance(value, pa.Scalar) else value)
        return _column(out, self.returns, n, where)


#: either kind of UDAF (what SQL finds by name and an AggCall's options carry)
AnyUdaf = PythonUdaf | GroupUdaf
