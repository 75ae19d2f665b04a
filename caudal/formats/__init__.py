"""File formats: how rows are laid out in files (Parquet, JSON lines, CSV).

Each format module has ``NAME``, ``EXTENSIONS``, ``infer_schema``, a reader and a
``Writer(stream, schema)``; connectors pick one by name or by file extension, so a new format
is one module and one line here.
"""

from __future__ import annotations

import importlib
from types import ModuleType

import pyarrow as pa

from caudal.errors import ConfigError, DataError

#: format name -> module
FORMATS = {
    "parquet": "caudal.formats.parquet",
    "json": "caudal.formats.json",
    "csv": "caudal.formats.csv",
    "debezium_json": "caudal.formats.debezium_json",
}
#: compressed text files (``.csv.gz``) are read through Arrow's decompressing streams
COMPRESSIONS = (".gz", ".bz2", ".zst", ".lz4")


def get(name: str) -> ModuleType:
    """The module of format ``name``; ConfigError naming the accepted ones otherwise."""
    if name not in FORMATS:
        raise ConfigError(f"unknown format {name!r}", hint="accepted: " + ", ".join(FORMATS))
    return importlib.import_module(FORMATS[name])


def options_of(name: str | None) -> dict[str, str]:
    """The WITH options format ``name`` reads (``OPTIONS`` of its module); with no name
    (the format comes from file extensions) those of every format."""
    names = [name] if name is not None else list(FORMATS)
    out: dict[str, str] = {}
    for n in names:
        out.update(getattr(get(n), "OPTIONS", {}))
    return out


def with_options(module: ModuleType, options: dict[str, str]) -> dict:
    """Keyword arguments passing a table's options to a format's reader or writer, when the
    format has options of its own (json, debezium_json)."""
    return {"options": options} if getattr(module, "OPTIONS", None) else {}


def extensions(name: str) -> tuple[str, ...]:
    """File name endings of format ``name``, with the compressed variants of text formats."""
    own = get(name).EXTENSIONS
    if name == "parquet":
        return own
    return own + tuple(e + c for e in own for c in COMPRESSIONS)


def from_file_name(file_name: str) -> str | None:
    """The format a file name's extension stands for, or None."""
    lower = file_name.lower()
    for name in FORMATS:
        if lower.endswith(extensions(name)):
            return name
    return None


def match_columns(available: list[str], schema: pa.Schema, where: str,
                  error: type[Exception] = DataError) -> list[str]:
    """The file's name for each column of ``schema``: exact, else the one differing only in
    case (SQL names are case-insensitive); ``error`` names the missing column otherwise."""
    exact = set(available)
    folded = {a.lower(): a for a in available}
    names = []
    for name in schema.names:
        found = name if name in exact else folded.get(name.lower())
        if found is None:
            raise error(f"{where} has no column {name!r}",
                        hint="its columns: " + ", ".join(available))
        names.append(found)
    return names


def empty_rows(num_rows: int) -> pa.RecordBatch:
    """A batch of ``num_rows`` rows and no columns (what ``SELECT count(*)`` reads)."""
    return pa.RecordBatch.from_struct_array(pa.nulls(num_rows, pa.struct([])))
