"""A PostgreSQL table looked up by key, for lookup joins (a LookupSource).

One query per call, whatever the number of keys: the keys travel as PostgreSQL array
literals built by Polars (no per-key Python), ``WHERE k = ANY('{…}'::type[])`` for one key
column, a join with ``unnest(…)`` for several; the rows come back through ADBC as Arrow.
"""

from __future__ import annotations

from typing import Any

import pyarrow as pa
from psycopg import sql

from caudal.connectors import pg_client
from caudal.connectors.base import LookupSource
from caudal.connectors.pg_source import adapt, relation, select_items
from caudal.errors import ConfigError, RuntimeFailure
from caudal.plan.tables import TableSpec


def _literal(column: pa.Array | pa.ChunkedArray) -> str:
    """One column of keys as the text of a PostgreSQL array."""
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    one = pa.ListArray.from_arrays(pa.array([0, len(column)], pa.int32()), column)
    return pg_client.array_literal(one)[0].as_py()


class PostgresLookup(LookupSource):
    @classmethod
    def validate(cls, table: TableSpec, keys: list[str]) -> None:
        if table.option("query"):
            raise ConfigError(f"table {table.name!r} is looked up by key, which needs a "
                              f"table, not a query", line=table.line,
                              hint="table = 'name' (a view works too)")
        schema = table.read_schema()
        for k in keys:
            pg_client.pg_type(schema.field(k).type, k)

    def __init__(self, table: TableSpec, keys: list[str]):
        super().__init__(table, keys)
        self._conn: Any = None
        self._db: Any = None
        self._prefix: str | None = None

    def _statement_prefix(self) -> str:
        if self._prefix is None:  # (names only: quoting them needs no connection)
            self._prefix = sql.SQL("SELECT {} FROM {} AS q ").format(
                select_items(self.table, self.schema), relation(self.table)
            ).as_string(None)
        return self._prefix

    def lookup(self, keys: pa.Table) -> pa.Table:
        if keys.num_rows == 0:
            return self.schema.empty_table()
        types = [pg_client.pg_type(self.schema.field(k).type, k) for k in self.keys]
        arrays = [sql.SQL("{}::{}[]").format(sql.Literal(_literal(keys.column(k))),
                                             sql.SQL(t)) for k, t in zip(self.keys, types)]
        if len(self.keys) == 1:
            where = sql.SQL("WHERE q.{} = ANY({})").format(sql.Identifier(self.keys[0]),
                                                           arrays[0])
        else:
            names = [sql.Identifier(f"__k{i}") for i in range(len(self.keys))]
            where = sql.SQL("JOIN unnest({}) AS k({}) ON {}").format(
                sql.SQL(", ").join(arrays), sql.SQL(", ").join(names),
                sql.SQL(" AND ").join(sql.SQL("q.{} = k.{}").format(sql.Identifier(k), n)
                                      for k, n in zip(self.keys, names)))
        text = self._statement_prefix() + where.as_string(None)
        try:
            raw = self._query(text)
        except Exception as e:  # noqa: BLE001 - the driver's errors have no common base
            raise RuntimeFailure(f"lookup in table {self.table.name!r} failed: "
                                 f"{str(e).strip().splitlines()[0]}") from None
        batches = [adapt(b, self.schema) for b in raw.to_batches()]
        return pa.Table.from_batches(batches, schema=self.schema)

    def _query(self, text: str) -> pa.Table:
        """The rows of one SELECT through ADBC's own API (its DB-API module imports Polars
        and pandas when they are installed, ~0.2 s a process for nothing here)."""
        import adbc_driver_manager
        import adbc_driver_postgresql

        if self._conn is None:
            self._db = adbc_driver_postgresql.connect(pg_client.conninfo(self.table))
            self._conn = adbc_driver_manager.AdbcConnection(self._db)
        with adbc_driver_manager.AdbcStatement(self._conn) as statement:
            statement.set_sql_query(text)
            stream, _ = statement.execute_query()
            return pa.RecordBatchReader._import_from_c(stream.address).read_all()

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
        if self._db is not None:
            self._db.close()
            self._db = None
