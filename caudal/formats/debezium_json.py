"""Debezium JSON: a changelog as JSON lines, one change per line::

    {"before": null, "after": {"id": 1, "n": 3}, "op": "c"}
    {"before": {"id": 1, "n": 3}, "after": {"id": 1, "n": 4}, "op": "u"}
    {"before": {"id": 1, "n": 4}, "after": null, "op": "d"}

``c`` creates a row, ``u`` replaces ``before`` by ``after``, ``d`` deletes ``before`` (``r``, a
snapshot read, counts as a create). Values are encoded as in the ``json`` format, with its
options (``json.timestamp_format``): Debezium's epoch numbers read into TIMESTAMP(3) (ms),
TIMESTAMP(6) (µs) and TIMESTAMP(9) (ns) columns, and into DATE (days).

Writing: an updating stream's update pairs (``_op`` -2 then +2, plan.changelog) become one
``u`` line, other retractions ``d`` lines and insertions ``c`` lines; an append-only stream
(no ``_op``) is all creates. Reading: each line becomes one or two rows with ``_op`` (a ``u``
is a -2 row then a +2 row), so a table in this format is an updating source. Both directions
are vectorized: a batch is one ``take`` per image and one JSON encode (Arrow's string kernels
for rows of integers and plain text, Polars for the rest).
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np
import pyarrow as pa

from caudal import compute as pc
from caudal.errors import ConfigError, DataError
from caudal.formats import bad_data, lines
from caudal.formats import json as json_format
from caudal.plan.changelog import (
    DELETE,
    INSERT,
    OP,
    OP_TYPE,
    UPDATE_AFTER,
    UPDATE_BEFORE,
    ops_of,
)

NAME = "debezium_json"
EXTENSIONS = (".json", ".jsonl", ".ndjson")
#: a table in this format is a changelog (an updating source; a sink that takes one)
CHANGELOG = True
_CODES = {"c": INSERT, "r": INSERT, "u": UPDATE_AFTER, "d": DELETE}
PAYLOAD = "payload"
#: Flink's option: each line's change is inside a ``payload`` object
SCHEMA_INCLUDE = "debezium-json.schema-include"


def envelope(schema: pa.Schema, options: dict[str, str] | Any = None) -> pa.Schema:
    """The schema of one line: ``before`` and ``after`` rows of ``schema``, and ``op``; with
    Flink's ``'debezium-json.schema-include' = 'true'`` also the three inside ``payload``,
    as Kafka Connect's JSON converter writes them with its schemas enabled
    (``{"schema": {…}, "payload": {"before": …}}``; a line without it is read too). Only
    then: the parser would spend time on a field that is never there."""
    row = pa.struct(list(schema))
    change = [("before", row), ("after", row), ("op", pa.string())]
    if not _schema_include(options):
        return pa.schema(change)
    return pa.schema([*change, (PAYLOAD, pa.struct(change))])


def _schema_include(options: dict[str, str] | Any) -> bool:
    value = (options or {}).get(SCHEMA_INCLUDE, "false") if isinstance(options, dict) \
        else "false"
    text = str(value).strip().lower()
    if text not in ("true", "false"):
        raise ConfigError(f"option {SCHEMA_INCLUDE} = {value!r}", hint="accepted: true, false")
    return text == "true"


def _unwrapped(table: pa.Table) -> pa.Table:
    """Each line's change, from its ``payload`` object when it has one."""
    if PAYLOAD not in table.column_names:
        return table
    payload = table.column(PAYLOAD).combine_chunks() if table.num_rows else None
    table = table.drop_columns([PAYLOAD])
    if payload is None or not payload.null_count < len(payload):
        return table
    inside = pc.is_valid(payload)
    for i, name in enumerate(table.column_names):
        table = table.set_column(i, name, pc.if_else(inside, payload.field(name),
                                                     table.column(name).combine_chunks()))
    return table


def check_options(options: dict[str, str], schema: pa.Schema | None,
                  sink: bool = False) -> None:
    """Planning-time check of the json options this format takes."""
    json_format.JsonOptions.of(options)
    _schema_include(options)


def infer_schema(stream: Any, options: dict[str, str] | None = None) -> pa.Schema:
    """The row schema from the ``after`` (or ``before``) objects at the start of a file."""
    outer = json_format.infer_schema(stream)
    if PAYLOAD in outer.names and pa.types.is_struct(outer.field(PAYLOAD).type) and \
            not ({"after", "before"} & set(outer.names)):
        outer = pa.schema(list(outer.field(PAYLOAD).type))
    for name in ("after", "before"):
        if name in outer.names and pa.types.is_struct(outer.field(name).type):
            # a column that is only NULL in the sample is TEXT, as in the json format
            return pa.schema([pa.field(f.name, pa.string()) if pa.types.is_null(f.type) else f
                              for f in outer.field(name).type])
    raise ConfigError("a debezium_json file needs 'before' / 'after' objects",
                      hint="lines like {\"before\": null, \"after\": {…}, \"op\": \"c\"}")


def changes(table: pa.Table, schema: pa.Schema,
            policy: bad_data.BadDataPolicy | None = None,
            origin: Callable[[], Sequence[int]] | None = None,
            held: Sequence[tuple[int, str]] = ()) -> pa.Table:
    """Envelope rows -> changelog rows (the columns of ``schema`` and ``_op``). A line whose
    ``op`` is not c, r, u or d is malformed: an error, or dropped and counted when the
    table says ``bad_data = 'drop'``. ``origin()`` gives what ``policy.reject`` names each
    row by (its line, or its message in a polled batch); ``held`` the records the decoder
    rejected before (``bad_data.Held``), named with these, first record first."""
    table = _unwrapped(table)
    op_text = table.column("op").combine_chunks() if table.num_rows else \
        pa.array([], pa.string())
    codes = pc.index_in(op_text, pa.array(list(_CODES)))
    # the row an op needs: c, r and u an "after", u and d a "before" (Flink refuses these
    # too); without it the change would be a row of NULLs
    needs_after = pc.fill_null(pc.less(codes, 3), False)
    needs_before = pc.fill_null(pc.greater_equal(codes, 2), False)
    missing = pc.or_(pc.and_(needs_after, pc.is_null(table.column("after"))),
                     pc.and_(needs_before, pc.is_null(table.column("before"))))
    if codes.null_count or pc.any(missing).as_py():
        bad = pc.or_(pc.is_null(codes), missing)

        def what(row: int) -> str:
            op = op_text[row].as_py()
            if not codes[row].is_valid:
                return f"debezium op {op!r} is not c, r, u or d" + (
                    f" (a line whose change is inside \"payload\" needs "
                    f"'{SCHEMA_INCLUDE}' = 'true')" if op is None else "")
            side = "after" if needs_after[row].as_py() and \
                not table.column("after")[row].is_valid else "before"
            return f"debezium op {op!r} with \"{side}\": null" + (
                " (a Debezium Postgres connector sends a before row only for tables with "
                "REPLICA IDENTITY FULL)" if side == "before" else "")

        rows = np.flatnonzero(np.asarray(bad))
        if origin is not None and policy is not None:   # the error path only
            names = origin()
            _reject(policy, [*held, *((int(names[i]), what(int(i))) for i in rows)])
        else:
            where = f"{policy.where}: " if policy is not None else ""
            if policy is None or policy.mode != "drop":
                raise DataError(f"malformed record in {where}{what(int(rows[0]))}",
                                hint="fix the record, or set bad_data = 'drop' to skip "
                                     "such records")
            policy.metrics.bad_rows_dropped += len(rows)
            if len(policy.metrics.bad_row_examples) < bad_data.MAX_EXAMPLES:
                policy.metrics.bad_row_examples.append(where + what(int(rows[0])))
        keep = pc.invert(bad)
        table = table.filter(keep)
        op_text, codes = pc.filter(op_text, keep), pc.filter(codes, keep)
    elif held and policy is not None:
        _reject(policy, held)
    n = table.num_rows
    code = np.array(list(_CODES.values()), dtype=np.int8)[
        codes.to_numpy(zero_copy_only=False)]
    is_update = code == UPDATE_AFTER
    counts = np.where(is_update, 2, 1)
    rows = np.repeat(np.arange(n), counts)
    first = np.ones(len(rows), dtype=bool)
    first[1:] = rows[1:] != rows[:-1]
    ops = code[rows].copy()
    ops[is_update[rows] & first] = UPDATE_BEFORE
    use_after = ops > 0
    before = _rows(table.column("before"), schema)
    after = _rows(table.column("after"), schema)
    both = pa.concat_tables([before, after])
    out = both.take(pa.array(rows + np.where(use_after, n, 0)))
    return out.append_column(pa.field(OP, OP_TYPE), pa.array(ops, OP_TYPE))


def _reject(policy: bad_data.BadDataPolicy, records: Sequence[tuple[int, str]]) -> None:
    """Hands malformed records to ``policy`` in record order (``fail`` names the first)."""
    for name, reason in sorted(records, key=lambda r: r[0]):
        policy.reject(name, reason)


def _rows(column: pa.ChunkedArray, schema: pa.Schema) -> pa.Table:
    struct = column.combine_chunks()
    if isinstance(struct, pa.ChunkedArray):  # no chunks
        struct = pa.array([], type=struct.type)
    fields = struct.flatten()
    return pa.Table.from_arrays([f.cast(t.type) if not f.type.equals(t.type) else f
                                 for f, t in zip(fields, schema)], schema=schema)


#: the json format's options that apply here
OPTIONS = {k: v for k, v in json_format.OPTIONS.items() if k != "json.unstructured"}
OPTIONS[SCHEMA_INCLUDE] = (
    "Flink's option: true reads the change inside each line's payload object (Kafka "
    "Connect's JSON with schemas); default false")


def read(stream: Any, schema: pa.Schema, policy: bad_data.BadDataPolicy,
         block_size: int = lines.BLOCK_SIZE,
         options: dict[str, str] | json_format.JsonOptions | None = None
         ) -> Iterator[pa.Table]:
    """Changelog tables (``schema`` plus ``_op``) from a stream of Debezium JSON lines; a
    malformed line (bad JSON or a bad op) is named by its line number."""
    if OP in schema.names:
        schema = schema.remove(schema.get_field_index(OP))
    decoder = json_format.Decoder(envelope(schema, options), options)
    for first_line, data in lines.read_blocks(stream, lines.last_newline, block_size):
        held = bad_data.Held(policy)
        try:
            table = decoder.decode(data)
        except pa.ArrowInvalid:
            good = bad_data.decode_rows(lines.split_lines(data, first_line), decoder.decode,
                                        decoder.explain, held)
            table = pa.concat_tables(good) if good else decoder.schema.empty_table()
        if table.num_rows or held.rejected:
            yield changes(table, schema, policy, _line_numbers(data, first_line, held),
                          held.rejected)


def _line_numbers(data: bytes, first_line: int, held: bad_data.Held
                  ) -> Callable[[], list[int]]:
    """The line number of each decoded row of a block (asked for on the error path only)."""
    def numbers() -> list[int]:
        rejected = {line for line, _ in held.rejected}
        return [n for n, _ in lines.split_lines(data, first_line) if n not in rejected]
    return numbers


def encode(batch: pa.RecordBatch,
           options: dict[str, str] | json_format.JsonOptions | None = None,
           schema: pa.Schema | None = None) -> bytes:
    """Debezium JSON lines for a changelog batch (or an append-only one: all creates);
    ``schema`` is the table's declared one (it says which timestamps are zoned)."""
    data = encode_buffer(batch, options, schema)
    return data if isinstance(data, bytes) else data.to_pybytes()


def encode_buffer(batch: pa.RecordBatch,
                  options: dict[str, str] | json_format.JsonOptions | None = None,
                  schema: pa.Schema | None = None) -> bytes | pa.Buffer:
    """``encode``, as an Arrow buffer (not copied) where Arrow put the lines together."""
    if batch.num_rows == 0:
        return b""
    ops = ops_of(batch)
    data = batch.drop_columns([OP]) if OP in batch.schema.names else batch
    n = len(ops)
    starts, is_pair = _lines(ops)
    start_ops = ops[starts]
    opts = json_format.JsonOptions.of(options)
    zoned = json_format.zoned_columns(schema)
    columns = [json_format.writable(c, opts, n in zoned)
               for c, n in zip(data.columns, data.schema.names)]
    # each row's object appears once, in row order: as the before image of a pair, the
    # after image of a pair, a create or a delete, which says what surrounds it
    role = np.where(start_ops > 0, 2, 3)
    role[is_pair] = 0
    roles = np.empty(n, dtype=np.int64)
    roles[starts] = role
    roles[starts[is_pair] + 1] = 1
    texts = json_format.object_texts(columns, data.schema.names, (
        ['{"before":', '"after":', '{"before":null,"after":', '{"before":'],
        [",", ',"op":"u"}\n', ',"op":"c"}\n', ',"after":null,"op":"d"}\n'], roles))
    if texts is not None:  # plain rows: the lines put together by Arrow, without Polars
        return json_format.text_buffer(texts)   # (no marked numbers: those go to Polars)
    before_idx = np.where(start_ops < 0, starts, -1)
    after_idx = np.where(is_pair, starts + 1, np.where(start_ops > 0, starts, -1))
    op_text = np.where(is_pair, "u", np.where(start_ops > 0, "c", "d"))
    if not columns:
        row = pa.StructArray.from_arrays([pa.nulls(n, pa.null())], names=["_"])
    else:
        row = pa.StructArray.from_arrays(columns, names=data.schema.names)
    table = pa.table({"before": _take(row, before_idx), "after": _take(row, after_idx),
                      "op": pa.array(op_text, pa.string())})
    import polars as pl  # only writers need it (loaded on first use)

    out = io.BytesIO()
    pl.from_arrow(table).write_ndjson(out)
    return json_format.unmark_numbers(out.getvalue())


def _lines(ops: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The first row of each output line, and whether that line is an update pair."""
    n = len(ops)
    paired = np.zeros(n, dtype=bool)
    paired[:-1] = (ops[:-1] == UPDATE_BEFORE) & (ops[1:] == UPDATE_AFTER)
    second = np.zeros(n, dtype=bool)
    second[1:] = paired[:-1]
    starts = np.flatnonzero(~second)
    return starts, paired[starts]


def line_rows(batch: pa.RecordBatch) -> np.ndarray:
    """For each line ``encode`` writes, the row it describes (an update's after image), so
    that a per-line value such as a message key can be taken from it."""
    starts, is_pair = _lines(ops_of(batch))
    return starts + is_pair


def _take(values: pa.StructArray, index: np.ndarray) -> pa.Array:
    missing = index < 0
    return pc.take(values, pa.array(np.where(missing, 0, index), mask=missing))


class Writer:
    """Appends Debezium JSON lines to an output stream (closed by ``close``)."""

    def __init__(self, stream: Any, schema: pa.Schema,
                 options: dict[str, str] | json_format.JsonOptions | None = None):
        self.stream = stream
        self.schema = schema
        self.options = json_format.JsonOptions.of(options)

    def write(self, batch: pa.RecordBatch) -> None:
        self.stream.write(encode_buffer(batch, self.options, self.schema))

    def close(self) -> None:
        self.stream.close()
