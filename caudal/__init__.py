"""caudal: stateful stream processing for Python users.

Streaming SQL compiles to a dataflow of operators that exchange Apache Arrow record batches.
``import caudal as cd`` also gives the frame API (``cd.read_parquet``, ``cd.col``,
``cd.udf``…, caudal.frame) and ``cd.testing``; they are imported on first use, so
``caudal run`` starts as fast as before.
"""

__version__ = "0.1.0"

#: the frame API's public names (imported lazily from caudal.frame)
_FRAME = {"Expr", "Frame", "GroupBy", "Window", "call", "col", "count", "cumulate",
          "from_arrow", "hop", "lit", "read_csv", "read_json", "read_kafka", "read_nexmark",
          "read_parquet", "read_table", "register_udf", "session", "sql", "tumble", "udaf",
          "udf", "when"}


def __getattr__(name: str):
    if name in _FRAME:
        import caudal.frame as frame

        return getattr(frame, name)
    if name == "testing":
        import caudal.testing as testing

        return testing
    raise AttributeError(f"module 'caudal' has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + list(_FRAME) + ["testing"])
