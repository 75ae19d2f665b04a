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
