"""The ``postgres-cdc`` connector (Flink CDC's name and options): a table's changes as a
changelog, through logical replication with the built-in ``pgoutput`` plugin.

Start (no checkpoint): the publication is created if missing, the replication slot is
(re)created with an exported snapshot, the table is read in that snapshot (as inserts, through
ADBC), then the slot streams every change committed after the snapshot. Each transaction is
emitted whole at its commit, as rows with the ``_op`` column: +I, -U/+U (before and after:
the table must have ``REPLICA IDENTITY FULL``, so deletes and updates carry the old row), -D.

Exactly once: the offset is the end LSN of the last transaction emitted; a resumed job starts
streaming after it. The server is told (standby status ``flush``) only once a checkpoint
holding that LSN is complete, so the slot keeps every change a restore may need. The snapshot
is not resumable: a job killed during it restarts with ``--fresh``, which says so.

Streaming uses psycopg2's replication protocol support (psycopg 3 has none); pgoutput's
binary messages (protocol 1) are decoded here. Values arrive as text and are cast per batch
in Arrow. ``scan.bounded.mode = 'latest-offset'`` ends the job once the changes committed
before it started are read (tests, backfills).
"""

from __future__ import annotations

import functools
import struct
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import pyarrow as pa
from psycopg import sql

from caudal.connectors import pg_client
from caudal.connectors.base import Source
from caudal.connectors.pg_client import CONNECTION_OPTIONS, connect, from_text
from caudal.connectors.pg_source import adapt, describe, select_items
from caudal.errors import ConfigError, RuntimeFailure
from caudal.plan.changelog import DELETE, INSERT, OP, OP_TYPE, UPDATE_AFTER, UPDATE_BEFORE
from caudal.plan.tables import TableSpec
from caudal.types import sql_name

PARTITION = "slot"
#: how often an idle stream asks the server where its WAL ends (bounded mode)
PING_S = 0.2


def _slot(table: TableSpec) -> str:
    slot = table.option("slot.name")
    if not slot:
        raise ConfigError(f"postgres-cdc table {table.name!r} has no 'slot.name' option",
                          line=table.line, hint="slot.name = 'caudal_orders' (a replication "
                                                "slot this job owns)")
    return slot


def _target(table: TableSpec) -> pg_client.Name:
    name = table.option("table-name") or table.option("table")
    if not name:
        raise ConfigError(f"postgres-cdc table {table.name!r} has no 'table-name' option",
                          line=table.line, hint="table-name = 'orders'")
    schema = table.option("schema-name", "public") or "public"
    if table.option("table-name") and not any(c in name for c in '."'):
        # Flink CDC's table-name is the catalog's name as spelled, as schema-name is
        return pg_client.Name(schema, name)
    parts = pg_client.split_name(name)
    if len(parts) > 1:
        return pg_client.Name(parts[-2], parts[-1])
    return pg_client.Name(schema, parts[0])


def _lsn(text: str) -> int:
    high, low = text.split("/")
    return (int(high, 16) << 32) + int(low, 16)


class _Reader:
    """Decodes pgoutput protocol 1 messages of one relation into rows of text values."""

    def __init__(self, relid_of: pg_client.Name):
        self.target = relid_of
        self.relid: int | None = None
        self.columns: list[str] = []

    @staticmethod
    def _tuple(data: bytes, pos: int) -> tuple[list[str | None | bytes], int]:
        (n,) = struct.unpack_from("!h", data, pos)
        pos += 2
        values: list[Any] = []
        for _ in range(n):
            kind = data[pos:pos + 1]
            pos += 1
            if kind == b"t":
                (length,) = struct.unpack_from("!i", data, pos)
                pos += 4
                values.append(data[pos:pos + length].decode())
                pos += length
            elif kind == b"n":
                values.append(None)
            elif kind == b"u":
                values.append(b"u")   # unchanged TOAST value: taken from the old row
            else:
                raise RuntimeFailure(f"postgres-cdc: unexpected tuple data kind {kind!r}")
        return values, pos

    @staticmethod
    def _string(data: bytes, pos: int) -> tuple[str, int]:
        end = data.index(b"\0", pos)
        return data[pos:end].decode(), end + 1

    def relation(self, data: bytes) -> None:
        (relid,) = struct.unpack_from("!I", data, 1)
        namespace, pos = self._string(data, 5)
        name, pos = self._string(data, pos)
        if (namespace, name) != (self.target.schema, self.target.name):
            return
        pos += 1  # replica identity setting
        (n,) = struct.unpack_from("!h", data, pos)
        pos += 2
        columns = []
        for _ in range(n):
            pos += 1  # flags
            col, pos = self._string(data, pos)
            pos += 8  # type oid, type modifier
            columns.append(col)
        self.relid = relid
        self.columns = columns

    def change(self, data: bytes) -> list[tuple[int, list[Any]]]:
        """(op, values) rows of an Insert, Update or Delete message of the table."""
        kind = data[:1]
        (relid,) = struct.unpack_from("!I", data, 1)
        if relid != self.relid:
            return []
        pos = 5
        if kind == b"I":
            pos += 1  # 'N'
            new, _ = self._tuple(data, pos)
            return [(INSERT, new)]
        if kind == b"D":
            marker = data[pos:pos + 1]
            old, _ = self._tuple(data, pos + 1)
            if marker != b"O":
                raise RuntimeFailure(f"postgres-cdc: a delete in {self.target.text} carries "
                                     f"only its key", hint=f"ALTER TABLE {self.target.text} "
                                                           f"REPLICA IDENTITY FULL")
            return [(DELETE, old)]
        if kind == b"U":
            marker = data[pos:pos + 1]
            if marker != b"O":
                raise RuntimeFailure(f"postgres-cdc: an update in {self.target.text} carries "
                                     f"no old row", hint=f"ALTER TABLE {self.target.text} "
                                                         f"REPLICA IDENTITY FULL")
            old, pos = self._tuple(data, pos + 1)
            new, _ = self._tuple(data, pos + 1)
            new = [o if v == b"u" else v for v, o in zip(new, old)]
            return [(UPDATE_BEFORE, old), (UPDATE_AFTER, new)]
        return []


def _server_errors_named(method: Callable[..., Any]) -> Callable[..., Any]:
    """A source method whose server errors (psycopg2's, on the replication connection; a
    connection the server ended) name the table in one line, without psycopg2's class."""
    @functools.wraps(method)
    def named(self: PostgresCdcSource, *args: Any, **kwargs: Any) -> Any:
        import psycopg2

        try:
            return method(self, *args, **kwargs)
        except psycopg2.Error as e:
            text = " ".join(str(e).split()) or type(e).__name__
            raise RuntimeFailure(f"postgres-cdc table {self.table.name!r} "
                                 f"({self.target.text}): {text}") from e
    return named


class PostgresCdcSource(Source):
    """A table's snapshot then its changes, as a changelog; see the module docstring."""

    OPTIONS = {
        **CONNECTION_OPTIONS,
        "table-name": "the table whose changes are read (alias table)",
        "table": "alias of table-name",
        "schema-name": "its schema (default public)",
        "slot.name": "the logical replication slot of this job (created when missing)",
        "decoding.plugin.name": "pgoutput (the only one supported)",
        "publication.name": "the publication to stream (default caudal_<slot.name>; created "
                            "for the table when missing)",
        "scan.startup.mode": "initial (default: snapshot, then changes) or latest-offset "
                             "(changes from now on)",
        "scan.bounded.mode": "latest-offset: end after the changes committed before the job "
                             "started (default: run forever)",
    }
    CHANGELOG = True

    @classmethod
    def validate(cls, table: TableSpec) -> None:
        _slot(table)
        _target(table)
        plugin = table.option("decoding.plugin.name", "pgoutput")
        if plugin != "pgoutput":
            raise ConfigError(f"decoding.plugin.name = {plugin!r} in table {table.name!r}",
                              line=table.line, hint="accepted: pgoutput")
        for key, accepted in (("scan.startup.mode", ("initial", "latest-offset")),
                              ("scan.bounded.mode", ("latest-offset", "unbounded"))):
            value = table.option(key)
            if value is not None and value not in accepted:
                raise ConfigError(f"{key} = {value!r} in table {table.name!r}",
                                  line=table.line, hint="accepted: " + ", ".join(accepted))
        target = _target(table)
        with connect(table) as conn:
            row = conn.execute("SELECT relreplident FROM pg_class WHERE oid = to_regclass(%s)",
                               (target.sql.as_string(conn),)).fetchone()
            if row is None:
                raise ConfigError(f"postgres-cdc table {table.name!r}: PostgreSQL table "
                                  f"{target.text} does not exist", line=table.line)
            if row[0] != "f":
                raise ConfigError(
                    f"postgres-cdc table {table.name!r}: {target.text} must send whole old "
                    f"rows with its changes (REPLICA IDENTITY FULL) so that updates and "
                    f"deletes can be retracted", line=table.line,
                    hint=f"ALTER TABLE {target.text} REPLICA IDENTITY FULL")
            level = conn.execute("SHOW wal_level").fetchone()[0]
            if level != "logical":
                raise ConfigError(f"postgres-cdc needs wal_level = logical (the server has "
                                  f"{level})", line=table.line,
                                  hint="ALTER SYSTEM SET wal_level = logical, then restart "
                                       "PostgreSQL")
        for f in table.schema or []:
            if pa.types.is_duration(f.type) or pa.types.is_list(f.type) or \
                    pa.types.is_struct(f.type):
                raise ConfigError(f"postgres-cdc table {table.name!r}: column {f.name} of "
                                  f"type {sql_name(f.type)} is not supported yet",
                                  line=table.line, hint="leave it out of the declared columns")

    @classmethod
    def infer_schema(cls, table: TableSpec) -> pa.Schema | None:
        from caudal.connectors.pg_source import arrow_type

        spec = TableSpec(table.name, table.connector,
                         {**table.options, "table": _target(table).sql.as_string(None)})
        return pa.schema([(n, arrow_type(oid, p, s)) for n, oid, p, s in describe(spec)])

    def __init__(self, table: TableSpec):
        super().__init__(table)
        self.data_schema = self.schema
        self.schema = self.schema.append(pa.field(OP, OP_TYPE))
        self.bounded = table.option("scan.bounded.mode") == "latest-offset"
        self.target = _target(table)
        self.slot = _slot(table)
        self.publication = table.option("publication.name") or f"caudal_{self.slot}"
        self._repl: Any = None
        self._cur: Any = None
        self._assigned = False
        self._snapshot: Any = None     # a RecordBatchReader while the snapshot is read
        self._snapshot_conn: Any = None
        self._lsn = 0                  # end LSN of the last transaction emitted
        self._stop: int | None = None
        self._rows: list[tuple[int, list[Any]]] = []   # the open transaction's changes
        self._ready: list[tuple[int, list[Any]]] = []  # committed, not yet emitted
        self._ready_lsn = 0
        self._done = False
        self._last_ping = 0.0

    def partitions(self, parallelism: int) -> list[str]:
        return [PARTITION]

    # ---- opening ---------------------------------------------------------------------------

    def _replication(self) -> Any:
        import psycopg2
        import psycopg2.extras

        info = pg_client.conninfo(self.table)
        try:
            return psycopg2.connect(info, connection_factory=psycopg2.extras.
                                    LogicalReplicationConnection,
                                    options="-c TimeZone=UTC -c DateStyle=ISO "
                                            "-c extra_float_digits=3")
        except psycopg2.OperationalError as e:
            raise RuntimeFailure(f"postgres-cdc table {self.table.name!r}: cannot open a "
                                 f"replication connection: {str(e).strip().splitlines()[0]}",
                                 hint="the user needs the REPLICATION attribute") from None

    @_server_errors_named
    def open(self, assigned: list[str], offsets: dict[str, Any] | None = None) -> None:
        if PARTITION not in assigned:
            self._done = True
            return
        self._assigned = True
        state = (offsets or {}).get(PARTITION)
        with connect(self.table) as conn:
            if not conn.execute("SELECT 1 FROM pg_publication WHERE pubname = %s",
                                (self.publication,)).fetchone():
                conn.execute(sql.SQL("CREATE PUBLICATION {} FOR TABLE {}").format(
                    sql.Identifier(self.publication), self.target.sql))
            if self.bounded:
                self._stop = _lsn(conn.execute("SELECT pg_current_wal_lsn()::text")
                                  .fetchone()[0])
            exists = conn.execute("SELECT 1 FROM pg_replication_slots WHERE slot_name = %s",
                                  (self.slot,)).fetchone()
            if state is None and exists:
                conn.execute("SELECT pg_drop_replication_slot(%s)", (self.slot,))
        self._repl = self._replication()
        self._cur = self._repl.cursor()
        if state is not None:
            if not state.get("streaming"):
                raise RuntimeFailure(
                    f"postgres-cdc table {self.table.name!r}: the job was stopped during the "
                    f"initial snapshot of {self.target.text}, which cannot be resumed",
                    hint="run with --fresh to take the snapshot again")
            if not exists:
                raise RuntimeFailure(f"postgres-cdc table {self.table.name!r}: replication "
                                     f"slot {self.slot!r} is gone; the changes since the "
                                     f"checkpoint are lost", hint="run with --fresh")
            self._lsn = int(state["lsn"])
            self._start_stream()
            # the checkpoint resumed from is complete: the server may drop what precedes it
            self._cur.send_feedback(flush_lsn=self._lsn, force=True)
            return
        if self.table.option("scan.startup.mode", "initial") == "latest-offset":
            self._cur.execute(f"CREATE_REPLICATION_SLOT {self._ident(self.slot)} LOGICAL "
                              f"pgoutput NOEXPORT_SNAPSHOT")
            self._lsn = _lsn(self._cur.fetchone()[1])
            self._start_stream()
            return
        self._cur.execute(f"CREATE_REPLICATION_SLOT {self._ident(self.slot)} LOGICAL pgoutput "
                          f"EXPORT_SNAPSHOT")
        _, consistent, snapshot, _ = self._cur.fetchone()
        self._lsn = _lsn(consistent)
        import adbc_driver_postgresql.dbapi as adbc

        self._snapshot_conn = adbc.connect(pg_client.conninfo(self.table))
        cur = self._snapshot_conn.cursor()
        cur.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        cur.execute(f"SET TRANSACTION SNAPSHOT '{snapshot}'")
        spec = TableSpec(self.table.name, self.table.connector,
                         {**self.table.options, "table": self.target.sql.as_string(None)})
        with connect(self.table) as conn:
            statement = sql.SQL("SELECT {} FROM {}").format(
                select_items(spec, self.data_schema), self.target.sql).as_string(conn)
        cur.execute(statement)
        self._snapshot = cur.fetch_record_batch()
        self._snapshot_cur = cur

    @staticmethod
    def _ident(name: str) -> str:
        return '"' + name.replace('"', '""') + '"'

    def _start_stream(self) -> None:
        self._reader = _Reader(self.target)
        self._cur.start_replication(
            slot_name=self.slot, decode=False, start_lsn=self._lsn,
            options={"proto_version": "1", "publication_names": self.publication})

    # ---- reading ---------------------------------------------------------------------------

    @_server_errors_named
    def poll(self, max_rows: int, timeout: float) -> pa.RecordBatch | None:
        if self._done:
            return None
        if self._snapshot is not None:
            try:
                batch = self._snapshot.read_next_batch()
            except StopIteration:
                self._snapshot.close()
                self._snapshot_cur.close()
                self._snapshot_conn.rollback()
                self._snapshot_conn.close()
                self._snapshot = self._snapshot_conn = None
                self._start_stream()
                return None
            data = adapt(batch, self.data_schema)
            self.metrics.rows_read += data.num_rows
            return data.append_column(OP, pa.array(np.full(data.num_rows, INSERT, np.int8)))
        deadline = time.monotonic() + timeout
        while len(self._ready) < max_rows:
            message = self._cur.read_message()
            if message is None:
                if self._ready or time.monotonic() >= deadline:
                    break
                self._idle()
                if self._done:
                    break
                time.sleep(min(0.01, max(timeout, 0.001)))
                continue
            self._consume(message)
        if not self._ready:
            return None
        rows, self._ready = self._ready, []
        self._lsn = self._ready_lsn
        return self._batch(rows)

    def _consume(self, message: Any) -> None:
        data = bytes(message.payload)
        kind = data[:1]
        if kind == b"R":
            self._reader.relation(data)
        elif kind in (b"I", b"U", b"D"):
            self._rows.extend(self._reader.change(data))
        elif kind == b"C":
            (end,) = struct.unpack_from("!Q", data, 10)
            if end > self._lsn:   # a transaction the checkpoint already holds is skipped
                self._ready.extend(self._rows)
                self._ready_lsn = end
                if not self._ready:
                    self._lsn = end
            self._rows = []
        elif kind == b"B":
            self._rows = []
        elif kind == b"T":
            raise RuntimeFailure(f"postgres-cdc: {self.target.text} was truncated; a "
                                 f"changelog cannot retract rows it does not know",
                                 hint="run with --fresh to take a new snapshot")

    def _idle(self) -> None:
        """Nothing to read: in bounded mode, end once the server's WAL end passes the stop
        position (asking it for a keepalive now and then)."""
        if self._stop is None or self._rows:
            return
        if self._cur.wal_end >= self._stop or self._lsn >= self._stop:
            self._done = True
            return
        now = time.monotonic()
        if now - self._last_ping > PING_S:
            self._last_ping = now
            self._cur.send_feedback(reply=True)

    def _batch(self, rows: list[tuple[int, list[Any]]]) -> pa.RecordBatch:
        ops = np.fromiter((r[0] for r in rows), dtype=np.int8, count=len(rows))
        names = self._reader.columns
        where = {n.lower(): i for i, n in enumerate(names)}
        columns = []
        for f in self.data_schema:
            i = where.get(f.name.lower())
            if i is None:
                raise RuntimeFailure(f"postgres-cdc: {self.target.text} no longer has column "
                                     f"{f.name}", hint="run with --fresh after a schema change")
            text = pa.array([r[1][i] for r in rows], pa.string())
            columns.append(from_text(text, f.type))
        self.metrics.rows_read += len(rows)
        columns.append(pa.array(ops, OP_TYPE))
        return pa.RecordBatch.from_arrays(columns, schema=self.schema)

    def finished(self) -> bool:
        return self._done

    def offsets(self) -> dict[str, Any]:
        if not self._assigned:
            return {}
        return {PARTITION: {"lsn": self._lsn, "streaming": self._snapshot is None}}

    @_server_errors_named
    def checkpoint_completed(self, offsets: dict[str, Any]) -> None:
        """Only now may the server drop the WAL up to the checkpoint's position."""
        state = offsets.get(PARTITION)
        if state and state.get("streaming") and self._repl is not None and \
                self._snapshot is None and not self._repl.closed:
            self._cur.send_feedback(flush_lsn=int(state["lsn"]), force=True)

    def close(self) -> None:
        for conn in (self._snapshot_conn, self._repl):
            if conn is not None:
                try:
                    conn.close()
                except Exception:  # noqa: BLE001, S110 - closing after a failure
                    pass
        self._snapshot_conn = self._repl = None


SOURCE = PostgresCdcSource
