"""Aggregate function calls as the plan carries them: which function, over which input
columns, with DISTINCT and FILTER, and the SQL result type.

The SQL layer computes every argument and FILTER condition into a column of the operator's
input (so an operator only ever reads columns), and this module only knows names and types;
the vectorized partial / merge / final kernels live in ``operators.aggregate_kernels``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

from caudal.errors import PlanError
from caudal.types import TIMESTAMP, is_numeric, is_text, sql_name

#: SQL spellings -> canonical aggregate name
ALIASES = {
    "count": "count", "sum": "sum", "avg": "avg", "mean": "avg", "min": "min", "max": "max",
    "var_pop": "var_pop", "varpop": "var_pop", "variance_pop": "var_pop",
    "variancepop": "var_pop", "firstvalue": "first_value", "lastvalue": "last_value",
    "var_samp": "var_samp", "varsamp": "var_samp", "variance": "var_samp",
    "variance_samp": "var_samp",
    "stddev_pop": "stddev_pop", "stddevpop": "stddev_pop",
    "stddev_samp": "stddev_samp", "stddevsamp": "stddev_samp", "stddev": "stddev_samp",
    "bool_and": "bool_and", "logicaland": "bool_and", "every": "bool_and",
    "bool_or": "bool_or", "logicalor": "bool_or",
    "first_value": "first_value", "first": "first_value",
    "last_value": "last_value", "last": "last_value",
    "string_agg": "string_agg", "groupconcat": "string_agg", "listagg": "string_agg",
    "approx_count_distinct": "approx_count_distinct", "approx_distinct": "approx_count_distinct",
    "approxdistinct": "approx_count_distinct",
    "array_agg": "array_agg", "arrayagg": "array_agg",
    "bit_and": "bit_and", "bitwiseandagg": "bit_and", "bit_or": "bit_or",
    "bitwiseoragg": "bit_or", "bit_xor": "bit_xor", "bitwisexoragg": "bit_xor",
    "var": "var_samp",
    # percentiles (exact; the approx_ spellings of DataFusion are computed exactly too)
    "median": "median", "approx_median": "median",
    "percentile_cont": "percentile_cont", "percentilecont": "percentile_cont",
    "approx_percentile_cont": "percentile_cont", "quantile_cont": "percentile_cont",
    "percentile_disc": "percentile_disc", "percentiledisc": "percentile_disc",
    "quantile_disc": "percentile_disc",
    # statistics of two columns (y, x), over the rows where both are non-NULL
    "corr": "corr", "covar_pop": "covar_pop", "covarpop": "covar_pop",
    "covar_samp": "covar_samp", "covarsamp": "covar_samp",
    **{f"regr_{s}": f"regr_{s}" for s in ("slope", "intercept", "count", "r2", "avgx",
                                          "avgy", "sxx", "syy", "sxy")},
    **{f"regr{s}": f"regr_{s}" for s in ("slope", "intercept", "count", "r2", "avgx",
                                         "avgy", "sxx", "syy", "sxy")},
}

#: aggregates of two columns (y, x): their state is the co-moments of the pair
PAIR_STATISTICS = ("corr", "covar_pop", "covar_samp", "regr_slope", "regr_intercept",
                   "regr_count", "regr_r2", "regr_avgx", "regr_avgy", "regr_sxx", "regr_syy",
                   "regr_sxy")
#: aggregates of a sorted group (their state is the group's values)
PERCENTILES = ("median", "percentile_cont", "percentile_disc")

ACCEPTED = ("count(*), count(x), count(DISTINCT x), sum, avg, min, max, stddev, stddev_pop, "
            "stddev_samp, variance, var_pop, var_samp, bool_and, bool_or, first_value, "
            "last_value, string_agg(x, sep), approx_count_distinct, "
            "array_agg(x [ORDER BY k]), bit_and, bit_or, bit_xor, median, "
            "percentile_cont(p) / percentile_disc(p) WITHIN GROUP (ORDER BY x), corr, "
            "covar_pop, covar_samp, regr_slope, regr_intercept, regr_count, regr_r2, "
            "regr_avgx, regr_avgy, regr_sxx, regr_syy, regr_sxy")

#: canonical aggregate -> one-line signature, for the SQL reference (docs/sql.md)
SIGNATURES = {
    "count": "count(*), count(x), count(DISTINCT x) -> bigint (count(x) skips NULLs)",
    "sum": "sum([DISTINCT] x) -> bigint for integers (exact; a sum past BIGINT stops the "
           "job), DECIMAL(38, s) for a DECIMAL(p, s) (exact; a sum past 38 digits stops "
           "the job), else double",
    "avg": "avg([DISTINCT] x) -> double (of integers and DECIMALs: their exact sum, "
           "divided as DuckDB does)",
    "min": "min(x) -> the type of x",
    "max": "max(x) -> the type of x",
    "var_pop": "var_pop(x) -> double (population variance; 0 for one value, even NaN)",
    "var_samp": "var_samp(x), variance(x) -> double (sample variance)",
    "stddev_pop": "stddev_pop(x) -> double",
    "stddev_samp": "stddev_samp(x), stddev(x) -> double",
    "bool_and": "bool_and(b), every(b) -> boolean",
    "bool_or": "bool_or(b) -> boolean",
    "first_value": "first_value(x) -> the value with the earliest event time (windows, "
                   "append-only inputs); OVER: of the frame's first row, NULL included",
    "last_value": "last_value(x) -> the value with the latest event time (windows, "
                  "append-only inputs); OVER: of the frame's last row, NULL included",
    "string_agg": "string_agg(text [, separator]) -> text in arrival order, separated by "
                  "',' unless given (append-only inputs)",
    "approx_count_distinct": "approx_count_distinct(x) -> bigint (computed exactly)",
    "array_agg": "array_agg(x [ORDER BY k [DESC] [NULLS FIRST|LAST]]) -> array of x, NULLs "
                 "kept; NULL when no row",
    "bit_and": "bit_and(integer) -> bitwise AND of the non-NULL values",
    "bit_or": "bit_or(integer) -> bitwise OR of the non-NULL values",
    "bit_xor": "bit_xor(integer) -> bitwise XOR of the non-NULL values",
    "median": "median(x), approx_median(x) -> double (a FLOAT or DECIMAL x: its type): the "
              "middle value (between the two middle ones), computed exactly",
    "percentile_cont": "percentile_cont(p) WITHIN GROUP (ORDER BY x [DESC]), also "
                       "approx_percentile_cont(p) WITHIN GROUP (…), approx_percentile_cont(x, "
                       "p), quantile_cont(x, p) -> double (a FLOAT or DECIMAL x: its type; "
                       "DECIMAL of up to 18 digits): interpolated as DuckDB does, exactly",
    "percentile_disc": "percentile_disc(p) WITHIN GROUP (ORDER BY x), quantile_disc(x, p) -> "
                       "the first value at or past the fraction p, the type of x",
    "corr": "corr(y, x) -> double: the correlation coefficient (NaN where x or y is "
            "constant, as in DuckDB)",
    "covar_pop": "covar_pop(y, x) -> double: the population covariance",
    "covar_samp": "covar_samp(y, x) -> double: the sample covariance",
    "regr_slope": "regr_slope(y, x) -> double: the least-squares slope of y on x (NaN "
                  "where x is constant)",
    "regr_intercept": "regr_intercept(y, x) -> double: the least-squares intercept (NULL "
                      "where x is constant)",
    "regr_count": "regr_count(y, x) -> bigint: rows where both are non-NULL",
    "regr_r2": "regr_r2(y, x) -> double: the coefficient of determination (NULL where x "
               "is constant, else 1 where y is)",
    "regr_avgx": "regr_avgx(y, x) -> double: the mean of x",
    "regr_avgy": "regr_avgy(y, x) -> double: the mean of y",
    "regr_sxx": "regr_sxx(y, x) -> double: sum of squared deviations of x",
    "regr_syy": "regr_syy(y, x) -> double: sum of squared deviations of y",
    "regr_sxy": "regr_sxy(y, x) -> double: sum of products of the deviations",
}

#: aggregates whose DISTINCT form is computed (min/max/bool ignore DISTINCT)
DISTINCT_OK = {"count", "sum", "avg", "approx_count_distinct"}
#: aggregates whose value over no rows is 0, not NULL (they count)
COUNTS = ("count", "approx_count_distinct", "regr_count")
DISTINCT_IRRELEVANT = {"min", "max", "bool_and", "bool_or"}


@dataclass(frozen=True, eq=False)
class AggCall:
    """``func(args…) [FILTER (WHERE filter)]`` over columns of the operator's input.

    ``func`` is canonical (see ALIASES; ``count`` with no argument is ``count(*)``);
    ``args`` and ``filter`` name input columns; ``options`` holds constants (the
    string_agg separator); ``dtype`` is the SQL result type.
    """

    func: str
    args: tuple[str, ...]
    dtype: pa.DataType
    distinct: bool = False
    filter: str | None = None
    options: dict[str, Any] = field(default_factory=dict)
    #: the SQL text, for EXPLAIN
    text: str = ""

    def __str__(self) -> str:
        return self.text or f"{self.func}({', '.join(self.args)})"

    def columns(self) -> set[str]:
        """The input columns the call reads: its arguments and its FILTER."""
        return set(self.args) | ({self.filter} if self.filter else set())


def canonical(name: str) -> str | None:
    return ALIASES.get(name.lower())


def result_type(func: str, args: list[pa.DataType]) -> pa.DataType:
    """The SQL type of ``func(args)``; raises PlanError (no position) for bad arguments."""
    if func == "count" or func == "approx_count_distinct":
        return pa.int64()
    if not args:
        raise PlanError(f"{func}() needs an argument")
    t = args[0]
    null = pa.types.is_null(t)
    if func == "sum":
        if pa.types.is_integer(t) or null:
            return pa.int64()
        if pa.types.is_floating(t):
            return pa.float64()
        if pa.types.is_decimal(t):
            return pa.decimal128(38, t.scale)
        raise PlanError(f"sum() takes a number, got {sql_name(t)}")
    if func in ("avg", "var_pop", "var_samp", "stddev_pop", "stddev_samp"):
        if is_numeric(t) or null:
            return pa.float64()
        raise PlanError(f"{func}() takes a number, got {sql_name(t)}")
    if func in ("min", "max", "first_value", "last_value"):
        if pa.types.is_nested(t):   # struct, list and map values alike
            raise PlanError(f"{func}() takes a scalar value, got {sql_name(t)}")
        return pa.string() if null else t
    if func in ("bool_and", "bool_or"):
        if pa.types.is_boolean(t) or null:
            return pa.bool_()
        raise PlanError(f"{func}() takes a BOOLEAN, got {sql_name(t)}")
    if func == "string_agg":
        if is_text(t) or null:
            return pa.string()
        raise PlanError(f"string_agg() takes TEXT, got {sql_name(t)}",
                        hint="cast the value: string_agg(CAST(x AS TEXT), ',')")
    if func == "array_agg":
        return pa.list_(pa.string() if null else t)
    if func in PAIR_STATISTICS:
        if len(args) != 2 or not all(is_numeric(a) or pa.types.is_null(a) for a in args):
            got = ", ".join(sql_name(a) for a in args)
            raise PlanError(f"{func}() takes two numbers (y, x), got ({got})")
        return pa.int64() if func == "regr_count" else pa.float64()
    if func in PERCENTILES:
        if not (is_numeric(t) or null):
            raise PlanError(f"{func}() takes a number, got {sql_name(t)}")
        if pa.types.is_decimal(t) and t.precision > 18:
            raise PlanError(f"{func}() of {sql_name(t)} is not supported (DECIMAL of up to "
                            "18 digits)", hint=f"cast the value: {func}(CAST(x AS DOUBLE)) or "
                            f"CAST(x AS DECIMAL(18, {t.scale}))")
        if func == "percentile_disc" and not null:
            return t
        # as DuckDB: FLOAT and DECIMAL keep their type, integers interpolate as DOUBLE
        return t if pa.types.is_float32(t) or pa.types.is_decimal(t) else pa.float64()
    if func in ("bit_and", "bit_or", "bit_xor"):
        if pa.types.is_integer(t) or null:
            return pa.int64() if null else t
        raise PlanError(f"{func}() takes an integer, got {sql_name(t)}")
    raise PlanError(f"unknown aggregate {func}()", hint=f"accepted: {ACCEPTED}")


def argument_count(func: str) -> tuple[int, int]:
    """How many value arguments ``func`` takes (string_agg's separator is an option)."""
    if func == "count":
        return 0, 1
    if func in PAIR_STATISTICS:
        return 2, 2
    return 1, 1


__all__ = ["AggCall", "ALIASES", "ACCEPTED", "PAIR_STATISTICS", "PERCENTILES", "canonical",
           "result_type", "argument_count", "TIMESTAMP"]


def totals_apply(aggregates: list[AggCall], input_schema: pa.Schema) -> bool:
    """Whether running totals (operators.running_totals) compute every one of
    ``aggregates`` exactly over a changelog: count(*), count(x), and sum/avg of signed
    integers, none DISTINCT."""
    if not aggregates:
        return False
    for call in aggregates:
        if call.distinct or call.func not in ("count", "sum", "avg") or len(call.args) > 1:
            return False
        if call.func == "count":
            continue
        if not call.args or call.args[0] not in input_schema.names:
            return False
        t = input_schema.field(call.args[0]).type
        if not pa.types.is_signed_integer(t):
            return False
        if call.func == "sum" and not pa.types.is_int64(call.dtype):
            return False
        if call.func == "avg" and not pa.types.is_float64(call.dtype):
            return False
    return True
