"""caudal's SQL dialect: PostgreSQL expressions, plus streaming DDL (WATERMARK FOR, WITH
options) as RisingWave's dialect parses them in sqlglot."""

from __future__ import annotations

import sqlglot
from sqlglot import exp
from sqlglot.dialects.risingwave import RisingWave


class Caudal(RisingWave):
    class Parser(RisingWave.Parser):
        pass

    class Generator(RisingWave.Generator):
        pass


DIALECT = Caudal


def parse_expression(text: str) -> exp.Expression:
    """Parse one scalar expression (used by tests and the Python API)."""
    return sqlglot.parse_one(text, read=Caudal)
