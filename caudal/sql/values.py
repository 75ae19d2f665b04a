"""``VALUES (…), (…)``: a bounded table of constant rows, in FROM (``(VALUES …) AS t(a, b)``)
and as the query of ``INSERT INTO t VALUES …`` (Flink's and PostgreSQL's ways to write a few
rows inline). The rows are computed once when planning and read by the ``python`` source,
like a frame's ``from_arrow`` table; each column takes the common type of its values (as a
UNION's columns do), and columns are named ``column1``, ``column2``, … (PostgreSQL) unless
the alias names them."""

from __future__ import annotations

import pyarrow as pa
from sqlglot import exp

from caudal.errors import PlanError
from caudal.plan.compile import compile_projection
from caudal.plan.expressions import Expr
from caudal.plan.functions.coerce import cast, common_type
from caudal.plan.functions.registry import BindError
from caudal.plan.tables import TableSpec
from caudal.sql.scope import Scope, position

#: the FROM of a SELECT without one: a single row of no interest
ONE_ROW = exp.Values(expressions=[exp.Tuple(expressions=[exp.Literal.number(0)])],
                     alias=exp.TableAlias(this=exp.to_identifier("dual"),
                                          columns=[exp.to_identifier("dummy")]))


def values_table(node: exp.Values, names: list[str] | None = None) -> pa.Table:
    """The rows of ``node`` as an Arrow table (``names``: the columns' names, else the
    alias's, else column1, column2, …)."""
    from caudal.sql.expressions import translate

    ln, col = position(node)
    rows = [list(r.expressions) if isinstance(r, exp.Tuple) else [r] for r in node.expressions]
    width = len(rows[0])
    if any(len(r) != width for r in rows):
        raise PlanError("VALUES rows differ in length", line=ln, col=col,
                        hint="give every row the same number of values")
    alias = node.args.get("alias")
    declared = [c.name for c in alias.columns] if alias is not None and alias.columns else []
    names = names or declared or [f"column{i + 1}" for i in range(width)]
    if len(names) != width:
        raise PlanError(f"VALUES has {width} column(s) but {len(names)} name(s)", line=ln,
                        col=col, hint="name every column once")
    empty = Scope()
    cells: list[list[Expr]] = []
    for row in rows:
        translated = []
        for value in row:
            if any(isinstance(sub, exp.Column) for sub in value.walk()):
                vl, vc = position(value)
                raise PlanError("a VALUES row holds constant expressions only", line=vl,
                                col=vc, hint="compute from columns in a SELECT instead")
            translated.append(translate(value, empty))
        cells.append(translated)
    types = []
    for i, name in enumerate(names):
        try:
            t = common_type([r[i] for r in cells], f"column {i + 1} ({name}) of VALUES")
        except BindError as e:
            raise PlanError(e.message, line=ln, col=col,
                            hint="CAST the values to one type") from None
        types.append(pa.string() if pa.types.is_null(t) else t)
    # (from pa.nulls: converting a Python value would import dateutil, ~3 ms)
    one_row = pa.RecordBatch.from_arrays([pa.nulls(1)], ["_"])
    batches = [compile_projection([cast(v, t) for v, t in zip(r, types)], names)(one_row)
               for r in cells]
    return pa.Table.from_batches(batches)


def values_scan_spec(table: pa.Table, name: str) -> TableSpec:
    """A table spec reading ``table`` through the python source (registered by content)."""
    from caudal.connectors import python as python_connector

    handle = python_connector.register_table(table)
    return TableSpec(name=name, connector="python", options={"handle": handle},
                     schema=table.schema)


__all__ = ["ONE_ROW", "values_table", "values_scan_spec"]
