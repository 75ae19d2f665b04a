"""Errors as a user reads them: one line, the line and column of the offending token, what
is accepted; never a library's internals (sqlglot class names, token dumps)."""

from __future__ import annotations

import re

import pytest

from caudal.errors import CaudalError
from caudal.job import compile_sql, run_sql

DDL = "CREATE TABLE bids WITH (connector = 'nexmark', table = 'bid', events = '50');\n"

MALFORMED = [
    "SELECT", "SELECT FROM bids", "SELECT * FROM", "SELECT * FROM bids WHERE",
    "SELECT * FROM bids WHERE price >", "SELECT (price FROM bids", "SELECT price) FROM bids",
    "SELEC * FROM bids", "INSERT INTO SELECT 1", "CREATE TABLE", "CREATE TABLE t (",
    "CREATE TABLE t (a INT", "CREATE TABLE t WITH (connector = )",
    "CREATE TABLE t WITH (connector 'x')", "SELECT 'abc FROM bids", 'SELECT "abc FROM bids',
    "SELECT * FROM bids /* never closed", "SELECT * FROM bids WHERE price IN (",
    "SELECT CASE WHEN price THEN FROM bids", "SELECT CAST(price AS) FROM bids",
    "SELECT CAST(price AS NOPE) FROM bids", "SELECT price:: FROM bids", "SELECT 1 +",
    "SELECT * FROM bids JOIN", "SELECT * FROM bids WHERE EXISTS (SELECT 1)",
    "SELECT EXISTS (SELECT 1 FROM bids) FROM bids",
    "SELECT count(* FROM bids", "DROP TABLE bids", "UPDATE bids SET price = 1", "SET x",
    "SELECT * FROM bids LIMIT", "SELECT $1 FROM bids", "SELECT @x FROM bids",
    "SELECT price FROM bids WHERE price BETWEEN 1", "SELECT #", "EXPLAIN",
    "SELECT nope(price) FROM bids", "SELECT price FROM bids GROUP BY HAVING",
    "SELECT price FROM nope", "SELECT nope FROM bids", "SELECT upper(price) FROM bids",
    "SELECT price FROM bids WHERE price", "SELECT sum(channel) FROM bids",
    "SELECT * FROM bids GROUP", "SELECT * FROM bids ORDER", "SELECT * FROM bids b LIMIT",
]

_POSITION = re.compile(r"^line \d+, column \d+: ")


@pytest.mark.parametrize("query", MALFORMED)
def test_malformed_query_error_is_one_line_with_position(query):
    text = query if query.startswith("CREATE") else DDL + query
    with pytest.raises(CaudalError) as e:
        compile_sql(text)
    message = str(e.value)
    assert "\n" not in message
    assert _POSITION.match(message), message
    for leak in ("sqlglot", "<class", "<Token", "TokenType", "Traceback"):
        assert leak not in message, message


def test_syntax_error_points_at_the_offending_token():
    with pytest.raises(CaudalError) as e:
        compile_sql(DDL + "SELECT price\nFROM bids\nWHERE price > AND bidder = 1")
    assert str(e.value).startswith("line 4, column 15: syntax error")
    with pytest.raises(CaudalError) as e:
        compile_sql(DDL + "SELECT 'it''s\nFROM bids")
    assert str(e.value).startswith("line 2, column 8: syntax error: unterminated string")


def test_exists_is_not_called_a_function():
    # EXISTS in WHERE is a semi join (caudal.sql.subqueries); elsewhere it is refused
    with pytest.raises(CaudalError) as e:
        compile_sql(DDL + "SELECT EXISTS (SELECT 1 FROM bids) AS e FROM bids")
    assert "EXISTS" in str(e.value) and "function" not in str(e.value)


def test_unknown_connector_and_format_name_the_create_table_line():
    text = DDL + "\nCREATE TABLE out WITH (connector = 'kafkaa');\nINSERT INTO out " \
        "SELECT * FROM bids;"
    with pytest.raises(CaudalError) as e:
        compile_sql(text)
    assert str(e.value).startswith("line 3: unknown connector 'kafkaa' in table 'out'")
    # the benchmark's internal connectors are not offered to users
    assert "bench" not in str(e.value) and "replay" not in str(e.value)
    assert "filesystem" in str(e.value)
    text = DDL + "CREATE TABLE out WITH (connector = 'filesystem', path = 'x',\n" \
        "  format = 'xml');\n\nINSERT INTO out SELECT * FROM bids;"
    with pytest.raises(CaudalError) as e:
        compile_sql(text)
    assert str(e.value).startswith("line 2: unknown format 'xml'")


@pytest.mark.parametrize("text,expected", [
    ("", "the script is empty"), ("-- nothing here\n\n", "the script is empty"),
    (DDL, "the script has no query"),
])
def test_a_script_without_a_query_says_so(text, expected):
    with pytest.raises(CaudalError, match=expected):
        compile_sql(text)


def test_runtime_errors_name_the_expression_and_its_line():
    text = DDL + "SELECT auction,\n       price / (bidder - bidder) AS boom\nFROM bids;"
    with pytest.raises(CaudalError) as e:
        run_sql(text)
    message = str(e.value)
    assert message.startswith("line 3, column 8: division by zero"), message
    assert "price" in message and "\n" not in message
    text = DDL + "SELECT CAST(channel AS INT) AS c FROM bids;"
    with pytest.raises(CaudalError) as e:
        run_sql(text)
    message = str(e.value)
    assert message.startswith("line 2, column") and "cannot cast TEXT to INT" in message
    assert "CAST(channel AS INT)" in message


def test_a_failing_cast_into_a_sink_column_names_it(tmp_path):
    text = (DDL + f"CREATE TABLE out (a INT) WITH (connector = 'filesystem', "
            f"path = '{tmp_path / 'out'}', format = 'json');\n\n"
            "INSERT INTO out SELECT price * 1000000 FROM bids;")
    with pytest.raises(CaudalError) as e:
        run_sql(text)
    message = str(e.value)
    assert message.startswith("line 4, column 24: cannot cast BIGINT to INT"), message
    assert "the value written to out.a" in message


def test_a_clause_word_is_not_taken_for_a_table_alias():
    # sqlglot reads `FROM bids ORDER` as `bids AS order`: the query would run unsorted
    with pytest.raises(CaudalError) as e:
        compile_sql(DDL + "SELECT * FROM bids\nORDER")
    assert str(e.value) == "line 3, column 1: syntax error: ORDER is incomplete here (ORDER BY …)"
    compile_sql(DDL + 'SELECT o.price FROM bids AS "order" JOIN bids o ON o.auction = '
                '"order".auction')


@pytest.mark.parametrize("statement", ["SET foo = 'bar';", "SET UPDATING_FLUSHH = '1s';"])
def test_a_setting_caudal_would_ignore_is_refused(statement):
    # they were accepted and changed nothing: a Flink script's local time zone silently
    # did not apply
    with pytest.raises(CaudalError, match=r"^line 2, column 1: SET \S+: caudal has no such "
                                          r"setting, and would ignore it \(settings: "):
        compile_sql(DDL + statement + "\nSELECT price FROM bids;")



@pytest.mark.parametrize("statement, message", [
    ("SET updating_flush = 'soon';", "SET updating_flush = 'soon' is not a duration"),
    ("SET updating_flush = 'off';", "SET updating_flush = 'off' is not accepted"),
    ("SET updating_ttl = 'a while';", "SET updating_ttl = 'a while' is not a duration"),
    ("SET allow_unkeyed_join = 'maybe';", "SET allow_unkeyed_join = 'maybe' is not a boolean"),
])
def test_a_bad_setting_value_is_refused_at_its_set(statement, message):
    """A bad value was refused only by the operator reading it, naming that query's line (or
    not at all when no operator read it: SELECT 1 ran)."""
    for query in ("SELECT 1;", "SELECT auction, count(*) AS n FROM bids GROUP BY auction;"):
        with pytest.raises(CaudalError) as e:
            compile_sql(DDL + statement + "\n" + query)
        assert str(e.value).startswith(f"line 2, column 1: {message}"), str(e.value)

def test_the_settings_caudal_reads_are_accepted():
    compile_sql(DDL + "SET updating_flush = '0';\nSET 'table.exec.state.ttl' = '1 hour';\n"
                "SET allow_unkeyed_join = true;\nSELECT price FROM bids;")


@pytest.mark.parametrize("tail, message", [
    ("GROUP BY -1", "GROUP BY -1 is not a SELECT item"),
    ("GROUP BY (-2)", "GROUP BY -2 is not a SELECT item"),
    ("ORDER BY -1", "ORDER BY position -1 is not in the SELECT list")])
def test_a_negative_position_is_refused_not_taken_as_a_constant(tail, message):
    # it grouped or sorted by the constant where DuckDB and PostgreSQL refuse the position
    # (found by the expression fuzzer: SELECT -1 AS g, count(*) … GROUP BY -1 answered)
    select = "SELECT 2 AS g, count(*) AS n FROM bids " if tail.startswith("GROUP") else \
        "SELECT price FROM bids "
    with pytest.raises(CaudalError, match=re.escape(message)):
        compile_sql(DDL + select + tail)
