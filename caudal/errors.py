"""The errors users see. Each carries where it happened and what would be accepted.

The CLI prints ``str(error)`` on one line and exits 2; tracebacks only with ``--debug``.
"""

from __future__ import annotations


class CaudalError(Exception):
    """Base of every error meant for a user (not a bug in caudal)."""

    exit_code = 2

    def __init__(self, message: str, *, line: int | None = None, col: int | None = None,
                 hint: str | None = None):
        super().__init__(message)
        self.message = message
        self.line = line
        self.col = col
        self.hint = hint

    def with_position(self, line: int | None, col: int | None) -> CaudalError:
        """Attach a position if the error has none yet (inner code rarely knows it)."""
        if self.line is None and line is not None:
            self.line, self.col = line, col
        return self

    def __str__(self) -> str:
        where = ""
        if self.line is not None:
            where = f"line {self.line}, column {self.col}: " if self.col else f"line {self.line}: "
        text = f"{where}{self.message}"
        if self.hint:
            text += f" ({self.hint})"
        return text


class SqlSyntaxError(CaudalError):
    """The SQL text does not parse."""


class PlanError(CaudalError):
    """The SQL parses but names something unknown, mixes types, or asks for what cannot run."""


class ConfigError(CaudalError):
    """A connector, format or option is unknown or has a bad value."""


class DataError(CaudalError):
    """A record in a source is malformed and the table's bad_data policy is `fail`."""


class RuntimeFailure(CaudalError):
    """A running job failed (an operator raised, a source broke)."""

    exit_code = 1


def names_hint(name: str, names: list[str], what: str = "columns") -> str:
    """The hint of an unknown name: the close ones first (``did you mean 'price'?``, as
    Polars and PostgreSQL suggest a misspelt column), then all of them."""
    import difflib

    by_lower = {n.lower(): n for n in names}
    close = difflib.get_close_matches(name.lower(), list(by_lower), n=3, cutoff=0.6)
    said = f"{what}: {', '.join(names) or '(none)'}"
    if not close:
        return said
    return f"did you mean {' or '.join(repr(by_lower[c]) for c in close)}? {said}"
