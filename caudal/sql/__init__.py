"""The SQL front end: parse (sqlglot, caudal dialect), resolve names and types, build plans."""

import sys as _sys
import types as _types


class _CallableModule(_types.ModuleType):
    """``caudal.sql`` is this package and, called, the frame API's ``sql()``: ``import caudal
    as cd; cd.sql("SELECT …", b=frame)`` (the package is an attribute of ``caudal`` once
    imported, so the function cannot have the name by itself)."""

    def __call__(self, query, **frames):
        from caudal.frame.frame import sql

        return sql(query, **frames)


_sys.modules[__name__].__class__ = _CallableModule
