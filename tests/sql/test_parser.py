"""Statement splitting and syntax errors: positions are absolute in the script."""

import pytest
from sqlglot import exp

from caudal.errors import SqlSyntaxError
from caudal.sql.parser import parse_script


def test_statements_comments_and_explain():
    script = """-- a comment
CREATE TABLE t (a BIGINT, ts TIMESTAMP, WATERMARK FOR ts AS ts - INTERVAL '1' SECOND)
  WITH (connector = 'filesystem', path = 'x.parquet');
/* block
   comment */
CREATE VIEW v AS SELECT a FROM t;
EXPLAIN SELECT a FROM v;
INSERT INTO s SELECT * FROM t;
SET updating_ttl = '1 hour';
"""
    stmts = parse_script(script)
    kinds = [type(s.node) for s in stmts]
    assert kinds == [exp.Create, exp.Create, exp.Select, exp.Insert, exp.Set]
    assert [s.line for s in stmts] == [2, 6, 7, 8, 9]
    assert stmts[2].explain and not stmts[3].explain


def test_syntax_error_has_absolute_line_and_column():
    with pytest.raises(SqlSyntaxError) as info:
        parse_script("SELECT 1 FROM t;\n\nSELECT a FROM t WHERE;")
    err = info.value
    assert err.line == 3
    assert err.col is not None
    assert "line 3" in str(err)


def test_empty_explain_is_an_error():
    with pytest.raises(SqlSyntaxError):
        parse_script("EXPLAIN ;")


@pytest.mark.parametrize("script,line,col,where", [
    # SELECT list (also across lines: the position is the comma's, not the next token's)
    ("SELECT auction, FROM bids", 1, 15, "before FROM"),
    ("SET updating_flush = '0';\nSELECT auction,\n       price,\n  FROM bids", 3, 13,
     "before FROM"),
    ("INSERT INTO out SELECT auction, FROM bids", 1, 31, "before FROM"),
    ("CREATE VIEW v AS SELECT auction, FROM bids", 1, 32, "before FROM"),
    ("SELECT * FROM (SELECT auction, FROM bids)", 1, 30, "before FROM"),
    # GROUP BY list
    ("SELECT auction, count(*) FROM bids GROUP BY auction,", 1, 52,
     "at the end of the statement"),
    ("SELECT auction, count(*) FROM bids GROUP BY auction, HAVING count(*) > 1", 1, 52,
     "before HAVING"),
    # column list of CREATE TABLE, and its WITH options
    ("CREATE TABLE t (a BIGINT, b TEXT,) WITH (connector = 'stdout')", 1, 33, "before ')'"),
    ("CREATE TABLE t (a BIGINT,\n  b TEXT,\n) WITH (connector = 'stdout')", 2, 9, "before ')'"),
    ("CREATE TABLE t (a BIGINT) WITH (connector = 'stdout',)", 1, 53, "before ')'"),
    # and every other comma list: function arguments, IN lists, ORDER BY
    ("SELECT coalesce(a, b,) FROM t", 1, 21, "before ')'"),
    ("SELECT a FROM t WHERE a IN (1, 2,)", 1, 33, "before ')'"),
])
def test_trailing_comma_is_a_syntax_error_at_the_comma(script, line, col, where):
    """sqlglot drops an empty item after a comma; PostgreSQL (and caudal) refuse it, pointing
    at the comma, with a one-line message that says what to do (issue 10, bug 6)."""
    with pytest.raises(SqlSyntaxError) as info:
        parse_script(script)
    err = info.value
    assert (err.line, err.col) == (line, col)
    text = str(err)
    assert f"trailing comma {where}" in text and "remove the comma" in text
    assert "\n" not in text and "sqlglot" not in text


def test_lists_without_trailing_comma_still_parse():
    stmts = parse_script("CREATE TABLE t (a BIGINT, b TEXT) WITH (connector = 'stdout', "
                         "format = 'json');\nSELECT a, count(*) FROM t GROUP BY a, b "
                         "ORDER BY a, b;\nSELECT coalesce(a, b) FROM t WHERE a IN (1, 2)")
    assert len(stmts) == 3
    assert len(stmts[1].node.expressions) == 2
