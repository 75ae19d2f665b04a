"""Flink's functions (DATE_FORMAT with Java patterns, REGEXP_EXTRACT, REGEXP, SPLIT_INDEX,
LOCATE, INSTR): against DuckDB where it has the same meaning, against Flink's documented
answers where it has not; and each one in a streaming job against DuckDB."""

from __future__ import annotations

import datetime as dt

import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from caudal.errors import PlanError
from caudal.plan.functions.time import java_format
from tests.conftest import make_bids
from tests.helpers import normalized_rows, run_to_table
from tests.plan.sql_eval import bind, check, values

AGREE = [
    ("date_format(ts, 'yyyy-MM-dd HH:mm')", "strftime(ts, '%Y-%m-%d %H:%M')"),
    ("date_format(ts, 'yyyy-MM-dd')", "strftime(ts, '%Y-%m-%d')"),
    ("date_format(ts, 'HH:mm')", "strftime(ts, '%H:%M')"),
    ("date_format(ts, 'yyyyMMddHHmmss.SSS')", "strftime(ts, '%Y%m%d%H%M%S.%g')"),
    ("date_format(ts, 'dd/MM/yy hh:mm a')", "strftime(ts, '%d/%m/%y %I:%M %p')"),
    ("date_format(ts, 'EEE, d MMM yyyy')", "strftime(ts, '%a, %-d %b %Y')"),
    ("date_format(ts, 'EEEE MMMM')", "strftime(ts, '%A %B')"),
    ("date_format(ts, 'yyyy-MM-dd''T''HH:mm:ss.SSSSSS')",
     "strftime(ts, '%Y-%m-%dT%H:%M:%S.%f')"),
    ("date_format(dt, 'yyyy/MM/dd')", "strftime(dt, '%Y/%m/%d')"),
    ("regexp_extract(s, '[a-z]+')", "CASE WHEN regexp_matches(s, '[a-z]+') "
     "THEN regexp_extract(s, '[a-z]+') END"),
    ("regexp_extract(s, '(.)(l+)', 2)", "CASE WHEN regexp_matches(s, '(.)(l+)') "
     "THEN regexp_extract(s, '(.)(l+)', 2) END"),
    ("regexp_extract(s, '(.)(l+)', 0)", "CASE WHEN regexp_matches(s, '(.)(l+)') "
     "THEN regexp_extract(s, '(.)(l+)', 0) END"),
    ("regexp(s, 'l+')", "regexp_matches(s, 'l+')"),
    ("regexp(s, '^[a-z ]+$')", "regexp_matches(s, '^[a-z ]+$')"),
    ("split_index(s, ',', 1)", "CASE WHEN s <> '' THEN string_split(s, ',')[2] END"),
    ("split_index(s, 'l', 0)", "CASE WHEN s <> '' THEN string_split(s, 'l')[1] END"),
    ("instr(s, 'l')", None), ("locate('l', s)", "instr(s, 'l')"),
    ("locate(p, s)", "instr(s, p)"),
]


@pytest.mark.parametrize("sql,duck_sql", AGREE)
def test_flink_function_matches_duckdb(sql, duck_sql):
    check(sql, duck_sql=duck_sql)


def test_regexp_extract_null_when_no_match_or_no_such_group():
    # Flink: NULL when nothing matches, when the group took no part in the match and when
    # the pattern has no such group (DuckDB answers '' in all three cases)
    assert values("regexp_extract(s, 'l(l)?(o)?', 1)")[:2] == ["l", None]
    assert values("regexp_extract(s, 'l(l)?(o)?', 3)")[:2] == [None, None]
    assert values("regexp_extract(s, 'zzz')")[:2] == [None, None]
    assert values("regexp_extract(s, 'l+', -1)")[0] is None
    assert values("regexp_extract('foothebar', 'foo(.*?)(bar)', 2)")[0] == "bar"


def test_split_index_counts_from_zero_and_is_null_out_of_range():
    assert values("split_index('a,b,,c', ',', 2)")[0] == ""
    assert values("split_index('a,b,,c', ',', 3)")[0] == "c"
    assert values("split_index('a,b,,c', ',', 4)")[0] is None
    assert values("split_index('a,b,,c', ',', -1)")[0] is None
    assert values("split_index('a::b', '::', 1)")[0] == "b"   # the whole separator
    assert values("split_index('', ',', 0)")[0] is None       # Flink: no parts at all
    assert values("split_index('a b', '', 1)")[0] == "b"      # empty: split on spaces
    assert values("split_index(s, 'l', i)")[:2] == ["", None]


def test_locate_from_a_start_position():
    assert values("locate('l', 'hello', 4)")[0] == 4
    assert values("locate('l', 'hello', 5)")[0] == 0
    assert values("locate('o', 'wörld ño', 3)")[0] == 8      # characters, not bytes
    assert values("locate('h', 'hello', 0)")[0] == 1
    assert values("locate('l', s, i)")[:3] == [3, 4, None]


def test_regexp_with_empty_pattern_matches_nothing():
    assert values("regexp(s, '')")[:3] == [False, False, None]
    assert bind("regexp(s, 'a')").dtype.equals(pa.bool_())


def test_java_patterns_translate_once():
    assert java_format("yyyy-MM-dd HH:mm:ss") == "%Y-%m-%d %H:%M:%S"
    assert java_format("d/M/yy h:m:s a") == "%-d/%-m/%y %-I:%-M:%-S %p"
    assert java_format("'at' HH 'o''clock' 100%") == "at %H o'clock 100%%"
    assert java_format("yyyy-MM-dd'T'HH:mm:ss.SSSXXX") == "%Y-%m-%dT%H:%M:%S.%3fZ"


@pytest.mark.parametrize("pattern", ["yyyy-QQ", "ww", "SS", "dddd", "'open"])
def test_unknown_java_pattern_is_refused(pattern):
    with pytest.raises(PlanError) as e:
        bind("date_format(ts, '" + pattern.replace("'", "''") + "')")
    assert "date_format()" in str(e.value) and "line 1" in str(e.value)


def test_date_format_needs_a_constant_pattern():
    with pytest.raises(PlanError, match="constant"):
        bind("date_format(ts, s)")


DDL = "CREATE TABLE bids WITH (connector = 'filesystem', path = '{path}');"
STREAMING = [
    ("SELECT auction, DATE_FORMAT(date_time, 'yyyy-MM-dd HH:mm:ss') AS d FROM bids",
     "SELECT auction, strftime(date_time, '%Y-%m-%d %H:%M:%S') AS d FROM bids"),
    ("SELECT REGEXP_EXTRACT(url, 'a/([0-9]+)', 1) AS a FROM bids",
     "SELECT regexp_extract(url, 'a/([0-9]+)', 1) AS a FROM bids"),
    ("SELECT SPLIT_INDEX(url, '/', 4) AS part FROM bids",
     "SELECT string_split(url, '/')[5] AS part FROM bids"),
    ("SELECT bidder FROM bids WHERE REGEXP(url, 'q=1[0-2]$')",
     "SELECT bidder FROM bids WHERE regexp_matches(url, 'q=1[0-2]$')"),
    ("SELECT LOCATE('q', url) AS l, INSTR(url, '?') AS i FROM bids",
     "SELECT instr(url, 'q') AS l, instr(url, '?') AS i FROM bids"),
]


@pytest.mark.parametrize("query,duck_query", STREAMING)
def test_flink_functions_in_a_streaming_job(tmp_path, duck, query, duck_query):
    import pyarrow.parquet as pq

    table = make_bids(1500, seed=4)
    pq.write_table(table, tmp_path / "bids.parquet", row_group_size=300)
    got = run_to_table(DDL.format(path=tmp_path / "bids.parquet"), query, tmp_path / "out", 2)
    bids = table  # noqa: F841 - DuckDB reads the local variable by name
    assert normalized_rows(got) == normalized_rows(duck.sql(duck_query).to_arrow_table())


# ---- properties: random patterns and texts against a reference ---------------------------


_TOKENS = [("yyyy", "%Y"), ("yy", "%y"), ("MM", "%m"), ("MMM", "%b"), ("MMMM", "%B"),
           ("dd", "%d"), ("HH", "%H"), ("hh", "%I"), ("mm", "%M"), ("ss", "%S"),
           ("SSS", "%g"), ("SSSSSS", "%f"), ("EEE", "%a"), ("EEEE", "%A"), ("a", "%p"),
           ("DDD", "%j"), ("-", "-"), (" ", " "), (":", ":"), ("/", "/"), ("'T'", "T"),
           ("'at'", "at"), ("''", "'")]


@settings(max_examples=60, deadline=None)
@given(tokens=st.lists(st.sampled_from(_TOKENS), min_size=1, max_size=8),
       moments=st.lists(st.datetimes(min_value=dt.datetime(1970, 1, 1),
                                     max_value=dt.datetime(2100, 1, 1)),
                        min_size=1, max_size=5))
def test_date_format_matches_strftime(tokens, moments):
    # two runs of one letter side by side read as one longer run in Java, and two quoted
    # texts side by side as one with a quote inside ('a''b' is a'b): keep them apart
    java, strf = [], []
    for token, spec in tokens:
        last = java[-1][-1:] if java else ""
        if last and last == token[:1] and (last.isalpha() or last == "'"):
            java.append(" ")
            strf.append(" ")
        java.append(token)
        strf.append(spec)
    table = pa.table({"ts": pa.array([m.replace(tzinfo=dt.UTC) for m in moments],
                                     pa.timestamp("us", tz="UTC"))})
    pattern = "".join(java).replace("'", "''")
    check(f"date_format(ts, '{pattern}')", table,
          duck_sql="strftime(ts, '" + "".join(strf).replace("'", "''") + "')")


def _flink_split_index(text, sep, index):
    if text is None or index is None or index < 0:
        return None
    if text == "":
        return None
    parts = text.split(sep)
    return parts[index] if index < len(parts) else None


@settings(max_examples=80, deadline=None)
@given(rows=st.lists(st.tuples(st.one_of(st.none(), st.text("ab,;", max_size=8)),
                               st.one_of(st.none(), st.integers(-2, 5))),
                     min_size=1, max_size=10),
       sep=st.sampled_from([",", ";;", "ab", "b"]))
def test_split_index_matches_flink(rows, sep):
    table = pa.table({"s": pa.array([r[0] for r in rows], pa.string()),
                      "i": pa.array([r[1] for r in rows], pa.int64())})
    assert values(f"split_index(s, '{sep}', i)", table) == \
        [_flink_split_index(s, sep, i) for s, i in rows]


@pytest.mark.parametrize("sql", ["regexp_extract(s, '(?=l)l')", "regexp(s, '(a)\\1')",
                                 "s ~ '(?<=H)e'", "regexp_replace(s, '(?!x)', '')"])
def test_patterns_the_engines_cannot_run_are_refused_when_planning(sql):
    # Java (Flink) and Python accept lookaround and backreferences; RE2 and Rust's regex,
    # which run the kernels, do not: refused before the job starts, not in the middle
    with pytest.raises(PlanError, match="invalid regular expression") as e:
        bind(sql)
    assert "RE2" in str(e.value)
