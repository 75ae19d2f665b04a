"""Turn parsed statements into logical plans: resolve tables, views and columns, type every
expression, and give each INSERT/SELECT a sink.

A script becomes one job: every INSERT INTO and every bare SELECT (printed to stdout) is an
output of the same dataflow.
"""

from __future__ import annotations

import dataclasses
import sys
from dataclasses import dataclass, field

import pyarrow as pa
from sqlglot import exp

from caudal.connectors import registry as connectors
from caudal.errors import CaudalError, ConfigError, PlanError
from caudal.plan.changelog_check import check_changelog
from caudal.plan.expressions import Call, Column, Expr, set_source
from caudal.plan.functions.coerce import cast
from caudal.plan.functions.constraints import enforce_not_null
from caudal.plan.keys import upsert_key
from caudal.plan.logical import Filter, LogicalNode, Project, Scan, SinkWrite
from caudal.plan.tables import MEMORY, TableSpec
from caudal.sql.catalog import Catalog
from caudal.sql.parser import ACCEPTED_STATEMENTS, Statement, parse_script
from caudal.sql.scope import Scope, ScopeColumn, position
from caudal.sql.select_items import (  # noqa: F401  (re-exported: planner.is_aggregate …)
    AGGREGATE_NAMES,
    contains_aggregate,
    is_aggregate,
    output_name,
    unique_names,
)
from caudal.sql.settings import check_flink_value, check_setting, setting_name, spelled_name
from caudal.types import sql_name


@dataclass
class Output:
    """One INSERT or SELECT of the script, planned."""

    plan: SinkWrite
    statement: Statement


@dataclass
class Job:
    outputs: list[Output] = field(default_factory=list)
    explains: list[Output] = field(default_factory=list)
    catalog: Catalog = field(default_factory=Catalog)


def _select_item(insert: exp.Expression, i: int) -> exp.Expression:
    """The ``i``-th SELECT item of an INSERT's query (the INSERT itself when the query is
    not a plain SELECT, or the item is a ``*``)."""
    query = insert.args.get("expression")
    if isinstance(query, exp.Select) and i < len(query.expressions) and not any(
            isinstance(e, exp.Star) or isinstance(e, exp.Column) and isinstance(e.this, exp.Star)
            for e in query.expressions):
        return query.expressions[i]
    return insert


#: Arroyo's virtual column: every table has it without declaring it (not in SELECT *)
TIMESTAMP_COLUMN = "_timestamp"


def timestamp_column(columns: pa.Schema, event_time: str | None, relation: str
                     ) -> dict[str, Expr]:
    """``_timestamp`` (and ``relation._timestamp``) of a scanned table: its event time, or
    the processing time of the batch when it has none; nothing when a real column has that
    name."""
    if TIMESTAMP_COLUMN in [n.lower() for n in columns.names]:
        return {}
    if event_time is not None:
        value: Expr = Column(columns.field(event_time).type, event_time)
    else:
        from caudal.plan.functions.registry import bind_call

        value = bind_call("now", [])
    return {TIMESTAMP_COLUMN: value, f"{relation}.{TIMESTAMP_COLUMN}": value}


def derived_timestamp(node: LogicalNode, relation: str | None) -> dict[str, Expr]:
    """``_timestamp`` of a subquery or view: the event time of its rows (a window
    aggregate's: its window's end - 1 µs, as Arroyo's), processing time when no table
    below has event time; nothing when the event time was lost or a column has the name."""
    from caudal.plan.lineage import event_time, event_time_loss

    if TIMESTAMP_COLUMN in [n.lower() for n in node.schema.names]:
        return {}
    value = event_time(node)
    if value is None:
        if event_time_loss(node) is not None:
            return {}
        from caudal.plan.functions.registry import bind_call

        value = bind_call("now", [])
    out = {TIMESTAMP_COLUMN: value}
    if relation:
        out[f"{relation}.{TIMESTAMP_COLUMN}"] = value
    return out


class Planner:
    """Plans a script statement by statement against one catalog."""

    def __init__(self, catalog: Catalog | None = None):
        self.catalog = catalog or Catalog()
        #: the WITH queries visible here (name -> (query, the ones visible to it))
        self.ctes: dict[str, tuple[exp.Expression, dict]] = {}
        #: INSERTs of the script by target table, for memory tables (sql.memory_tables)
        self.memory_inserts: dict[str, list[exp.Insert]] = {}
        #: memory tables whose writers are being planned (a table writing itself is refused)
        self.expanding: set[str] = set()
        #: CREATE FUNCTION names -> the functions they call (sql.create_function)
        self.function_aliases: dict[str, str] = {}

    # ---- statements ---------------------------------------------------------------------

    def plan_script(self, text: str) -> Job:
        job = Job(catalog=self.catalog)
        statements = parse_script(text)
        from caudal.sql.memory_tables import inserts_by_table

        self.memory_inserts = inserts_by_table([s.node for s in statements])
        for stmt in statements:
            try:
                output = self.plan_statement(stmt)
            except CaudalError as e:
                raise e.with_position(stmt.line, stmt.col) from None
            if output is None:
                continue
            try:
                check_changelog(output.plan)
            except CaudalError as e:
                raise e.with_position(stmt.line, stmt.col) from None
            if "caudal.plan.over_nodes" in sys.modules:  # (where UpdatingRank is defined)
                from caudal.plan.rank_limits import finish_ranks

                finish_ranks(output.plan)  # does anything read an updating top-N's rank?
            (job.explains if stmt.explain else job.outputs).append(output)
        _title_shared_stdout(job.outputs)
        return job

    def plan_statement(self, stmt: Statement) -> Output | None:
        node = stmt.node
        from caudal.sql.create_function import add_function, rename_functions

        rename_functions(node, self.function_aliases)
        if isinstance(node, exp.Create):
            kind = (node.args.get("kind") or "").upper()
            if kind == "FUNCTION":
                add_function(node, self.function_aliases)
                return None
            if kind == "TABLE":
                if node.expression is not None:
                    raise PlanError("CREATE TABLE … AS SELECT is not supported", line=stmt.line,
                                    hint="CREATE TABLE t WITH (…); then INSERT INTO t SELECT …")
                self.catalog.add_table(node, stmt.line)
                return None
            if kind == "VIEW":
                self.catalog.add_view(node)
                return None
            raise PlanError(f"CREATE {kind} is not supported", line=stmt.line,
                            hint="CREATE TABLE, CREATE VIEW or CREATE FUNCTION")
        if isinstance(node, exp.Set):
            for item in node.expressions:
                eq = item.this
                if isinstance(eq, exp.EQ):
                    value = eq.expression
                    text = value.name if isinstance(value, exp.Literal) else value.sql()
                    name = setting_name(eq.this)
                    check_setting(name, stmt.line, 1, text)
                    check_flink_value(spelled_name(eq.this), text, stmt.line)
                    self.catalog.settings[name] = text
            return None
        if isinstance(node, exp.Insert):
            return self._plan_insert(node, stmt)
        if isinstance(node, (exp.Select, exp.SetOperation, exp.Subquery)):
            plan, _ = self.plan_query(node)
            sink = TableSpec(name="stdout", connector="stdout", options={}, schema=plan.schema)
            sink.takes_changelog = connectors.sink_class(sink).takes_changelog(sink)
            return Output(SinkWrite(plan.schema, None, input=plan, table=sink), stmt)
        raise PlanError(f"unsupported statement {type(node).__name__.upper()}",
                        line=stmt.line, col=1, hint=f"accepted: {ACCEPTED_STATEMENTS}")

    def _plan_insert(self, node: exp.Insert, stmt: Statement) -> Output | None:
        target = node.this
        columns = None
        if isinstance(target, exp.Schema):
            columns = [c.name for c in target.expressions]
            target = target.this
        name = target.name
        spec = self.catalog.tables.get(name.lower())
        if spec is None:
            ln, col = position(target)
            known = ", ".join(t.name for t in self.catalog.tables.values()) or "(none)"
            raise PlanError(f"INSERT INTO unknown table {name!r}", line=ln, col=col,
                            hint=f"tables: {known}")
        if spec.connector == MEMORY:
            # rows for the readers of a memory table, planned where it is read; planning
            # it here too reports its errors at this statement
            from caudal.sql.memory_tables import plan_write

            check_changelog(plan_write(self, spec, node))
            return None
        try:  # a bad connector, option or format is the CREATE TABLE's error
            sink_cls = connectors.sink_class(spec)
            connectors.check_options(spec, sink_cls)
            connectors.check_metadata(spec, sink_cls, writing=True)
            sink_cls.validate(spec)
        except CaudalError as e:
            raise e.with_position(spec.line, None) from None
        query = node.expression
        if _with_of(node) is not None:  # WITH … INSERT INTO t SELECT …
            query = query.copy()
            query.set("with_" if "with_" in query.args else "with", _with_of(node).copy())
        plan, _ = self.plan_query(query)
        plan = self._conform_to_sink(plan, spec, columns, node)
        # VIRTUAL metadata columns are read only: the sink neither gets nor writes them
        sink = dataclasses.replace(spec, schema=plan.schema, metadata={
            c: k for c, k in spec.metadata.items() if c not in spec.virtual}, virtual=[])
        if sink_cls.writes_by_key:
            sink.upsert_key = upsert_key(spec, plan)
        sink.takes_changelog = sink_cls.takes_changelog(sink)  # as plain data for the plan
        try:
            sink_cls.check_table(sink)
        except CaudalError as e:
            raise e.with_position(*position(node)) from None
        return Output(SinkWrite(plan.schema, None, input=plan, table=sink), stmt)

    @staticmethod
    def _conform_to_sink(plan: LogicalNode, spec: TableSpec, columns: list[str] | None,
                         node: exp.Expression) -> LogicalNode:
        if spec.schema is None:
            return plan
        declared = spec.schema
        names = columns or spec.writable_columns()
        if len(names) != len(plan.schema):
            ln, col = position(node)
            raise PlanError(f"INSERT INTO {spec.name} gives {len(plan.schema)} column(s) but "
                            f"the table expects {len(names)} ({', '.join(names)})",
                            line=ln, col=col)
        exprs: list[Expr] = []
        writable = {c.lower(): c for c in spec.writable_columns()}
        for i, n in enumerate(names):
            if n.lower() not in writable:
                ln, col = position(node)
                what = "a VIRTUAL column of" if n in spec.virtual else "no column of"
                raise PlanError(f"{n!r} is {what} table {spec.name}", line=ln, col=col,
                                hint="columns: " + ", ".join(writable.values()))
            names[i] = n = writable[n.lower()]
            target = declared.field(n).type
            value = cast(Column(plan.schema.field(i).type, plan.schema.names[i]), target)
            if isinstance(value, Call):  # a failing cast names the value and its column
                ln, col = position(_select_item(node, i))
                set_source(value, ln, col, f"the value written to {spec.name}.{n}")
            if n in spec.not_null:  # checked on every row written, as Flink does
                value = enforce_not_null(value, n, spec.name)
            exprs.append(value)
        # the declared fields' metadata (a timestamp's precision and zone) goes to the sink
        schema = pa.schema([pa.field(n, e.dtype, metadata=declared.field(n).metadata)
                            for n, e in zip(names, exprs)])
        return Project(schema, None, input=plan, exprs=exprs)

    # ---- queries ------------------------------------------------------------------------

    def plan_query(self, node: exp.Expression) -> tuple[LogicalNode, Scope]:
        if isinstance(node, exp.Subquery):
            return self.plan_query(node.this)
        if isinstance(node, exp.Values):  # INSERT INTO t VALUES (…), (…)
            return self.plan_from(node)
        if _with_of(node) is not None:  # WITH name AS (…), … SELECT …
            return self._plan_with(node)
        if isinstance(node, (exp.Select, exp.SetOperation)):
            from caudal.sql.order_limit import has_order_or_limit, plan_order_limit

            if has_order_or_limit(node):  # ORDER BY / LIMIT / OFFSET around the query
                return plan_order_limit(self, node)
        if isinstance(node, exp.SetOperation):
            from caudal.sql.set_operations import plan_set_operation

            return plan_set_operation(self, node)
        if not isinstance(node, exp.Select):
            ln, col = position(node)
            raise PlanError(f"expected a SELECT, got {node.sql()[:40]!r}", line=ln, col=col)
        return self.plan_select(node)

    def plan_select(self, select: exp.Select) -> tuple[LogicalNode, Scope]:
        from caudal.sql.expressions import translate
        from caudal.sql.grouping_sets import has_grouping_sets, plan_grouping_sets
        from caudal.sql.named_windows import inline_named_windows
        from caudal.sql.subqueries import apply_subqueries, without_subqueries

        select = inline_named_windows(select)  # OVER w … WINDOW w AS (…)
        distinct = select.args.get("distinct")
        if distinct is not None and distinct.args.get("on") is None and (
                select.args.get("group") is not None or
                any(contains_aggregate(e) for e in select.expressions)):
            # SELECT DISTINCT … GROUP BY: the distinct rows of the aggregate's result
            from caudal.sql.set_operations import distinct_rows

            node, scope = self.plan_select(select.copy().distinct(distinct=False))
            return distinct_rows(self, node), scope
        if has_grouping_sets(select):  # a union of one GROUP BY per grouping set
            return plan_grouping_sets(self, select)
        from caudal.sql.scalar_subqueries import join_scalar_subqueries

        select = join_scalar_subqueries(self, select)  # (SELECT max(x) FROM t): a join
        # WHERE x IN (SELECT …) / EXISTS (…): semi and anti joins, applied after the rest
        select, subqueries = without_subqueries(select)
        from caudal.sql.unnest import apply_unnest_joins, split_unnest_joins, standalone_unnest

        select, alone = standalone_unnest(select)  # FROM UNNEST(ARRAY[…]) AS u(x)
        select, unnests = split_unnest_joins(select)  # CROSS JOIN UNNEST(arr) AS u(x)
        if select.find(exp.IgnoreNulls, exp.RespectNulls):  # agg(x IGNORE NULLS)
            from caudal.sql.aggregates import null_treatment

            select = null_treatment(select)

        from_ = select.args.get("from_") or select.args.get("from")
        if from_ is None:  # SELECT 1: one row (as in Flink and PostgreSQL)
            from caudal.sql.values import ONE_ROW

            select = select.from_(ONE_ROW.copy(), copy=True)
            from_ = select.args.get("from_") or select.args.get("from")
        where = select.args.get("where")
        if where is not None and contains_aggregate(where.this):
            ln, col = position(where.this)
            raise PlanError("aggregates are not allowed in WHERE", line=ln, col=col,
                            hint="use HAVING")
        condition = where.this if where is not None else None
        if select.args.get("joins"):
            from caudal.sql.joins import plan_joins

            # the join conditions found in WHERE are taken out of it (caudal.sql.joins)
            node, scope, condition = plan_joins(self, select)
        else:
            node, scope = self.plan_from(from_.this)
        if unnests:
            node, scope = apply_unnest_joins(node, scope, unnests)
        if alone:  # the one row's column is no column of the query
            scope = Scope(columns=scope.columns[1:], computed=scope.computed)

        if condition is not None:
            predicate = translate(condition, scope)
            self._expect_boolean(predicate, condition, "WHERE")
            from caudal.plan.rank_limits import push_rank_limit

            # WHERE rn <= N over a top-N: the rank operator keeps N rows (what the limit
            # implies leaves the filter of an updating top-N)
            remaining = push_rank_limit(node, predicate)
            if remaining is not None:
                node = Filter(node.schema, node.time_column, input=node, predicate=remaining)
        if subqueries:
            node = apply_subqueries(self, node, scope, subqueries)

        if select.args.get("group") is not None or any(contains_aggregate(e)
                                                       for e in select.expressions):
            return self.plan_aggregate(select, node, scope)
        if select.args.get("having") is not None:
            ln, col = position(select.args["having"])
            raise PlanError("HAVING needs GROUP BY or an aggregate", line=ln, col=col)
        if select.args.get("distinct") is not None:
            # every distinct row once: an updating aggregate keyed by all the columns
            from caudal.sql.updating_aggregate import plan_distinct

            return plan_distinct(self, select, node, scope)
        from caudal.sql.window_rank import has_window_function, plan_window_rank

        if has_window_function(select):  # ROW_NUMBER() OVER (PARTITION BY window …)
            return plan_window_rank(self, select, node, scope)
        from caudal.sql.unnest import plan_select_unnest

        items, node, scope = plan_select_unnest(select.expressions, node, scope)
        return self.plan_projection(items, node, scope)

    def plan_projection(self, items: list[exp.Expression], node: LogicalNode,
                        scope: Scope) -> tuple[LogicalNode, Scope]:
        from caudal.sql.expressions import translate

        exprs: list[Expr] = []
        names: list[str] = []
        for item in items:
            if isinstance(item, exp.Star) or (isinstance(item, exp.Column)
                                              and isinstance(item.this, exp.Star)):
                relation = item.table if isinstance(item, exp.Column) else None
                cols = scope.star(relation)
                if not cols:
                    ln, col = position(item)
                    raise PlanError(f"{relation}.* matches no table", line=ln, col=col)
                for c in cols:
                    exprs.append(Column(c.dtype, c.physical))
                    names.append(c.name)
                continue
            inner = item.this if isinstance(item, exp.Alias) else item
            exprs.append(translate(inner, scope))
            names.append(output_name(item))
        names = unique_names(names)
        schema = pa.schema([pa.field(n, e.dtype if not pa.types.is_null(e.dtype)
                                     else pa.string()) for n, e in zip(names, exprs)])
        exprs = [cast(e, schema.field(i).type) for i, e in enumerate(exprs)]
        time_column = None
        for n, e in zip(names, exprs):
            if isinstance(e, Column) and e.name == node.time_column:
                time_column = n
                break
        project = Project(schema, time_column, input=node, exprs=exprs)
        out_scope = Scope(columns=[ScopeColumn(None, n, f.type, n)
                                   for n, f in zip(names, schema)])
        return project, out_scope

    def plan_aggregate(self, select: exp.Select, node: LogicalNode,
                       scope: Scope) -> tuple[LogicalNode, Scope]:
        """GROUP BY and aggregates: a window aggregate (caudal.sql.aggregates), else an
        updating aggregate (caudal.sql.updating_aggregate)."""
        from caudal.sql.aggregates import plan_aggregate

        planned = plan_aggregate(self, select, node, scope)
        if planned is not None:
            return planned
        from caudal.sql.updating_aggregate import plan_updating_aggregate

        return plan_updating_aggregate(self, select, node, scope)

    def _plan_with(self, node: exp.Expression) -> tuple[LogicalNode, Scope]:
        """Common table expressions: each is a view visible to the query and to the WITH
        queries after it (lexically: a view's body never sees them)."""
        with_ = _with_of(node)
        if with_.args.get("recursive"):
            ln, col = position(with_)
            raise PlanError("WITH RECURSIVE is not supported", line=ln, col=col,
                            hint="a plain WITH, or a view")
        env = dict(self.ctes)
        for cte in with_.expressions:
            env = {**env, cte.alias.lower(): (cte, env)}
        query = node.copy()
        query.set("with_" if "with_" in query.args else "with", None)
        saved, self.ctes = self.ctes, env
        try:
            return self.plan_query(query)
        finally:
            self.ctes = saved

    def _plan_cte(self, key: str) -> tuple[LogicalNode, Scope]:
        cte, env = self.ctes[key]
        saved, self.ctes = self.ctes, env
        try:
            node, scope = self.plan_query(cte.this)
        finally:
            self.ctes = saved
        names = [c.name for c in (cte.args["alias"].columns or [])]
        if names:  # WITH x(a, b) AS (…)
            if len(names) != len(scope.columns):
                ln, col = position(cte)
                raise PlanError(f"WITH {cte.alias} names {len(names)} column(s), its query "
                                f"gives {len(scope.columns)}", line=ln, col=col)
            schema = pa.schema([pa.field(n, f.type) for n, f in zip(names, node.schema)])
            time_column = None
            if node.time_column in node.schema.names:
                time_column = names[node.schema.names.index(node.time_column)]
            node = Project(schema, time_column, input=node,
                           exprs=[Column(f.type, f.name) for f in node.schema])
            scope = Scope(columns=[ScopeColumn(None, n, f.type, n)
                                   for n, f in zip(names, schema)])
        return node, scope

    def plan_from(self, source: exp.Expression) -> tuple[LogicalNode, Scope]:
        alias = source.alias if hasattr(source, "alias") else ""
        if isinstance(source, exp.Subquery):
            node, inner = self.plan_query(source.this)
            relation = alias or None
            return node, Scope(columns=[dataclasses.replace(c, relation=relation)
                                        for c in inner.columns],
                               computed=derived_timestamp(node, relation))
        if isinstance(source, exp.Values):  # (VALUES (…), (…)) AS t(a, b)
            from caudal.sql.values import values_scan_spec, values_table

            relation = alias or "values"
            return self.scan(values_scan_spec(values_table(source), relation), relation)
        if isinstance(source, exp.Table) and isinstance(source.this, exp.Identifier):
            name = source.name
            key = name.lower()
            relation = alias or name
            if key in self.ctes or key in self.catalog.views:
                if key in self.ctes:
                    node, inner = self._plan_cte(key)
                else:  # a view's body sees no WITH query of the statement reading it
                    saved, self.ctes = self.ctes, {}
                    try:
                        node, inner = self.plan_query(self.catalog.views[key])
                    finally:
                        self.ctes = saved
                return node, Scope(columns=[dataclasses.replace(c, relation=relation)
                                            for c in inner.columns],
                                   computed=derived_timestamp(node, relation))
            spec = self.catalog.tables.get(key)
            if spec is None:
                ln, col = position(source)
                known = sorted([t.name for t in self.catalog.tables.values()]
                               + list(self.catalog.views))
                raise PlanError(f"unknown table {name!r}", line=ln, col=col,
                                hint="tables and views: " + (", ".join(known) or "(none)"))
            if spec.connector == MEMORY:
                from caudal.sql import memory_tables

                return memory_tables.read(self, spec, relation, source)
            return self.scan(spec, relation)
        if isinstance(source, exp.Table):
            return self.plan_table_function(source)
        ln, col = position(source)
        raise PlanError(f"unsupported FROM item {source.sql()[:60]!r}", line=ln, col=col,
                        hint="a table, a view or a subquery")

    def plan_table_function(self, source: exp.Table) -> tuple[LogicalNode, Scope]:
        """TABLE(TUMBLE(…)) and friends (caudal.sql.windows)."""
        try:
            from caudal.sql.window_tvf import plan_window_tvf
        except ImportError:
            ln, col = position(source)
            raise PlanError(f"unsupported FROM item {source.sql()[:60]!r}", line=ln,
                            col=col) from None
        return plan_window_tvf(self, source)

    def scan(self, spec: TableSpec, relation: str) -> tuple[LogicalNode, Scope]:
        source_cls = connectors.source_class(spec)
        connectors.check_options(spec, source_cls)
        connectors.check_metadata(spec, source_cls)
        spec = dataclasses.replace(spec, options=dict(spec.options))
        if spec.schema is None:
            try:
                spec.schema = source_cls.infer_schema(spec)
            except CaudalError as e:
                raise e.with_position(spec.line, None) from None
            if spec.schema is None:
                raise ConfigError(f"table {spec.name!r} declares no columns and connector "
                                  f"{spec.connector!r} cannot infer them", line=spec.line,
                                  hint="declare the columns in CREATE TABLE")
            if spec.event_time:
                names = {n.lower(): n for n in spec.schema.names}
                if spec.event_time.lower() not in names:
                    raise PlanError(f"event time column {spec.event_time!r} is not a column "
                                    f"of {spec.name!r}", line=spec.line,
                                    hint="columns: " + ", ".join(spec.schema.names))
                spec.event_time = names[spec.event_time.lower()]
                if not pa.types.is_timestamp(spec.schema.field(spec.event_time).type):
                    raise PlanError(f"event time column {spec.event_time!r} must be a "
                                    f"TIMESTAMP, not "
                                    f"{sql_name(spec.schema.field(spec.event_time).type)}",
                                    line=spec.line)
        if spec.event_time is None:
            default = source_cls.default_event_time(spec)
            if default is not None and default in spec.schema.names:
                spec.event_time = default
        try:
            source_cls.validate(spec)
        except CaudalError as e:
            raise e.with_position(spec.line, None) from None
        spec.changelog = connectors.table_is_changelog(spec)  # as plain data for the plan
        spec.locates_rows = source_cls.locates_rows(spec)
        columns = spec.columns_schema()  # with the computed columns
        node = Scan(columns, spec.event_time, table=spec)
        scope = Scope(columns=[ScopeColumn(relation, f.name, f.type, f.name)
                               for f in columns])
        scope.computed.update(timestamp_column(columns, spec.event_time, relation))
        return node, scope

    @staticmethod
    def _expect_boolean(expr: Expr, node: exp.Expression, clause: str) -> None:
        if not (pa.types.is_boolean(expr.dtype) or pa.types.is_null(expr.dtype)):
            ln, col = position(node)
            raise PlanError(f"{clause} needs a boolean condition, got {sql_name(expr.dtype)}",
                            line=ln, col=col)


def _with_of(node: exp.Expression) -> exp.With | None:
    """The WITH clause of a query or an INSERT (sqlglot names the argument ``with_``)."""
    return node.args.get("with_") or node.args.get("with")


def _title_shared_stdout(outputs: list[Output]) -> None:
    """Several outputs printed to stdout would interleave their rows under one header: give
    each a title, printed (with its header) whenever the printing output changes."""
    printed = [o for o in outputs if o.plan.table.connector == "stdout"]
    if len(printed) < 2:
        return
    for o in printed:
        table = o.plan.table
        title = f"SELECT at line {o.statement.line}" if table.name == "stdout" else table.name
        o.plan.table = dataclasses.replace(table, title=title)


def plan_script(text: str) -> Job:
    return Planner().plan_script(text)
