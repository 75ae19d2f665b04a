"""What the SQL front end asks of SELECT items, before any planning: is this an aggregate
call, does an expression contain one, what is an item's output name. A leaf module: the
planner and the modules it delegates to (aggregates, grouping sets, ORDER BY/LIMIT, OVER
windows, subqueries) all import it, instead of importing each other."""

from __future__ import annotations

from sqlglot import exp

from caudal.plan.aggregates import ALIASES

#: aggregate function names (sqlglot node keys and anonymous names): every spelling the
#: planner takes (plan.aggregates.ALIASES: mean, listagg, … reach it as anonymous calls)
AGGREGATE_NAMES = set(ALIASES) | {
    "count", "sum", "avg", "min", "max", "stddev", "stddev_pop", "stddev_samp", "variance",
    "var_pop", "var_samp", "bool_and", "bool_or", "every", "first_value", "last_value",
    "string_agg", "approx_count_distinct", "approx_distinct", "array_agg", "groupconcat",
    "first", "last", "anyvalue", "any_value", "stddevpop", "stddevsamp", "varpop", "varsamp",
    "logicaland", "logicalor", "approxdistinct", "arrayagg", "var", "median", "approx_median",
    "approx_percentile_cont", "quantile_cont", "quantile_disc",
    "approx_percentile_cont_with_weight",
}


def is_aggregate(node: exp.Expression) -> bool:
    if isinstance(node, exp.AggFunc):
        return True
    if isinstance(node, exp.WithinGroup):  # percentile_cont(p) WITHIN GROUP (ORDER BY x)
        return is_aggregate(node.this)
    if isinstance(node, exp.Anonymous) and node.name.lower() in AGGREGATE_NAMES:
        return True
    if isinstance(node, exp.Anonymous):  # a Python UDAF of the job (plan.python_udaf)
        from caudal.plan.python_udaf import find_udaf

        return find_udaf(node.name) is not None
    return False


def contains_aggregate(node: exp.Expression) -> bool:
    """Whether ``node`` calls an aggregate of its own query level: one inside a subquery
    (``x IN (SELECT max(y) …)``) is the subquery's, not the outer query's."""
    for sub in node.walk(prune=lambda n: n is not node and isinstance(n, exp.Select)):
        if isinstance(sub, exp.Window):
            continue
        if is_aggregate(sub) and not _called_over(sub):
            return True
    return False


def _called_over(call: exp.Expression) -> bool:
    """Whether an aggregate call is the function of an OVER clause: ``f(x) OVER (…)`` or
    ``f(x) FILTER (WHERE …) OVER (…)`` (sqlglot puts the Filter between)."""
    parent = call.parent
    if isinstance(parent, exp.Filter):
        parent = parent.parent
    return isinstance(parent, exp.Window)


def output_name(node: exp.Expression) -> str:
    """The column name a SELECT item gets: its alias, the column or field name, the
    function name, else the expression's text (as DataFusion does)."""
    if isinstance(node, exp.Alias):
        return node.alias
    if isinstance(node, exp.Column):
        return node.name
    if isinstance(node, exp.Dot):
        return node.name
    if isinstance(node, exp.Cast):
        return output_name(node.this)
    if isinstance(node, exp.Anonymous):
        return node.name.lower()
    if isinstance(node, exp.Func) and not isinstance(node, (exp.Binary, exp.Unary)):
        return node.sql_name().lower()
    return node.sql(dialect="postgres")


def unique_names(names: list[str]) -> list[str]:
    seen: dict[str, int] = {}
    out = []
    for n in names:
        key = n.lower()
        if key in seen:
            seen[key] += 1
            candidate = f"{n}_{seen[key]}"
            while candidate.lower() in seen:
                seen[key] += 1
                candidate = f"{n}_{seen[key]}"
            out.append(candidate)
            seen[candidate.lower()] = 0
        else:
            seen[key] = 0
            out.append(n)
    return out
