"""JSON in TEXT columns: ``->``, ``->>``, json_extract_path[_text] (PostgreSQL),
json_extract_string (DuckDB) and extract_json_string / get_first_json_object / extract_json
(alias get_json_objects) (Arroyo's names, with Arroyo's meaning: a JSONPath may match several
values; extract_json gives them all as JSON texts, get_first_json_object the first as JSON
text, extract_json_string the first only when it is a JSON string).

DuckDB's JSON kernels do the work (vectorized, and their results match PostgreSQL's: a
string comes out unquoted from ``->>``, an object as JSON text, a JSON null as SQL NULL).
PostgreSQL's operators fail on malformed JSON as PostgreSQL does; Arroyo's functions give
NULL for it, as Arroyo does, so one bad record does not stop a job that asked for them.
"""

from __future__ import annotations

import pyarrow as pa

from caudal.plan.expressions import Call, Expr
from caudal.plan.functions.coerce import arity, cast, constant_value
from caudal.plan.functions.kernels import duckdb_eval, null_of
from caudal.plan.functions.registry import BindError, register
from caudal.plan.functions.strings import raise_signature
from caudal.types import is_text, sql_name

TEXT = pa.string()


def json_path(steps: list[str | int]) -> str:
    """A DuckDB JSON path for object keys and array indexes (negative from the end)."""
    out = "$"
    for step in steps:
        if isinstance(step, int):
            out += f"[{step}]" if step >= 0 else f"[#{step}]"
        else:
            out += '."' + str(step).replace("\\", "\\\\").replace('"', '\\"') + '"'
    return out


#: how the internal names of the operators read in messages
_SHOWN = {"json_get": "->", "json_get_text": "->>", "json_path_text": "json_extract_string",
          "json_path_json": "get_first_json_object", "json_path_string": "extract_json_string",
          "json_path_all": "extract_json"}


def _json_arg(fn: str, args: list[Expr]) -> Expr:
    if not (is_text(args[0].dtype) or pa.types.is_null(args[0].dtype)):
        if fn in ("json_get", "json_get_text"):
            raise BindError(f"operator {_SHOWN[fn]} does not take {sql_name(args[0].dtype)}",
                            hint="JSON is read from TEXT (or JSON) columns")
        raise_signature(fn, args)
    return cast(args[0], TEXT)


def _steps(fn: str, args: list[Expr]) -> list[str | int] | None:
    steps: list[str | int] = []
    for a in args:
        if not (is_text(a.dtype) or pa.types.is_integer(a.dtype) or pa.types.is_null(a.dtype)):
            raise BindError(f"{_SHOWN.get(fn, fn)} takes text keys or integer indexes, got "
                            f"{sql_name(a.dtype)}")
        value = constant_value(a, fn, "key or index")
        if value is None:
            return None
        steps.append(value)
    return steps


def _bind_path(output: str):
    """Binder of the key-by-key forms: ``->``, ``->>``, json_extract_path[_text]."""
    def bind(name: str, args: list[Expr]) -> Call:
        if len(args) < 2:
            raise BindError(f"{name}() takes a JSON text and at least one key")
        source = _json_arg(name, args)
        steps = _steps(name, args[1:])
        return Call(TEXT, output, (source,),
                    {"path": None if steps is None else json_path(steps), "strict": True})
    return bind


def _bind_jsonpath(output: str, dtype: pa.DataType = TEXT):
    """Binder of Arroyo's forms, which take one JSONPath text ('$.a.b[0]')."""
    def bind(name: str, args: list[Expr]) -> Call:
        arity(name, args, 2)
        source = _json_arg(name, args)
        if not (is_text(args[1].dtype) or pa.types.is_null(args[1].dtype)):
            raise_signature(name, args)
        path = constant_value(args[1], name, "JSON path")
        if path is not None and not str(path).startswith("$"):
            raise BindError(f"{name}(): a JSON path starts with '$', got {path!r}",
                            hint="for example '$.user.name' or '$.items[0]'")
        return Call(dtype, output, (source,), {"path": path, "strict": False})
    return bind


def _extract(sql: str, wildcard_sql: str | None = None, dtype: pa.DataType = TEXT):
    """Kernel running DuckDB's ``sql`` (``wildcard_sql`` for a path that can match several
    values: DuckDB then returns a list of them)."""
    def run(args, call):
        path = call.options["path"]
        if path is None:
            return null_of(dtype)
        chosen = wildcard_sql if wildcard_sql is not None and _is_wildcard(path) else sql
        expr = chosen if call.options["strict"] else \
            f"CASE WHEN json_valid(c0) THEN {chosen} END"
        return duckdb_eval(expr, args, dtype, _SHOWN.get(call.func, call.func),
                           [path] * chosen.count("?"))
    return run


def _is_wildcard(path: str) -> bool:
    """True when a JSONPath can match several values (DuckDB then returns a list)."""
    return "*" in path or ".." in path


_TEXT_SQL = "json_extract_string(c0, ?)"
_JSON_SQL = "CAST(json_extract(c0, ?) AS VARCHAR)"

register("json_get", _bind_path("json_get"), _extract(_JSON_SQL),
         "json -> key | index -> json text", internal=True)
register("json_get_text", _bind_path("json_get_text"), _extract(_TEXT_SQL),
         "json ->> key | index -> text", internal=True)
register("json_extract_path", _bind_path("json_get"), _extract(_JSON_SQL),
         "json_extract_path(json, key, ...) -> json text")
register("json_extract_path_text", _bind_path("json_get_text"), _extract(_TEXT_SQL),
         "json_extract_path_text(json, key, ...) -> text")
register("json_extract_string", _bind_jsonpath("json_path_text"),
         _extract(_TEXT_SQL),
         "json_extract_string(json, '$.path') -> text, NULL for malformed JSON")
register("json_path_text", _bind_jsonpath("json_path_text"), _extract(_TEXT_SQL),
         "json path text", internal=True)
#: the first match only when it is a JSON string (Arroyo: NULL for a number or an object)
_STRING_SQL = ("CASE WHEN json_type(json_extract(c0, ?)) = 'VARCHAR' "
               "THEN json_extract_string(c0, ?) END")
_FIRST_SQL = "CAST(json_extract(c0, ?)[1] AS VARCHAR)"
_FIRST_STRING_SQL = ("CASE WHEN json_type(json_extract(c0, ?)[1]) = 'VARCHAR' "
                     "THEN json_extract_string(json_extract(c0, ?)[1], '$') END")
_ALL_SQL = "CAST(json_extract(c0, ?) AS VARCHAR[])"
_ONE_AS_LIST_SQL = ("CASE WHEN json_extract(c0, ?) IS NULL THEN []::VARCHAR[] "
                    "ELSE [CAST(json_extract(c0, ?) AS VARCHAR)] END")
TEXT_LIST = pa.list_(TEXT)

register("get_first_json_object", _bind_jsonpath("json_path_json"),
         _extract(_JSON_SQL, _FIRST_SQL),
         "get_first_json_object(json, '$.path') -> the first match as json text, NULL for "
         "malformed JSON")
register("json_path_json", _bind_jsonpath("json_path_json"), _extract(_JSON_SQL, _FIRST_SQL),
         "json path json", internal=True)
register("extract_json_string", _bind_jsonpath("json_path_string"),
         _extract(_STRING_SQL, _FIRST_STRING_SQL),
         "extract_json_string(json, '$.path') -> the first match if it is a JSON string, "
         "else NULL (also for malformed JSON)")
register("json_path_string", _bind_jsonpath("json_path_string"),
         _extract(_STRING_SQL, _FIRST_STRING_SQL), "json path string", internal=True)
register(["extract_json", "get_json_objects"], _bind_jsonpath("json_path_all", TEXT_LIST),
         _extract(_ONE_AS_LIST_SQL, _ALL_SQL, TEXT_LIST),
         "extract_json(json, '$.path') -> text[]: every match as json text, NULL for "
         "malformed JSON")
register("json_path_all", _bind_jsonpath("json_path_all", TEXT_LIST),
         _extract(_ONE_AS_LIST_SQL, _ALL_SQL, TEXT_LIST), "json path all", internal=True)
