"""The SQL of ``Frame.join``: Polars' column layout over SQL's join semantics.

Joined on equal keys, the result has the left frame's columns (only those for the filtering
joins, semi and anti), then the right frame's except its keys for inner and left joins (kept,
with the suffix, for full joins, where they may be NULL on the left), a suffix added to right
names that clash. A right join has the left columns but its keys, then every right column,
as Polars lays it out (the left key, NULL on an unmatched right row, was kept under the key's
name and the right one suffixed). A ``where``
condition names columns as the result does; it goes into the ON clause, so a condition on
both event times makes an interval join, as in SQL.
"""

from __future__ import annotations

from sqlglot import exp

from caudal.errors import PlanError, names_hint

HOWS = {"inner": "INNER", "left": "LEFT", "right": "RIGHT", "full": "FULL", "outer": "FULL"}
#: Polars' filtering joins: the left rows with a match (semi) or without one (anti), as SQL's
#: EXISTS / NOT EXISTS subqueries (an anti join's result is a changelog: a row leaves once
#: its first match arrives)
FILTERING = {"semi": "EXISTS", "anti": "NOT EXISTS"}
_L, _R = '"__l"', '"__r"'


def _names(value, what: str) -> list[str]:
    if value is None:
        return []
    items = value if isinstance(value, (list, tuple)) else [value]
    out = []
    for item in items:
        from caudal.frame.expr import Expr

        if isinstance(item, Expr) and isinstance(item.node, exp.Column):
            item = item.node.name
        if not isinstance(item, str):
            raise PlanError(f"join(): {what} takes column names")
        out.append(item)
    return out


def join_sql(left, right, on, how, left_on, right_on, where, suffix: str) -> str:
    from caudal.frame.text import quote

    if how not in HOWS and how not in FILTERING:
        raise PlanError(f"join(): how = {how!r}",
                        hint="accepted: inner, left, right, full, semi, anti")
    if on is not None and (left_on is not None or right_on is not None):
        raise PlanError("join(): give on= or left_on=/right_on=, not both")
    lkeys = _names(on if on is not None else left_on, "on")
    rkeys = _names(on if on is not None else right_on, "on")
    if len(lkeys) != len(rkeys):
        raise PlanError("join(): left_on and right_on need as many columns")
    if not lkeys and where is None:
        raise PlanError("join(): give the keys (on=…) or a condition (where=…)")
    lcols, rcols = left.columns, right.columns
    for k, cols, side in [(k, lcols, "left") for k in lkeys] + [(k, rcols, "right")
                                                              for k in rkeys]:
        if k.lower() not in {c.lower() for c in cols}:
            raise PlanError(f"join(): unknown {side} column {k!r}",
                            hint=names_hint(k, cols))
    keep_right_keys = how in ("right", "full", "outer")
    drop = set() if keep_right_keys else {k.lower() for k in rkeys}
    # a right join keeps the right keys in place of the left ones, as Polars lays it out
    drop_left = {k.lower() for k in lkeys} if how == "right" else set()
    items, names = [], {}
    for c in lcols:
        if c.lower() in drop_left:
            continue
        items.append(f"{_L}.{quote(c)} AS {quote(c)}")
        names[c.lower()] = f"{_L}.{quote(c)}"
    taken = set(names)
    for c in rcols:
        if c.lower() in drop:
            continue
        out = c + suffix if c.lower() in taken else c
        taken.add(out.lower())
        if how not in FILTERING:
            items.append(f"{_R}.{quote(c)} AS {quote(out)}")
        names[out.lower()] = f"{_R}.{quote(c)}"
    conditions = [f"{_L}.{quote(a)} = {_R}.{quote(b)}" for a, b in zip(lkeys, rkeys)]
    if where is not None:
        conditions.append(_qualified(where, names))
    if how in FILTERING:  # the left columns only; where= may name the right's (suffixed)
        return (f"SELECT {', '.join(items)} FROM {quote(left.name)} AS {_L} WHERE "
                f"{FILTERING[how]} (SELECT 1 FROM {quote(right.name)} AS {_R} WHERE "
                f"{' AND '.join(conditions)})")
    return (f"SELECT {', '.join(items)} FROM {quote(left.name)} AS {_L} {HOWS[how]} JOIN "
            f"{quote(right.name)} AS {_R} ON {' AND '.join(conditions)}")


def _qualified(where, names: dict[str, str]) -> str:
    """The condition with each column replaced by the side and column it comes from."""
    from caudal.frame.expr import Expr, _dialect

    if not isinstance(where, Expr) or where.is_agg:
        raise PlanError("join(): where= takes a condition without aggregates")

    def swap(node):
        if isinstance(node, exp.Column) and not node.table:
            target = names.get(node.name.lower())
            if target is None:
                raise PlanError(f"join(): where= names unknown column {node.name!r}",
                                hint="columns of the joined frame: " + ", ".join(names))
            return exp.maybe_parse(target, into=exp.Column, dialect=_dialect())
        return node

    return where.node.copy().transform(swap).sql(dialect=_dialect())


def key_types_error(left, right, on, left_on, right_on) -> PlanError | None:
    """A join refused for keys of types that do not compare (``BIGINT = TEXT``), said by the
    keys' names and types on each side and the cast to add (as Polars names them); None
    when no pair of keys differs (the refusal was about something else)."""
    from caudal.types import sql_name

    lkeys = _names(on if on is not None else left_on, "on")
    rkeys = _names(on if on is not None else right_on, "on")
    ltypes = {f.name.lower(): f.type for f in left.schema}
    rtypes = {f.name.lower(): f.type for f in right.schema}
    for a, b in zip(lkeys, rkeys):
        lt, rt = ltypes[a.lower()], rtypes[b.lower()]
        if lt != rt and not (_numeric(lt) and _numeric(rt)):
            return PlanError(f"join(): key {a!r} is {sql_name(lt)} on the left, {b!r} is "
                             f"{sql_name(rt)} on the right: they do not compare",
                             hint=f"cast one side first, e.g. the right one's "
                                  f".with_columns(col({b!r}).cast({sql_name(lt)!r}))")
    return None


def _numeric(t) -> bool:
    import pyarrow as pa

    return pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_decimal(t)
