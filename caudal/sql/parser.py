"""Split a SQL script into statements and parse each with the caudal dialect.

Positions in errors are absolute in the script: each statement is parsed with the text before
it blanked out (newlines kept), so sqlglot's line and column numbers need no correction.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass

import sqlglot
from sqlglot import exp
from sqlglot.errors import ParseError, TokenError
from sqlglot.tokens import TokenType

from caudal.errors import SqlSyntaxError
from caudal.sql.dialect import TRAILING_COMMA, Caudal

# sqlglot logs a warning ("contains unsupported syntax. Falling back to parsing as a
# 'Command'") on stderr for statements it does not know; caudal reports those itself
logging.getLogger("sqlglot").setLevel(logging.ERROR)

ACCEPTED_STATEMENTS = ("CREATE TABLE, CREATE VIEW, INSERT INTO … SELECT, SELECT, SET, "
                       "EXPLAIN <statement>")


@dataclass
class Statement:
    node: exp.Expression
    line: int
    explain: bool = False
    text: str = ""
    #: the column where the statement starts (errors about a whole statement point there)
    col: int = 1


def _blank(prefix: str) -> str:
    return re.sub(r"[^\n]", " ", prefix)


#: sqlglot's node classes, as they appear in its "Required keyword" errors -> what the user
#: wrote that is incomplete
_INCOMPLETE = {
    "Where": "WHERE needs a condition", "Having": "HAVING needs a condition",
    "Limit": "LIMIT needs a number", "Offset": "OFFSET needs a number",
    "Between": "BETWEEN needs a lower bound, AND and an upper bound",
    "If": "CASE WHEN needs a condition, THEN and a value",
    "Property": "an option needs a value: name = 'value'",
    "Join": "JOIN needs a table", "Cast": "CAST needs a type: CAST(x AS type)",
    "Alias": "AS needs a name", "Order": "ORDER BY needs an expression",
    "Group": "GROUP BY needs an expression",
}
_REQUIRED = re.compile(r"Required keyword: '\w+' missing for <class '[\w.]*?(\w+)'>")
_GOT = re.compile(r"\s*but got <Token token_type: TokenType\.(\w+).*$", re.S)


def _describe(description: str, token: str) -> str:
    """sqlglot's description of a parse error in the user's terms: no class names, no
    token dumps (they would mean nothing to someone writing SQL)."""
    required = _REQUIRED.search(description)
    if required:
        what = required.group(1)
        if what in _INCOMPLETE:
            return _INCOMPLETE[what]
        return "an expression is missing"
    got = _GOT.search(description)
    if got:
        head = description[:got.start()].strip()
        head = head[0].lower() + head[1:] if head else "unexpected text"
        if got.group(1) == "SENTINEL":
            return f"{head} at the end of the statement"
        return head
    if description.startswith("Invalid expression / Unexpected token"):
        return "unexpected token"
    if description.startswith("Expecting "):
        return "expected " + description[len("Expecting "):]
    if "<" in description and ("class" in description or "Token" in description):
        return "invalid syntax"
    return description[0].lower() + description[1:] if description else "invalid syntax"


def _syntax_error(err: ParseError | TokenError, fallback_line: int,
                  at_start: int | None = None) -> SqlSyntaxError:
    if isinstance(err, ParseError) and err.errors:
        first = err.errors[0]
        token = (first.get("highlight") or "").strip()
        desc = first.get("description") or ""
        hint = None
        if desc.startswith(TRAILING_COMMA):
            message = f"syntax error: {desc}"
            hint = "remove the comma, or write the missing item after it"
        else:
            message = "syntax error: " + _describe(desc, token)
            if token:
                message += f" near {token!r}"
        col = first.get("col") or 1
        if token:
            col = max(1, col - len(token) + 1)
        line = first.get("line") or fallback_line
        if hint is None and at_start is not None and (line, col) == (fallback_line, at_start):
            hint = f"statements accepted: {ACCEPTED_STATEMENTS}"
        return SqlSyntaxError(message, line=line, col=col, hint=hint)
    return SqlSyntaxError("syntax error: invalid syntax", line=fallback_line, col=1)


#: words PostgreSQL reserves that sqlglot still takes as a table's alias: ``FROM bids ORDER``
#: (BY forgotten) would otherwise run as a query over ``bids AS order``. WINDOW is no
#: keyword here (caudal.sql.dialect): ``FROM bids window`` is a name
_CLAUSE_WORDS = {"GROUP", "ORDER", "LIMIT", "OFFSET", "WHERE", "HAVING", "FETCH", "UNION",
                 "EXCEPT", "INTERSECT", "ON", "USING", "JOIN", "SELECT", "FROM"}


def _check_table_aliases(node: exp.Expression) -> None:
    for alias in node.find_all(exp.TableAlias):
        ident = alias.this
        if isinstance(ident, exp.Identifier) and not ident.quoted and \
                ident.name.upper() in _CLAUSE_WORDS:
            meta = getattr(ident, "_meta", None) or {}
            line = meta.get("line")
            col = meta.get("col", 1) - (meta.get("end", 0) - meta.get("start", 0))
            word = ident.name.upper()
            hint = f"{word} BY …" if word in ("GROUP", "ORDER") else \
                f"quote it to use it as a name: \"{ident.name}\""
            raise SqlSyntaxError(f"syntax error: {word} is incomplete here", line=line,
                                 col=max(col, 1) if line else None, hint=hint)


_OPENERS = (("--", "\n", "comment"), ("/*", "*/", "comment"), ("'", "'", "string"),
            ('"', '"', "quoted identifier"), ("`", "`", "quoted identifier"),
            ("$$", "$$", "string"))


def _unterminated(text: str) -> SqlSyntaxError:
    """The error for text the tokenizer cannot read: where the string, quoted name or
    comment that never ends starts (sqlglot's own error gives no position)."""
    i = 0
    while i < len(text):
        for opener, closer, what in _OPENERS:
            if text.startswith(opener, i):
                end = text.find(closer, i + len(opener))
                while closer == "'" and end >= 0 and text.startswith("''", end):
                    end = text.find(closer, end + 2)
                if end < 0 and closer != "\n":
                    line = text.count("\n", 0, i) + 1
                    col = i - (text.rfind("\n", 0, i) + 1) + 1
                    return SqlSyntaxError(f"syntax error: unterminated {what}", line=line,
                                          col=col, hint=f"close it with {closer}")
                i = len(text) if end < 0 else end + len(closer)
                break
        else:
            i += 1
    return SqlSyntaxError("syntax error: the SQL text cannot be read", line=1, col=1)


#: Flink features that sqlglot cannot parse, found in a statement that failed to parse:
#: a syntax error there would point inside them and name neither
_UNSUPPORTED_FEATURES = [
    (re.compile(r"\bMATCH_RECOGNIZE\b", re.I),
     "MATCH_RECOGNIZE (pattern matching) is not supported",
     "write the pattern with joins, OVER aggregates or a UDAF over each key's rows"),
    (re.compile(r"\bLATERAL\s+TABLE\s*\(", re.I),
     "LATERAL TABLE(f(…)) (table functions) is not supported",
     "a function that returns an array, then CROSS JOIN UNNEST(array) AS u(x)"),
]
#: Flink's ``EXECUTE STATEMENT SET BEGIN … END;`` and the SQL client's ``BEGIN STATEMENT
#: SET; … END;`` group INSERTs into one job; every INSERT of a caudal script already is one
_SET_BEGIN = re.compile(r"\s*(?:EXECUTE\s+STATEMENT\s+SET\s+BEGIN\b|BEGIN\s+STATEMENT\s+SET\s*$)",
                        re.I)
_SET_END = re.compile(r"\s*END\s*$", re.I)


def _unsupported_feature(text: str, start: int, end: int) -> SqlSyntaxError | None:
    for pattern, message, hint in _UNSUPPORTED_FEATURES:
        found = pattern.search(text, start, end)
        if found:
            line = text.count("\n", 0, found.start()) + 1
            col = found.start() - (text.rfind("\n", 0, found.start()) + 1) + 1
            return SqlSyntaxError(message, line=line, col=col, hint=hint)
    return None


def parse_script(text: str) -> list[Statement]:
    """Parse every statement of a script (comments allowed, ``;`` separated)."""
    dialect = Caudal()
    try:
        tokens = dialect.tokenize(text)
    except TokenError:
        raise _unterminated(text) from None
    groups: list[list] = [[]]
    for tok in tokens:
        if tok.token_type == TokenType.SEMICOLON:
            groups.append([])
        else:
            groups[-1].append(tok)
    statements = []
    in_set = False
    for group in groups:
        if not group:
            continue
        start, end = group[0].start, group[-1].end
        opening = _SET_BEGIN.match(text, start, end + 1)
        if opening:
            in_set = True
            if opening.end() > end:
                continue  # BEGIN STATEMENT SET;
            start = opening.end()
            start += len(text[start:end + 1]) - len(text[start:end + 1].lstrip())
        elif in_set and _SET_END.match(text, start, end + 1):
            in_set = False
            continue
        explain = False
        if group[0].token_type == TokenType.COMMAND and group[0].text.upper() == "EXPLAIN":
            explain = True
            start = group[0].end + 1
        body = text[start:end + 1]
        if not body.strip():
            raise SqlSyntaxError("EXPLAIN needs a statement after it", line=group[0].line,
                                 col=group[0].col - len(group[0].text) + 1)
        padded = _blank(text[:start]) + body
        try:
            node = sqlglot.parse_one(padded, read=Caudal)
        except (ParseError, TokenError) as e:
            raise _unsupported_feature(text, start, end + 1) or _syntax_error(
                e, group[0].line, group[0].col - len(group[0].text) + 1) from None
        first = start + (len(body) - len(body.lstrip()))
        line = text.count("\n", 0, first) + 1
        col = first - (text.rfind("\n", 0, first) + 1) + 1
        if isinstance(node, exp.Command):
            raise SqlSyntaxError(
                f"unsupported statement {node.name.upper()}", line=line, col=1,
                hint=f"statements accepted: {ACCEPTED_STATEMENTS}")
        _check_table_aliases(node)
        if isinstance(node, exp.Select) and not node.expressions:
            raise SqlSyntaxError("syntax error: SELECT needs at least one column or *",
                                 line=line, col=col)
        statements.append(Statement(node=node, line=line, explain=explain, text=body.strip(),
                                    col=col))
    return statements
