"""The Python API: lazy frames that plan to the same logical plans as SQL, column
expressions, windows, and Python UDFs (see docs/python-api.md)."""

from caudal.frame.expr import Expr, call, col, count, lit, when
from caudal.frame.expr import len_ as len  # noqa: F401 - cd.len(), as pl.len(); not in __all__: a star import would hide the builtin
from caudal.frame.frame import (
    Frame,
    GroupBy,
    Window,
    cumulate,
    from_arrow,
    hop,
    read_csv,
    read_json,
    read_kafka,
    read_nexmark,
    read_parquet,
    read_table,
    session,
    sql,
    tumble,
)
from caudal.frame.udf import register_udf, udaf, udf

__all__ = ["Expr", "Frame", "GroupBy", "Window", "call", "col", "count", "cumulate",
           "from_arrow", "hop", "lit", "read_csv", "read_json", "read_kafka", "read_nexmark",
           "read_parquet", "read_table", "register_udf", "session", "sql", "tumble", "udaf",
           "udf", "when"]
