"""Lazy frames: a pipeline of filter/select/with_columns/group_by/join written in Python,
run as one streaming job.

**Why frames compile to SQL text.** Every frame is one SQL statement (``CREATE TABLE`` for a
reader, ``CREATE VIEW`` for each step) over the frames it reads, with every identifier quoted
and every value a literal. Running a frame plans that script with the SQL planner, so a frame
and the SQL it stands for give the same logical plan, hence the same rows, types, NULL rules,
windows, changelogs and errors; there is no second planner to keep in step. Only Python UDFs
are not text: they are callables registered for the job being planned
(``plan.functions.registry.job_functions``) and carried inside the plan.

>>> import caudal as cd
>>> from caudal import col
>>> bids = cd.testing.from_records([{"auction": 1, "price": 5}, {"auction": 1, "price": 7},
...                                 {"auction": 2, "price": 1}])
>>> out = bids.filter(col("price") > 1).group_by("auction").agg(
...     cd.count().alias("n"), col("price").max().alias("top"))
>>> out.collect().to_pylist()
[{'auction': 1, 'n': 2, 'top': 7}]
"""

from __future__ import annotations

import itertools
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
from sqlglot import exp

from caudal.errors import CaudalError, PlanError, names_hint
from caudal.frame.expr import Expr, col, column_or_expr, interval, to_expr
from caudal.frame.text import (
    duration_us,
    frame_error,
    options_text,
    quote,
)

_ids = itertools.count(1)
#: a frame's statement (before it is named) -> its number: a frame built again (a notebook
#: cell run twice) is named as before, so its job is the same job to its checkpoints
_numbers: dict[tuple[str, tuple[str, ...]], int] = {}


def _frame_name(statement: str, parents: tuple) -> str:
    key = (statement, tuple(p.name for p in parents))
    number = _numbers.get(key)
    if number is None:
        number = _numbers.setdefault(key, next(_ids))
    return f"_f{number}"


# ---- windows -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Window:
    """A window for ``group_by`` (or ``Frame.window``): its rows get ``window_start`` and
    ``window_end`` columns. Made by ``tumble``, ``hop``, ``cumulate`` and ``session``."""

    kind: str
    time: str
    sizes: tuple[int, ...]

    def table(self, source: str, partition: list[str] | None = None) -> str:
        """The SQL window table function over the frame called ``source``."""
        args = ", ".join(interval(us).sql() for us in self.sizes)
        part = ""
        if partition:
            part = " PARTITION BY " + ", ".join(quote(p) for p in partition)
        return (f"TABLE({self.kind}(TABLE {source}{part}, DESCRIPTOR({quote(self.time)}), "
                f"{args}))")


def _time_name(time: Any) -> str:
    if isinstance(time, Expr) and isinstance(time.node, exp.Column):
        return time.node.name
    if isinstance(time, str):
        return time
    raise PlanError("a window's time is a column name (or col(name))",
                    hint="e.g. cd.tumble('date_time', '10s')")


def tumble(time: str | Expr, size: Any, offset: Any = None) -> Window:
    """Tumbling windows of ``size`` over the event-time column ``time``.

    >>> tumble("ts", "10s").table('"t"')
    'TABLE(TUMBLE(TABLE "t", DESCRIPTOR("ts"), INTERVAL \\'10\\' SECOND))'
    """
    sizes = (duration_us(size, "tumble size"),)
    if offset is not None:
        sizes += (duration_us(offset, "tumble offset"),)
    return Window("TUMBLE", _time_name(time), sizes)


def hop(time: str | Expr, size: Any, slide: Any) -> Window:
    """Hopping (sliding) windows of ``size`` starting every ``slide``."""
    return Window("HOP", _time_name(time), (duration_us(slide, "hop slide"),
                                            duration_us(size, "hop size")))


def cumulate(time: str | Expr, size: Any, step: Any) -> Window:
    """Cumulating windows: from each ``size`` boundary, growing by ``step``."""
    return Window("CUMULATE", _time_name(time), (duration_us(step, "cumulate step"),
                                                 duration_us(size, "cumulate size")))


def session(time: str | Expr, gap: Any) -> Window:
    """Session windows closed by ``gap`` without rows, per group key."""
    return Window("SESSION", _time_name(time), (duration_us(gap, "session gap"),))


# ---- frames --------------------------------------------------------------------------------


class Frame:
    """A lazy streaming query. Nothing runs until ``collect``, ``stream`` or a ``write_*``.

    Each frame is one statement of the SQL script its job runs (``sql_script()`` shows it).
    """

    def __init__(self, statement: str, parents: tuple[Frame, ...] = (), udfs: tuple = (),
                 name: str | None = None, op: str = "frame"):
        self.name = name or _frame_name(statement, parents)
        self._statement = statement.replace("{self}", quote(self.name))
        self.parents = parents
        self.udfs = tuple(dict.fromkeys(
            tuple(udfs) + tuple(u for p in parents for u in p.udfs)))
        self.op = op
        self._schema: pa.Schema | None = None
        self._lock = threading.Lock()

    # -- the SQL script ---------------------------------------------------------------------

    def _frames(self) -> list[Frame]:
        """This frame and every frame it reads, each once, readers first."""
        order: list[Frame] = []
        seen: set[str] = set()

        def visit(f: Frame) -> None:
            if f.name in seen:
                return
            seen.add(f.name)
            for p in f.parents:
                visit(p)
            order.append(f)

        visit(self)
        return order

    def sql_script(self) -> str:
        """The statements defining this frame (CREATE TABLE / CREATE VIEW), one per line."""
        return "\n".join(f._statement + ";" for f in self._frames())

    def _plan_context(self):
        from caudal.plan.functions.python_udf import job_context

        return job_context(self.udfs)

    @property
    def schema(self) -> pa.Schema:
        """The columns of the frame's rows (planned, nothing runs).

        >>> import caudal as cd
        >>> cd.testing.from_records([{"a": 1, "b": "x"}]).schema.names
        ['a', 'b']
        """
        with self._lock:
            if self._schema is None:
                from caudal.sql.planner import Planner

                text = self.sql_script() + f"\nSELECT * FROM {quote(self.name)};"
                with self._plan_context():
                    job = Planner().plan_script(text)
                self._schema = job.outputs[-1].plan.schema
            return self._schema

    @property
    def columns(self) -> list[str]:
        return self.schema.names

    def _checked(self) -> Frame:
        """Plan now, so misuse fails where it is written, with the SQL message and no
        position inside generated SQL."""
        try:
            self._schema = self.schema
        except CaudalError as e:
            raise frame_error(e, self) from None
        return self

    def _typed(self, exprs: list[Expr]) -> list[Expr]:
        """``exprs`` with each node whose Polars meaning depends on its operands' types (a
        cast to an integer truncates a float, ``round`` and ``max`` of floats, ``//`` and
        ``%`` by zero: see ``expr.POLARS_TYPED``) rewritten for the types the operands have
        over this frame's rows. Only here are the types known: an operand is planned over
        this frame (one that does not plan alone, e.g. naming a window's bounds, keeps SQL's
        meaning)."""
        from caudal.frame.expr import POLARS_TYPED, TYPED

        out = []
        for e in exprs:
            if not any(TYPED in n.meta for n in e.node.walk()):
                out.append(e)
                continue
            root = e.node.copy()
            for node in reversed([n for n in root.walk() if TYPED in n.meta]):
                # inner nodes first: an outer operand holds their rewrites
                new = POLARS_TYPED[node.meta[TYPED]](
                    node, lambda n, udfs=e.udfs: self._type_of(n, udfs))
                if new is not node:
                    if node is root:
                        root = new
                    else:
                        node.replace(new)
            typed = Expr(root, e.name, e.is_agg, e.udfs)
            typed._aliased = e._aliased
            out.append(typed)
        return out

    def _type_of(self, node: exp.Expression, udfs: tuple) -> pa.DataType | None:
        """The type of an expression over this frame's rows (None if it does not plan)."""
        from caudal.frame.expr import _dialect
        from caudal.plan.functions.python_udf import job_context
        from caudal.sql.planner import Planner

        text = (self.sql_script() + f"\nSELECT {node.sql(dialect=_dialect())} AS \"t\" "
                f"FROM {quote(self.name)};")
        try:
            with job_context(self.udfs + tuple(udfs)):
                return Planner().plan_script(text).outputs[-1].plan.schema.field(0).type
        except CaudalError:
            return None

    def _derive(self, select: str, op: str, exprs: list[Expr] = (), parents=None) -> Frame:
        udfs = tuple(u for e in exprs for u in e.udfs)
        frame = Frame(f"CREATE VIEW {{self}} AS {select}", parents or (self,), udfs, op=op)
        return frame._checked()

    # -- relational operations --------------------------------------------------------------

    def filter(self, *predicates: Expr, **constraints: Any) -> Frame:
        """Rows where every predicate is true (``name=value``: the column equals the value,
        as in Polars).

        >>> import caudal as cd
        >>> f = cd.testing.from_records([{"x": 1}, {"x": 5}])
        >>> f.filter(cd.col("x") > 2).collect().to_pylist()
        [{'x': 5}]
        """
        exprs = [to_expr(p) for p in _flat(predicates)]
        exprs += [col(name) == value for name, value in constraints.items()]
        if not exprs:
            raise PlanError("filter() needs a condition")
        exprs = self._typed(exprs)
        _no_aggregates(exprs, "filter()", "filter on an aggregate after group_by(...).agg()")
        where = " AND ".join(f"({e.sql(False)})" for e in exprs)
        return self._derive(f"SELECT * FROM {quote(self.name)} WHERE {where}", "filter",
                            exprs)

    def select(self, *columns: str | Expr, **named: Expr) -> Frame:
        """These columns or expressions (``name=expr`` names one), in this order."""
        exprs = self._typed(_items(columns, named, "select()"))
        _no_aggregates(exprs, "select()", "aggregates go in group_by(...).agg(...)")
        _unique(exprs, "select()")
        items = ", ".join(_item(e) for e in exprs)
        return self._derive(f"SELECT {items} FROM {quote(self.name)}", "select", exprs)

    def with_columns(self, *columns: Expr, **named: Expr) -> Frame:
        """All columns plus these (a column of the same name is replaced in place)."""
        exprs = self._typed(_items(columns, named, "with_columns()"))
        _no_aggregates(exprs, "with_columns()", "aggregates go in group_by(...).agg(...)")
        _unique(exprs, "with_columns()")
        new = {e.output_name.lower(): e for e in exprs}
        items = []
        for name in self.columns:
            e = new.pop(name.lower(), None)
            items.append(_item(e) if e is not None else quote(name))
        items.extend(_item(e) for e in new.values())
        return self._derive(f"SELECT {', '.join(items)} FROM {quote(self.name)}",
                            "with_columns", exprs)

    def drop(self, *names: str | list[str]) -> Frame:
        names = tuple(_flat(names))
        for n in names:
            if not isinstance(n, str):
                raise PlanError(f"drop(): takes column names, got {type(n).__name__}")
        gone = {n.lower() for n in names}
        unknown = gone - {c.lower() for c in self.columns}
        if unknown:
            first = next(n for n in names if n.lower() in unknown)
            raise PlanError(f"drop(): unknown column {first!r}",
                            hint=names_hint(first, self.columns))
        return self.select(*[c for c in self.columns if c.lower() not in gone])

    def rename(self, mapping: dict[str, str] | Any) -> Frame:
        """New names: a dict of old -> new, or a function of the old name (as Polars)."""
        if callable(mapping):
            mapping = {c: mapping(c) for c in self.columns}
        if not isinstance(mapping, dict):
            raise PlanError("rename() takes a dict of old -> new names, or a function")
        return self.select(*[to_expr(column_or_expr(c, "rename()")).alias(mapping[c])
                             if c in mapping else c for c in self.columns])

    def group_by(self, *keys: str | Expr | Window) -> GroupBy:
        """Group by columns, expressions and at most one window (``cd.tumble(…)``…)."""
        return GroupBy(self, keys)

    def window(self, window: Window) -> Frame:
        """Every row with the ``window_start`` and ``window_end`` of its window(s): the
        input of a window join (join on both) or a window top-N."""
        if not isinstance(window, Window):
            raise PlanError("window() takes cd.tumble(…), cd.hop(…) or cd.cumulate(…)")
        return self._derive(f"SELECT * FROM {window.table(quote(self.name))}", "window")

    def join(self, other: Frame, on: str | list[str] | None = None, how: str = "inner", *,
             left_on: str | list[str] | None = None, right_on: str | list[str] | None = None,
             where: Expr | None = None, suffix: str = "_right") -> Frame:
        """Join with ``other`` on equal keys (and a ``where`` condition over the joined
        columns, e.g. an interval on both event times for an interval join). The result has
        this frame's columns, then ``other``'s except its keys (``suffix`` added to names
        that clash; a right join drops this frame's keys instead), as in Polars. ``how``:
        inner, left, right, full; semi and anti keep
        this frame's rows with (without) a match, and only its columns (SQL's EXISTS and
        NOT EXISTS: an anti join is an updating query, a row retracted when its first
        match arrives)."""
        from caudal.frame.joins import join_sql, key_types_error

        select = join_sql(self, other, on, how, left_on, right_on, where, suffix)
        try:
            return self._derive(select, "join", [where] if where is not None else [],
                                parents=(self, other))
        except CaudalError as e:
            raise key_types_error(self, other, on, left_on, right_on) or e from None

    def unique(self, subset: Any = None, **options: Any) -> Frame:
        """Each distinct row once (SELECT DISTINCT: an updating query over a changelog; over
        an append-only input a row is emitted when first seen).

        >>> import caudal as cd
        >>> f = cd.testing.from_records([{"x": 1}, {"x": 1}, {"x": 2}])
        >>> sorted(f.unique().collect().column("x").to_pylist())
        [1, 2]
        """
        if subset is not None or options:
            raise PlanError("unique() takes no subset or keep= (each distinct row once)",
                            hint="one row per key: top_k(1, by=<event time column>, "
                                 "over=[keys])")
        return self._derive(f"SELECT DISTINCT * FROM {quote(self.name)}", "unique")

    def explode(self, column: str | Expr) -> Frame:
        """One row per element of the array ``column`` (in its place), the other columns
        repeated; a row whose array is NULL or empty gives none (SQL's UNNEST).

        >>> import caudal as cd
        >>> f = cd.testing.from_records([{"k": 1, "xs": [1, 2]}, {"k": 2, "xs": []}])
        >>> f.explode("xs").collect().to_pylist()
        [{'k': 1, 'xs': 1}, {'k': 1, 'xs': 2}]
        """
        if isinstance(column, (list, tuple)) and len(column) == 1:
            column = column[0]
        if isinstance(column, Expr) and isinstance(column.node, exp.Column):
            column = column.node.name
        if not isinstance(column, str):
            raise PlanError("explode() takes one column name (or col(name)): exploding "
                            "several columns together is not supported",
                            hint="explode one column, or join frames exploded apart")
        name = column
        if name.lower() not in {c.lower() for c in self.columns}:
            raise PlanError(f"explode(): unknown column {name!r}",
                            hint=names_hint(name, self.columns))
        kind = next(f.type for f in self.schema if f.name.lower() == name.lower())
        if not (pa.types.is_list(kind) or pa.types.is_large_list(kind)):
            raise PlanError(f"explode(): column {name!r} is {_type_name(kind)}, not an array",
                            hint="e.g. col('s').string_to_array(',') makes an array of a text")
        items = [f"unnest({quote(c)}) AS {quote(c)}" if c.lower() == name.lower()
                 else quote(c) for c in self.columns]
        return self._derive(f"SELECT {', '.join(items)} FROM {quote(self.name)}", "explode")

    def top_k(self, k: int, by: str | Expr | list, *, over: str | list | None = None,
              descending: bool | list[bool] = True, rank: str | None = None) -> Frame:
        """The ``k`` rows with the largest ``by`` (smallest with ``descending=False``) per
        ``over`` key (a window's rows: over ``["window_start", "window_end"]``); an updating
        top-N without a window. ``rank`` keeps the row number as a column of that name.
        NULLs come after every value in either direction, as in Polars' ``top_k`` (SQL's
        ``ORDER BY x DESC`` would rank them first)."""
        if not isinstance(k, int) or k < 1:
            raise PlanError(f"top_k(): k must be a positive integer, got {k!r}")
        by_list = by if isinstance(by, list) else [by]
        directions = _per_column(descending, len(by_list), "top_k()", "descending")
        order = ", ".join(column_or_expr(b, "top_k()").sql(False)
                          + (" DESC" if d else " ASC") + " NULLS LAST"
                          for b, d in zip(by_list, directions))
        keys = over if isinstance(over, list) else ([over] if over is not None else [])
        part = ("PARTITION BY " + ", ".join(column_or_expr(p, "top_k()").sql(False)
                                            for p in keys) + " ") if keys else ""
        rn = rank or "__rank"
        cols = ", ".join(quote(c) for c in self.columns) + (f", {quote(rn)}" if rank else "")
        inner = (f"SELECT *, ROW_NUMBER() OVER ({part}ORDER BY {order}) AS {quote(rn)} "
                 f"FROM {quote(self.name)}")
        return self._derive(f"SELECT {cols} FROM ({inner}) WHERE {quote(rn)} <= {k}",
                            "top_k")

    def sort(self, by: str | Expr | list, *, descending: bool | list[bool] = False,
             nulls_last: bool | list[bool] = False) -> Frame:
        """Rows in this order (an unbounded stream can be sorted by event time only); NULLs
        first unless ``nulls_last``, in either direction, as Polars sorts (SQL's ORDER BY
        puts them last ascending). ``descending`` and ``nulls_last`` may be one flag per
        column, as in Polars."""
        by_list = by if isinstance(by, list) else [by]
        known = {c.lower() for c in self.columns}
        for name in by_list:  # said as other methods say it (not SQL's ORDER BY)
            if isinstance(name, str) and name.lower() not in known:
                raise PlanError(f"sort(): unknown column {name!r}",
                                hint=names_hint(name, self.columns))
        directions = _per_column(descending, len(by_list), "sort()", "descending")
        nulls = _per_column(nulls_last, len(by_list), "sort()", "nulls_last")
        order = ", ".join(column_or_expr(b, "sort()").sql(False)
                          + (" DESC" if d else "") + (" NULLS LAST" if n else " NULLS FIRST")
                          for b, d, n in zip(by_list, directions, nulls))
        return self._derive(f"SELECT * FROM {quote(self.name)} ORDER BY {order}", "sort")

    def head(self, n: int = 5) -> Frame:
        """The first ``n`` rows (SQL LIMIT)."""
        return self._derive(f"SELECT * FROM {quote(self.name)} LIMIT {int(n)}", "head")

    limit = head

    def union(self, other: Frame) -> Frame:
        """Both frames' rows (UNION ALL; the same columns in the same order)."""
        return self._derive(f"SELECT * FROM {quote(self.name)} UNION ALL "
                            f"SELECT * FROM {quote(other.name)}", "union",
                            parents=(self, other))

    # -- running ----------------------------------------------------------------------------

    def explain(self, parallelism: int = 1, runtime: str = "local",
                address: str | None = None) -> str:
        """The logical plan and the physical dataflow graph, as ``caudal explain`` prints;
        with ``runtime="ray"`` also which worker actor and node runs which subtasks."""
        from caudal.job import compile_sql, explain_sql
        from caudal.runtime import make_runtime

        chosen = make_runtime(runtime, address)
        with self._plan_context():
            text = explain_sql(self._query_script(), parallelism)
            if runtime == "ray":
                graph = compile_sql(self._query_script(), parallelism).graph
                text += "\n\n" + chosen.explain_plan(graph)
        return text.split("\n", 1)[1] if text.startswith("--") else text

    def _query_script(self) -> str:
        return self.sql_script() + f"\nSELECT * FROM {quote(self.name)};"

    def collect(self, **options: Any) -> pa.Table:
        """Run to the end of the (bounded) input and return the result as a pyarrow Table.
        An updating query's changelog is folded: the rows it leaves at the end. Options as
        the CLI's: ``parallelism``, ``runtime`` (``"local"``, ``"ray"``) and ``address`` (a
        Ray cluster; without it a local Ray is started), ``checkpoint_dir``,
        ``checkpoint_interval``, ``fresh``, ``from_epoch``, ``max_restarts``,
        ``batch_rows``, ``linger``."""
        from caudal.frame.run import collect

        return collect(self, **options)

    def to_polars(self, **options: Any):
        """``collect()`` as a Polars DataFrame."""
        import polars as pl

        return pl.from_arrow(self.collect(**options))

    def stream(self, **options: Any) -> Iterator[pa.RecordBatch]:
        """Record batches as the job commits them (with checkpoints, at each checkpoint);
        an updating query's batches carry an ``_op`` column: 1 insert, -1 delete, -2/2 the
        old/new halves of an update. Options as ``collect``'s (on Ray the batches come
        back to this process as the job runs)."""
        from caudal.frame.run import stream

        return stream(self, **options)

    def preview(self, n: int = 10, **options: Any) -> pa.Table:
        """The first ``n`` rows of the result: the job stops once it has them (SQL's LIMIT),
        so an unbounded source can be previewed too. An updating query, which LIMIT cannot
        cut, runs to the end of its input and shows the first ``n`` rows it leaves."""
        try:
            limited = self.head(n)
        except CaudalError:
            return self.collect(**options).slice(0, n)
        return limited.collect(**options)

    def write_parquet(self, path: str, **options: Any):
        """Write into a directory of Parquet files (exactly once with checkpoints)."""
        return self._sink(f"write_parquet({str(path)!r})", "filesystem", path=path,
                          format="parquet", **options)

    def write_json(self, path: str, **options: Any):
        """JSON lines files (``format="debezium_json"`` for an updating query)."""
        options.setdefault("format", "json")
        return self._sink(f"write_json({str(path)!r})", "filesystem", path=path, **options)

    def write_csv(self, path: str, **options: Any):
        return self._sink(f"write_csv({str(path)!r})", "filesystem", path=path, format="csv",
                          **options)

    def sink(self, connector: str, **options: Any):
        """Write into any connector's table: ``sink("kafka", topic=…, bootstrap_servers=…)``.
        Run options (``parallelism``, ``checkpoint_dir``…) are taken out of ``options``."""
        return self._sink(f"sink({connector!r})", connector, **options)

    def _sink(self, what: str, connector: str, **options: Any):
        """``sink``, its errors naming ``what`` the user called (the table the sink writes
        is internal)."""
        from caudal.frame.run import RUN_OPTIONS, run_into

        run = {k: options.pop(k) for k in list(options) if k in RUN_OPTIONS}
        return run_into(self, {"connector": connector, **options}, what, **run)

    # -- notebook ---------------------------------------------------------------------------

    def __repr__(self) -> str:
        try:
            cols = ", ".join(f"{f.name}: {_type_name(f.type)}" for f in self.schema)
        except CaudalError as e:
            cols = f"<{e}>"
        steps = " <- ".join(f.op for f in reversed(self._frames()))
        return f"<caudal Frame [{cols}]\n  {steps}>"

    def _repr_html_(self) -> str:
        import html

        return "<pre>" + html.escape(repr(self)) + "</pre>"


def _per_column(flag: bool | list[bool], n: int, what: str, name: str) -> list[bool]:
    """One flag per sort column: Polars takes a bool for all or a list, one per column (a
    list is truthy, so reading it as one flag sorted every column descending)."""
    if isinstance(flag, (list, tuple)):
        if len(flag) != n:
            raise PlanError(f"{what}: {name} has {len(flag)} values for {n} columns")
        return [bool(f) for f in flag]
    return [bool(flag)] * n


def _type_name(t: pa.DataType) -> str:
    from caudal.types import sql_name

    return sql_name(t)


def _flat(items) -> list:
    """Arguments as Polars takes them: each alone, or lists of them (``select(["a",
    "b"])``, ``agg([…])``)."""
    out: list = []
    for item in items:
        out.extend(item if isinstance(item, (list, tuple)) else [item])
    return out


def _items(columns, named, what: str) -> list[Expr]:
    exprs = [column_or_expr(c, what) for c in _flat(columns)]
    # name="x" is column x renamed, as in Polars (it was the text 'x')
    exprs += [(col(e) if isinstance(e, str) else to_expr(e)).alias(n)
              for n, e in named.items()]
    if not exprs:
        raise PlanError(f"{what} needs at least one column or expression")
    return exprs


def _item(e: Expr) -> str:
    return f"{e.sql(False)} AS {quote(e.output_name)}"


def _no_aggregates(exprs: list[Expr], what: str, hint: str) -> None:
    for e in exprs:
        if e.is_agg:
            raise PlanError(f"{what}: aggregate {e.sql(False)} is not allowed here",
                            hint=hint)


def _unique(exprs: list[Expr], what: str) -> None:
    seen: set[str] = set()
    for e in exprs:
        key = e.output_name.lower()
        if key in seen:
            raise PlanError(f"{what}: two columns are named {e.output_name!r}",
                            hint="name them apart with .alias()")
        seen.add(key)


class GroupBy:
    """``frame.group_by(keys…)``, waiting for ``.agg(aggregates…)``."""

    def __init__(self, frame: Frame, keys: tuple):
        self.frame = frame
        self.window: Window | None = None
        self.keys: list[Expr | Window] = []
        for k in _flat(keys):
            if isinstance(k, Window):
                if self.window is not None:
                    raise PlanError("group_by(): at most one window")
                self.window = k
                self.keys.append(k)
            else:
                key = column_or_expr(k, "group_by()")
                if key.is_agg:
                    raise PlanError(f"group_by(): aggregate {key.sql(False)} is not a key",
                                    hint="aggregates go in .agg(...)")
                self.keys.append(frame._typed([key])[0])

    def agg(self, *aggs: Expr, **named: Expr) -> Frame:
        """One row per group (per window and group with a window): the keys, the window's
        ``window_start`` and ``window_end``, then the aggregates."""
        exprs = self.frame._typed(_items(aggs, named, "agg()"))
        for e in exprs:
            if not e.is_agg:
                raise PlanError(f"agg(): {e.sql(False)} is not an aggregate",
                                hint="use .sum(), .max(), .min(), .mean(), .count(), "
                                     ".n_unique(), .first(), .last() or cd.count()")
        items: list[str] = []
        groups: list[str] = []
        plain_keys: list[str] = []
        for k in self.keys:
            if isinstance(k, Window):
                items += ['"window_start"', '"window_end"']
                groups += ['"window_start"', '"window_end"']
            else:
                items.append(_item(k))
                groups.append(k.sql(False))
                if isinstance(k.node, exp.Column):
                    plain_keys.append(k.node.name)
        _unique([k for k in self.keys if isinstance(k, Expr)] + exprs, "agg()")
        items += [_item(e) for e in exprs]
        source = quote(self.frame.name)
        if self.window is not None:
            # sessions per group key, as a Polars user expects (SQL's PARTITION BY)
            part = plain_keys if self.window.kind == "SESSION" else None
            source = self.window.table(source, part)
        keys = [k for k in self.keys if isinstance(k, Expr)]
        select = f"SELECT {', '.join(items)} FROM {source}"
        if groups:
            select += " GROUP BY " + ", ".join(groups)
        return self.frame._derive(select, "group_by.agg", keys + exprs)


# ---- readers -------------------------------------------------------------------------------


def _columns_ddl(schema: Any) -> str:
    if schema is None:
        return ""
    from caudal.types import sql_name

    if isinstance(schema, pa.Schema):
        pairs = [(f.name, sql_name(f.type)) for f in schema]
    elif isinstance(schema, dict):
        pairs = [(n, t if isinstance(t, str) else sql_name(t)) for n, t in schema.items()]
    else:
        raise PlanError("schema= takes a dict of column name -> SQL type, or a pyarrow Schema")
    return " (" + ", ".join(f"{quote(n)} {t}" for n, t in pairs) + ")"


def read_table(connector: str, *, schema: Any = None, event_time: str | None = None,
               watermark_delay: Any = None, op: str = "read", **options: Any) -> Frame:
    """A frame reading a table of any connector, with its options as keyword arguments
    (``event_time`` and ``watermark_delay`` as in DDL's WATERMARK clause)."""
    if watermark_delay is not None and event_time is None:
        raise PlanError(f"{op}(): watermark_delay needs event_time (the column it trails)")
    opts = {"connector": connector, **options, "event_time_field": event_time,
            "watermark_delay": watermark_delay}
    statement = f"CREATE TABLE {{self}}{_columns_ddl(schema)} WITH ({options_text(opts)})"
    return Frame(statement, op=op)._checked()


def read_parquet(path: str, *, event_time: str | None = None, watermark_delay: Any = None,
                 **options: Any) -> Frame:
    """Parquet files (a file or a directory); columns from the files."""
    return read_table("filesystem", path=str(path), format="parquet", event_time=event_time,
                      watermark_delay=watermark_delay, op="read_parquet", **options)


def read_json(path: str, *, schema: Any = None, event_time: str | None = None,
              watermark_delay: Any = None, **options: Any) -> Frame:
    """JSON lines files; columns from ``schema`` or the first objects."""
    return read_table("filesystem", path=str(path), format="json", schema=schema,
                      event_time=event_time, watermark_delay=watermark_delay,
                      op="read_json", **options)


def read_csv(path: str, *, schema: Any = None, event_time: str | None = None,
             watermark_delay: Any = None, **options: Any) -> Frame:
    """CSV files with a header line (or ``schema`` and ``**{"csv.header": "false"}``)."""
    return read_table("filesystem", path=str(path), format="csv", schema=schema,
                      event_time=event_time, watermark_delay=watermark_delay, op="read_csv",
                      **options)


def read_nexmark(table: str = "bid", *, events: int | None = None, **options: Any) -> Frame:
    """The Nexmark generator (``bid``, ``auction``, ``person``); event time is its own
    ``date_time`` column."""
    return read_table("nexmark", table=table, events=events, op="read_nexmark", **options)


def read_kafka(topic: str, *, bootstrap_servers: str, schema: Any = None,
               event_time: str | None = None, watermark_delay: Any = None,
               **options: Any) -> Frame:
    """A Kafka topic (JSON by default); ``options`` as the kafka connector's
    (``**{"source.offset": "earliest", "scan.bounded.mode": "latest-offset"}``)."""
    return read_table("kafka", topic=topic, bootstrap_servers=bootstrap_servers,
                      schema=schema, event_time=event_time, watermark_delay=watermark_delay,
                      op="read_kafka", **options)


def from_arrow(data: Any, *, event_time: str | None = None, watermark_delay: Any = None
               ) -> Frame:
    """A bounded frame over an in-memory table: a pyarrow Table or RecordBatch, a Polars
    DataFrame, a dict of columns or a list of row dicts."""
    from caudal.connectors import python as python_connector

    handle = python_connector.register_table(_as_arrow(data))
    return read_table("python", handle=handle, event_time=event_time,
                      watermark_delay=watermark_delay, op="from_arrow")


def _as_arrow(data: Any) -> pa.Table:
    from caudal.types import cast_exactly, normalize_schema

    if isinstance(data, pa.RecordBatch):
        table = pa.Table.from_batches([data])
    elif isinstance(data, pa.Table):
        table = data
    elif isinstance(data, dict):
        table = pa.table(data)
    elif isinstance(data, list):
        if not data:
            raise PlanError("from_records(): no rows (give a schema with an empty pyarrow "
                            "Table instead)")
        table = pa.Table.from_pylist(data)
    elif type(data).__module__.startswith("polars"):
        table = data.to_arrow()
    else:
        raise PlanError(f"cannot read a {type(data).__name__} as a table",
                        hint="a pyarrow Table/RecordBatch, a Polars DataFrame, a dict of "
                             "columns or a list of dicts")
    schema = normalize_schema(table.schema)
    if schema.equals(table.schema):
        return table
    return pa.Table.from_arrays([cast_exactly(c, f.type, f.name)
                                 for c, f in zip(table.columns, schema)], schema=schema)


def sql(query: str, **frames: Frame) -> Frame:
    """A frame from a SQL query over frames named by keyword: ``cd.sql("SELECT … FROM b",
    b=bids)``. Python UDFs are callable by name.

    >>> import caudal as cd
    >>> f = cd.testing.from_records([{"k": "a", "v": 2}, {"k": "a", "v": 3}])
    >>> cd.sql("SELECT k, sum(v) AS s FROM t GROUP BY k", t=f).collect().to_pylist()
    [{'k': 'a', 's': 5}]
    """
    from caudal.sql.parser import parse_script

    for name, f in frames.items():
        if not isinstance(f, Frame):
            raise PlanError(f"sql(): {name}= must be a frame, got {type(f).__name__}")
    try:
        statements = parse_script(query)
    except CaudalError as e:
        raise type(e)(f"sql(): {e.message}", line=e.line, col=e.col, hint=e.hint) from None
    if len(statements) != 1:
        raise PlanError("sql(): give one query (SELECT …)")
    node = statements[0].node
    names = {n.lower(): f for n, f in frames.items()}
    for table in list(node.find_all(exp.Table)):
        target = names.get(table.name.lower()) if not table.args.get("db") else None
        if target is None or not isinstance(table.this, exp.Identifier):
            continue
        if not table.alias and isinstance(table.parent, (exp.From, exp.Join)):
            table.set("alias", exp.TableAlias(this=exp.to_identifier(table.name)))
        table.set("this", exp.to_identifier(target.name, quoted=True))
    from caudal.sql.dialect import Caudal

    text = node.sql(dialect=Caudal)
    frame = Frame(f"CREATE VIEW {{self}} AS {text}", tuple(frames.values()), op="sql")
    try:
        return frame._checked()
    except PlanError as e:  # its hint listed the frames' internal names (_f4, _f7)
        unknown = re.fullmatch(r"sql\(\): unknown table '([^']*)'", e.message)
        if unknown is None:
            raise
        raise PlanError(e.message, hint=f"frames given: {', '.join(frames) or '(none)'}; name "
                                        f"each by keyword, cd.sql(query, "
                                        f"{unknown.group(1)}=frame)") from None
