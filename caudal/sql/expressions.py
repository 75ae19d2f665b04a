"""SQL scalar expressions (sqlglot trees) -> the typed IR (Column / Literal / Call).

sqlglot turns many function names into typed nodes with their own argument names (and
rewrites some: ``a[1]`` is stored 0-based, to_timestamp's format as strftime); this module
undoes that and binds every node through the function registry, so type rules live with
the kernels in ``plan/functions``. Casts of literals are folded here, so a bad literal
(``ts > 'yesterday'``) is an error when planning, with its line and column.
"""

from __future__ import annotations

import decimal
from collections.abc import Callable

import pyarrow as pa
from sqlglot import exp
from sqlglot.time import format_time

from caudal.errors import CaudalError, PlanError, RuntimeFailure
from caudal.plan.expressions import Call, Column, Expr, Literal, set_source
from caudal.plan.functions.casts import bind_cast, cast_array, try_cast_array
from caudal.plan.functions.intervals import parse_interval, parse_qualified_interval
from caudal.plan.functions.registry import bind_call, builtin, find
from caudal.sql.dialect import TOO_DEEP, TOO_DEEP_HINT, Caudal
from caudal.sql.rendering import rendering, text
from caudal.sql.scope import Scope, position
from caudal.types import INTERVAL, arrow_type, is_numeric

Handler = Callable[[exp.Expression, Scope], Expr]


def translate(node: exp.Expression, scope: Scope) -> Expr:
    """The typed IR of one scalar expression; PlanError (with line and column) when a name
    is unknown, a function does not exist or arguments have the wrong types. Each node's
    SQL text and position are found once (caudal.sql.rendering), so planning costs what the
    tree holds, not its size times its depth."""
    with rendering(node):
        try:
            return _translate(node, scope)
        except RecursionError:
            raise PlanError(TOO_DEEP, hint=TOO_DEEP_HINT) from None


def _translate(node: exp.Expression, scope: Scope) -> Expr:
    computed = scope.lookup(node)
    if computed is not None:
        return computed
    try:
        handler = _HANDLERS.get(type(node))
        if handler is not None:
            result = handler(node, scope)
        elif type(node) in _SIMPLE:
            name, keys = _SIMPLE[type(node)]
            result = _call(name, [node.args.get(k) for k in keys], scope)
        else:
            result = _unsupported(node)
        result = _fold(result)
        if isinstance(result, Call):
            line, col = position(node)
            set_source(result, line, col, " ".join(text(node, Caudal).split())[:80])
        return result
    except CaudalError as e:
        line, col = position(node)
        raise e.with_position(line, col) from None


def _tr(node: exp.Expression | None, scope: Scope) -> Expr:
    assert node is not None
    return _translate(node, scope)


def _call(name: str, nodes: list[exp.Expression | None], scope: Scope,
          extra: list[Expr] | None = None) -> Expr:
    """Bind function ``name`` on the translated nodes (trailing missing ones dropped)."""
    while nodes and nodes[-1] is None:
        nodes = nodes[:-1]
    args = [_tr(n, scope) for n in nodes] + (extra or [])
    return bind_call(name, args)


def _text(value: str) -> Literal:
    return Literal(pa.string(), value)


# ---- leaves -------------------------------------------------------------------------------


def _column(node: exp.Column, scope: Scope) -> Expr:
    if isinstance(node.this, exp.Star):
        raise PlanError("* is not a value here", hint="name the columns")
    found = scope.resolve_column(node)
    if found is not None:
        return found
    # a.b where a is not a relation: field b of struct column a (and b.x.y, t.b.x)
    parts = [p.name for p in node.parts]
    relations = scope.relation_names()
    head = parts[0].lower()
    if head in relations and not any(c.name.lower() == head for c in scope.columns):
        if len(parts) == 2:
            visible = ", ".join(c.name for c in scope.columns
                                if (c.relation or "").lower() == head)
            raise PlanError(f"unknown column {parts[1]!r} in {parts[0]}",
                            hint=f"columns of {parts[0]}: {visible}")
        base = scope.resolve_column(exp.column(parts[1], table=parts[0]))
        if base is None:
            raise PlanError(f"unknown column {parts[1]!r} in {parts[0]}")
        fields = parts[2:]
    else:
        base = scope.resolve_column(exp.column(parts[0]))
        fields = parts[1:]
    for field in fields:
        base = bind_call("struct_field", [base, _text(field)])
    return base


def _dot(node: exp.Dot, scope: Scope) -> Expr:
    base = _tr(node.this, scope)
    return bind_call("struct_field", [base, _text(node.expression.name)])


def _literal(node: exp.Literal, scope: Scope) -> Expr:
    if node.is_string:
        return _text(node.this)
    return number_literal(node.this)


def number_literal(text: str) -> Literal:
    """PostgreSQL's types for numeric constants: INT if it fits, else BIGINT; with a point
    or exponent a NUMERIC of the written precision and scale (DuckDB agrees)."""
    if text.isdigit():
        value = int(text)
        if value < 2**31:
            return Literal(pa.int32(), value)
        if value < 2**63:
            return Literal(pa.int64(), value)
    number = decimal.Decimal(text)
    _, digits, exponent = number.as_tuple()
    if isinstance(exponent, int) and exponent >= 0:
        # an integer of the written digits (1e30 too: the default 28-digit context raised)
        number = number.quantize(decimal.Decimal(1), context=decimal.Context(prec=400))
        precision, scale = max(1, len(digits) + exponent), 0
    else:
        scale = -int(exponent)
        precision = max(len(digits), scale, 1)
    if precision > 38:
        return Literal(pa.float64(), float(number))
    return Literal(pa.decimal128(precision, scale), number)


def _boolean(node: exp.Boolean, scope: Scope) -> Expr:
    return Literal(pa.bool_(), bool(node.this))


def _null(node: exp.Null, scope: Scope) -> Expr:
    return Literal(pa.null(), None)


def interval_literal_us(node: exp.Interval) -> int:
    """Microseconds of a constant INTERVAL literal: ``INTERVAL '10' SECOND``, ``INTERVAL
    '1 hour 30 minutes'``, ``INTERVAL '1:30' MINUTE TO SECOND`` (every INTERVAL of a query,
    a window or a watermark is read here)."""
    unit = node.args.get("unit")
    try:
        if isinstance(unit, exp.IntervalSpan):
            return parse_qualified_interval(node.this.name, unit.this.name,
                                            unit.expression.name)
        return parse_interval(f"{node.this.name} {unit.name if unit else ''}".strip())
    except RuntimeFailure as e:
        ln, col = position(node)
        raise PlanError(e.message, line=ln, col=col, hint=e.hint) from None


def _interval(node: exp.Interval, scope: Scope) -> Expr:
    unit = node.args.get("unit")
    unit_text = unit.name if unit is not None else ""
    if isinstance(node.this, exp.Literal):
        return Literal(INTERVAL, pa.scalar(interval_literal_us(node), INTERVAL).as_py())
    if isinstance(unit, exp.IntervalSpan):
        ln, col = position(node)
        raise PlanError(f"INTERVAL (expression) {unit.sql()} is not supported", line=ln,
                        col=col, hint="a qualifier FROM TO takes a constant text: "
                                      "INTERVAL '1:30' MINUTE TO SECOND")
    # INTERVAL (expr) MINUTE: the expression counts units
    one = Literal(INTERVAL, pa.scalar(parse_interval(f"1 {unit_text or 'second'}"),
                                      INTERVAL).as_py())
    return bind_call("multiply", [one, _tr(node.this, scope)])


def _string_literal(node: exp.Expression, scope: Scope) -> Expr:
    return _text(node.this)


def _hex_literal(node: exp.HexString, scope: Scope) -> Expr:
    return Literal(pa.binary(), bytes.fromhex(node.this))


def _paren(node: exp.Paren, scope: Scope) -> Expr:
    return _tr(node.this, scope)


# ---- operators ------------------------------------------------------------------------------

_BINARY = {
    exp.Add: "add", exp.Sub: "subtract", exp.Mul: "multiply", exp.Div: "divide",
    exp.Mod: "modulo", exp.EQ: "eq", exp.NEQ: "neq", exp.LT: "lt", exp.LTE: "lte",
    exp.GT: "gt", exp.GTE: "gte", exp.And: "and", exp.Or: "or", exp.DPipe: "concat_op",
    exp.NullSafeEQ: "is_not_distinct_from", exp.NullSafeNEQ: "is_distinct_from",
}


def _binary(node: exp.Binary, scope: Scope) -> Expr:
    left, right = node.this, node.expression
    rows = _row_values(left), _row_values(right)
    if rows[0] is not None and rows[1] is not None and isinstance(node, exp.EQ | exp.NEQ):
        return _rows_equal(node, rows[0], rows[1], scope)
    return _call(_BINARY[type(node)], [left, right], scope)


def _row_values(node: exp.Expression) -> list[exp.Expression] | None:
    """The values of a row written ``(a, b, …)`` or ``ROW(a, b, …)``, else None: both
    spellings compare as rows (``ROW(a, b) = ROW(x, y)`` compared STRUCTs and was refused)."""
    if isinstance(node, exp.Tuple):
        return list(node.expressions)
    if isinstance(node, exp.Anonymous) and str(node.this).upper() == "ROW":
        return list(node.expressions)
    return None


def _rows_equal(node: exp.Binary, left: list[exp.Expression], right: list[exp.Expression],
                scope: Scope) -> Expr:
    """``(a, b) = (x, y)`` is ``a = x AND b = y`` and ``<>`` is ``a <> x OR b <> y``, with
    SQL's NULLs (a row comparison is TRUE, FALSE or unknown as that AND / OR is)."""
    if len(left) != len(right):
        raise PlanError(f"a row of {len(left)} values compared with a row of {len(right)}",
                        hint="compare rows of the same number of values")
    equal = isinstance(node, exp.EQ)
    parts = [_call("eq" if equal else "neq", [a, b], scope) for a, b in zip(left, right)]
    out = parts[0]
    for part in parts[1:]:
        out = bind_call("and" if equal else "or", [out, part])
    return out


def _neg(node: exp.Neg, scope: Scope) -> Expr:
    inner = _tr(node.this, scope)
    if isinstance(inner, Literal) and inner.value is not None and is_numeric(inner.dtype):
        return Literal(inner.dtype, -inner.value)
    return bind_call("negate", [inner])


def _not(node: exp.Not, scope: Scope) -> Expr:
    inner = node.this
    if isinstance(inner, exp.Paren) and isinstance(inner.this, exp.Is):
        inner = inner.this
    if isinstance(inner, exp.Is):
        return _is(inner, scope, negate=True)
    return bind_call("not", [_tr(inner, scope)])


def _is(node: exp.Is, scope: Scope, negate: bool = False) -> Expr:
    negate = negate != bool(node.args.get("negate"))
    value = _tr(node.this, scope)
    target = node.expression
    if isinstance(target, exp.Null):
        return bind_call("is_not_null" if negate else "is_null", [value])
    if isinstance(target, exp.Boolean):
        name = "is_" + ("not_" if negate else "") + ("true" if target.this else "false")
        return bind_call(name, [value])
    raise PlanError(f"IS {target.sql()} is not supported",
                    hint="IS [NOT] NULL, IS [NOT] TRUE, IS [NOT] FALSE, IS [NOT] DISTINCT FROM")


def _between(node: exp.Between, scope: Scope) -> Expr:
    x, low, high = (_tr(node.args[k], scope) for k in ("this", "low", "high"))
    inside = bind_call("and", [bind_call("gte", [x, low]), bind_call("lte", [x, high])])
    if node.args.get("symmetric"):
        swapped = bind_call("and", [bind_call("gte", [x, high]), bind_call("lte", [x, low])])
        inside = bind_call("or", [inside, swapped])
    return inside


def _in(node: exp.In, scope: Scope) -> Expr:
    if node.args.get("query") is not None or node.args.get("unnest") is not None:
        raise PlanError("IN (SELECT …) is only supported as a condition of WHERE, AND-ed "
                        "with the others", hint="WHERE x IN (SELECT y FROM …), or a JOIN")
    return _call("in_list", [node.this, *node.expressions], scope)


def _like(node: exp.Like | exp.ILike, scope: Scope, escape: exp.Expression | None = None
          ) -> Expr:
    name = "ilike" if isinstance(node, exp.ILike) else "like"
    extra = [_tr(escape, scope)] if escape is not None else []
    result = _call(name, [node.this, node.expression], scope, extra)
    return bind_call("not", [result]) if node.args.get("negate") else result


def _escape(node: exp.Escape, scope: Scope) -> Expr:
    inner = node.this
    if not isinstance(inner, exp.Like | exp.ILike):
        return _unsupported(node)
    return _like(inner, scope, node.expression)


def _regexp_like(node: exp.Expression, scope: Scope) -> Expr:
    name = "regexp_ilike" if isinstance(node, exp.RegexpILike) else "regexp_like"
    return _call(name, [node.this, node.expression, node.args.get("flag")], scope)


# ---- conditionals, casts ----------------------------------------------------------------------


def _case(node: exp.Case, scope: Scope) -> Expr:
    operand = _tr(node.this, scope) if node.this is not None else None
    args: list[Expr] = []
    for branch in node.args.get("ifs") or []:
        when = _tr(branch.this, scope)
        if operand is not None:
            when = bind_call("eq", [operand, when])
        args += [when, _tr(branch.args["true"], scope)]
    if node.args.get("default") is not None:
        args.append(_tr(node.args["default"], scope))
    return bind_call("case", args)


def _if(node: exp.If, scope: Scope) -> Expr:
    args = [_tr(node.this, scope), _tr(node.args["true"], scope)]
    if node.args.get("false") is not None:
        args.append(_tr(node.args["false"], scope))
    return bind_call("case", args)


def _variadic(name: str) -> Handler:
    def handle(node: exp.Expression, scope: Scope) -> Expr:
        return _call(name, [node.this, *node.expressions], scope)
    return handle


def _cast(node: exp.Cast, scope: Scope) -> Expr:
    to = node.args["to"]
    if isinstance(node.this, exp.Array) and not node.this.expressions and \
            to.this == exp.DataType.Type.ARRAY:  # CAST(ARRAY[] AS INT[]): the typed empty array
        return Literal(arrow_type(to), [])
    value = _tr(node.this, scope)
    if to.this == exp.DataType.Type.DECIMAL and not to.expressions:
        target = _unconstrained_numeric(value.dtype)
    else:
        target = arrow_type(to)
    out = bind_cast(value, target, safe=isinstance(node, exp.TryCast) or bool(
        node.args.get("safe")))
    length = _declared_length(to)
    if length is not None:
        # varchar(n) keeps n characters, char(n) is blank-padded to n, as in PostgreSQL
        name = "rpad" if to.this in (exp.DataType.Type.CHAR, exp.DataType.Type.NCHAR) \
            else "left"
        out = bind_call(name, [out, Literal(pa.int64(), length)])
    return out


def _declared_length(to: exp.DataType) -> int | None:
    text_types = (exp.DataType.Type.VARCHAR, exp.DataType.Type.NVARCHAR,
                  exp.DataType.Type.CHAR, exp.DataType.Type.NCHAR)
    if to.this not in text_types or not to.expressions:
        return None
    param = to.expressions[0]
    inner = param.this if isinstance(param, exp.DataTypeParam) else param
    return int(inner.name) if isinstance(inner, exp.Literal) and inner.name.isdigit() else None


def _unconstrained_numeric(source: pa.DataType) -> pa.DataType:
    """``::numeric`` without (p, s) keeps every digit in PostgreSQL; a decimal keeps its
    type, an integer its digits, anything else gets DECIMAL(38, 9)."""
    if pa.types.is_decimal(source):
        return source
    if pa.types.is_integer(source):
        return pa.decimal128({8: 3, 16: 5, 32: 10}.get(source.bit_width, 19), 0)
    return pa.decimal128(38, 9)


# ---- functions with their own argument layout ------------------------------------------------


def _close_names(name: str) -> list[str]:
    """Names like ``name``, for an unknown function's hint: the catalog imports every
    function family, which planning a query otherwise does only for the functions it calls."""
    from caudal.plan.functions.catalog import close_names

    return close_names(name)


#: functions of Flink's that caudal refuses on purpose, with the reason (not 'unknown')
_REFUSED = {
    "current_watermark": (
        "CURRENT_WATERMARK() is not supported: its value depends on when each row is read, "
        "so a query filtering on it would answer differently run to run",
        "event-time operators (windows, OVER, joins) drop rows behind the watermark "
        "themselves, counted at exit; late_data = 'side:<table>' keeps them"),
}


def _anonymous(node: exp.Anonymous, scope: Scope) -> Expr:
    name = str(node.this).lower()
    fn = find(name)
    if fn is None or fn.internal:
        if name in _AGGREGATES:
            return _aggregate(node)
        if name in _REFUSED:
            message, hint = _REFUSED[name]
            raise PlanError(message, hint=hint)
        similar = _close_names(name)
        hint = (f"did you mean {', '.join(similar)}? " if similar else "") + \
            "`caudal functions` and docs/sql.md list them all"
        raise PlanError(f"unknown function {name}()", hint=hint)
    args = list(node.expressions)
    if name in ("timestampadd", "timestampdiff") and args and isinstance(args[0], exp.Column) \
            and len(args[0].parts) == 1 and not args[0].this.quoted:
        args[0] = exp.Literal.string(args[0].name)  # the unit is a keyword: DAY, MONTH, …
    return _call(name, args, scope)


_AGGREGATES = {"count", "sum", "avg", "min", "max", "array_agg", "string_agg", "bool_and",
               "bool_or", "stddev", "variance", "first_value", "last_value"}


def _aggregate(node: exp.Expression) -> Expr:
    name = node.sql_name().lower() if not isinstance(node, exp.Anonymous) else node.name
    raise PlanError(f"aggregate function {name.lower()}() is not allowed here",
                    hint="aggregates go in SELECT or HAVING of a GROUP BY query")


def _unsupported(node: exp.Expression) -> Expr:
    if isinstance(node, exp.AggFunc):
        return _aggregate(node)
    if isinstance(node, exp.Window):
        raise PlanError("window functions (OVER) are not allowed here",
                        hint="ROW_NUMBER() OVER (...) is accepted for top-N queries")
    if isinstance(node, exp.Explode | exp.Unnest):
        raise PlanError("unnest() is not allowed here",
                        hint="SELECT unnest(arr) FROM t (without GROUP BY), or "
                             "FROM t CROSS JOIN UNNEST(t.arr) AS u(x)")
    if isinstance(node, exp.Exists):
        raise PlanError("EXISTS (SELECT …) is not supported here",
                        hint="write the condition as a JOIN on the columns it compares")
    if isinstance(node, exp.Any | exp.All) and isinstance(node.this, exp.Subquery | exp.Select):
        raise quantified_error(node)
    if isinstance(node, exp.Subquery | exp.Select):
        raise PlanError("subqueries are not supported inside expressions",
                        hint="use a JOIN or a WITH clause")
    if isinstance(node, exp.Func):
        name = _written_name(node)
        similar = _close_names(name)
        hint = (f"did you mean {', '.join(similar)}? " if similar else "") + \
            "`caudal functions` and docs/sql.md list them all"
        raise PlanError(f"function {name}() is not supported", hint=hint)
    if isinstance(node, exp.Tuple):
        ln, col = position(node)
        raise PlanError(f"a row {node.sql(dialect=Caudal)[:60]} is only supported compared "
                        "with = or <> to another row", line=ln, col=col,
                        hint="ROW(a, b, …) builds a ROW value; (a, b) < (x, y) is a < x OR "
                             "(a = x AND b < y)")
    text = node.sql(dialect=Caudal)
    raise PlanError(f"unsupported expression {text[:60]!r}",
                    hint="docs/sql.md lists the operators caudal accepts")


def _written_name(node: exp.Func) -> str:
    """The function's name for a refusal: sqlglot's SQL name for its class, unless that is
    spelled letter by letter from a class like ``SHA2Digest`` (``s_h_a2_digest``); then what
    the generator writes for the node (``sha256``)."""
    name = node.sql_name().lower()
    if all(len(part) > 1 for part in name.split("_")):
        return name
    head = node.sql(dialect=Caudal).split("(", 1)[0].strip().lower()
    return head if head.replace("_", "").isalnum() else name


def _substring(node: exp.Substring, scope: Scope) -> Expr:
    return _call("substr", [node.this, node.args.get("start"), node.args.get("length")], scope)


def _concat(node: exp.Expression, scope: Scope) -> Expr:
    name = "concat_ws" if isinstance(node, exp.ConcatWs) else "concat"
    return _call(name, list(node.expressions), scope)


def _trim(node: exp.Trim, scope: Scope) -> Expr:
    where = str(node.args.get("position") or "BOTH").upper()
    name = {"LEADING": "ltrim", "TRAILING": "rtrim"}.get(where, "btrim")
    return _call(name, [node.this, node.expression], scope)


def _regexp_replace(node: exp.RegexpReplace, scope: Scope) -> Expr:
    if node.args.get("position") is not None or node.args.get("occurrence") is not None:
        raise PlanError("regexp_replace() with a start position or occurrence is not "
                        "supported", hint="regexp_replace(text, pattern, replacement [, flags])")
    return _call("regexp_replace", [node.this, node.expression, node.args.get("replacement"),
                                    node.args.get("modifiers")], scope)


def _pad(node: exp.Pad, scope: Scope) -> Expr:
    name = "lpad" if node.args.get("is_left") else "rpad"
    return _call(name, [node.this, node.expression, node.args.get("fill_pattern")], scope)


def _round(node: exp.Expression, scope: Scope) -> Expr:
    name = "trunc" if isinstance(node, exp.Trunc) else "round"
    return _call(name, [node.this, node.args.get("decimals")], scope)


def _log(node: exp.Log, scope: Scope) -> Expr:
    if node.expression is None:
        return _call("log", [node.this], scope)  # base 10, as in PostgreSQL
    if isinstance(node.this, exp.Literal) and node.this.name == "10":
        return _call("log10", [node.expression], scope)
    return _call("log", [node.this, node.expression], scope)


def _floor(node: exp.Expression, scope: Scope) -> Expr:
    name = "floor" if isinstance(node, exp.Floor) else "ceil"
    to = node.args.get("to")
    if to is not None and node.args.get("decimals") is None:
        return _floor_to(name, node.this, to.name.lower(), scope)
    if node.args.get("decimals") is not None:
        raise PlanError(f"{name}() takes one argument",
                        hint=f"{name}(number), or {name.upper()}(ts TO unit) for a time")
    return _call(name, [node.this], scope)


#: units CEIL(ts TO unit) rounds up to: those of a fixed length (a month or a year has none)
_CEIL_UNITS = ("millisecond", "second", "minute", "hour", "day")


def _floor_to(name: str, value_node: exp.Expression, unit: str, scope: Scope) -> Expr:
    """Flink's ``FLOOR(ts TO unit)`` is ``date_trunc(unit, ts)``; ``CEIL(ts TO unit)`` the
    next boundary at or after ``ts`` (``ts`` itself when it lies on one), as Flink answers."""
    value = _tr(value_node, scope)
    down = bind_call("date_trunc", [_text(unit), value])
    if name == "floor":
        return down
    if unit not in _CEIL_UNITS:
        raise PlanError(f"CEIL(ts TO {unit.upper()}) is not supported (a {unit} has no fixed "
                        "length)", hint="CEIL(ts TO DAY) or a smaller unit, or FLOOR(ts TO "
                                        f"{unit.upper()})")
    step = Literal(INTERVAL, pa.scalar(parse_interval(f"1 {unit}"), INTERVAL).as_py())
    on_boundary = bind_call("eq", [down, value])
    return bind_call("case", [on_boundary, down, bind_call("add", [down, step])])


def _rand(node: exp.Rand, scope: Scope) -> Expr:
    if node.this is not None:
        raise PlanError("random() takes no arguments (no seed)")
    return bind_call("random", [])


def _date_trunc(node: exp.Expression, scope: Scope) -> Expr:
    unit = node.args.get("unit")
    unit_expr = _text(unit.name) if isinstance(unit, exp.Var) else _tr(unit, scope)
    return bind_call("date_trunc", [unit_expr, _tr(node.this, scope)])


def _extract(node: exp.Extract, scope: Scope) -> Expr:
    field = node.this
    field_expr = _text(field.name) if isinstance(field, exp.Var | exp.Identifier) \
        else _tr(field, scope)
    return bind_call("date_part", [field_expr, _tr(node.expression, scope)])


def _date_part(field: str):
    """Flink's ``HOUR(ts)``, ``YEAR(ts)``, …: ``date_part('hour', ts)`` (an integer)."""
    def translate_part(node: exp.Expression, scope: Scope) -> Expr:
        return bind_call("date_part", [_text(field), _tr(node.this, scope)])
    return translate_part


def _day_of_week(node: exp.Expression, scope: Scope) -> Expr:
    """Flink's (and MySQL's) ``DAYOFWEEK(ts)``: 1 for Sunday to 7 for Saturday (DuckDB's
    dayofweek counts from 0)."""
    dow = bind_call("date_part", [_text("dow"), _tr(node.this, scope)])
    return bind_call("add", [dow, Literal(pa.int64(), 1)])


def _second(node: exp.Expression, scope: Scope) -> Expr:
    """Flink's ``SECOND(ts)``: the whole seconds (``extract(second …)`` keeps the fraction)."""
    micros = bind_call("date_part", [_text("microsecond"), _tr(node.this, scope)])
    return bind_call("divide", [micros, Literal(pa.int64(), 1_000_000)])


def pg_template(node: exp.Expression | None) -> exp.Expression | None:
    """sqlglot stores a to_timestamp/to_char template converted to strftime; turn it back
    into the PostgreSQL pattern the user wrote."""
    if isinstance(node, exp.Literal) and node.is_string:
        text = format_time(node.this, Caudal.INVERSE_TIME_MAPPING, Caudal.INVERSE_TIME_TRIE)
        return exp.Literal.string(text)
    return node


def _str_to_time(node: exp.Expression, scope: Scope) -> Expr:
    name = "to_date" if isinstance(node, exp.StrToDate) else "to_timestamp"
    return _call(name, [node.this, pg_template(node.args.get("format"))], scope)


def _time_to_str(node: exp.TimeToStr, scope: Scope) -> Expr:
    return _call("to_char", [node.this, pg_template(node.args.get("format"))], scope)


def _unix_to_time(node: exp.UnixToTime, scope: Scope) -> Expr:
    return _call("to_timestamp", [node.this], scope)


def _now(name: str) -> Handler:
    return lambda node, scope: bind_call(name, [])


def _json(node: exp.Expression, scope: Scope) -> Expr:
    name = "json_get_text" if isinstance(node, exp.JSONExtractScalar | exp.JSONBExtractScalar) \
        else "json_get"
    source = _tr(node.this, scope)
    path = node.expression
    if isinstance(path, exp.JSONPath):
        steps: list[Expr] = []
        for part in path.expressions:
            if isinstance(part, exp.JSONPathRoot):
                continue
            if isinstance(part, exp.JSONPathKey):
                steps.append(_text(str(part.this)))
            elif isinstance(part, exp.JSONPathSubscript) and isinstance(part.this, int):
                steps.append(Literal(pa.int32(), part.this))
            else:
                raise PlanError(f"unsupported JSON path step {part.sql()}",
                                hint="object keys ('name') and array indexes (0)")
        return bind_call(name, [source, *steps])
    if isinstance(node, exp.JSONBExtract | exp.JSONBExtractScalar) and isinstance(
            path, exp.Literal) and path.is_string:
        # #> '{a,b,0}': a PostgreSQL text array of keys
        keys = [k.strip().strip('"') for k in path.this.strip("{}").split(",") if k.strip()]
        steps = [Literal(pa.int32(), int(k)) if k.lstrip("-").isdigit() else _text(k)
                 for k in keys]
        return bind_call(name, [source, *steps])
    return bind_call(name, [source, _tr(path, scope)])


def _bracket(node: exp.Bracket, scope: Scope) -> Expr:
    base_node = node.this
    if isinstance(base_node, exp.Column) and not base_node.table and \
            base_node.name.upper() == "MAP" and \
            not any(c.name.lower() == "map" for c in scope.columns):
        # Flink's MAP['k', v, …] value constructor, parsed as a subscript of a column "map"
        raise PlanError("the MAP[…] value constructor is not supported",
                        hint="a MAP column read from the input, or ARRAY[a, b, …]")
    if isinstance(node.expressions[0], exp.Slice):
        raise PlanError("array slices a[i:j] are not supported", hint="a[i] (1-based)")
    if len(node.expressions) != 1:
        raise PlanError(f"a subscript takes one index, not {len(node.expressions)}",
                        hint="a[i] (1-based), m['key'], s['field']")
    base = _tr(node.this, scope)
    index_node = node.expressions[0]
    if pa.types.is_struct(base.dtype) and isinstance(index_node, exp.Literal) and \
            index_node.is_string:
        return bind_call("struct_field", [base, _text(index_node.this)])
    index = _tr(index_node, scope)
    if _index_was_shifted(index_node):
        # sqlglot stored a 1-based constant index 0-based; SQL (and the kernel) count from 1
        index = bind_call("add", [index, Literal(pa.int32(), 1)])
    return bind_call("list_element", [base, index])


def _index_was_shifted(index: exp.Expression) -> bool:
    """Whether sqlglot subtracted one from this subscript when parsing (it does so for the
    subscripts it can type as integers, and leaves column expressions alone)."""
    kind = index.type.this if index.type is not None else None
    return kind is None or kind in exp.DataType.INTEGER_TYPES


def _array(node: exp.Array, scope: Scope) -> Expr:
    return _call("make_array", list(node.expressions), scope)


def _array_size(node: exp.ArraySize, scope: Scope) -> Expr:
    return _call("array_length", [node.this, node.expression], scope)


def _chr(node: exp.Chr, scope: Scope) -> Expr:
    return _call("chr", list(node.expressions), scope)


def _str_position(node: exp.StrPosition, scope: Scope) -> Expr:
    """strpos(text, sub), POSITION(sub IN text), INSTR(text, sub) and Flink's
    LOCATE(sub, text [, start]) all parse to one node."""
    if node.args.get("occurrence") is not None:
        raise PlanError("the occurrence argument of instr() is not supported",
                        hint="instr(text, substring) or locate(substring, text, start)")
    if node.args.get("position") is not None:
        return _call("locate", [node.args.get("substr"), node.this, node.args["position"]],
                     scope)
    return _call("strpos", [node.this, node.args.get("substr")], scope)


def _regexp_extract(node: exp.RegexpExtract, scope: Scope) -> Expr:
    """REGEXP_EXTRACT(text, pattern [, group]): sqlglot files a third argument under
    ``position`` or ``group`` depending on the dialect; Flink's meaning is the group."""
    if node.args.get("occurrence") is not None or node.args.get("parameters") is not None:
        raise PlanError("regexp_extract() takes at most three arguments",
                        hint="regexp_extract(text, pattern [, group])")
    group = node.args.get("group") or node.args.get("position")
    return _call("regexp_extract", [node.this, node.expression, group], scope)


def _pi(node: exp.Pi, scope: Scope) -> Expr:
    return bind_call("pi", [])


def _alias(node: exp.Alias, scope: Scope) -> Expr:
    return _tr(node.this, scope)


_HANDLERS: dict[type, Handler] = {
    exp.Column: _column, exp.Dot: _dot, exp.Literal: _literal, exp.Boolean: _boolean,
    exp.Null: _null, exp.Interval: _interval, exp.ByteString: _string_literal,
    exp.RawString: _string_literal, exp.National: _string_literal,
    exp.HexString: _hex_literal, exp.Paren: _paren, exp.Alias: _alias,
    exp.Neg: _neg, exp.Not: _not, exp.Is: _is, exp.Between: _between, exp.In: _in,
    exp.Like: _like, exp.ILike: _like, exp.Escape: _escape,
    exp.RegexpLike: _regexp_like, exp.RegexpILike: _regexp_like,
    exp.Case: _case, exp.If: _if, exp.Coalesce: _variadic("coalesce"),
    exp.Greatest: _variadic("greatest"), exp.Least: _variadic("least"),
    exp.Cast: _cast, exp.TryCast: _cast, exp.Anonymous: _anonymous,
    exp.Substring: _substring, exp.Concat: _concat, exp.ConcatWs: _concat, exp.Trim: _trim,
    exp.RegexpReplace: _regexp_replace, exp.Pad: _pad, exp.Round: _round, exp.Trunc: _round,
    exp.Log: _log, exp.Floor: _floor, exp.Ceil: _floor, exp.Rand: _rand, exp.Pi: _pi,
    exp.TimestampTrunc: _date_trunc, exp.DateTrunc: _date_trunc, exp.Extract: _extract,
    exp.StrToTime: _str_to_time, exp.StrToDate: _str_to_time, exp.TimeToStr: _time_to_str,
    exp.UnixToTime: _unix_to_time, exp.CurrentTimestamp: _now("now"),
    exp.Localtimestamp: _now("localtimestamp"),
    exp.CurrentDate: _now("current_date"),
    exp.JSONExtract: _json, exp.JSONExtractScalar: _json, exp.JSONBExtract: _json,
    exp.JSONBExtractScalar: _json, exp.Bracket: _bracket, exp.Array: _array,
    exp.ArraySize: _array_size, exp.Chr: _chr, exp.StrPosition: _str_position,
    exp.RegexpExtract: _regexp_extract,
    exp.Year: _date_part("year"), exp.Month: _date_part("month"),
    exp.DayOfMonth: _date_part("day"), exp.Hour: _date_part("hour"),
    exp.Minute: _date_part("minute"), exp.Quarter: _date_part("quarter"),
    exp.Week: _date_part("week"), exp.DayOfYear: _date_part("doy"),
    exp.DayOfWeek: _day_of_week, exp.Second: _second, exp.CurrentTime: _now("current_time"),
}
_HANDLERS.update({cls: _binary for cls in _BINARY})

#: typed sqlglot function nodes that map 1:1 onto a registered function
_SIMPLE: dict[type, tuple[str, list[str]]] = {
    exp.Upper: ("upper", ["this"]), exp.Lower: ("lower", ["this"]),
    exp.Length: ("length", ["this"]), exp.BitLength: ("bit_length", ["this"]),
    exp.Reverse: ("reverse", ["this"]), exp.Initcap: ("initcap", ["this"]),
    exp.Repeat: ("repeat", ["this", "times"]),
    exp.Replace: ("replace", ["this", "expression", "replacement"]),
    exp.SplitPart: ("split_part", ["this", "delimiter", "part_index"]),
    exp.StartsWith: ("starts_with", ["this", "expression"]),
    exp.EndsWith: ("ends_with", ["this", "expression"]),
    exp.Left: ("left", ["this", "expression"]), exp.Right: ("right", ["this", "expression"]),
    exp.MD5: ("md5", ["this"]), exp.Ascii: ("ascii", ["this"]),
    exp.Translate: ("translate", ["this", "from_", "to"]),
    exp.StringToArray: ("string_to_array", ["this", "expression"]),
    exp.Nullif: ("nullif", ["this", "expression"]),
    exp.Abs: ("abs", ["this"]), exp.Sign: ("sign", ["this"]), exp.Sqrt: ("sqrt", ["this"]),
    exp.Cbrt: ("cbrt", ["this"]), exp.Exp: ("exp", ["this"]), exp.Ln: ("ln", ["this"]),
    exp.Pow: ("power", ["this", "expression"]), exp.Sin: ("sin", ["this"]),
    exp.Cos: ("cos", ["this"]), exp.Tan: ("tan", ["this"]), exp.Asin: ("asin", ["this"]),
    exp.Acos: ("acos", ["this"]), exp.Atan: ("atan", ["this", "expression"]),
    exp.Atan2: ("atan2", ["this", "expression"]), exp.Degrees: ("degrees", ["this"]),
    exp.Radians: ("radians", ["this"]),
    exp.TimestampFromParts: ("make_timestamp", ["year", "month", "day", "hour", "min", "sec"]),
    exp.DateFromParts: ("make_date", ["year", "month", "day"]),
}


# ---- constant folding ---------------------------------------------------------------------------

_FOLDABLE = {"cast", "try_cast", "negate"}


#: marks a Call whose arguments ``_fold`` has folded (each translated node's result is
#: folded once: its arguments were folded when they were translated)
_FOLDED = "_folded"


def _fold(expr: Expr) -> Expr:
    """Casts (and negations) of literals become literals now, so binders see constant
    patterns and units, and an invalid literal fails when planning."""
    if not isinstance(expr, Call):
        return expr
    if _FOLDED in expr.__dict__:
        return expr
    args = tuple(_fold(a) for a in expr.args)
    if any(a is not b for a, b in zip(args, expr.args)):
        expr = Call(expr.dtype, expr.func, args, expr.options)
    if expr.func in _FOLDABLE and all(isinstance(a, Literal) for a in args):
        value = args[0].scalar()
        try:
            if expr.func == "negate":
                folded = builtin("negate").kernel([value], expr)
            elif expr.func == "try_cast":
                folded = try_cast_array(value, expr.dtype)
            else:
                folded = cast_array(value, expr.dtype)
        except RuntimeFailure as e:
            raise PlanError(e.message, hint=e.hint) from None
        return Literal(expr.dtype, folded.as_py())
    object.__setattr__(expr, _FOLDED, True)
    return expr


__all__ = ["translate", "number_literal", "Column"]


def quantified_error(node: exp.Expression) -> PlanError:
    """The refusal of ``x op ANY / SOME / ALL (SELECT …)`` but for IN's two spellings."""
    ln, col = position(node)
    return PlanError(f"{node.key.upper()} (SELECT …) is only supported as x = ANY (…) or "
                     f"x <> ALL (…), a condition of WHERE AND-ed with the others", line=ln,
                     col=col, hint="x IN (SELECT …) / x NOT IN (SELECT …); to compare with "
                                   "the subquery's min() or max(), mind an empty subquery")
