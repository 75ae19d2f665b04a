"""The function catalog behind `caudal functions` and 'did you mean' hints."""

from __future__ import annotations

from caudal.plan.functions.catalog import FUNCTIONS, close_names, describe


def test_describe_lists_callable_functions_with_signatures():
    rows = describe()
    names = [name for name, _ in rows]
    assert names == sorted(names)
    for expected in ["upper", "substr", "regexp_replace", "round", "date_trunc",
                     "to_timestamp", "coalesce", "json_extract_path_text",
                     "extract_json_string", "cardinality", "md5", "now"]:
        assert expected in names
    assert all(signature for _, signature in rows)
    assert "add" not in names and "struct_field" not in names


def test_describe_with_operators():
    names = {name for name, _ in describe(include_operators=True)}
    assert {"add", "like", "case", "in_list", "cast"} <= names


def test_close_names():
    assert close_names("lenght")[0] == "length"
    assert "regexp_replace" in close_names("regex_replace")
    assert close_names("zzzz") == []


def test_every_function_has_a_kernel_and_binder():
    for fn in FUNCTIONS.values():
        assert callable(fn.bind) and callable(fn.kernel)


def test_kernels_return_their_declared_type():
    # compile_projection would cast a stray type; the kernels themselves must not need it
    from caudal.plan.compile import compile_expr
    from tests.plan import (
        test_functions_casts,
        test_functions_conditional,
        test_functions_json,
        test_functions_math,
        test_functions_strings,
        test_functions_time,
    )
    from tests.plan.sql_eval import bind, sample_table

    sqls = [sql for module in (test_functions_strings, test_functions_math,
                               test_functions_time, test_functions_json)
            for sql, _ in module.AGREE]
    sqls += test_functions_conditional.AGREE + test_functions_casts.AGREE
    table = sample_table().slice(0, 5)
    batch = table.to_batches()[0]
    for sql in sqls:
        expr = bind(sql, table)
        value = compile_expr(expr)(batch)
        assert value.type.equals(expr.dtype), f"{sql}: {value.type} != {expr.dtype}"
