"""caudal's SQL dialect: PostgreSQL expressions, plus streaming DDL (WATERMARK FOR, WITH
options) as RisingWave's dialect parses them in sqlglot, plus Flink's window table functions
in FROM: ``TABLE(HOP(TABLE bids, DESCRIPTOR(date_time), INTERVAL '2' SECOND, …))``.

Flink's DDL is accepted as Flink users paste it: backtick-quoted identifiers, ``ROW<a INT>`` /
``ROW(a INT)`` as struct types, and ``METADATA [FROM 'key'] [VIRTUAL]`` column constraints.

``WINDOW`` and ``SESSION`` are not keywords here: Arroyo-style queries name their window column ``window``
(``tumble(…) AS window … GROUP BY window``) and group by ``session(gap)``, which matter more
on a stream than ``ALTER SESSION``. The named windows of OVER aggregates (``WINDOW w AS
(PARTITION BY … ORDER BY …)``) still parse: ``WINDOW`` followed by ``name AS (`` starts the
clause (``_mark_window_clauses``).
"""

from __future__ import annotations

import sys

import sqlglot
from sqlglot import exp
from sqlglot.dialects.risingwave import RisingWave
from sqlglot.tokenizer_core import Token
from sqlglot.tokens import TokenType

from caudal.errors import PlanError


class WindowTableFunction(exp.Expression):
    """``NAME(TABLE t [PARTITION BY k, …], DESCRIPTOR(col), arg, …)`` inside ``TABLE(…)``,
    also with Flink's named arguments (``DATA => TABLE t, TIMECOL => DESCRIPTOR(col),
    SIZE => …, OFFSET => …``).

    ``this`` is the function name (an Identifier), ``table`` the input table, ``partition_by``
    the PARTITION BY columns (SESSION), ``descriptor`` the time column, ``expressions`` the
    remaining positional arguments (intervals) and ``named`` the named ones (``exp.Kwarg``).
    """

    arg_types = {"this": True, "table": True, "partition_by": False, "descriptor": False,
                 "expressions": False, "named": False}


class MetadataColumnConstraint(exp.Expression, exp.ColumnConstraintKind):
    """Flink's ``col TYPE METADATA [FROM 'key'] [VIRTUAL]``: the column is filled by the
    connector (``this`` is the key literal, absent when it is the column's name)."""

    arg_types = {"this": False, "virtual": False}


def _metadata_sql(self, e: MetadataColumnConstraint) -> str:
    text = "METADATA"
    if e.this is not None:
        text += f" FROM {self.sql(e, 'this')}"
    return text + (" VIRTUAL" if e.args.get("virtual") else "")


def _parse_metadata(self) -> MetadataColumnConstraint:
    key = self._parse_string() if self._match(TokenType.FROM) else None
    virtual = self._match_text_seq("VIRTUAL")
    return self.expression(MetadataColumnConstraint(this=key, virtual=virtual))


#: tokens after which a postfix ARRAY ends a column type (``tags STRING ARRAY,``)
_AFTER_POSTFIX_ARRAY = {TokenType.COMMA, TokenType.R_PAREN, TokenType.GT, TokenType.NOT,
                        TokenType.NULL, TokenType.PRIMARY_KEY, TokenType.ARRAY}


def _postfix_arrays(tokens: list) -> list:
    """Flink's postfix array type ``INT ARRAY`` as ``INT[]`` (sqlglot would read what follows
    ARRAY as array bounds): an ARRAY right after a type keyword (or a ``>`` closing
    ``ROW<…>``) and before the end of the type becomes ``[]``."""
    out: list = []
    made: set[int] = set()  # the ``]`` written here (``INT ARRAY ARRAY``)
    for i, tok in enumerate(tokens):
        after = tokens[i + 1].token_type if i + 1 < len(tokens) else TokenType.R_PAREN
        if tok.token_type == TokenType.ARRAY and out and (
                out[-1].token_type in RisingWave.Parser.TYPE_TOKENS
                or out[-1].token_type == TokenType.GT or id(out[-1]) in made) and (
                after in _AFTER_POSTFIX_ARRAY
                or (i + 1 < len(tokens) and tokens[i + 1].text.upper() in ("COMMENT",
                                                                          "METADATA"))):
            out.append(Token(TokenType.L_BRACKET, "[", tok.line, tok.col, tok.start,
                             tok.start))
            out.append(Token(TokenType.R_BRACKET, "]", tok.line, tok.col, tok.end, tok.end))
            made.add(id(out[-1]))
            continue
        out.append(tok)
    return out


def _tvf_sql(self, e: WindowTableFunction) -> str:
    table = self.sql(e, "table")
    keys = e.args.get("partition_by") or []
    if keys:
        table += " PARTITION BY " + ", ".join(self.sql(k) for k in keys)
    args = [f"TABLE {table}"]
    if e.args.get("descriptor") is not None:
        args.append(f"DESCRIPTOR({self.sql(e, 'descriptor')})")
    args.extend(self.sql(a) for a in e.expressions)
    args.extend(f"{k.this.name} => {self.sql(k, 'expression')}"
                for k in e.args.get("named") or [])
    return f"TABLE({self.sql(e, 'this')}({', '.join(args)}))"


#: how a syntax error about a separator with nothing after it starts (sql.parser adds the hint)
TRAILING_COMMA = "trailing comma"


_NAMES = (TokenType.VAR, TokenType.IDENTIFIER)


def _mark_window_clauses(tokens: list) -> None:
    """``WINDOW w AS (…)`` (the named windows of OVER aggregates) while ``window`` is not a
    keyword: the word starts the clause only when followed by ``name AS (``, a shape a
    column named ``window`` never has."""
    for i in range(len(tokens) - 3):
        t = tokens[i]
        if t.token_type == TokenType.VAR and t.text.upper() == "WINDOW" and \
                tokens[i + 1].token_type in _NAMES and \
                tokens[i + 2].token_type == TokenType.ALIAS and \
                tokens[i + 3].token_type == TokenType.L_PAREN and \
                (i == 0 or tokens[i - 1].token_type != TokenType.ALIAS):
            t.token_type = TokenType.WINDOW


class Caudal(RisingWave):
    class Tokenizer(RisingWave.Tokenizer):
        IDENTIFIERS = ['"', "`"]
        KEYWORDS = {k: v for k, v in RisingWave.Tokenizer.KEYWORDS.items()
                    if k not in ("WINDOW", "SESSION")}
        KEYWORDS["ROW"] = TokenType.STRUCT  # Flink's ROW<a INT> / ROW(a INT) types
        KEYWORDS["BYTES"] = TokenType.VARBINARY  # Flink's BYTES
        # FLOAT is 32 bits, as in DuckDB, Flink and Arroyo (PostgreSQL's FLOAT is a DOUBLE);
        # FLOAT(p) with p > 24 is a DOUBLE (types.arrow_type)
        KEYWORDS["FLOAT"] = TokenType.FLOAT

        def tokenize(self, sql: str) -> list:
            return _postfix_arrays(super().tokenize(sql))

    class Parser(RisingWave.Parser):
        CONSTRAINT_PARSERS = {**RisingWave.Parser.CONSTRAINT_PARSERS,
                              "METADATA": _parse_metadata}

        # to_timestamp / to_date keep the template as written: sqlglot's translation to
        # strftime folds case, and Flink's Java patterns (HH:mm) differ from PostgreSQL's
        # templates (HH24:MI) by case (caudal.plan.functions.time._java_pattern)
        FUNCTIONS = {
            **RisingWave.Parser.FUNCTIONS,
            "TO_TIMESTAMP": lambda args: exp.Anonymous(this="to_timestamp", expressions=args),
            "TO_DATE": lambda args: exp.Anonymous(this="to_date", expressions=args),
            # Flink's TIMESTAMPDIFF(unit, t1, t2) (sqlglot took the unit for a column and
            # t2 for the unit)
            "TIMESTAMPDIFF": lambda args: exp.Anonymous(this="timestampdiff", expressions=args),
        }

        UNARY_PARSERS = {
            **RisingWave.Parser.UNARY_PARSERS,
            TokenType.RLIKE: lambda self: self._parse_regexp_or_bitwise_not(),
        }

        def parse(self, raw_tokens, sql=None):
            _mark_window_clauses(raw_tokens)
            allow_depth()
            try:
                return super().parse(raw_tokens, sql)
            except RecursionError:
                raise PlanError(TOO_DEEP, hint=TOO_DEEP_HINT) from None

        def _parse_regexp_or_bitwise_not(self) -> exp.Expression | None:
            """``REGEXP(text, pattern)`` is Flink's function; ``~x`` stays bitwise NOT (both
            are the RLIKE token in PostgreSQL's tokenizer)."""
            if self._prev is not None and self._prev.text.upper() == "REGEXP" and \
                    self._curr is not None and self._curr.token_type == TokenType.L_PAREN:
                self._advance()
                args = self._parse_csv(self._parse_assignment)
                self._match_r_paren()
                return self.expression(exp.Anonymous(this="REGEXP", expressions=args))
            return self.expression(exp.BitwiseNot(this=self._parse_unary()))

        def _parse_csv(self, parse_method, sep: TokenType = TokenType.COMMA) -> list:
            """sqlglot's list parser, minus its leniency: it drops an item that does not
            parse after a separator, so ``SELECT a, FROM t``, ``GROUP BY a,`` and
            ``CREATE TABLE t (a INT,)`` were accepted as if the comma were not there.
            PostgreSQL refuses a trailing comma, and so does caudal, at the comma."""
            item = parse_method()
            items = [item] if item is not None else []
            while self._match(sep):
                comma = self._prev
                if isinstance(item, exp.Expression):
                    self._add_comments(item)
                item = parse_method()
                if item is None:
                    nxt = self._curr
                    if nxt is None or nxt.token_type == TokenType.SENTINEL:
                        where = "at the end of the statement"
                    else:
                        text = nxt.text if nxt.text.replace("_", "").isalnum() else repr(nxt.text)
                        where = f"before {text}"
                    self.raise_error(f"{TRAILING_COMMA} {where}", comma)
                    continue
                items.append(item)
            return items

        def _parse_table(self, *args, **kwargs):
            if (self._curr is not None and self._curr.token_type == TokenType.TABLE
                    and self._next is not None and self._next.token_type == TokenType.L_PAREN):
                tvf = self._parse_window_tvf()
                if tvf is not None:
                    return tvf
            return super()._parse_table(*args, **kwargs)

        def _parse_window_tvf(self) -> exp.Table | None:
            """``TABLE(NAME(TABLE t …, DESCRIPTOR(c), …)) [AS alias]``; None (and nothing
            consumed) when the text is not of that shape."""
            index = self._index
            self._advance(2)  # TABLE (
            name = self._parse_id_var(any_token=True)
            if name is None or not self._match(TokenType.L_PAREN):
                self._retreat(index)
                return None
            data = self._arg_name()
            if (data is not None and data != "DATA") or not self._match(TokenType.TABLE):
                self._retreat(index)
                return None
            table = self._parse_table_parts()
            partition: list[exp.Expression] = []
            if self._match(TokenType.PARTITION_BY) or self._match_text_seq("PARTITION", "BY"):
                wrapped = self._match(TokenType.L_PAREN)
                while True:
                    partition.append(self._parse_column())
                    if not (self._curr is not None and self._curr.token_type == TokenType.COMMA
                            and (wrapped or not self._next_is_argument())):
                        break
                    self._advance()
                if wrapped:
                    self._match_r_paren()
            descriptor = None
            rest: list[exp.Expression] = []
            named: list[exp.Expression] = []
            while self._match(TokenType.COMMA):
                arg = self._arg_name()
                if self._match_text_seq("DESCRIPTOR"):
                    value = self._parse_wrapped(self._parse_column)
                    if arg in (None, "TIMECOL"):
                        descriptor = value
                        continue
                else:
                    value = self._parse_assignment()
                if arg is None:
                    rest.append(value)
                else:
                    named.append(self.expression(exp.Kwarg(this=exp.var(arg),
                                                           expression=value)))
            self._match_r_paren()
            self._match_r_paren()
            tvf = self.expression(WindowTableFunction(
                this=name, table=table, partition_by=partition, descriptor=descriptor,
                expressions=rest, named=named))
            out = self.expression(exp.Table(this=tvf))
            alias = self._parse_table_alias()
            if alias is not None:
                out.set("alias", alias)
            return out

        def _arg_name(self) -> str | None:
            """``NAME =>`` of a named argument (consumed, upper case), else None."""
            if self._curr is not None and self._next is not None and \
                    self._next.token_type == TokenType.FARROW:
                text = self._curr.text.upper()
                self._advance(2)
                return text
            return None

        def _next_is_argument(self) -> bool:
            """After a comma in PARTITION BY: does the next argument start (DESCRIPTOR(…) or
            ``NAME =>``) rather than another partition column?"""
            if self._next is None or self._next.text.upper() == "DESCRIPTOR":
                return True
            after = self._index + 2
            return after < len(self._tokens) and \
                self._tokens[after].token_type == TokenType.FARROW

    class Generator(RisingWave.Generator):
        """Writes back what caudal's parser reads: cd.sql() and frames plan the regenerated
        text, so PostgreSQL's renderings that change meaning are undone (TRY_CAST written as
        CAST failed on the first bad value; TINYINT written as SMALLINT changed the type;
        ROUND(x::DOUBLE, n) written as ROUND(CAST(… AS DECIMAL), n) rounded a DECIMAL and
        failed on 1e300, NaN and inf)."""

        TRANSFORMS = {**RisingWave.Generator.TRANSFORMS, WindowTableFunction: _tvf_sql,
                      MetadataColumnConstraint: _metadata_sql,
                      exp.TryCast: lambda self, e: self.cast_sql(e, safe_prefix="TRY_"),
                      exp.Round: lambda self, e: self.func("ROUND", e.this,
                                                           e.args.get("decimals"))}
        TYPE_MAPPING = {k: v for k, v in RisingWave.Generator.TYPE_MAPPING.items()
                        if k != exp.DataType.Type.TINYINT}


DIALECT = Caudal

#: Python frames a nested expression may take: sqlglot parses a level of parentheses or a
#: function call in ~40 frames and ``translate`` takes ~5 per level, so Python's default
#: limit (1000) failed at ~25 nested function calls and ~190 nested operators
RECURSION_LIMIT = 20_000
#: the refusal of an expression nested past it
TOO_DEEP = "expressions nested too deeply (a few hundred levels of parentheses or calls at most)"
TOO_DEEP_HINT = "compute parts of it in a WITH query or a subquery"


def allow_depth() -> None:
    """Raise Python's recursion limit to ``RECURSION_LIMIT`` for parsing and planning (never
    lower it: another thread may be deep in its own). Python 3.11 keeps the frames of
    Python-to-Python calls off the C stack."""
    if sys.getrecursionlimit() < RECURSION_LIMIT:
        sys.setrecursionlimit(RECURSION_LIMIT)


allow_depth()  # (at import too: test runners that restore the limit see it set before)


def parse_expression(text: str) -> exp.Expression:
    """Parse one scalar expression (used by tests and the Python API)."""
    return sqlglot.parse_one(text, read=Caudal)
