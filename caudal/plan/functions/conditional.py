"""CASE, COALESCE, NULLIF, GREATEST and LEAST.

CASE and COALESCE are lazy in PostgreSQL: ``CASE WHEN b <> 0 THEN a / b END`` never divides
by zero. Kernels here run each branch on the whole batch first (fast, vectorized) and only
when that fails re-run it on the rows that actually take the branch.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from caudal import compute as pc
from caudal import float_order
from caudal.errors import RuntimeFailure
from caudal.plan.expressions import Call, Expr
from caudal.plan.functions.coerce import arity, cast, coerce_all, expect
from caudal.plan.functions.kernels import mask_of, null_of, scatter, to_array
from caudal.plan.functions.registry import BindError, register


def evaluate_rows(evaluator, batch: pa.RecordBatch, rows: np.ndarray, dtype: pa.DataType):
    """The value of ``evaluator`` on the rows where ``rows`` is true (NULL elsewhere); an
    error on a row outside ``rows`` is no error."""
    if not rows.any():
        return null_of(dtype)
    try:
        return evaluator(batch)
    except RuntimeFailure:
        if rows.all():
            raise
    value = evaluator(batch.filter(pa.array(rows)))
    if isinstance(value, pa.Scalar):
        return value
    if isinstance(value, pa.ChunkedArray):
        value = value.combine_chunks()
    return scatter(value, rows)


# ---- CASE -------------------------------------------------------------------------------


def bind_case(name: str, args: list[Expr]) -> Call:
    """``case(cond1, value1, cond2, value2, ..., [else])``: conditions are booleans, the
    values share one type."""
    has_else = len(args) % 2 == 1
    conditions = args[0:len(args) - has_else:2]
    values = list(args[1::2]) + ([args[-1]] if has_else else [])
    if not conditions:
        raise BindError("CASE needs at least one WHEN ... THEN ...")
    for c in conditions:
        expect(c, pa.types.is_boolean, "CASE WHEN", "a boolean condition")
    values, dtype = coerce_all(values, "CASE results")
    out: list[Expr] = []
    for i, c in enumerate(conditions):
        out += [cast(c, pa.bool_()), values[i]]
    if has_else:
        out.append(values[-1])
    return Call(dtype, "case", tuple(out), {"has_else": has_else})


def _case(evals, call: Call, batch: pa.RecordBatch):
    n = batch.num_rows
    has_else = call.options.get("has_else", False)
    pairs = (len(evals) - has_else) // 2
    decided = np.zeros(n, dtype=bool)
    conds, values = [], []
    for i in range(pairs):
        cond = evaluate_rows(evals[2 * i], batch, ~decided, pa.bool_())
        taken = mask_of(cond, n) & ~decided
        values.append(to_array(evaluate_rows(evals[2 * i + 1], batch, taken, call.dtype), n))
        conds.append(pa.array(taken))
        decided |= taken
    default = (evaluate_rows(evals[-1], batch, ~decided, call.dtype) if has_else
               else null_of(call.dtype))
    values.append(to_array(default, n))
    if pa.types.is_null(call.dtype):
        return pa.nulls(n)
    struct = pa.StructArray.from_arrays(conds, names=[f"c{i}" for i in range(len(conds))])
    return pc.case_when(struct, *values)


register("case", bind_case, _case,
         "CASE WHEN cond THEN value [...] [ELSE value] END; CASE x WHEN v THEN ... END",
         lazy=True, internal=True)


# ---- COALESCE, NULLIF -------------------------------------------------------------------


def _bind_coalesce(name: str, args: list[Expr]) -> Call:
    if not args:
        raise BindError("coalesce() takes at least one argument")
    coerced, dtype = coerce_all(args, "coalesce()")
    return Call(dtype, "coalesce", tuple(coerced))


def _coalesce(evals, call: Call, batch: pa.RecordBatch):
    n = batch.num_rows
    pending = np.ones(n, dtype=bool)
    parts = []
    for ev in evals:
        value = evaluate_rows(ev, batch, pending, call.dtype)
        parts.append(value)
        if isinstance(value, pa.Scalar):
            if value.is_valid:
                break
            continue
        pending &= np.asarray(pc.is_null(value).to_numpy(zero_copy_only=False), dtype=bool)
        if not pending.any():
            break
    if pa.types.is_null(call.dtype):
        return pa.nulls(n)
    if len(parts) == 1:
        return parts[0]
    return pc.coalesce(*parts)


register("coalesce", _bind_coalesce, _coalesce,
         "coalesce(a, b, ...) -> the first non-NULL argument", lazy=True)


def _bind_nullif(name: str, args: list[Expr]) -> Call:
    arity("nullif", args, 2)
    coerced, dtype = coerce_all(args, "nullif()")
    return Call(dtype, "nullif", tuple(coerced))


def _nullif(args, call):
    a, b = args
    if pa.types.is_null(call.dtype):
        return a
    same = pc.fill_null(float_order.equal_or_both_nan(a, b), False)
    return pc.if_else(same, null_of(call.dtype), a)


register("nullif", _bind_nullif, _nullif, "nullif(a, b) -> NULL if a = b, else a")


# ---- GREATEST, LEAST --------------------------------------------------------------------


def _bind_extreme(name: str, args: list[Expr]) -> Call:
    if not args:
        raise BindError(f"{name}() takes at least one argument")
    coerced, dtype = coerce_all(args, f"{name}()")
    if pa.types.is_struct(dtype) or pa.types.is_list(dtype):
        raise BindError(f"{name}() cannot order arrays or structs")
    return Call(dtype, name, tuple(coerced))


def _extreme(kernel, greatest: bool):
    def run(args, call):
        if pa.types.is_null(call.dtype) or len(args) == 1:
            return args[0]
        t = call.dtype
        if pa.types.is_timestamp(t) or pa.types.is_date(t) or pa.types.is_duration(t):
            # pyarrow has no element-wise min/max of zoned timestamps: compare the ticks
            ticks = pa.int32() if pa.types.is_date32(t) else pa.int64()
            return kernel(*[a.cast(ticks) for a in args], skip_nulls=True).cast(t)
        result = kernel(*args, skip_nulls=True)
        return float_order.greatest_nan(args, result) if greatest else result
    return run


register("greatest", _bind_extreme, _extreme(pc.max_element_wise, True),
         "greatest(a, b, ...) -> the largest non-NULL argument")
register("least", _bind_extreme, _extreme(pc.min_element_wise, False),
         "least(a, b, ...) -> the smallest non-NULL argument")
