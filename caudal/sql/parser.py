"""Split a SQL script into statements and parse each with the caudal dialect.

Positions in errors are absolute in the script: each statement is parsed with the text before
it blanked out (newlines kept), so sqlglot's line and column numbers need no correction.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import sqlglot
from sqlglot import exp
from sqlglot.errors import ParseError, TokenError
from sqlglot.tokens import TokenType

from caudal.errors import SqlSyntaxError
from caudal.sql.dialect import TRAILING_COMMA, Caudal

ACCEPTED_STATEMENTS = ("CREATE TABLE, CREATE VIEW, INSERT INTO … SELECT, SELECT, SET, "
                       "EXPLAIN <statement>")


@dataclass
class Statement:
    node: exp.Expression
    line: int
    explain: bool = False
    text: str = ""


def _blank(prefix: str) -> str:
    return re.sub(r"[^\n]", " ", prefix)


def _syntax_error(err: ParseError | TokenError, fallback_line: int) -> SqlSyntaxError:
    if isinstance(err, ParseError) and err.errors:
        first = err.errors[0]
        desc = first.get("description") or "invalid syntax"
        token = (first.get("highlight") or "").strip()
        message = f"syntax error: {desc}"
        hint = f"statements accepted: {ACCEPTED_STATEMENTS}"
        if desc.startswith(TRAILING_COMMA):
            hint = "remove the comma, or write the missing item after it"
        elif token:
            message += f" near {token!r}"
        col = first.get("col") or 1
        if token:
            col = max(1, col - len(token) + 1)
        return SqlSyntaxError(message, line=first.get("line") or fallback_line, col=col,
                              hint=hint)
    return SqlSyntaxError(f"syntax error: {err}", line=fallback_line)


def parse_script(text: str) -> list[Statement]:
    """Parse every statement of a script (comments allowed, ``;`` separated)."""
    dialect = Caudal()
    try:
        tokens = dialect.tokenize(text)
    except TokenError as e:
        raise SqlSyntaxError(f"cannot read the SQL text: {e}") from None
    groups: list[list] = [[]]
    for tok in tokens:
        if tok.token_type == TokenType.SEMICOLON:
            groups.append([])
        else:
            groups[-1].append(tok)
    statements = []
    for group in groups:
        if not group:
            continue
        start, end = group[0].start, group[-1].end
        explain = False
        if group[0].token_type == TokenType.COMMAND and group[0].text.upper() == "EXPLAIN":
            explain = True
            start = group[0].end + 1
        body = text[start:end + 1]
        if not body.strip():
            raise SqlSyntaxError("EXPLAIN needs a statement after it", line=group[0].line)
        padded = _blank(text[:start]) + body
        try:
            node = sqlglot.parse_one(padded, read=Caudal)
        except (ParseError, TokenError) as e:
            raise _syntax_error(e, group[0].line) from None
        line = text.count("\n", 0, start + (len(body) - len(body.lstrip()))) + 1
        if isinstance(node, exp.Command):
            raise SqlSyntaxError(
                f"unsupported statement {node.name.upper()}", line=line, col=1,
                hint=f"statements accepted: {ACCEPTED_STATEMENTS}")
        statements.append(Statement(node=node, line=line, explain=explain, text=body.strip()))
    return statements
