"""Java UDF classes caudal knows by name, with a vectorized equivalent of each.

caudal runs no JVM code, so ``CREATE FUNCTION f AS '<Java class>'`` (sql.create_function)
works only for the classes listed in ``JAVA_CLASSES``: benchmark suites ship a few small
UDFs (Flink's Nexmark q14 uses ``CountChar``), and their meaning is simple enough to
re-implement here. Each is also a function under its own name.
"""

from __future__ import annotations

import pyarrow as pa

from caudal import compute as pc
from caudal.plan.expressions import Call, Expr, Literal
from caudal.plan.functions.coerce import arity, cast
from caudal.plan.functions.kernels import is_scalar, null_of
from caudal.plan.functions.registry import BindError, register
from caudal.types import is_text


def _bind_count_char(name: str, args: list[Expr]) -> Call:
    arity(name, args, 2)
    text, char = args
    if not (is_text(text.dtype) or pa.types.is_null(text.dtype)) or \
            not (isinstance(char, Literal) and is_text(char.dtype)):
        raise BindError(f"{name}() takes a text and a constant character",
                        hint=f"{name}(extra, 'c')")
    return Call(pa.int64(), name, (cast(text, pa.string()), char))


def _count_char(args, call):
    """How many bytes of the UTF-8 text equal the first byte of the character, 0 for NULL
    text (as nexmark's CountChar counts)."""
    text, char = args
    if not char.is_valid or not char.as_py():
        return null_of(pa.int64())
    first = char.as_py().encode()[:1]
    if is_scalar(text):
        value = text.as_py()
        return pa.scalar(0 if value is None else value.encode().count(first), pa.int64())
    counted = pc.count_substring(text.cast(pa.binary()), pattern=first)
    return pc.fill_null(counted.cast(pa.int64()), 0)


register("count_char", _bind_count_char, _count_char,
         "count_char(text, 'c') -> bigint: how many times the character occurs in the text "
         "(0 for NULL): Flink Nexmark's CountChar UDF")

#: Java class -> the caudal function that does what it does
JAVA_CLASSES = {"com.github.nexmark.flink.udf.CountChar": "count_char"}
