"""Text functions, against DuckDB over the same table, and against PostgreSQL's documented
answers where DuckDB means something else."""

from __future__ import annotations

import pyarrow as pa
import pytest

from caudal.errors import PlanError, RuntimeFailure
from tests.plan.sql_eval import bind, caudal_eval, check, values

# (caudal SQL, DuckDB SQL when it spells the same meaning differently)
AGREE = [
    ("upper(s)", None), ("lower(s)", None), ("length(s)", None), ("char_length(s)", None),
    ("character_length(s)", None), ("bit_length(s)", None),
    ("octet_length(s)", "strlen(s)"),
    ("substr(s, 2, 3)", None), ("substring(s, 0, 2)", None),
    ("substr(s, 3)", None), ("SUBSTRING(s FROM 2 FOR 2)", None), ("SUBSTRING(s FROM 3)", None),
    ("substr(s, 2, abs(i))", None),
    # a NULL count or length over non-NULL text is NULL (p is set where i is NULL: repeat,
    # lpad and rpad gave '', substr the rest of the text)
    ("repeat(p, i)", None), ("lpad(p, i, 'x')", None), ("rpad(p, i, 'x')", None),
    ("substr(p, 1, abs(i))", None), ("substr(p, i)", None), ("left(p, i)", None),
    ("repeat(p, CAST(NULL AS INT))", None), ("lpad(p, CAST(NULL AS INT), 'x')", None),
    ("concat(s, i)", None), ("concat(s, NULL, p)", None), ("concat_ws(',', s, i, p)", None),
    ("s || p", None), ("s || i", None), ("s || NULL", None),
    ("trim(s)", None), ("ltrim(s)", None), ("rtrim(s)", None), ("btrim(s, 'H ')", "trim(s, 'H ')"),
    ("TRIM(BOTH ' ' FROM s)", "trim(s)"), ("TRIM(LEADING ' p' FROM s)", "ltrim(s, ' p')"),
    ("TRIM(TRAILING 'e ' FROM s)", "rtrim(s, 'e ')"), ("rtrim(s, 'lo')", None),
    ("replace(s, 'l', 'LL')", None), ("replace(s, p, '#')", None),
    ("split_part(s, ',', 2)", None), ("split_part(s, ',', -1)", None),
    ("split_part(s, ',', 9)", None), ("split_part(s, p, 1)", None),
    ("starts_with(s, 'He')", None), ("ends_with(s, 'ñ')", None),
    ("starts_with(s, p)", None), ("strpos(s, 'l')", None), ("position('ö' IN s)", None),
    ("strpos(s, p)", None), ("strpos(s, '')", None),
    ("left(s, 2)", None), ("left(s, -2)", None), ("right(s, 3)", None), ("right(s, -2)", None),
    ("left(s, i)", None), ("right(s, i)", None),
    ("lpad(s, 8, '*')", None), ("rpad(s, 8, 'ab')", None), ("lpad(s, 3, '-')", None),
    ("lpad(s, i + 5, 'xy')", None), ("lpad(s, 3)", "lpad(s, 3, ' ')"),
    ("rpad(s, 9)", "rpad(s, 9, ' ')"),
    ("reverse(s)", None), ("repeat(s, 2)", None), ("repeat(s, i)", None), ("md5(s)", None),
    ("translate(s, 'lo', '01')", None), ("ascii(s)", None), ("chr(i + 64)", None),
    ("regexp_replace(s, 'l', 'L')", None), ("regexp_replace(s, '[a-z]', '_', 'g')", None),
    ("regexp_replace(s, '(l+)', '<\\1>', 'g')", None),
    ("s ~ 'l+'", "regexp_matches(s, 'l+')"), ("s ~* '^H'", "regexp_matches(s, '^H', 'i')"),
    ("s !~ 'l'", "NOT regexp_matches(s, 'l')"), ("s !~* 'H'", "NOT regexp_matches(s, 'H', 'i')"),
    ("regexp_like(s, '^[a-z]')", "regexp_matches(s, '^[a-z]')"),
    ("regexp_like(s, 'L', 'i')", "regexp_matches(s, 'L', 'i')"),
    ("regexp_like(s, p)", "regexp_matches(s, p)"),
    ("regexp_split_to_array(s, ',+')", "regexp_split_to_array(s, ',+')"),
    ("s LIKE '%l%'", None), ("s LIKE '_e%'", None), ("s NOT LIKE 'H%'", None),
    ("s ILIKE 'h%'", None), ("s NOT ILIKE '%Ö%'", None), ("s LIKE ''", None),
    ("s LIKE 'a!,%' ESCAPE '!'", None),
]


@pytest.mark.parametrize("sql,duck_sql", AGREE)
def test_text_function_matches_duckdb(sql, duck_sql):
    check(sql, duck_sql=duck_sql)


def test_concat_skips_nulls_but_pipes_propagate_them():
    # PostgreSQL: concat() ignores NULL arguments, || is NULL when a side is NULL
    assert values("concat(NULL, s)")[2] == ""
    assert values("s || 'x'")[2] is None
    # booleans join text as ::text writes them (DuckDB in both, PostgreSQL in ||)
    assert values("concat('v=', bo)")[:3] == ["v=true", "v=false", "v="]
    assert values("'v=' || bo")[:2] == ["v=true", "v=false"]
    assert values("CAST(bo AS TEXT)")[:2] == ["true", "false"]


def test_string_to_array_and_empty_text():
    # PostgreSQL: string_to_array('', ',') is the empty array (DuckDB gives [''])
    assert values("string_to_array(s, ',')") == [
        ["Hello"], ["wörld ñ"], None, [], ["  pad me  "], ["a", "b", "", "c"]]
    assert values("split_part('abc', '', 1)")[0] == "abc"
    assert values("split_part('abc', '', 2)")[0] == ""


def test_regexp_match_returns_groups_or_null():
    # PostgreSQL's regexp_match: the first match's capture groups as text[], NULL if none;
    # DuckDB has no such function
    assert values("regexp_match(s, '(l+)(.)')") == [
        ["ll", "o"], ["l", "d"], None, None, None, None]
    assert values("regexp_match(s, 'l+')")[:2] == [["ll"], ["l"]]
    assert values("regexp_match(s, '(?:a)(,)')")[5] == [","]
    assert values("regexp_match(s, '[(]?(l)')")[0] == ["l"]
    assert values("(regexp_match(s, '([a-z])([a-z])'))[2]")[:2] == ["l", "l"]
    assert values("regexp_match('ABC', 'b', 'i')")[0] == ["B"]


def test_regexp_dot_matches_newline_like_postgresql():
    table = pa.table({"s": ["a\nb", "ab"]})
    assert values("s ~ 'a.b'", table) == [True, False]
    assert values("regexp_replace(s, 'a.b', 'X')", table) == ["X", "ab"]
    assert values("regexp_replace(s, '^b', 'X', 'n')", table) == ["a\nX", "ab"]


def test_regexp_replace_whole_match_reference():
    # PostgreSQL writes the whole match as \&
    assert values("regexp_replace('abc', 'b', '[\\&]')")[0] == "a[b]c"


def test_substr_counts_positions_before_the_start():
    # PostgreSQL: characters -1, 0 and 1 of 'Hello' are just 'H'; DuckDB counts a negative
    # start from the end
    assert values("substr(s, -1, 3)")[:2] == ["H", "w"]
    assert values("substr(s, -5, 3)")[:2] == ["", ""]
    assert values("substr(s, i)")[:2] == ["Hello", "wörld ñ"]  # i = 1, -2


def test_substr_negative_length_is_an_error():
    with pytest.raises(RuntimeFailure, match="negative substring length"):
        caudal_eval("substr(s, 1, -1)")


def test_split_part_zero_is_an_error():
    with pytest.raises(RuntimeFailure, match="must not be zero"):
        caudal_eval("split_part(s, ',', 0)")


def test_initcap_words():
    # DuckDB has no initcap; PostgreSQL capitalizes each word's first letter
    assert values("initcap(s)") == ["Hello", "Wörld Ñ", None, "", "  Pad Me  ", "A,B,,C"]
    assert values("initcap('hELLO o''neil')")[0] == "Hello O'Neil"


def test_like_escape_and_special_characters():
    table = pa.table({"s": ["50%", "50x", "a_b", "a\\b", None]})
    assert values("s LIKE '50!%' ESCAPE '!'", table) == [True, False, False, False, None]
    assert values("s LIKE 'a\\_b'", table) == [False, False, True, False, None]
    assert values("s LIKE 'a\\\\b'", table) == [False, False, False, True, None]
    assert values("s LIKE 'a#\\b' ESCAPE '#'", table) == [False, False, False, True, None]
    assert values("s LIKE '%' ESCAPE ''", table) == [True, True, True, True, None]


def test_pad_with_long_fill_and_truncation():
    assert values("lpad('hello', 3)")[0] == "hel"
    assert values("rpad('hello', 3)")[0] == "hel"
    assert values("lpad('x', 6, 'abc')")[0] == "abcabx"
    assert values("lpad('x', 4, '')")[0] == "x"
    assert values("lpad('x', -1)")[0] == ""


def test_text_functions_reject_numbers():
    with pytest.raises(PlanError, match=r"upper\(INT\) does not exist") as err:
        bind("upper(i)")
    assert "upper(text)" in str(err.value)
    with pytest.raises(PlanError, match=r"length\(DATE\)"):
        bind("length(dt)")
    with pytest.raises(PlanError, match="operator \\|\\| does not take INT and INT"):
        bind("i || 1")


def test_text_functions_arity():
    with pytest.raises(PlanError, match=r"split_part\(\) takes 3 argument\(s\), got 2"):
        bind("split_part(s, ',')")
    with pytest.raises(PlanError, match=r"regexp_match\(\) takes 2 to 3"):
        bind("regexp_match(s)")


def test_constant_patterns_required():
    with pytest.raises(PlanError, match="invalid regular expression"):
        bind("regexp_replace(s, '(', 'x')")
    with pytest.raises(PlanError, match="regex flag 'z'"):
        bind("regexp_replace(s, 'a', 'x', 'z')")


def test_null_arguments_give_null():
    for sql in ["upper(NULL)", "substr(s, NULL)", "replace(s, NULL, 'x')", "left(s, NULL)",
                "regexp_replace(s, NULL, 'x')", "split_part(s, NULL, 1)", "strpos(s, NULL)",
                "s LIKE NULL", "starts_with(s, NULL)", "btrim(s, NULL)"]:
        assert set(values(sql)) == {None}, sql


def test_a_length_beyond_a_gigabyte_is_one_line():
    # lpad(s, 100000000000, 'x') died of a MemoryError with no message
    with pytest.raises(RuntimeFailure, match="requested length 100,000,000,000 too large"):
        values("lpad(s, 100000000000, 'x')")
    with pytest.raises(RuntimeFailure, match="repeat\\(\\): requested length"):
        values("repeat(s, 1000000000)")
