"""Column expressions of the frame API: ``col("price") * 2``, ``col("s").upper()``,
``col("price").max().alias("top")``.

An ``Expr`` wraps a sqlglot syntax tree. The frame API renders queries as SQL text with quoted
identifiers and plans them with the SQL planner, so an expression means exactly what the same
SQL means (types, NULLs, errors). Every scalar function of the SQL surface is a method, made
from the function registry (the expression is the first argument):

>>> from caudal import col, lit
>>> (col("price") * 2 + 1).sql()
'("price" * 2) + 1'
>>> col("s").upper().alias("u").sql()
'UPPER("s") AS "u"'
>>> col("price").max().output_name
'price'
"""

from __future__ import annotations

import datetime as dt
import decimal
import math
from typing import Any

from sqlglot import exp

from caudal.errors import PlanError


def _dialect():
    from caudal.sql.dialect import Caudal

    return Caudal


#: marks a node whose Polars meaning depends on its operand's type, which only the frame
#: step planning it knows: ``meta[TYPED]`` names its rewrite in ``POLARS_TYPED``, which
#: ``Frame._typed`` calls with the type of the node's ``this`` (left as SQL's when unknown)
TYPED = "caudal_typed"

#: Polars' expression namespaces, which caudal does not have (see Expr.__getattr__)
_NAMESPACES = frozenset({"str", "dt", "list", "arr", "struct", "name", "cat", "bin", "meta"})


class Expr:
    """A column expression. ``is_agg`` marks an aggregate (only valid inside ``agg``)."""

    __slots__ = ("node", "name", "is_agg", "udfs", "_aliased")

    def __init__(self, node: exp.Expression, name: str | None = None, is_agg: bool = False,
                 udfs: tuple = ()):
        self.node = node
        #: the output column name (Polars' rule: the alias, else the first column read)
        self.name = name
        self.is_agg = is_agg
        #: the Python UDFs (and UDAFs) this expression calls
        self.udfs = udfs
        #: whether ``name`` was given by alias() (else it is only Polars' default name)
        self._aliased = False

    __hash__ = None  # == builds an expression

    # -- rendering -------------------------------------------------------------------------

    def sql(self, aliased: bool = True) -> str:
        """The SQL text of the expression (with its alias when it has one)."""
        node = self.node
        if aliased and self.name is not None and self._aliased:
            node = exp.alias_(node.copy(), self.name, quoted=True)
        return node.sql(dialect=_dialect())

    @property
    def output_name(self) -> str:
        return self.name if self.name is not None else "literal"

    def __repr__(self) -> str:
        return f"<caudal expression {self.sql()}>"

    def __getattr__(self, name: str):
        """Polars' namespaces (``.str``, ``.dt``…) are not here: their functions are methods
        of the expression itself, SQL's names (a plain AttributeError left a Polars user
        guessing)."""
        if name in _NAMESPACES:
            raise AttributeError(
                f"caudal expressions have no .{name} namespace: string, date and list "
                f"functions are methods of the expression, by their SQL names "
                f"(col('s').upper(), col('s').regexp_like('a.'), col('ts').date_part('year')"
                f"); `caudal functions` lists them")
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def __bool__(self):
        raise TypeError("a caudal expression has no truth value: combine conditions with "
                        "& and |, not `and`/`or`")

    # -- naming and types -------------------------------------------------------------------

    def alias(self, name: str) -> Expr:
        """Name the result column.

        >>> col("price").alias("p").sql()
        '"price" AS "p"'
        """
        out = Expr(self.node, name, self.is_agg, self.udfs)
        out._aliased = True
        return out

    def _derive(self, node: exp.Expression, *others: Any, is_agg: bool | None = None) -> Expr:
        exprs = [o for o in others if isinstance(o, Expr)]
        udfs = tuple(dict.fromkeys(self.udfs + tuple(u for o in exprs for u in o.udfs)))
        agg = self.is_agg or any(o.is_agg for o in exprs) if is_agg is None else is_agg
        name = self.name
        if name is None:
            name = next((o.name for o in exprs if o.name is not None), None)
        out = Expr(node, name, agg, udfs)
        out._aliased = self._aliased
        return out

    def cast(self, dtype: Any) -> Expr:
        """CAST to a SQL type name (``"DOUBLE"``, ``"DECIMAL(10,2)"``) or a pyarrow type.

        >>> col("x").cast("BIGINT").sql()
        'CAST("x" AS BIGINT)'
        """
        if not isinstance(dtype, str):
            from caudal.types import sql_name

            dtype = sql_name(_arrow_type(dtype))
        try:
            to = exp.DataType.build(dtype, dialect=_dialect())
        except Exception:
            raise PlanError(f"cast(): unknown type {dtype!r}",
                            hint="a SQL type such as BIGINT, DOUBLE, TEXT, TIMESTAMP") from None
        node = exp.Cast(this=self.node.copy(), to=to)
        if to.is_type(*exp.DataType.INTEGER_TYPES):
            node.meta[TYPED] = "cast"  # a float operand is truncated (_truncating_cast)
        return self._derive(node)

    # -- operators --------------------------------------------------------------------------

    def _binary(self, cls, other, reverse=False) -> Expr:
        other = to_expr(other)
        left, right = (other, self) if reverse else (self, other)
        node = cls(this=_paren(left.node), expression=_paren(right.node))
        return self._derive(node, other)

    def __add__(self, o): return self._binary(exp.Add, o)
    def __radd__(self, o): return self._binary(exp.Add, o, True)
    def __sub__(self, o): return self._binary(exp.Sub, o)
    def __rsub__(self, o): return self._binary(exp.Sub, o, True)
    def __mul__(self, o): return self._binary(exp.Mul, o)
    def __rmul__(self, o): return self._binary(exp.Mul, o, True)
    def __truediv__(self, o): return self._true_divide(o)
    def __rtruediv__(self, o): return self._true_divide(o, True)
    def __pow__(self, o): return self._power(o)
    def __rpow__(self, o): return self._power(o, True)
    def __mod__(self, o): return self._floored_mod(o)
    def __rmod__(self, o): return self._floored_mod(o, True)
    def __eq__(self, o): return self._binary(exp.EQ, o)  # type: ignore[override]
    def __ne__(self, o): return self._binary(exp.NEQ, o)  # type: ignore[override]
    def __lt__(self, o): return self._binary(exp.LT, o)
    def __le__(self, o): return self._binary(exp.LTE, o)
    def __gt__(self, o): return self._binary(exp.GT, o)
    def __ge__(self, o): return self._binary(exp.GTE, o)
    def __and__(self, o): return self._binary(exp.And, o)
    def __rand__(self, o): return self._binary(exp.And, o, True)
    def __or__(self, o): return self._binary(exp.Or, o)
    def __ror__(self, o): return self._binary(exp.Or, o, True)

    # Polars' method equivalents of the operators (its operators page)
    def add(self, o): return self + o
    def sub(self, o): return self - o
    def mul(self, o): return self * o
    def truediv(self, o): return self / o
    def floordiv(self, o): return self // o
    def eq(self, o): return self == o
    def ne(self, o): return self != o
    def lt(self, o): return self < o
    def le(self, o): return self <= o
    def gt(self, o): return self > o
    def ge(self, o): return self >= o
    def and_(self, *o): return _chain(self, o, exp.And)
    def or_(self, *o): return _chain(self, o, exp.Or)
    def not_(self): return ~self
    def neg(self): return -self

    def eq_missing(self, o) -> Expr:
        """Equality where NULL equals NULL (SQL's IS NOT DISTINCT FROM), as Polars'."""
        return self._binary(exp.NullSafeEQ, o)

    def ne_missing(self, o) -> Expr:
        """Inequality where NULL equals NULL (SQL's IS DISTINCT FROM), as Polars'."""
        return self._binary(exp.NullSafeNEQ, o)

    def __invert__(self) -> Expr:
        return self._derive(exp.Not(this=_paren(self.node)))

    def __neg__(self) -> Expr:
        return self._derive(exp.Neg(this=_paren(self.node)))

    def __floordiv__(self, o): return self._floor_divide(o)
    def __rfloordiv__(self, o): return self._floor_divide(o, True)

    def _signs_differ(self, x: Expr, y: Expr) -> exp.Expression:
        """``x % y <> 0 AND (x % y < 0) <> (y < 0)``: where SQL's truncated remainder and
        quotient are one off from Python's floored ones."""
        rem = exp.Mod(this=_paren(x.node), expression=_paren(y.node))
        zero = exp.Literal.number(0)
        differ = exp.NEQ(this=exp.paren(exp.LT(this=exp.paren(rem.copy()), expression=zero)),
                         expression=exp.paren(exp.LT(this=_paren(y.node.copy()),
                                                     expression=zero.copy())))
        return exp.And(this=exp.NEQ(this=exp.paren(rem), expression=zero.copy()),
                       expression=differ)

    def _read_once(self, other: Expr, symbol: str,
                   why: str = "to floor SQL's truncating result", use: str | None = None
                   ) -> None:
        """``//`` and ``%`` read each operand several times (SQL's truncating ``/`` and ``%``
        made floored), as do ``/``, ``sqrt`` and ``log`` (checking for 0 or a negative): an
        operand giving another value at each call (``random()``, a Python UDF, the
        processing time) would make the parts disagree, so it is refused. ``symbol`` names
        the operation, ``why`` says why it reads twice, ``use`` the call to write instead."""
        from caudal.plan.functions.python_udf import PythonUdf
        from caudal.plan.functions.registry import builtin

        said = f"x {symbol} y" if use is None else symbol
        use = use or f"x {symbol} col('d')"
        udfs = {u.name.lower() for e in (self, other) for u in e.udfs if isinstance(u, PythonUdf)}
        for e in (self, other):
            for node in e.node.walk():
                if not isinstance(node, exp.Func):
                    continue
                name = (node.name if isinstance(node, exp.Anonymous)
                        else node.sql(dialect=_dialect()).split("(", 1)[0]).lower()
                fn = builtin(name)
                if name in udfs or (fn is not None and fn.volatile):
                    raise PlanError(
                        f"{said}: an operand calls {name}(), which gives another value at "
                        f"each call, and {symbol} reads its operands more than once ({why}), "
                        f"so the parts would disagree",
                        hint=f"compute the operand into a column first: .with_columns(d=…), "
                             f"then {use}")

    def _true_divide(self, other, reverse=False) -> Expr:
        """``x / y`` as Polars divides: as floats, and by zero (or -0.0) to +-infinity, NaN
        for 0 / 0, where SQL's division stops the job. A divisor that is a number other
        than 0 needs no check; another is read twice (``_read_once``).

        >>> (col("x") / col("y")).sql().startswith('CASE WHEN "y" = 0 THEN "x" * CAST(')
        True
        >>> "CASE" in (col("x") / 2).sql()
        False
        """
        other = to_expr(other)
        x, y = (other, self) if reverse else (self, other)
        quotient = exp.Div(this=_paren(x.node), expression=_paren(y.node))
        if _nonzero_number(y.node):
            return self._derive(quotient, other)
        self._read_once(other, "/", "to check for a zero divisor")
        infinity = _signed_infinity(y.node)
        by_zero = exp.EQ(this=_paren(y.node.copy()), expression=exp.Literal.number(0))
        node = exp.Case(ifs=[exp.If(this=by_zero, true=exp.Mul(this=_paren(x.node.copy()),
                                                              expression=infinity))],
                        default=quotient)
        return self._derive(node, other)

    def _floor_divide(self, other, reverse=False) -> Expr:
        """``x // y`` as Python and Polars compute it: integers stay integers, exactly (SQL's
        ``/`` truncates them; one is taken off where the signs differ), floats are
        ``floor(x / y)``. (FLOOR of a DOUBLE division lost digits past 2**53.)

        >>> (col("x") // 2).sql()
        'FLOOR("x" / 2) - CASE WHEN FLOOR("x" / 2) = "x" / 2 AND ("x" % 2) <> 0 AND (("x" % 2) < 0) <> (2 < 0) THEN 1 ELSE 0 END'
        """
        other = to_expr(other)
        self._read_once(other, "//")
        x, y = (other, self) if reverse else (self, other)
        quotient = exp.Div(this=_paren(x.node), expression=_paren(y.node), typed=True)
        floor = exp.Floor(this=quotient)
        whole = exp.EQ(this=floor.copy(), expression=quotient.copy())
        off = exp.Case(ifs=[exp.If(this=exp.And(this=whole, expression=self._signs_differ(x, y)),
                                   true=exp.Literal.number(1))],
                       default=exp.Literal.number(0))
        return self._derive(_zero_checked(exp.Sub(this=floor, expression=off), x, y, "//"),
                            other)

    def _floored_mod(self, other, reverse=False) -> Expr:
        """``x % y`` as Python and Polars compute it, the sign of ``y`` (``-7 % 3`` is 2), to
        pair with ``//``: SQL's ``%`` keeps the sign of ``x`` (-1). The truncated remainder
        gets ``y`` added where the two signs differ, which cannot overflow (the sum is
        smaller than ``y``).

        >>> (col("x") % 3).sql()
        'CASE WHEN ("x" % 3) <> 0 AND (("x" % 3) < 0) <> (3 < 0) THEN ("x" % 3) + 3 ELSE "x" % 3 END'
        """
        other = to_expr(other)
        self._read_once(other, "%")
        x, y = (other, self) if reverse else (self, other)
        rem = exp.Mod(this=_paren(x.node), expression=_paren(y.node))
        node = exp.Case(ifs=[exp.If(this=self._signs_differ(x, y),
                                    true=exp.Add(this=exp.paren(rem.copy()),
                                                 expression=_paren(y.node.copy())))],
                        default=rem)
        return self._derive(_zero_checked(node, x, y, "%"), other)

    # -- Polars-named predicates ------------------------------------------------------------

    def is_null(self) -> Expr:
        return self._derive(exp.Is(this=_paren(self.node), expression=exp.Null()))

    def is_not_null(self) -> Expr:
        return ~self.is_null()

    def is_in(self, values, *, nulls_equal: bool = False) -> Expr:
        """Whether the value is one of a list of Python values, as Polars answers it: a None
        in the list matches nothing (SQL's ``x IN (1, NULL)`` is NULL, not false, for
        every other x, so ``~is_in`` dropped those rows) unless ``nulls_equal=True``, where
        it matches a NULL x; an empty list is false. A NULL x is NULL (``nulls_equal``:
        false, or true when None is listed).

        >>> col("k").is_in([1, 2, None]).sql()
        '"k" IN (1, 2)'
        """
        if isinstance(values, (Expr, str)) or not hasattr(values, "__iter__"):
            raise PlanError(f"is_in() takes a list of values, got {type(values).__name__}",
                            hint="e.g. col('k').is_in([1, 2]); to match a column, join")
        values = list(values)
        items = [to_expr(v).node for v in values if v is not None]
        x = _paren(self.node)
        found: exp.Expression = (exp.In(this=x, expressions=items) if items
                                 else exp.Boolean(this=False))
        if nulls_equal or not items:
            if_null = exp.Boolean(this=len(items) < len(values)) if nulls_equal else exp.Null()
            found = exp.Case(ifs=[exp.If(this=exp.Is(this=x.copy(), expression=exp.Null()),
                                         true=if_null)], default=found)
        return self._derive(found)

    def is_between(self, lower, upper, closed: str = "both") -> Expr:
        """``lower <= x <= upper`` (``closed``: "both", "left", "right" or "none", as in
        Polars); a string bound is a column name, as in Polars."""
        lo, hi = _polars_input(lower), _polars_input(upper)
        x = _paren(self.node)
        if closed == "both":
            node: exp.Expression = exp.Between(this=x, low=lo.node, high=hi.node)
        elif closed in ("left", "right", "none"):
            low = exp.GTE if closed == "left" else exp.GT
            high = exp.LTE if closed == "right" else exp.LT
            node = exp.And(this=low(this=x, expression=_paren(lo.node)),
                           expression=high(this=x.copy(), expression=_paren(hi.node)))
        else:
            raise PlanError(f"is_between(): closed = {closed!r}",
                            hint="accepted: both, left, right, none")
        return self._derive(node, lo, hi)

    def fill_null(self, value) -> Expr:
        return self._derive(exp.Coalesce(this=self.node, expressions=[to_expr(value).node]),
                            value)

    def replace(self, old: Any, new: Any = ...) -> Expr:
        """Polars' ``replace``: whole values equal to ``old`` become ``new`` (a value, a list
        of values with a list of as many replacements or one, or a dict of old -> new), the
        others stay. Not SQL's ``replace(s, from, to)`` of substrings (the method this name
        had, which changed "banana" where Polars leaves it): that is
        ``cd.call("replace", col("s"), "a", "x")``.

        >>> col("k").replace({1: 10, None: 0}).sql()
        'CASE WHEN "k" = 1 THEN 10 WHEN "k" IS NULL THEN 0 ELSE "k" END'
        """
        if new is ...:
            if not isinstance(old, dict):
                raise PlanError("replace(): give old and new values, or a dict of old -> new",
                                hint="e.g. col('k').replace(1, 10), "
                                     "col('k').replace({1: 10, 2: 20})")
            pairs = list(old.items())
        elif isinstance(old, (list, tuple)):
            news = list(new) if isinstance(new, (list, tuple)) else [new] * len(old)
            if len(news) != len(old):
                raise PlanError(f"replace(): {len(old)} old values and {len(news)} new ones")
            pairs = list(zip(old, news))
        else:
            pairs = [(old, new)]
        if not pairs:
            return self
        x = _paren(self.node)
        ifs, parts = [], []
        for o, n in pairs:
            n = to_expr(n)
            parts.append(n)
            cond = (exp.Is(this=x.copy(), expression=exp.Null()) if o is None
                    else exp.EQ(this=x.copy(), expression=_paren(to_expr(o).node)))
            ifs.append(exp.If(this=cond, true=n.node))
        return self._derive(exp.Case(ifs=ifs, default=self.node.copy()), *parts)

    def round(self, decimals: int = 0, mode: str = "half_to_even") -> Expr:
        """Round to ``decimals`` digits as Polars' ``round``: ties to even by default, or
        ``mode="half_away_from_zero"``; a float is scaled by 10^decimals, rounded and
        divided back (SQL's ``round(x, d)``, which this name called, rounds ties away from
        zero, deciding them on the exact value: 0.125 -> 0.13, 2.675 -> 2.67, where Polars
        gives 0.12 and 2.68). An integer stays as it is."""
        if not isinstance(decimals, int) or isinstance(decimals, bool) or decimals < 0:
            raise PlanError(f"round(): decimals is a number of digits >= 0, got {decimals!r}")
        if mode not in ("half_to_even", "half_away_from_zero"):
            raise PlanError(f"round(): mode = {mode!r}",
                            hint="accepted: half_to_even, half_away_from_zero")
        node = exp.Round(this=self.node.copy(), decimals=exp.Literal.number(decimals))
        node.meta[TYPED] = "round"
        node.meta["round_mode"] = mode
        return self._derive(node)

    def mod(self, other: Any) -> Expr:
        """``x % y`` (Polars' ``mod``: the sign of the divisor); SQL's truncated ``mod``,
        which this name called, is ``cd.call("mod", x, y)``."""
        return self._floored_mod(other)

    def log(self, base: Any = math.e) -> Expr:
        """The logarithm to ``base``, natural by default, as Polars' ``log`` (SQL's
        ``log(x)``, which this name called, is base 10).

        >>> print(col("x").log().sql())
        CASE WHEN "x" < 0 THEN CAST('NaN' AS DOUBLE PRECISION) WHEN "x" = 0 THEN CAST('-Infinity' AS DOUBLE PRECISION) ELSE LN("x") END
        >>> "LOG(2, " in col("x").log(2).sql()
        True
        """
        if not isinstance(base, Expr) and base == math.e:
            return self._outside_domain(exp.Ln(this=self.node.copy()), "log()", zero=True)
        if not isinstance(base, Expr) and base == 10:
            return self._outside_domain(exp.Anonymous(this="LOG10", expressions=[
                self.node.copy()]), "log10()", zero=True)
        b = to_expr(base)
        return self._outside_domain(exp.Log(this=b.node, expression=self.node.copy()),
                                    "log()", zero=True, others=(b,))

    def log10(self) -> Expr:
        """The logarithm to base 10 (-infinity of 0, NaN of a negative, as Polars)."""
        return self.log(10)

    def sqrt(self) -> Expr:
        """The square root; NaN of a negative, as Polars (SQL's sqrt stops the job)."""
        return self._outside_domain(exp.Sqrt(this=self.node.copy()), "sqrt()")

    def _power(self, other, reverse=False) -> Expr:
        """``x ** y`` as Polars: NaN for a negative x to a non-integer y, +-infinity for 0
        to a negative y (the sign of ``0 ** -y``'s zero), where SQL's power() stops the job.
        A constant y that is a whole number >= 0 needs no check; otherwise both operands
        are read twice (``_read_once``)."""
        other = to_expr(other)
        x, y = (other, self) if reverse else (self, other)
        power = exp.Pow(this=_paren(x.node), expression=_paren(y.node))
        if _whole_nonnegative(y.node):
            return self._derive(power, other)
        self._read_once(other, "**", "to check for a negative or zero base")
        xs, ys = _paren(x.node.copy()), _paren(y.node.copy())
        zero = exp.Literal.number(0)
        fractional = exp.NEQ(this=ys.copy(), expression=exp.Floor(this=ys.copy()))
        # 0 ** -y: the zero 0 ** y would be, inverted (-0.0 to an odd power: -infinity)
        inverse = exp.Pow(this=xs.copy(), expression=exp.Neg(this=ys.copy()))
        node = exp.Case(ifs=[
            exp.If(this=exp.And(this=exp.LT(this=xs.copy(), expression=zero),
                                expression=fractional),
                   true=exp.Cast(this=exp.Literal.string("NaN"),
                                 to=exp.DataType.build("DOUBLE"))),
            exp.If(this=exp.And(this=exp.EQ(this=xs.copy(), expression=zero.copy()),
                                expression=exp.LT(this=ys.copy(), expression=zero.copy())),
                   true=_signed_infinity(inverse))], default=power)
        return self._derive(node, other)

    def _outside_domain(self, node: exp.Expression, what: str, zero: bool = False,
                        others: tuple = ()) -> Expr:
        """``node`` (a function of this value) as Polars computes it where SQL's function
        stops the job: NaN for a negative value, -infinity for 0 when ``zero`` (a log). The
        value is read twice, so one of another value at each call is refused."""
        self._read_once(self, what, "to check for 0 or a negative value",
                        f"col('d').{what}")

        def double(text: str) -> exp.Expression:
            return exp.Cast(this=exp.Literal.string(text), to=exp.DataType.build("DOUBLE"))

        x = _paren(self.node.copy())
        ifs = [exp.If(this=exp.LT(this=x, expression=exp.Literal.number(0)),
                      true=double("NaN"))]
        if zero:
            ifs.append(exp.If(this=exp.EQ(this=x.copy(), expression=exp.Literal.number(0)),
                              true=double("-Infinity")))
        return self._derive(exp.Case(ifs=ifs, default=node), *others)

    def like(self, pattern: str) -> Expr:
        return self._derive(exp.Like(this=_paren(self.node), expression=lit(pattern).node))

    # -- aggregates (valid inside group_by(...).agg(...)) -----------------------------------

    def _agg(self, node: exp.Expression) -> Expr:
        if self.is_agg:
            raise PlanError(f"an aggregate of an aggregate ({self.sql(False)}) is not allowed",
                            hint="aggregate columns, then aggregate the result in another "
                                 "group_by")
        return self._derive(node, is_agg=True)

    def sum(self) -> Expr:
        return self._agg(exp.Sum(this=self.node))

    def max(self) -> Expr:
        """The largest value; NaN only when every value is NaN, as Polars' ``max`` (SQL's
        MAX ranks NaN above every number: see ``_max_without_nan``)."""
        node = exp.Max(this=self.node)
        node.meta[TYPED] = "max"
        return self._agg(node)

    def min(self) -> Expr:
        return self._agg(exp.Min(this=self.node))

    def mean(self) -> Expr:
        return self._agg(exp.Avg(this=self.node))

    avg = mean

    def count(self) -> Expr:
        """Non-NULL values (SQL's ``count(x)``)."""
        return self._agg(exp.Count(this=self.node))

    def n_unique(self) -> Expr:
        """Distinct values, NULL counted as one value as Polars counts it (SQL's
        ``count(DISTINCT x)`` leaves NULL out).

        >>> col("k").n_unique().sql()
        'COUNT(DISTINCT "k") + CASE WHEN COUNT(*) > COUNT("k") THEN 1 ELSE 0 END'
        """
        nulls = exp.Case(ifs=[exp.If(this=exp.GT(this=exp.Count(this=exp.Star()),
                                                 expression=exp.Count(this=self.node.copy())),
                                     true=exp.Literal.number(1))],
                         default=exp.Literal.number(0))
        return self._agg(exp.Add(this=exp.Count(this=exp.Distinct(expressions=[self.node])),
                                 expression=nulls))

    def approx_n_unique(self) -> Expr:
        return self._agg(exp.Anonymous(this="approx_count_distinct", expressions=[self.node]))

    def std(self, ddof: int = 1) -> Expr:
        """The standard deviation, of a sample (``ddof=1``, Polars' default) or of the
        population (``ddof=0``)."""
        return self._agg(exp.Anonymous(this=_by_ddof("std", ddof), expressions=[self.node]))

    def var(self, ddof: int = 1) -> Expr:
        """The variance, of a sample (``ddof=1``) or of the population (``ddof=0``)."""
        return self._agg(exp.Anonymous(this=_by_ddof("var", ddof), expressions=[self.node]))

    def first(self) -> Expr:
        """The value of the group's first row by event time, NULL if that row's is, as
        Polars' ``first`` (SQL's ``first_value`` passes NULLs over: see ``_keeping_null``)."""
        return self._agg(_keeping_null("first_value", self.node))

    def last(self) -> Expr:
        """The value of the group's last row by event time, NULL if that row's is."""
        return self._agg(_keeping_null("last_value", self.node))

    def implode(self) -> Expr:
        return self._agg(exp.Anonymous(this="array_agg", expressions=[self.node]))

    def all(self) -> Expr:
        """Whether every non-NULL value is true: true when there is none, as Polars'
        ``all`` (SQL's ``bool_and`` of only NULLs is NULL)."""
        return self._agg(exp.Coalesce(
            this=exp.Anonymous(this="bool_and", expressions=[self.node]),
            expressions=[exp.Boolean(this=True)]))

    def any(self) -> Expr:
        """Whether a value is true: false when every value is NULL, as Polars' ``any``."""
        return self._agg(exp.Coalesce(
            this=exp.Anonymous(this="bool_or", expressions=[self.node]),
            expressions=[exp.Boolean(this=False)]))

    def over(self, partition_by: Any = None, *, order_by: Any = None,
             rows: int | str | None = None, range: Any = None) -> Expr:
        """This aggregate as a running aggregate per ``partition_by`` key (a column or a
        list), in ``order_by`` order: each row gets the aggregate of the rows up to it: the
        last ``rows`` + 1 rows, those within ``range`` (e.g. ``"1h"``) before it, or every
        one (``rows="unbounded"``; ``range="unbounded"`` takes the row's peers too). SQL's
        ``agg(x) OVER (PARTITION BY … ORDER BY … ROWS|RANGE …)``: over an append-only
        input it orders by the event time column, each row emitted once the watermark
        passes it; over an updating one by anything (a changelog). Without ``order_by``,
        over an updating input, each row gets its partition's aggregate, as in Polars.

        The frame must be given with ``order_by``: Polars' ``sum().over(k, order_by=t)`` is
        the partition's total, not a running sum, and a stream knows a total only at its
        end; so caudal does not read that call its own way.

        >>> (col("price").sum().over("auction", order_by="ts", rows=2)).sql(False)
        'SUM("price") OVER (PARTITION BY "auction" ORDER BY "ts" ROWS BETWEEN 2 PRECEDING \
AND CURRENT ROW)'
        """
        if not self.is_agg:
            raise PlanError(f"over(): {self.sql(False)} is not an aggregate",
                            hint="e.g. col('price').sum().over('auction', order_by='ts', "
                                 "rows='unbounded')")
        if rows is not None and range is not None:
            raise PlanError("over(): give rows= or range=, not both")
        if order_by is not None and rows is None and range is None:
            raise PlanError(
                "over(): with order_by, give the running frame: rows=n (this row and the n "
                "before), range='1h' or rows/range='unbounded' (every row up to this one)",
                hint="Polars' agg.over(keys, order_by=…) is each partition's total, which a "
                     "stream knows only at its end")

        def names(value: Any) -> list[str]:
            items = value if isinstance(value, (list, tuple)) else \
                ([] if value is None else [value])
            return [column_or_expr(v, "over()").sql(False) for v in items]

        spec = ""
        part, order = names(partition_by), names(order_by)
        if part:
            spec += "PARTITION BY " + ", ".join(part)
        if order:
            spec += (" " if spec else "") + "ORDER BY " + ", ".join(order)
        if rows is not None:
            if rows != "unbounded" and (not isinstance(rows, int) or rows < 0):
                raise PlanError(f"over(): rows= takes a count of preceding rows or "
                                f"'unbounded', got {rows!r}")
            spec += f" ROWS BETWEEN {str(rows).upper()} PRECEDING AND CURRENT ROW"
        elif range == "unbounded":
            spec += " RANGE BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW"
        elif range is not None:
            from caudal.frame.text import duration_us

            size = interval(duration_us(range, "over() range")).sql(dialect=_dialect())
            spec += f" RANGE BETWEEN {size} PRECEDING AND CURRENT ROW"
        window = exp.maybe_parse(f"SUM(x) OVER ({spec.strip()})", dialect=_dialect())
        udafs = {u.name.lower() for u in self.udfs}

        def windowed(node: exp.Expression) -> exp.Expression:
            # each aggregate call gets the window, also inside what first(), all() or
            # n_unique() write around their aggregates (the whole CASE OVER (…) did not
            # parse); the window's aggregate keeps SQL's meaning (no type rewrite)
            from caudal.plan.aggregates import canonical

            if isinstance(node, exp.AggFunc) or (isinstance(node, exp.Anonymous) and (
                    canonical(node.name.lower()) or node.name.lower() in udafs)):
                call = node.copy()
                call.meta.pop(TYPED, None)
                out = window.copy()
                out.set("this", call)
                return out
            return node

        return self._derive(self.node.copy().transform(windowed), is_agg=False)


def _chain(first: Expr, others: tuple, cls) -> Expr:
    out = first
    for o in others:
        out = out._binary(cls, o)
    return out


def _arrow_type(dtype: Any):
    """A pyarrow type, also for a Polars dtype (``pl.Int64``, ``pl.Datetime("us")``) or a
    Python type (``int``, ``float``, ``str``, ``bool``), as Polars' ``cast`` takes them."""
    import pyarrow as pa

    if isinstance(dtype, pa.DataType):
        return dtype
    module = getattr(dtype, "__module__", "") or ""
    if module.startswith("polars") or dtype in (int, float, str, bool):
        import polars as pl

        if not module.startswith("polars"):
            dtype = pl.DataType.from_python(dtype)
        return pl.Series([], dtype=dtype).to_arrow().type
    raise PlanError(f"cast(): unknown type {dtype!r}",
                    hint="a SQL type such as BIGINT, DOUBLE, TEXT, TIMESTAMP; a pyarrow or "
                         "Polars type")


def _keeping_null(function: str, x: exp.Expression) -> exp.Expression:
    """``first_value``/``last_value`` as Polars' ``first``/``last``: NULL when the chosen
    row's value is NULL. SQL's pass NULLs over (the first of NULL, 5 was 5; Polars: NULL);
    ``x IS NULL`` is never NULL, so its first_value says whether the first row's x is."""
    return exp.Case(ifs=[exp.If(this=exp.Anonymous(this=function, expressions=[
        exp.Is(this=_paren(x.copy()), expression=exp.Null())]), true=exp.Null())],
        default=exp.Anonymous(this=function, expressions=[x.copy()]))


def _by_ddof(what: str, ddof: int) -> str:
    if ddof not in (0, 1) or isinstance(ddof, bool):
        raise PlanError(f"{what}(): ddof = {ddof!r}",
                        hint="accepted: 1 (a sample, the default) or 0 (the population)")
    return {("std", 1): "stddev_samp", ("std", 0): "stddev_pop",
            ("var", 1): "var_samp", ("var", 0): "var_pop"}[what, ddof]


def _truncating_cast(node: exp.Cast, type_of) -> exp.Expression:
    """Polars' cast of a float or decimal to an integer type truncates (2.7 -> 2, -7.5 -> -7)
    where SQL's CAST rounds (3, -8): TRUNC goes around such an operand."""
    operand = type_of(node.this)
    if operand is not None and (_is_float(operand) or _is_decimal(operand)):
        node.set("this", exp.Anonymous(this="TRUNC", expressions=[node.this]))
    return node


def _max_without_nan(node: exp.Max, type_of) -> exp.Expression:
    """Polars' ``max`` of floats passes NaN over unless every value is NaN; SQL's MAX ranks
    NaN above every number (the max of 1.0 and NaN was NaN, Polars 1.0). NaN is the only
    value above +infinity in SQL's order, so the max of the others comes first."""
    operand = type_of(node.this)
    if operand is None or not _is_float(operand):
        return node
    x = node.this
    inf = exp.Cast(this=exp.Literal.string("Infinity"), to=exp.DataType.build("DOUBLE"))
    others = exp.Case(ifs=[exp.If(this=exp.GT(this=_paren(x.copy()), expression=inf),
                                  true=exp.Null())], default=x.copy())
    return exp.Coalesce(this=exp.Max(this=others), expressions=[exp.Max(this=x.copy())])


def _polars_round(node: exp.Round, type_of) -> exp.Expression:
    """Polars' rounding: a float is x * 10^d rounded (ties to even or away from zero) and
    divided back, x itself where that is not finite; a decimal rounds exactly, ties to even
    by default. Other operands (integers) keep SQL's round."""
    x, d = node.this, int(node.args["decimals"].name)
    operand = type_of(x)
    if operand is None:
        return node
    even = node.meta["round_mode"] == "half_to_even"
    scale = exp.Literal.number(repr(10.0 ** d))

    def sql_round(value, digits=None):
        args = [value] + ([exp.Literal.number(digits)] if digits is not None else [])
        return exp.Anonymous(this="ROUND", expressions=args)

    if _is_float(operand):
        scaled = exp.Mul(this=_paren(x.copy()), expression=scale)
        # SQL's round of a float without digits takes ties to even, with 0 digits away
        rounded = exp.Div(this=sql_round(scaled, None if even else 0), expression=scale.copy())
        finite = exp.LT(this=exp.Abs(this=rounded.copy()),
                        expression=exp.Cast(this=exp.Literal.string("Infinity"),
                                            to=exp.DataType.build("DOUBLE")))
        out = exp.Case(ifs=[exp.If(this=finite, true=rounded)], default=x.copy())
        if operand.bit_width == 32:
            out = exp.Cast(this=out, to=exp.DataType.build("REAL"))
        return out
    if _is_decimal(operand) and even and operand.scale > d:
        # SQL's round takes a tie away from zero; a tie with an even digit before it goes
        # back to the truncated value
        cut = exp.Anonymous(this="TRUNC", expressions=[x.copy(), exp.Literal.number(d)])
        half = exp.Mul(this=exp.Abs(this=exp.Sub(this=_paren(x.copy()), expression=cut)),
                       expression=exp.Literal.number(10 ** d))
        digit = exp.Anonymous(this="TRUNC", expressions=[exp.Mul(
            this=_paren(x.copy()), expression=exp.Literal.number(10 ** d))])
        tie_to_even = exp.And(
            this=exp.EQ(this=half, expression=exp.Literal.number("0.5")),
            expression=exp.EQ(this=exp.Mod(this=digit, expression=exp.Literal.number(2)),
                              expression=exp.Literal.number(0)))
        return exp.Case(ifs=[exp.If(this=tie_to_even, true=cut.copy())],
                        default=sql_round(x.copy(), d))
    return sql_round(x.copy(), d)


def _zero_checked(node: exp.Expression, x: Expr, y: Expr, op: str) -> exp.Expression:
    """``node`` (x // y or x % y) marked for ``_by_zero``, unless y is a number other
    than 0."""
    if _nonzero_number(y.node):
        return node
    node.meta[TYPED] = "by_zero"
    node.meta["operands"] = (x.node.copy(), y.node.copy())
    node.meta["op"] = op
    return node


def _nonzero_number(node: exp.Expression) -> bool:
    """A number literal other than 0 (a divisor that needs no check)."""
    value = node.this if isinstance(node, exp.Neg) else node
    return isinstance(value, exp.Literal) and value.is_number and float(value.name) != 0


def _whole_nonnegative(node: exp.Expression) -> bool:
    """A number literal that is a whole number >= 0 (an exponent any base takes)."""
    return isinstance(node, exp.Literal) and node.is_number and \
        float(node.name) >= 0 and float(node.name).is_integer()


def _by_zero(node: exp.Expression, type_of) -> exp.Expression:
    """``x // y`` and ``x % y`` by zero as Polars: NULL for integers, and for floats
    +-infinity (``//``; NaN for 0) or NaN (``%``), where SQL's stop the job. Decimals keep
    SQL's."""
    x, y = node.meta["operands"]
    tx, ty = type_of(x), type_of(y)
    if tx is None or ty is None:
        return node
    # a Python float is a float to Polars, though SQL plans its literal as a DECIMAL
    import pyarrow as pa

    tx, ty = (pa.float64() if _float_literal(n) else t for n, t in ((x, tx), (y, ty)))
    if pa_is_integer(tx) and pa_is_integer(ty):
        zero: exp.Expression = exp.Null()
    elif (_is_float(tx) or _is_float(ty)) and not (_is_decimal(tx) or _is_decimal(ty)):
        # x times +-infinity or NaN: NULL where x is NULL, as Polars
        zero = exp.Mul(this=_paren(x.copy()), expression=(
            _signed_infinity(y) if node.meta["op"] == "//" else
            exp.Cast(this=exp.Literal.string("NaN"), to=exp.DataType.build("DOUBLE"))))
    else:
        return node
    divided = node.copy()  # a copy: node stays where it is until the frame replaces it
    divided.meta.pop(TYPED)
    return exp.Case(ifs=[exp.If(this=exp.EQ(this=_paren(y.copy()),
                                            expression=exp.Literal.number(0)), true=zero)],
                    default=divided)


def _float_literal(node: exp.Expression) -> bool:
    """A number literal written with a point or exponent (a Python float's ``lit``)."""
    value = node.this if isinstance(node, exp.Neg) else node
    return isinstance(value, exp.Literal) and value.is_number and \
        any(c in value.name for c in ".eE")


def _signed_infinity(y: exp.Expression) -> exp.Expression:
    """+infinity, or -infinity where ``y`` is a negative zero: x / y where y = 0 is
    x times this, as IEEE divides (NaN for x = 0)."""
    negative = exp.Like(this=exp.Cast(this=_paren(y.copy()), to=exp.DataType.build("TEXT")),
                        expression=exp.Literal.string("-%"))
    return exp.Cast(this=exp.Case(ifs=[exp.If(this=negative, true=exp.Literal.string(
        "-Infinity"))], default=exp.Literal.string("Infinity")),
        to=exp.DataType.build("DOUBLE"))


def pa_is_integer(t) -> bool:
    import pyarrow as pa

    return pa.types.is_integer(t)


def _is_float(t) -> bool:
    import pyarrow as pa

    return pa.types.is_floating(t)


def _is_decimal(t) -> bool:
    import pyarrow as pa

    return pa.types.is_decimal(t)


#: the rewrites of TYPED nodes, by their operand's type
POLARS_TYPED = {"cast": _truncating_cast, "max": _max_without_nan, "round": _polars_round,
                "by_zero": _by_zero}


def _polars_input(value: Any) -> Expr:
    """An argument as Polars parses it where it takes expressions (``when``, ``then``,
    ``otherwise``, ``is_between``'s bounds): a string names a column, other values are
    literals."""
    return col(value) if isinstance(value, str) else to_expr(value)


def _paren(node: exp.Expression) -> exp.Expression:
    if isinstance(node, (exp.Column, exp.Literal, exp.Paren, exp.Func, exp.Null,
                         exp.Boolean, exp.Cast)):
        return node
    return exp.Paren(this=node)


def call(name: str, *args: Any) -> Expr:
    """A call of any SQL scalar function by name (Python values become literals).

    >>> call("concat", col("a"), "-", col("b")).sql()
    'CONCAT("a", \\'-\\', "b")'
    """
    exprs = [to_expr(a) for a in args]
    node = exp.Anonymous(this=name, expressions=[e.node for e in exprs])
    # the Anonymous node renders NAME(…); reparsing the text gives SQL's own node
    node = exp.maybe_parse(node.sql(dialect=_dialect()), dialect=_dialect())
    if not exprs:
        return Expr(node, name.lower())
    first = exprs[0]
    out = first._derive(node, *exprs[1:])
    if first.name is None or isinstance(first.node, exp.Literal):
        out.name = next((e.name for e in exprs if e.name is not None), name.lower())
    return out


def col(name: str) -> Expr:
    """A column of the frame.

    >>> col("price").sql()
    '"price"'
    """
    if not isinstance(name, str):
        raise PlanError(f"col() takes a column name, got {type(name).__name__}")
    return Expr(exp.column(name, quoted=True), name)


def lit(value: Any) -> Expr:
    """A constant: None, bool, int, float, Decimal, str, datetime, date or timedelta.

    >>> lit("it's").sql()
    "'it''s'"
    >>> lit(dt.datetime(2026, 1, 2, 3, 4, 5)).sql()
    "CAST('2026-01-02 03:04:05' AS TIMESTAMP)"
    """
    if isinstance(value, Expr):
        return value
    if value is None:
        node: exp.Expression = exp.Null()
    elif isinstance(value, bool):
        node = exp.Boolean(this=value)
    elif isinstance(value, float) and (not math.isfinite(value) or
                                       (value == 0 and math.copysign(1, value) < 0)):
        # NaN and infinities have no number literal (their repr read as a column name);
        # -0.0's would be a DECIMAL 0, without its sign (x / -0.0 is -x * infinity)
        node = exp.Cast(this=exp.Literal.string(
            "NaN" if value != value else "-0.0" if value == 0 else
            "Infinity" if value > 0 else "-Infinity"), to=exp.DataType.build("DOUBLE"))
    elif isinstance(value, (int, float, decimal.Decimal)):
        node = exp.Literal.number(repr(value) if isinstance(value, float) else str(value))
        if isinstance(value, (int, float)) and value < 0:
            node = exp.Neg(this=exp.Literal.number(repr(-value) if isinstance(value, float)
                                                   else str(-value)))
    elif isinstance(value, str):
        node = exp.Literal.string(value)
    elif isinstance(value, dt.datetime):
        text = value.astimezone(dt.UTC).replace(tzinfo=None) if value.tzinfo else value
        node = exp.Cast(this=exp.Literal.string(text.isoformat(sep=" ")),
                        to=exp.DataType.build("TIMESTAMP"))
    elif isinstance(value, dt.date):
        node = exp.Cast(this=exp.Literal.string(value.isoformat()),
                        to=exp.DataType.build("DATE"))
    elif isinstance(value, dt.timedelta):
        node = interval(int(value / dt.timedelta(microseconds=1)))
    else:
        raise PlanError(f"lit(): cannot make a SQL constant of a {type(value).__name__}",
                        hint="None, bool, int, float, Decimal, str, datetime, date, timedelta")
    return Expr(node, None)


def interval(us: int) -> exp.Expression:
    """An INTERVAL literal of ``us`` microseconds, in the largest exact unit."""
    for unit, size in (("DAY", 86_400_000_000), ("HOUR", 3_600_000_000),
                       ("MINUTE", 60_000_000), ("SECOND", 1_000_000), ("MILLISECOND", 1000)):
        if us % size == 0:
            return exp.Interval(this=exp.Literal.string(str(us // size)),
                                unit=exp.Var(this=unit))
    return exp.Interval(this=exp.Literal.string(str(us)), unit=exp.Var(this="MICROSECOND"))


def to_expr(value: Any) -> Expr:
    """An Expr as is (a ``when(…).then(…)`` without ``otherwise`` too, NULL where no
    condition holds, as Polars takes it); any other Python value as a literal."""
    if isinstance(value, When):
        return value._case(None)
    return value if isinstance(value, Expr) else lit(value)


def column_or_expr(value: Any, what: str) -> Expr:
    """In select/group_by/sort a string names a column (as in Polars)."""
    if isinstance(value, str):
        return col(value)
    if isinstance(value, (Expr, When)):
        return to_expr(value)
    raise PlanError(f"{what}: expected a column name or an expression, got "
                    f"{type(value).__name__}")


def count() -> Expr:
    """``count(*)``: the number of rows of a group, named ``count``."""
    return Expr(exp.Count(this=exp.Star()), "count", True)


def len_() -> Expr:
    """``count(*)`` named ``len``, as Polars' ``pl.len()`` (``cd.len()``)."""
    return Expr(exp.Count(this=exp.Star()), "len", True)


class When:
    """``cd.when(cond).then(a).when(cond2).then(b).otherwise(c)``: SQL's CASE, Polars' names;
    as in Polars a string is a column name (``then("price")``), ``lit("…")`` a text.

    >>> print(when(col("x") > 1).then(lit("big")).otherwise(lit("small")).sql())
    CASE WHEN "x" > 1 THEN 'big' ELSE 'small' END
    """

    def __init__(self, branches: list[tuple[Expr, Expr | None]]):
        self.branches = branches

    def then(self, value: Any) -> When:
        if not self.branches or self.branches[-1][1] is not None:
            raise PlanError("then() follows when(condition)")
        cond, _ = self.branches[-1]
        return When(self.branches[:-1] + [(cond, _polars_input(value))])

    def when(self, condition: Expr) -> When:
        self._complete()
        return When(self.branches + [(_polars_input(condition), None)])

    def otherwise(self, value: Any) -> Expr:
        return self._case(_polars_input(value))

    def _complete(self) -> None:
        if self.branches[-1][1] is None:
            raise PlanError("when(condition) needs .then(value)")

    def _case(self, default: Expr | None) -> Expr:
        self._complete()
        ifs = [exp.If(this=c.node, true=v.node) for c, v in self.branches]
        node = exp.Case(ifs=ifs, default=default.node if default is not None else None)
        parts = [e for pair in self.branches for e in pair] + ([default] if default is not None else [])
        first = self.branches[0][1]
        out = first._derive(node, *parts)
        out.name = next((e.name for e in [v for _, v in self.branches] if e.name), "literal")
        return out

    def alias(self, name: str) -> Expr:
        """The CASE without ELSE (NULL when no condition holds), named."""
        return self._case(None).alias(name)

    def __getattr__(self, name: str):
        """Without ``otherwise`` this is an expression, as Polars' ``then`` is: its methods
        are the CASE's (``.cast(…)``, ``.fill_null(…)``)."""
        if name.startswith("_"):
            raise AttributeError(name)
        if self.branches[-1][1] is None:
            raise AttributeError(f"when(condition) needs .then(value) before .{name}")
        return getattr(self._case(None), name)


def when(condition: Expr) -> When:
    return When([(_polars_input(condition), None)])


# ---- every scalar function of the SQL surface as a method --------------------------------

#: functions whose SQL signature puts a unit or pattern before the value
_VALUE_SECOND = {"date_trunc", "date_part"}


def _method(name: str):
    if name in _VALUE_SECOND:
        def method(self, first, *args):
            return call(name, first, self, *args)
    else:
        def method(self, *args):
            return call(name, self, *args)
    method.__name__ = name
    method.__doc__ = f"SQL ``{name}(…)`` with this expression as its first value argument."
    return method


def _install_function_methods() -> None:
    from caudal.plan.functions.catalog import callable_names  # noqa: F401  (registers)
    from caudal.plan.functions.registry import FUNCTIONS

    for name, fn in FUNCTIONS.items():
        if fn.internal or not name.isidentifier() or hasattr(Expr, name):
            continue
        setattr(Expr, name, _method(name))


_install_function_methods()
