"""Python scalar UDFs: a user's function of whole columns, called once per batch.

A ``PythonUdf`` is a ``ScalarFunction`` of its own (``function()``), looked up by name only
in the jobs that use it (registry.job_functions), never added to the global registry. Its
binding produces a call of the internal ``python_udf`` function whose options carry the
``PythonUdf`` itself: the IR stays plain data (the callable is pickled by reference for a
worker process), and the kernel finds the user's function without any name lookup at run
time.

The function receives one column per argument (pyarrow arrays by default; NumPy arrays or
Polars Series with ``input=``) and returns a column of the same length (an Arrow array, a
NumPy array, a Polars Series or a list). An async UDF is called per row with Python values,
``max_concurrency`` calls at a time; every call of a batch completes before the batch's
result leaves the operator, so no call is ever in flight across a barrier and checkpoints
stay exact (``ordered`` is accepted for Arroyo compatibility: results always keep their
rows' order, which is one of the orders an unordered UDF may produce).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa

from caudal.errors import PlanError, RuntimeFailure
from caudal.plan.expressions import Call, Expr
from caudal.plan.functions.coerce import cast
from caudal.plan.functions.registry import BindError, ScalarFunction, builtin, register
from caudal.types import is_numeric, is_text, sql_name

#: the IR function every Python UDF call binds to
PYTHON_UDF = "python_udf"
ON_ERROR = ("fail", "drop")
#: the job metric counting input rows dropped by UDFs with ``on_error = 'drop'``
ROWS_DROPPED = "udf_rows_dropped"


class DropBatch(RuntimeFailure):
    """A UDF declared ``on_error='drop'`` raised: the operator evaluating it drops the
    input batch and counts its rows (operators.stateless); anywhere else it fails the job."""
INPUT_KINDS = ("arrow", "numpy", "polars")


def parse_type(text: str | pa.DataType, what: str) -> pa.DataType:
    """A SQL type name (``'DOUBLE'``, ``'DECIMAL(10, 2)'``, ``'TEXT[]'``) or an Arrow type,
    taken as the engine's type of its SQL type (``normalize_type``: a ``time32('s')`` as
    TIME's time64[us], a nanosecond timestamp as TIMESTAMP): a state column of a type a
    checkpoint's Parquet cannot keep came back as another and the restore failed."""
    from caudal.types import arrow_type, normalize_type

    if isinstance(text, pa.DataType):
        return normalize_type(text)
    from sqlglot import exp

    try:
        return arrow_type(exp.DataType.build(str(text), dialect="postgres"))
    except Exception:
        raise PlanError(f"{what}: unknown type {text!r}",
                        hint="a SQL type such as DOUBLE, BIGINT, TEXT, BOOLEAN, TIMESTAMP, "
                             "DECIMAL(10, 2), or a pyarrow DataType") from None


@dataclass(eq=False)
class PythonUdf:
    """A user-defined scalar function (see the module docstring)."""

    name: str
    fn: Callable[..., Any]
    returns: pa.DataType
    #: argument types, cast to before the call; None: the arguments' own types
    args: list[pa.DataType] | None = None
    input: str = "arrow"
    is_async: bool = False
    max_concurrency: int = 64
    ordered: bool = False
    timeout_s: float | None = None
    on_error: str = "fail"

    def __post_init__(self):
        self._local = threading.local()  # batch counters (and an event loop) per subtask
        if self.input not in INPUT_KINDS:
            raise PlanError(f"udf {self.name}: input = {self.input!r}",
                            hint="accepted: " + ", ".join(INPUT_KINDS))
        if self.on_error not in ON_ERROR:
            raise PlanError(f"udf {self.name}: on_error = {self.on_error!r}",
                            hint="accepted: " + ", ".join(ON_ERROR))
        if self.max_concurrency < 1:
            raise PlanError(f"udf {self.name}: max_concurrency must be at least 1")

    def __getstate__(self):  # the thread-local counters stay in their process
        state = dict(self.__dict__)
        state.pop("_local", None)
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._local = threading.local()

    def __str__(self) -> str:
        return self.name

    __repr__ = __str__

    # -- planning ---------------------------------------------------------------------------

    def function(self) -> ScalarFunction:
        """The ScalarFunction a job registers under the UDF's name."""
        kinds = ", ".join(sql_name(t) for t in self.args) if self.args is not None else "…"
        return ScalarFunction(self.name, self._bind, _kernel,
                              f"{self.name}({kinds}) -> {sql_name(self.returns)}: Python UDF",
                              volatile=True, lazy=True)

    def _bind(self, name: str, args: list[Expr]) -> Call:
        if self.args is not None:
            if len(args) != len(self.args):
                raise BindError(f"{self.name}() takes {len(self.args)} argument(s), got "
                                f"{len(args)}")
            args = [cast(a, t) for a, t in zip(args, self.args)]
        return Call(self.returns, PYTHON_UDF, tuple(args), {"udf": self})

    # -- running ----------------------------------------------------------------------------

    def _position(self, rows: int) -> tuple[int, int]:
        """(batch number, first row) of the batch about to be processed in this thread (a
        subtask), counted from 1 and 0."""
        local = self._local
        batch = getattr(local, "batches", 0) + 1
        first = getattr(local, "rows", 0)
        local.batches, local.rows = batch, first + rows
        return batch, first

    def run(self, arrays: list[pa.Array], rows: int) -> pa.Array:
        batch_no, first = self._position(rows)
        where = f"UDF {self.name}() on input batch {batch_no} (rows {first}–" \
                f"{first + rows - 1} of its subtask)"
        try:
            if self.is_async:
                result = self._run_async(arrays, rows)
            else:
                result = self.fn(*[_to_input(a, self.input) for a in arrays])
        except RuntimeFailure:
            raise
        except Exception as e:
            first_line = (str(e).strip().splitlines() or [""])[0]
            error = DropBatch if self.on_error == "drop" else RuntimeFailure
            raise error(f"{where} failed: {type(e).__name__}: {first_line}") from e
        return self._conform(result, rows, where)

    def _conform(self, result: Any, rows: int, where: str) -> pa.Array:
        declared = self.returns
        try:
            if isinstance(result, pa.ChunkedArray):
                result = result.combine_chunks()
            elif isinstance(result, pa.Scalar):
                result = pa.repeat(result, rows)
            elif not isinstance(result, pa.Array):
                if type(result).__module__.startswith("polars"):
                    result = result.to_arrow()
                    if isinstance(result, pa.ChunkedArray):
                        result = result.combine_chunks()
                elif isinstance(result, np.ndarray):
                    result = pa.array(result)
                elif isinstance(result, (list, tuple)):
                    result = pa.array(result, type=declared)
                else:
                    raise TypeError(f"a {type(result).__name__}")
        except (TypeError, pa.ArrowException) as e:
            raise RuntimeFailure(f"{where} returned {e}, not a column of "
                                 f"{sql_name(declared)}",
                                 hint="return a pyarrow Array, a NumPy array, a Polars Series "
                                      "or a list with one value per row") from None
        if len(result) != rows:
            raise RuntimeFailure(f"{where} returned {len(result)} values for {rows} rows",
                                 hint="a scalar UDF returns one value per input row")
        if not result.type.equals(declared):
            same_family = (is_numeric(result.type) and is_numeric(declared)) or \
                (is_text(result.type) and is_text(declared)) or pa.types.is_null(result.type)
            try:
                if not same_family:
                    raise pa.ArrowInvalid("")
                result = result.cast(declared)
            except pa.ArrowException:
                raise RuntimeFailure(f"{where} returned {sql_name(result.type)} values, but "
                                     f"it is declared to return {sql_name(declared)}",
                                     hint="change returns= or convert the result") from None
        return result

    def _run_async(self, arrays: list[pa.Array], rows: int) -> pa.Array:
        import asyncio  # async UDFs only (asyncio costs start-up time to import)

        loop = getattr(self._local, "loop", None)
        if loop is None:
            loop = self._local.loop = asyncio.new_event_loop()
        columns = [a.to_pylist() for a in arrays]
        return pa.array(loop.run_until_complete(self._gather(columns, rows)),
                        type=self.returns)

    async def _gather(self, columns: list[list[Any]], rows: int) -> list[Any]:
        import asyncio

        limit = asyncio.Semaphore(self.max_concurrency)

        async def one(i: int) -> Any:
            async with limit:
                call = self.fn(*[c[i] for c in columns])
                if self.timeout_s is None:
                    return await call
                try:
                    return await asyncio.wait_for(call, self.timeout_s)
                except TimeoutError:
                    raise TimeoutError(f"a call took longer than {self.timeout_s:g}s "
                                       f"(timeout) on row {i} of the batch") from None

        return list(await asyncio.gather(*[one(i) for i in range(rows)]))


def _to_input(array: pa.Array, kind: str) -> Any:
    if kind == "numpy":
        return array.to_numpy(zero_copy_only=False)
    if kind == "polars":
        import polars as pl

        return pl.from_arrow(array)
    return array


def _kernel(evaluators, call: Call, batch: pa.RecordBatch) -> pa.Array:
    udf: PythonUdf = call.options["udf"]
    rows = batch.num_rows
    arrays = []
    for evaluate, arg in zip(evaluators, call.args):
        value = evaluate(batch)
        if isinstance(value, pa.ChunkedArray):
            value = value.combine_chunks()
        if isinstance(value, pa.Scalar):
            value = pa.repeat(value if value.is_valid else pa.scalar(None, arg.dtype), rows)
        arrays.append(value)
    return udf.run(arrays, rows)


def _bind_internal(name: str, args: list[Expr]) -> Call:
    raise BindError("python_udf() is internal: call a UDF by its own name")


register(PYTHON_UDF, _bind_internal, _kernel, "a Python UDF (internal)", volatile=True,
         lazy=True, internal=True)

#: UDFs defined in this process (``@cd.udf``, ``cd.register_udf``, ``caudal run --udf``):
#: name -> PythonUdf (or a UDAF); every job of the process may call them by name
USER_FUNCTIONS: dict[str, Any] = {}


def add_user_function(udf: Any) -> None:
    """Make ``udf`` callable by name in later jobs; a built-in function's name is refused."""
    from caudal.plan.aggregates import ALIASES

    key = udf.name.lower()
    if builtin(key) is not None or key in ALIASES:
        raise PlanError(f"function {udf.name}() is already a built-in function",
                        hint="give the UDF another name (name=…)")
    USER_FUNCTIONS[key] = udf




@contextmanager
def job_context(extra: Any = ()) -> Iterator[None]:
    """Plan with every user function and aggregate (and ``extra`` ones: the UDFs a frame's
    expressions call) callable by name."""
    from caudal.plan.functions.registry import job_functions
    from caudal.plan.python_udaf import AnyUdaf, job_aggregates

    every = list(USER_FUNCTIONS.values()) + list(extra)
    scalars = {u.name: u.function() for u in every if isinstance(u, PythonUdf)}
    aggregates = {u.name: u for u in every if isinstance(u, AnyUdaf)}
    with job_functions(scalars), job_aggregates(aggregates):
        yield
