"""The Nexmark queries of the benchmark: SQL files users can read and run themselves.

Each query is ``bench/nexmark/<name>.sql``, a complete caudal script (``caudal run`` works on
it: nexmark source tables, a blackhole ``results`` table, one INSERT), whose leading comment
lines carry what the harness needs to know::

    -- Nexmark q5: hot items. <what the query computes>
    -- kind: windowed aggregate + window join
    -- needs: window joins          (what caudal must support; shown if it cannot plan it)
    -- latency: window_end          (the result column a row's latency is measured from)

Its batch answer for DuckDB is ``bench/nexmark/duckdb/<name>.sql`` (a SELECT over tables
``bid``, ``auction`` and ``person``), or a first line ``-- batch: none (why)`` when a batch
engine cannot express it. Keeping the SQL in files, not in Python strings, means the figures
are for exactly the text a user reads.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from caudal.errors import ConfigError

#: where the query files live in a source checkout (``caudal bench`` runs from one)
DEFAULT_DIR = Path(__file__).resolve().parents[2] / "bench" / "nexmark"

#: a header line ``-- key: value``
_HEADER = re.compile(r"^--\s*(kind|needs|latency|batch)\s*:\s*(.*?)\s*$", re.IGNORECASE)


@dataclass
class Query:
    """One benchmark query: its caudal script, DuckDB batch SQL, and what the header says."""

    name: str
    title: str
    caudal_sql: str
    kind: str = ""
    #: features caudal needs for it (shown when the planner refuses the query)
    needs: str = ""
    #: the result column holding the time a result is due (event time or window end)
    latency_column: str | None = None
    #: DuckDB's SELECT, or None with ``batch_reason`` saying why there is none
    duckdb_sql: str | None = None
    batch_reason: str = ""
    path: Path = field(default_factory=Path)

    @property
    def tables(self) -> list[str]:
        """The Nexmark kinds the script reads (bid, auction, person)."""
        return sorted(set(re.findall(r"table\s*=\s*'(bid|auction|person)'", self.caudal_sql)))


def _sort_key(name: str) -> tuple[int, int, str]:
    """Nexmark numbering first (q0, q1, …, q22), then caudal's own queries by name."""
    m = re.fullmatch(r"q(\d+)", name)
    return (0, int(m.group(1)), "") if m else (1, 0, name)


def _parse(path: Path) -> Query:
    text = path.read_text()
    title = ""
    meta: dict[str, str] = {}
    for line in text.splitlines():
        if not line.startswith("--"):
            break
        m = _HEADER.match(line)
        if m:
            meta[m.group(1).lower()] = m.group(2)
        elif not title:
            title = line.lstrip("- ").strip()
    query = Query(name=path.stem, title=title, caudal_sql=text, kind=meta.get("kind", ""),
                  needs=meta.get("needs", ""), latency_column=meta.get("latency") or None,
                  path=path)
    batch = path.parent / "duckdb" / path.name
    if batch.exists():
        sql = batch.read_text()
        first = sql.lstrip().splitlines()[0] if sql.strip() else ""
        m = _HEADER.match(first)
        if m and m.group(1).lower() == "batch":
            query.batch_reason = m.group(2).removeprefix("none").strip(" ()") or "not expressible"
        else:
            query.duckdb_sql = sql.strip().rstrip(";")
    else:
        query.batch_reason = "no DuckDB version written"
    return query


def load_queries(directory: Path | None = None) -> dict[str, Query]:
    """Every query of ``directory`` (default: the checkout's bench/nexmark), in order."""
    directory = Path(directory or DEFAULT_DIR)
    if not directory.is_dir():
        raise ConfigError(f"no query directory {directory}",
                          hint="run from a caudal source checkout, or pass --queries DIR")
    paths = sorted(directory.glob("*.sql"), key=lambda p: _sort_key(p.stem))
    return {p.stem: _parse(p) for p in paths}


def select(queries: dict[str, Query], names: list[str]) -> list[Query]:
    """The named queries (``all`` for every one), rejecting unknown names."""
    if not names or names == ["all"]:
        return list(queries.values())
    out = []
    for name in names:
        key = name.lower()
        if key.isdigit():
            key = f"q{key}"
        if key not in queries:
            raise ConfigError(f"unknown query {name!r}", hint="queries: " + ", ".join(queries))
        out.append(queries[key])
    return out
