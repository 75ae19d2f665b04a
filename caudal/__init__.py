"""caudal: stateful stream processing for Python users.

Streaming SQL compiles to a dataflow of operators that exchange Apache Arrow record batches.
``import caudal as cd`` also gives the frame API (``cd.read_parquet``, ``cd.col``,
``cd.udf``…, caudal.frame), ``cd.sql`` and ``cd.testing``; they are imported on first use,
so ``caudal run`` starts as fast as before.

``caudal.sql`` is two things with one name: the SQL front end, a package (``from
caudal.sql.planner import Planner``, ``python -m caudal.sql.reference``), and ``cd.sql``, the
function below. The package is imported first (its ``__init__`` is a docstring), so that
the import system, which names a package's subpackages as its attributes once, has done so
before ``sql`` is defined; later imports of ``caudal.sql.*`` find the package in
``sys.modules`` and leave the attribute alone. So write ``from caudal.sql.x import y``, not
``import caudal.sql.x as z`` (which reads the attribute: the function).
"""

from __future__ import annotations

import caudal.sql  # noqa: F401 - before the function of that name (see above)
from caudal.version import __version__ as __version__

#: the frame API's public names (imported lazily from caudal.frame)
_FRAME = {"Expr", "Frame", "GroupBy", "Window", "call", "col", "count", "cumulate",
          "from_arrow", "hop", "len", "lit", "read_csv", "read_json", "read_kafka", "read_nexmark",
          "read_parquet", "read_table", "register_udf", "session", "tumble", "udaf", "udf",
          "when"}


def sql(query: str, **frames):
    """A frame from a SQL query over frames named by keyword (caudal.frame.frame.sql):
    ``cd.sql("SELECT bidder, count(*) AS n FROM b GROUP BY bidder", b=bids)``."""
    from caudal.frame.frame import sql as frame_sql

    return frame_sql(query, **frames)


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
