"""JSON in TEXT columns, struct fields and arrays."""

from __future__ import annotations

import pyarrow as pa
import pytest

from caudal.errors import PlanError, RuntimeFailure
from tests.plan.sql_eval import bind, caudal_eval, check, values

AGREE = [
    ("j ->> 'a'", None), ("j -> 'a'", None), ("j -> 'c'", None), ("j ->> 'n'", None),
    ("j -> 'a' ->> 'b'", None), ("j -> 'a' -> 'b'", None), ("j ->> 1", None),
    ("j -> 'c' ->> 0", None), ("j -> 'c' ->> -1", "json_extract_string(j, '$.c[#-1]')"),
    ("json_extract_path_text(j, 'a', 'b')", "j -> 'a' ->> 'b'"),
    ("json_extract_path(j, 'c')", "j -> 'c'"),
    ("json_extract_string(j, '$.a.b')", None), ("extract_json_string(j, '$.a.b')",
                                                "json_extract_string(j, '$.a.b')"),
    ("get_first_json_object(j, '$.a')", "CAST(json_extract(j, '$.a') AS VARCHAR)"),
    ("l[1]", None), ("l[2]", None), ("l[i]", None), ("l[i + 1]", None), ("l[0]", "NULL"),
    ("cardinality(l)", "len(l)"), ("ARRAY[i, 2]", None), ("ARRAY[s, 'x']", None),
    ("st.x", None), ("st.y", None), ("t.st.x", "st.x"), ("(st).y", "st.y"),
]


@pytest.mark.parametrize("sql,duck_sql", AGREE)
def test_json_and_nested_match_duckdb(sql, duck_sql):
    check(sql, duck_sql=duck_sql)


def test_json_null_and_missing_keys():
    # ->> of a JSON null is SQL NULL; -> gives the JSON text 'null' (as in PostgreSQL)
    assert values("j ->> 'a'")[3] is None
    assert values("j -> 'a'")[3] == "null"
    assert values("j ->> 'missing'") == [None] * 6
    assert values("j #>> '{a,b}'")[0] == "x"


def test_malformed_json():
    table = pa.table({"j": ['{"a": 1}', "not json", None]})
    # PostgreSQL rejects malformed JSON; Arroyo's extract_json_string gives NULL
    # the message named DuckDB's error class and layout ("->> failed: Invalid Input Error:
    # Malformed JSON at byte 0 of input: invalid literal.  Input: \"not json\"")
    for call in ("j ->> 'a'", "j -> 'a'", "json_extract_path_text(j, 'a')"):
        with pytest.raises(RuntimeFailure) as e:
            caudal_eval(call, table)
        operator = "->>" if "->>" in call or "text" in call else "->"
        assert e.value.message.startswith(
            f"{operator}: malformed JSON 'not json' (at byte 0: invalid literal)"), e.value.message
        assert e.value.hint == "json_extract_string(json, '$.key') gives NULL for it"
    assert values("json_extract_string(j, '$.a')", table) == ["1", None, None]
    # Arroyo's extract_json_string gives only JSON strings: NULL for the number 1
    assert values("extract_json_string(j, '$.a')", table) == [None, None, None]


def test_json_errors():
    with pytest.raises(PlanError, match="JSON path starts with"):
        bind("extract_json_string(j, 'a.b')")
    with pytest.raises(PlanError, match="needs a constant key"):
        bind("j ->> s")
    with pytest.raises(PlanError, match="operator ->> does not take INT"):
        bind("i ->> 'a'")


def test_array_length_of_empty_array_is_null():
    # PostgreSQL: array_length('{}', 1) is NULL (DuckDB: 0); cardinality('{}') is 0
    assert values("array_length(l, 1)") == [3, None, None, 1, 2, 2]
    assert values("cardinality(l)")[1] == 0
    assert values("array_length(l, 2)") == [None] * 6


def test_struct_fields_nested_and_case_insensitive():
    inner = pa.struct([("y", pa.int64())])
    table = pa.table({"b": pa.array([{"x": {"y": 1}}, {"x": None}, None],
                                    pa.struct([("x", inner)])),
                      "bid": pa.array([{"Price": 5}, {"Price": None}, {"Price": 7}],
                                      pa.struct([("Price", pa.int64())]))})
    assert values("b.x.y", table) == [1, None, None]
    assert values("t.b.x.y", table) == [1, None, None]
    assert values("bid.price", table) == [5, None, 7]
    with pytest.raises(PlanError, match="struct has no field 'z'"):
        bind("b.x.z", table)
    with pytest.raises(PlanError, match="cannot read field 'y' of a BIGINT"):
        bind("bid.price.y", table)


def test_unknown_qualified_names():
    with pytest.raises(PlanError, match="unknown column 'nope' in t"):
        bind("t.nope")
    with pytest.raises(PlanError, match="unknown column 'u'"):
        bind("u.x")


def test_array_subscript_types():
    assert bind("l[1]").dtype == pa.int64()
    with pytest.raises(PlanError, match="array subscript"):
        bind("s[1]")
    with pytest.raises(PlanError, match="integer index"):
        bind("l['a']")
    assert values("(ARRAY[10, 20, 30])[i]")[:2] == [10, None]


def test_arroyo_json_functions():
    """Arroyo's meaning: a JSONPath may match several values; extract_json (alias
    get_json_objects) gives every match as JSON text, get_first_json_object the first one,
    extract_json_string the first only when it is a string; malformed JSON gives NULL."""
    table = pa.table({"j": ['{"a": 1, "b": "x", "c": {"d": "hello"}, "l": [1, "y", {"z": 2}]}',
                            "not json", None, '{"a": null}']})
    assert values("extract_json(j, '$.l[*]')", table) == [["1", '"y"', '{"z":2}'], None, None,
                                                          []]
    assert values("get_json_objects(j, '$.c.d')", table) == [['"hello"'], None, None, []]
    assert values("get_first_json_object(j, '$.l[*]')", table) == ["1", None, None, None]
    assert values("get_first_json_object(j, '$.c')", table) == ['{"d":"hello"}', None, None,
                                                                None]
    assert values("extract_json_string(j, '$.c.d')", table) == ["hello", None, None, None]
    assert values("extract_json_string(j, '$.b')", table) == ["x", None, None, None]
    assert values("extract_json_string(j, '$.l[*]')", table) == [None] * 4
    assert values("j -> 'c' ->> 'd'", table.slice(0, 1)) == ["hello"]
