"""The postgres connector: a PostgreSQL table as a sink (append or upsert, exactly once), as a
bounded source (a table or a query, read as Arrow), and as a lookup table for joins.

Connection options: ``connection`` (a libpq conninfo string or ``postgresql://`` URL), or
Flink JDBC's ``url`` (``jdbc:postgresql://host:port/db``) with ``username``/``password``, or
Flink CDC's ``hostname``/``port``/``database-name``. See ``caudal.connectors.pg_client``.

Sink, exactly once. Each epoch's rows are written in one transaction that also records
(writer, epoch) in ``caudal_sink_epochs``; at the barrier it is prepared
(``PREPARE TRANSACTION 'caudal-<table>-<vertex>-<subtask>-<epoch>'``) and once the checkpoint
is complete committed (``COMMIT PREPARED``). Recovery commits what the checkpoint lists and
rolls back the rest; a prepared transaction that is gone is checked against
``caudal_sink_epochs``, so a commit repeated after a crash is harmless.

* append: rows are COPYed (CSV written by pyarrow, no per-row Python) into the table.
* upsert (the table has a key: a declared PRIMARY KEY, or the GROUP BY keys of an updating
  query): a prepared transaction only ever *inserts* into a caudal-owned staging table
  (``caudal_stage_<writer>``), each chunk reduced in Arrow to the last change per key. The
  staged changes are applied to the table after ``COMMIT PREPARED``, in a short transaction
  that also empties the stage (``DELETE … USING`` for deletions, one ``INSERT … SELECT … ON
  CONFLICT … DO UPDATE`` for the rest). This way a prepared transaction never holds locks on
  the table's rows: the next epoch's writes could otherwise wait, forever, for a commit that
  the same thread has yet to issue.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import numpy as np
import psycopg
import pyarrow as pa
from psycopg import sql

from caudal import compute as pc
from caudal.connectors import pg_client
from caudal.connectors.base import Sink, table_token
from caudal.connectors.pg_client import (
    CONNECTION_OPTIONS,
    connect,
    csv_bytes,
    pg_type,
    qualified,
    table_columns,
)
from caudal.connectors.pg_lookup import PostgresLookup
from caudal.connectors.pg_source import PostgresSource
from caudal.errors import ConfigError, PlanError, RuntimeFailure
from caudal.plan.changelog import OP, ops_of
from caudal.plan.tables import TableSpec
from caudal.types import conform_batch, sql_name

#: the table recording every epoch a writer committed (in the target table's schema)
EPOCHS_TABLE = "caudal_sink_epochs"
#: rows buffered in Arrow before they are sent (one COPY); an upsert chunk is reduced to
#: one change per key first
FLUSH_ROWS = 200_000
#: how many committed epochs per writer ``caudal_sink_epochs`` keeps
KEEP_EPOCHS = 100


def _gid(writer: str, epoch: int) -> str:
    return f"caudal-{writer}-{epoch}"


def _mode(table: TableSpec) -> str:
    mode = table.option("sink.mode")
    if mode is None:
        return "upsert" if table.upsert_key else "append"
    if mode not in ("append", "upsert"):
        raise ConfigError(f"sink.mode = {mode!r} in table {table.name!r}", line=table.line,
                          hint="accepted: append, upsert")
    return mode


def _flag(table: TableSpec, key: str, default: bool) -> bool:
    text = table.option(key)
    if text is None:
        return default
    if text.lower() not in ("true", "false"):
        raise ConfigError(f"{key} = {text!r} in table {table.name!r}", line=table.line,
                          hint="accepted: true, false")
    return text.lower() == "true"


def _describe(schema: pa.Schema) -> str:
    return "(" + ", ".join(f"{f.name} {sql_name(f.type)}" for f in schema) + ")"


def _describe_pg(columns: dict[str, pg_client.PgColumn]) -> str:
    return "(" + ", ".join(f"{c.name} {c.type}" for c in columns.values()) + ")"


def _server_errors_named(method: Callable[..., Any]) -> Callable[..., Any]:
    """A sink method whose PostgreSQL errors name the table and the sink in one line."""
    @functools.wraps(method)
    def named(self: PostgresSink, *args: Any, **kwargs: Any) -> Any:
        try:
            return method(self, *args, **kwargs)
        except psycopg.Error as e:
            target = getattr(self, "target", None)
            where = f"PostgreSQL table {target.text if target else '?'} (sink " \
                    f"{self.table.name!r})"
            raise pg_client.server_error(e, where) from e
    return named


class PostgresSink(Sink):
    """Writes one subtask's share of a PostgreSQL table; see the module docstring."""

    OPTIONS = {
        **CONNECTION_OPTIONS,
        "table": "the table to write, optionally schema-qualified (alias table-name)",
        "table-name": "alias of table",
        "sink.mode": "append (COPY) or upsert (by the key); default: upsert when the table "
                     "has a key (PRIMARY KEY, or an updating query's GROUP BY keys)",
        "sink.create_table": "create the table when it does not exist (default true)",
    }
    accepts_updates = True
    writes_by_key = True

    # ---- planning --------------------------------------------------------------------------

    @classmethod
    def validate(cls, table: TableSpec) -> None:
        pg_client.conninfo(table)
        if not (table.option("table") or table.option("table-name")):
            raise ConfigError(f"table {table.name!r} has no 'table' option", line=table.line,
                              hint="table = 'name' (or schema.name): the PostgreSQL table "
                                   "to write")
        _flag(table, "sink.create_table", True)
        _mode(table)

    @classmethod
    def takes_changelog(cls, table: TableSpec) -> bool:
        """An updating query needs a key to write by (upsert mode)."""
        return _mode(table) == "upsert" and bool(table.upsert_key)

    @classmethod
    def check_table(cls, table: TableSpec) -> None:
        """The table, if it exists, must have a column of a fitting type for each column the
        query writes (and, to upsert, a unique index on the key)."""
        mode = _mode(table)
        if mode == "upsert" and not table.upsert_key:
            raise PlanError(
                f"sink {table.name!r} has sink.mode = 'upsert' but no key to write by",
                hint="declare PRIMARY KEY (col, ...) NOT ENFORCED in its CREATE TABLE")
        for f in table.schema:
            pg_type(f.type, f.name)   # refuses types PostgreSQL cannot take
        with connect(table) as conn:
            target = qualified(conn, pg_client.table_name(table))
            columns = table_columns(conn, target)
            if columns is None:
                if not _flag(table, "sink.create_table", True):
                    raise PlanError(f"PostgreSQL table {target.text} does not exist",
                                    hint="create it, or set sink.create_table = 'true'")
                return
            problems = []
            for f in table.schema:
                col = columns.get(f.name.lower())
                if col is None:
                    problems.append(f"it has no column {f.name}")
                elif not pg_client.fits(f.type, col):
                    problems.append(f"column {col.name} is {col.type}, the query gives "
                                    f"{sql_name(f.type)}")
            written = {f.name.lower() for f in table.schema}
            for key, col in columns.items():
                if key not in written and col.required:
                    problems.append(f"its column {col.name} is NOT NULL without a default "
                                    f"and the query does not give it")
            if not problems and mode == "upsert":
                keys = {k.lower() for k in table.upsert_key or []}
                if keys not in pg_client.unique_keys(conn, target):
                    problems.append(f"it has no primary key or unique index on exactly "
                                    f"({', '.join(table.upsert_key or [])}), which "
                                    f"INSERT … ON CONFLICT needs to upsert")
            if problems:
                raise PlanError(
                    f"PostgreSQL table {target.text} does not fit the query writing sink "
                    f"{table.name!r}: {'; '.join(problems)}. The query writes "
                    f"{_describe(table.schema)}; the table has {_describe_pg(columns)}")

    # ---- writing ---------------------------------------------------------------------------

    @_server_errors_named
    def open(self, schema: pa.Schema, restored: dict[str, Any] | None = None) -> None:
        super().open(schema, restored)
        self.mode = _mode(self.table)
        self.wid = self.writer_id()
        self.conn = connect(self.table)
        self.target = qualified(self.conn, pg_client.table_name(self.table))
        self.epochs = pg_client.Name(self.target.schema, EPOCHS_TABLE)
        self.stage = pg_client.Name(self.target.schema,
                                    f"caudal_stage_{self.wid.replace('-', '_')}")
        self.columns: list[str] | None = None   # the table's names for our columns
        self.keys: list[str] = []
        self._buffer: list[pa.RecordBatch] = []
        self._buffered = 0
        self._in_txn = False
        self._rows_in_txn = 0
        #: append mode: the COPY left open across flushes of a transaction (context manager,
        #: copy object): its data goes to the server from psycopg's writer thread while this
        #: one encodes the next rows, so PostgreSQL parses while caudal works
        self._open_copy: tuple[Any, Any] | None = None
        #: a checkpoint completed while the next epoch's transaction was open: its COMMIT
        #: PREPARED waits for that one to be prepared (it cannot run inside a transaction)
        self._commit_due: int | None = None
        #: epochs aborted while the next epoch's transaction was open: their ROLLBACK
        #: PREPARED waits for that one's PREPARE (or its ROLLBACK at close), as a commit does
        self._abort_due: list[int] = []
        self._seq = 0
        self._started = False
        self.rows = 0
        #: [epoch, gid] prepared and not known to be committed, oldest first
        self._pending: list[list[Any]] = []
        if restored and restored.get("pending"):
            self._pending = [list(p) for p in restored["pending"]]

    def _resolve_columns(self, create: bool) -> bool:
        """Map our columns to the table's (creating it when absent and allowed). False when
        the table does not exist (recovery on a table that was never created)."""
        if self.columns is not None:
            return True
        cols = table_columns(self.conn, self.target)
        if cols is None:
            if not create:
                return False
            with self.conn.transaction():
                pg_client.create_table(self.conn, self.target, self.schema,
                                       self.table.upsert_key if self.mode == "upsert" else None,
                                       primary=bool(self.table.primary_key))
            cols = table_columns(self.conn, self.target)
        self.columns = [cols[f.name.lower()].name for f in self.schema]
        self.udts = [cols[f.name.lower()].udt for f in self.schema]
        #: binary COPY (PostgreSQL parses it ~1.7x faster than CSV) when every column can
        self.binary = all(pg_client.binary_supported(f.type, u)
                          for f, u in zip(self.schema, self.udts))
        by_lower = {f.name.lower(): n for f, n in zip(self.schema, self.columns)}
        self.keys = [by_lower[k.lower()] for k in (self.table.upsert_key or [])]
        return True

    def _start(self) -> None:
        """Before the first write of this run: tables exist, and nothing a killed run of this
        writer left prepared is still holding rows (recovery has committed what it had to)."""
        self._started = True
        self._resolve_columns(create=_flag(self.table, "sink.create_table", True))
        with self.conn.transaction():
            pg_client.create_epochs_table(self.conn, self.epochs)
        for gid in pg_client.prepared(self.conn, f"caudal-{self.wid}-"):
            if gid not in {p[1] for p in self._pending}:
                self.conn.execute(sql.SQL("ROLLBACK PREPARED {}").format(sql.Literal(gid)))
        if self.mode == "upsert":
            pg_client.create_stage(self.conn, self.stage, self.target, self.columns)
            self._seq = self.conn.execute(sql.SQL("SELECT coalesce(max(_seq), 0) FROM {}")
                                          .format(self.stage.sql)).fetchone()[0]

    @_server_errors_named
    def write(self, batch: pa.RecordBatch) -> None:
        if not self._started:
            self._start()
        if OP in batch.schema.names:
            ops = pa.array(ops_of(batch))
            batch = conform_batch(batch.drop_columns([OP]), self.schema)
            if self.mode == "append":
                if (np.asarray(ops) < 0).any():
                    raise RuntimeFailure(
                        f"sink {self.table.name!r} appends rows but received a retraction",
                        hint="declare a PRIMARY KEY (…) NOT ENFORCED to upsert")
            else:
                batch = batch.append_column(OP, ops)
        else:
            batch = conform_batch(batch, self.schema)
            if self.mode == "upsert":
                batch = batch.append_column(OP, pa.array(np.ones(batch.num_rows, np.int8)))
        self._buffer.append(batch)
        self._buffered += batch.num_rows
        self.rows += batch.num_rows
        if self._buffered >= FLUSH_ROWS:
            self._flush()

    def _begin(self) -> None:
        if not self._in_txn:
            self.conn.execute("BEGIN")
            self._in_txn = True
            self._rows_in_txn = 0

    def _flush(self) -> None:
        if not self._buffered:
            return
        table = pa.Table.from_batches(self._buffer)
        self._buffer, self._buffered = [], 0
        self._begin()
        if self.mode == "append":
            self._copy(self.target, self.columns, self.udts, table)
        else:
            table = _last_change_per_key(table, [f.name for f in self.schema
                                                 if f.name.lower() in
                                                 {k.lower() for k in self.keys}])
            self._seq += 1
            table = table.append_column("_seq", pa.array(np.full(table.num_rows, self._seq,
                                                                 np.int64)))
            self._copy(self.stage, [*self.columns, "_op", "_seq"],
                       [*self.udts, "int2", "int8"], table)
        self._rows_in_txn += table.num_rows

    def _copy(self, target: pg_client.Name, columns: list[str], udts: list[str],
              table: pa.Table) -> None:
        binary = self.binary
        if self.mode == "append" and binary:
            if self._open_copy is None:
                from psycopg.copy import QueuedLibpqWriter

                cursor = self.conn.cursor()
                manager = cursor.copy(self._copy_statement(target, columns, binary),
                                      writer=QueuedLibpqWriter(cursor))
                self._open_copy = (manager, manager.__enter__())
                self._open_copy[1].write(pg_client.COPY_HEADER)
            # queued (returns at once); the view keeps Arrow's buffer alive until it is sent
            self._open_copy[1].write(pg_client.binary_copy_rows(table, udts))
            return
        data = pg_client.binary_copy(table, udts) if binary else csv_bytes(table)
        with self.conn.cursor().copy(self._copy_statement(target, columns, binary)) as copy:
            view = memoryview(data)
            for i in range(0, len(data), 1 << 22):
                copy.write(view[i:i + (1 << 22)])

    @staticmethod
    def _copy_statement(target: pg_client.Name, columns: list[str],
                        binary: bool) -> sql.Composable:
        return sql.SQL("COPY {} ({}) FROM STDIN (FORMAT {})").format(
            target.sql, sql.SQL(", ").join(map(sql.Identifier, columns)),
            sql.SQL("binary" if binary else "csv"))

    def _end_copy(self, error: BaseException | None = None) -> None:
        """Finish the open COPY (waiting for the server to take all of it), or with
        ``error`` abandon it (the transaction then fails)."""
        if self._open_copy is None:
            return
        manager, copy = self._open_copy
        self._open_copy = None
        if error is None:
            copy.write(pg_client.COPY_TRAILER)
            manager.__exit__(None, None, None)
        else:
            try:
                manager.__exit__(type(error), error, None)
            except Exception:  # noqa: BLE001 - the transaction is rolled back anyway
                pass

    @_server_errors_named
    def pre_commit(self, epoch: int) -> dict[str, Any]:
        """Prepare the epoch's transaction (if it wrote anything); the state lists every
        prepared transaction not committed yet."""
        self._flush()
        self._end_copy()
        if self._in_txn:
            self.conn.execute(sql.SQL(
                "INSERT INTO {} (writer, epoch, rows) VALUES (%s, %s, %s) "
                "ON CONFLICT (writer, epoch) DO UPDATE SET rows = EXCLUDED.rows, "
                "at = now()").format(self.epochs.sql), (self.wid, epoch, self._rows_in_txn))
            gid = _gid(self.wid, epoch)
            self.conn.execute(sql.SQL("PREPARE TRANSACTION {}").format(sql.Literal(gid)))
            self._in_txn = False
            self._pending.append([epoch, gid])
        if self._abort_due:
            due, self._abort_due = self._abort_due, []
            for ep in due:
                self._rollback(ep)
            self._pending = [p for p in self._pending if p[0] not in due]
        state = {"epoch": epoch, "pending": [list(p) for p in self._pending]}
        if self._commit_due is not None:
            due, self._commit_due = self._commit_due, None
            self.commit(due)
        return state

    @_server_errors_named
    def commit(self, epoch: int) -> None:
        """COMMIT PREPARED the transactions of ``epoch`` and earlier, then (upsert) apply
        what they staged. Idempotent: a transaction already committed is found in
        caudal_sink_epochs."""
        done = [p for p in self._pending if p[0] <= epoch]
        if not done:
            return
        if self._in_txn:   # the next epoch's rows are being written: after its PREPARE
            self._commit_due = max(epoch, self._commit_due or epoch)
            return
        still = set(pg_client.prepared(self.conn, f"caudal-{self.wid}-"))
        for ep, gid in done:
            if gid in still:
                self.conn.execute(sql.SQL("COMMIT PREPARED {}").format(sql.Literal(gid)))
            elif not pg_client.epoch_recorded(self.conn, self.epochs, self.wid, ep):
                raise RuntimeFailure(
                    f"sink {self.table.name!r}: the prepared transaction {gid} of epoch {ep} "
                    f"is gone and was never committed (rolled back outside caudal?): its rows "
                    f"are lost", hint="run with --fresh to write everything again")
        self._pending = [p for p in self._pending if p[0] > epoch]
        if self.mode == "upsert" and self._resolve_columns(create=False):
            self._apply_stage()
        self.conn.execute(sql.SQL("DELETE FROM {} WHERE writer = %s AND epoch < %s")
                          .format(self.epochs.sql), (self.wid, epoch - KEEP_EPOCHS))

    def _apply_stage(self) -> None:
        """Apply the committed staged changes to the table, oldest chunk first, and remove
        them, in one transaction (repeatable: what is applied is removed with it)."""
        if not pg_client.exists(self.conn, self.stage):
            return
        with self.conn.transaction():
            chunks = [r[0] for r in self.conn.execute(sql.SQL(
                "SELECT DISTINCT _seq FROM {} ORDER BY 1").format(self.stage.sql))]
            if not chunks:
                return
            source = self.stage.sql
            if len(chunks) > 1:
                # reduce to the newest change per key across chunks (each chunk has one)
                self.conn.execute(sql.SQL(
                    "CREATE TEMP TABLE caudal_latest ON COMMIT DROP AS SELECT DISTINCT ON "
                    "({keys}) * FROM {stage} ORDER BY {keys}, _seq DESC").format(
                    keys=sql.SQL(", ").join(map(sql.Identifier, self.keys)),
                    stage=self.stage.sql))
                source = sql.Identifier("caudal_latest")
            for operator, nulls in (("=", "NOT"), ("IS NOT DISTINCT FROM", "")):
                # keys without NULLs match with = (a hash join); the few with one, apart
                match = sql.SQL(" AND ").join(
                    sql.SQL("t.{k} " + operator + " s.{k}").format(k=sql.Identifier(k))
                    for k in self.keys)
                anynull = sql.SQL(" OR ").join(
                    sql.SQL("s.{} IS NULL").format(sql.Identifier(k)) for k in self.keys)
                self.conn.execute(sql.SQL(
                    "DELETE FROM {target} AS t USING {source} AS s WHERE s._op < 0 AND "
                    + nulls + " ({anynull}) AND {match}").format(
                    target=self.target.sql, source=source, anynull=anynull, match=match))
            cols = sql.SQL(", ").join(map(sql.Identifier, self.columns))
            others = [c for c in self.columns if c not in self.keys]
            action = sql.SQL("DO NOTHING") if not others else sql.SQL("DO UPDATE SET ") + \
                sql.SQL(", ").join(sql.SQL("{c} = EXCLUDED.{c}").format(c=sql.Identifier(c))
                                   for c in others)
            self.conn.execute(sql.SQL(
                "INSERT INTO {target} ({cols}) SELECT {cols} FROM {source} WHERE _op > 0 "
                "ON CONFLICT ({keys}) {action}").format(
                target=self.target.sql, cols=cols, source=source,
                keys=sql.SQL(", ").join(map(sql.Identifier, self.keys)), action=action))
            self.conn.execute(sql.SQL("DELETE FROM {} WHERE _seq <= %s").format(
                self.stage.sql), (chunks[-1],))

    @_server_errors_named
    def abort(self, epoch: int) -> None:
        """Roll back the epoch's prepared transaction, if there is one (also on an instance
        that never saw the epoch: the id is derived from the writer and the epoch). While
        the next epoch's transaction is open (and its COPY), ROLLBACK PREPARED cannot run:
        it follows that one's PREPARE; the epoch leaves the pending list at once, so no
        checkpoint lists it for a commit."""
        self._pending = [p for p in self._pending if p[0] != epoch]
        if self._in_txn:
            self._abort_due.append(epoch)
            return
        self._rollback(epoch)

    def _rollback(self, epoch: int) -> None:
        gid = _gid(self.wid, epoch)
        if gid in pg_client.prepared(self.conn, gid):
            self.conn.execute(sql.SQL("ROLLBACK PREPARED {}").format(sql.Literal(gid)))

    @classmethod
    def discard_orphans(cls, table: TableSpec) -> None:
        """Roll back every transaction a killed run of this job's sinks into the table left
        prepared: recovery has committed those the checkpoint listed."""
        with connect(table) as conn:
            for gid in pg_client.prepared(conn, f"caudal-{table_token(table)}-"):
                conn.execute(sql.SQL("ROLLBACK PREPARED {}").format(sql.Literal(gid)))

    @_server_errors_named
    def close(self) -> None:
        conn = getattr(self, "conn", None)
        if conn is None:
            return
        try:
            # a transaction still open here belongs to an epoch no checkpoint completed (at
            # the end of input the final epoch was prepared and committed before close): a
            # cancel or a failure, so it is rolled back. Then what waited for it runs: the
            # rollbacks of aborted epochs, and the commit of a checkpoint that completed
            # while it was open (recovery would commit it too, but a job that ends must
            # leave nothing prepared)
            self._end_copy(RuntimeFailure("the sink closed before its checkpoint"))
            if self._in_txn:
                conn.execute("ROLLBACK")
                self._in_txn = False
            for epoch in self._abort_due:
                self._rollback(epoch)
            self._abort_due = []
            if self._commit_due is not None:
                due, self._commit_due = self._commit_due, None
                self.commit(due)
            if self.mode == "upsert" and not self._pending and \
                    (self._started or self.columns is not None):
                # nothing staged is waiting (a run's end, or recovery that applied it): the
                # stage goes away; the next run creates it again
                conn.execute("SET lock_timeout = '1s'")
                conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(self.stage.sql))
        except (pg_client.DatabaseError, RuntimeFailure):
            pass  # left for the next run of this writer (whose recovery reports a loss)
        finally:
            conn.close()
            self.conn = None


def _last_change_per_key(table: pa.Table, keys: list[str]) -> pa.Table:
    """Each key's last row (its newest change: an upsert if ``_op`` > 0, else a delete)."""
    index = pa.array(np.arange(table.num_rows, dtype=np.int64))
    with_index = table.select(keys).append_column("__i", index)
    last = with_index.group_by(keys, use_threads=False).aggregate([("__i", "max")])
    picked = pc.sort_indices(last.column("__i_max"))
    return table.take(pc.take(last.column("__i_max"), picked))


SOURCE = PostgresSource
LOOKUP = PostgresLookup
SINK = PostgresSink
