"""What the PostgreSQL connectors share: connection options and a connection with a bounded
retry, table names and columns from the catalog, the Arrow <-> PostgreSQL type mapping, and
Arrow -> CSV for COPY (vectorized: pyarrow's CSV writer, Polars for what it cannot write).
"""

from __future__ import annotations

import io
import re
import struct
import time
from dataclasses import dataclass
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import numpy as np
import psycopg
import pyarrow as pa
import pyarrow.csv as pacsv
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from caudal import compute as pc
from caudal.errors import ConfigError, RuntimeFailure
from caudal.plan.tables import TableSpec
from caudal.types import sql_name

DatabaseError = psycopg.Error

CONNECTION_OPTIONS = {
    "connection": "a libpq connection string or URL: 'host=… dbname=…' or "
                  "'postgresql://user@host:5432/db'",
    "url": "a JDBC URL, jdbc:postgresql://host:port/db (Flink's option)",
    "username": "the user (with url or hostname)",
    "password": "the password (with url or hostname)",
    "hostname": "the server host (Flink CDC's option; with port, database-name)",
    "port": "the server port (default 5432)",
    "database-name": "the database (with hostname)",
    "connect.attempts": "how many times to try connecting before failing (default 3)",
}

#: seconds before the first retry of a failed connection; doubles each time
RETRY_S = 0.5


def conninfo(table: TableSpec) -> str:
    """The libpq connection string a table's options describe (ConfigError naming them)."""
    opts = table.options
    extra: dict[str, str] = {}
    if opts.get("connection"):
        base = opts["connection"]
    elif opts.get("url"):
        base = _from_jdbc(table, opts["url"])
    elif opts.get("hostname"):
        base = ""
        extra.update(host=opts["hostname"], port=opts.get("port", "5432"))
        if opts.get("database-name"):
            extra["dbname"] = opts["database-name"]
    else:
        raise ConfigError(f"table {table.name!r} says nothing about which PostgreSQL to use",
                          line=table.line,
                          hint="connection = 'postgresql://user@host:5432/db', or url = "
                               "'jdbc:postgresql://host:5432/db' with username and password")
    if opts.get("username"):
        extra["user"] = opts["username"]
    if opts.get("password"):
        extra["password"] = opts["password"]
    try:
        given = conninfo_to_dict(base) if base else {}
        if "connect_timeout" not in given:
            extra["connect_timeout"] = "5"
        if "application_name" not in given:
            extra["application_name"] = "caudal"
        return make_conninfo(base, **extra)
    except psycopg.ProgrammingError as e:
        raise ConfigError(f"table {table.name!r}: bad connection option: "
                          f"{str(e).splitlines()[0]}", line=table.line,
                          hint="a libpq connection string or postgresql:// URL") from None


def _from_jdbc(table: TableSpec, url: str) -> str:
    """jdbc:postgresql://host:port/db?currentSchema=s&user=u -> a libpq URL."""
    text = url[len("jdbc:"):] if url.startswith("jdbc:") else url
    if not text.startswith(("postgresql://", "postgres://")):
        raise ConfigError(f"url = {url!r} in table {table.name!r}", line=table.line,
                          hint="jdbc:postgresql://host:port/database")
    parts = urlsplit(text)
    query = []
    for key, value in parse_qsl(parts.query):
        if key == "currentSchema":
            query.append(("options", f"-csearch_path={value}"))
        elif key in ("ssl",):
            query.append(("sslmode", "require" if value == "true" else "disable"))
        else:
            query.append((key, value))
    return urlunsplit(parts._replace(query=urlencode(query)))


def _where(info: str) -> str:
    """host:port/db as user, for messages (never the password)."""
    d = conninfo_to_dict(info)
    where = f"{d.get('host', 'localhost')}:{d.get('port', '5432')}/{d.get('dbname', '?')}"
    return where + (f" as {d['user']}" if d.get("user") else "")


def connect(table: TableSpec) -> psycopg.Connection:
    """An autocommit connection in UTC, after up to ``connect.attempts`` tries with a
    doubling pause; then one line saying what was tried."""
    info = conninfo(table)
    text = table.option("connect.attempts", "3")
    try:
        attempts = int(text)
        if attempts < 1:
            raise ValueError
    except ValueError:
        raise ConfigError(f"connect.attempts = {text!r} in table {table.name!r}",
                          line=table.line, hint="a positive number") from None
    started = time.monotonic()
    for i in range(attempts):
        try:
            conn = psycopg.connect(info, autocommit=True)
            conn.execute("SET TIME ZONE 'UTC'")
            return conn
        except psycopg.OperationalError as e:
            error = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            if i + 1 < attempts:
                time.sleep(RETRY_S * 2 ** i)
    raise RuntimeFailure(
        f"cannot connect to PostgreSQL at {_where(info)} for table {table.name!r} "
        f"({attempts} attempt(s) over {time.monotonic() - started:.1f}s): {error}",
        hint="check the connection options and that the server is up")



def server_error(error: psycopg.Error, where: str) -> RuntimeFailure:
    """What the server refused, as one line: ``where`` (the table), then the server's message
    and context, without psycopg's class name."""
    text = " ".join(str(error).split()) or type(error).__name__
    hint = None
    if getattr(error, "sqlstate", None) == "55000" and "prepared transactions" in text:
        hint = ("the exactly-once sink prepares its transactions: ALTER SYSTEM SET "
                "max_prepared_transactions = 64, then restart PostgreSQL")
    return RuntimeFailure(f"{where}: {text}", hint=hint)

# ---- names and columns ------------------------------------------------------------------

@dataclass(frozen=True)
class Name:
    """A schema-qualified table name."""

    schema: str
    name: str

    @property
    def sql(self) -> sql.Composable:
        return sql.Identifier(self.schema, self.name)

    @property
    def text(self) -> str:
        return f"{self.schema}.{self.name}"


def table_name(table: TableSpec) -> str:
    return table.option("table") or table.option("table-name") or ""


def split_name(text: str) -> list[str]:
    """'a.b' -> ['a', 'b']; unquoted parts fold to lower case, as PostgreSQL does."""
    parts, current, quoted, i = [], "", False, 0
    while i < len(text):
        ch = text[i]
        if ch == '"':
            if quoted and i + 1 < len(text) and text[i + 1] == '"':
                current += '"'
                i += 1
            else:
                quoted = not quoted
        elif ch == "." and not quoted:
            parts.append(current)
            current = ""
        else:
            current += ch if quoted else ch.lower()
        i += 1
    parts.append(current)
    return parts


def qualified(conn: psycopg.Connection, text: str, schema: str | None = None) -> Name:
    parts = split_name(text)
    if len(parts) > 1:
        return Name(parts[-2], parts[-1])
    if schema is None:
        found = conn.execute("SELECT n.nspname FROM pg_class c JOIN pg_namespace n "
                             "ON n.oid = c.relnamespace WHERE c.oid = to_regclass(%s)",
                             (sql.Identifier(parts[0]).as_string(conn),)).fetchone()
        schema = found[0] if found else conn.execute("SELECT current_schema()").fetchone()[0]
    return Name(schema, parts[0])


@dataclass
class PgColumn:
    name: str
    #: the type as PostgreSQL prints it (format_type)
    type: str
    #: pg_type.typname (int8, text, _int4, …) and category (N numeric, S string, …)
    udt: str
    category: str
    #: the element's typname for an array
    element: str
    #: NOT NULL without a default: an insert must give it
    required: bool


def exists(conn: psycopg.Connection, name: Name) -> bool:
    return conn.execute("SELECT to_regclass(%s) IS NOT NULL",
                        (name.sql.as_string(conn),)).fetchone()[0]


def table_columns(conn: psycopg.Connection, name: Name) -> dict[str, PgColumn] | None:
    """Lower-cased name -> column, in table order; None if the table does not exist."""
    if not exists(conn, name):
        return None
    rows = conn.execute(
        "SELECT a.attname, format_type(a.atttypid, a.atttypmod), t.typname, t.typcategory, "
        "coalesce(e.typname, ''), a.attnotnull AND NOT a.atthasdef AND a.attidentity = '' "
        "AND a.attgenerated = '' FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid "
        "LEFT JOIN pg_type e ON e.oid = t.typelem AND t.typcategory = 'A' "
        "WHERE a.attrelid = to_regclass(%s) AND a.attnum > 0 AND NOT a.attisdropped "
        "ORDER BY a.attnum", (name.sql.as_string(conn),)).fetchall()
    return {r[0].lower(): PgColumn(*r) for r in rows}


def unique_keys(conn: psycopg.Connection, name: Name) -> list[set[str]]:
    """The column sets (lower case) of the table's primary key and unique indexes."""
    rows = conn.execute(
        "SELECT array_agg(lower(a.attname)) FROM pg_index i JOIN pg_attribute a "
        "ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey) WHERE i.indrelid = "
        "to_regclass(%s) AND i.indisunique AND i.indpred IS NULL GROUP BY i.indexrelid",
        (name.sql.as_string(conn),)).fetchall()
    return [set(r[0]) for r in rows]


# ---- types ------------------------------------------------------------------------------

def pg_type(t: pa.DataType, column: str = "?") -> str:
    """The PostgreSQL type a column of Arrow type ``t`` is created with."""
    if pa.types.is_boolean(t):
        return "boolean"
    if pa.types.is_int8(t) or pa.types.is_int16(t) or pa.types.is_uint8(t):
        return "smallint"
    if pa.types.is_int32(t) or pa.types.is_uint16(t):
        return "integer"
    if pa.types.is_int64(t) or pa.types.is_uint32(t):
        return "bigint"
    if pa.types.is_uint64(t):
        return "numeric(20)"
    if pa.types.is_float32(t):
        return "real"
    if pa.types.is_float64(t):
        return "double precision"
    if pa.types.is_decimal(t):
        return f"numeric({t.precision}, {t.scale})"
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        return "text"
    if pa.types.is_binary(t) or pa.types.is_large_binary(t):
        return "bytea"
    if pa.types.is_timestamp(t):
        return "timestamptz"
    if pa.types.is_date(t):
        return "date"
    if pa.types.is_duration(t):
        return "interval"
    if pa.types.is_time(t):
        return "time"
    if pa.types.is_struct(t):
        return "jsonb"
    if (pa.types.is_list(t) or pa.types.is_large_list(t)) and _flat(t.value_type):
        return pg_type(t.value_type, column) + "[]"
    raise ConfigError(f"column {column} of type {sql_name(t)} cannot be written to "
                      f"PostgreSQL", hint="cast it to TEXT, or to an array of a plain type")


def _flat(t: pa.DataType) -> bool:
    return not (pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_struct(t)
                or pa.types.is_binary(t))


_WIDTH = {"int2": 16, "int4": 32, "int8": 64}
#: the modifier of a printed type: numeric(10,2), timestamp(3) without time zone
_TYPMOD = re.compile(r"\((\d+)(?:,\s*(\d+))?\)")
_TEXTUAL = {"json", "jsonb", "uuid", "xml", "inet", "cidr", "macaddr", "citext"}


#: decimal digits of the largest value of an integer type, by bit width (unsigned: one more)
_INT_DIGITS = {8: 3, 16: 5, 32: 10, 64: 19}
#: fractional digits of a timestamp or time unit (PostgreSQL keeps at most 6)
_UNIT_DIGITS = {"s": 0, "ms": 3, "us": 6, "ns": 6}


def _typmod(col: PgColumn) -> tuple[int, int] | None:
    """The (precision, scale) or (precision, 0) of ``numeric(p, s)``, ``timestamp(p)``,
    ``time(p)``, read from the printed type; None when it has none (no limit)."""
    found = _TYPMOD.search(col.type)
    return (int(found.group(1)), int(found.group(2) or 0)) if found else None


def _numeric_holds(col: PgColumn, integer_digits: int | None, scale: int | None) -> bool:
    """True when numeric ``col`` keeps values with that many integer and fractional digits
    (None: any number of them); PostgreSQL rounds to the column's scale without a word."""
    mod = _typmod(col)
    if mod is None:
        return True
    precision, col_scale = mod
    return integer_digits is not None and scale is not None and col_scale >= scale and \
        precision - col_scale >= integer_digits


def fits(t: pa.DataType, col: PgColumn) -> bool:
    """True when values of Arrow type ``t`` can be stored in ``col`` without loss (nor
    rounding: 123.45 into numeric(10, 1) is stored as 123.5, 10:00:00.75 into timestamp(0)
    as 10:00:01)."""
    udt = col.udt
    if pa.types.is_integer(t):
        if udt in _WIDTH:
            return _WIDTH[udt] >= t.bit_width + (1 if pa.types.is_unsigned_integer(t) else 0)
        if udt == "numeric":
            digits = _INT_DIGITS[t.bit_width] + (t.bit_width == 64 and
                                                 pa.types.is_unsigned_integer(t))
            return _numeric_holds(col, digits, 0)
        return udt == "float8" or (udt == "float4" and t.bit_width <= 16)
    if pa.types.is_float32(t):
        return udt in ("float4", "float8") or (udt == "numeric" and
                                               _numeric_holds(col, None, None))
    if pa.types.is_float64(t):
        return udt == "float8" or (udt == "numeric" and _numeric_holds(col, None, None))
    if pa.types.is_decimal(t):
        return udt == "float8" or (udt == "numeric" and
                                   _numeric_holds(col, t.precision - t.scale, t.scale))
    if pa.types.is_boolean(t):
        return udt == "bool"
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        return col.category in ("S", "E") or udt in _TEXTUAL
    if pa.types.is_binary(t) or pa.types.is_large_binary(t):
        return udt == "bytea"
    if pa.types.is_timestamp(t) or pa.types.is_time(t):
        mod = _typmod(col)
        exact = mod is None or mod[0] >= _UNIT_DIGITS[t.unit]
        return exact and udt in (("timestamptz", "timestamp") if pa.types.is_timestamp(t)
                                 else ("time", "timetz"))
    if pa.types.is_date(t):
        return udt in ("date", "timestamp", "timestamptz")
    if pa.types.is_duration(t):
        return udt == "interval"
    if pa.types.is_struct(t):
        return udt in ("json", "jsonb")
    if pa.types.is_list(t) or pa.types.is_large_list(t):
        if udt in ("json", "jsonb"):
            return False  # written as PostgreSQL array literals
        inner = PgColumn(col.name, col.type, col.element, "", "", False)
        return col.category == "A" and fits(t.value_type, inner)
    return False


def create_table(conn: psycopg.Connection, name: Name, schema: pa.Schema,
                 key: list[str] | None, primary: bool = False) -> None:
    """CREATE TABLE IF NOT EXISTS with the query's columns and its key (a PRIMARY KEY when
    the table declares one); call in a transaction: an advisory lock serializes subtasks
    creating the same table."""
    conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (name.text,))
    cols = [sql.SQL("{} {}").format(sql.Identifier(f.name), sql.SQL(pg_type(f.type, f.name)))
            for f in schema]
    if key:
        # a GROUP BY key may be NULL, which a PRIMARY KEY refuses: PostgreSQL 15 has unique
        # constraints where NULL equals NULL, which ON CONFLICT uses as well
        kind = "UNIQUE NULLS NOT DISTINCT" if not primary and \
            conn.info.server_version >= 150000 else "PRIMARY KEY"
        cols.append(sql.SQL(kind + " ({})").format(
            sql.SQL(", ").join(map(sql.Identifier, key))))
    conn.execute(sql.SQL("CREATE TABLE IF NOT EXISTS {} ({})").format(
        name.sql, sql.SQL(", ").join(cols)))


def create_epochs_table(conn: psycopg.Connection, name: Name) -> None:
    conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (name.text,))
    conn.execute(sql.SQL(
        "CREATE TABLE IF NOT EXISTS {} (writer text NOT NULL, epoch bigint NOT NULL, "
        "rows bigint, at timestamptz NOT NULL DEFAULT now(), PRIMARY KEY (writer, epoch))")
        .format(name.sql))


def create_stage(conn: psycopg.Connection, stage: Name, target: Name,
                 columns: list[str]) -> None:
    """The staging table of one upsert writer: the written columns, ``_op`` and ``_seq``."""
    if exists(conn, stage):
        return
    with conn.transaction():
        conn.execute(sql.SQL("CREATE TABLE {} AS SELECT {} FROM {} WITH NO DATA").format(
            stage.sql, sql.SQL(", ").join(map(sql.Identifier, columns)), target.sql))
        conn.execute(sql.SQL("ALTER TABLE {} ADD COLUMN _op smallint, ADD COLUMN _seq bigint")
                     .format(stage.sql))


def prepared(conn: psycopg.Connection, prefix: str) -> list[str]:
    """Prepared transactions of this database whose id starts with ``prefix``."""
    return [r[0] for r in conn.execute(
        "SELECT gid FROM pg_prepared_xacts WHERE database = current_database() "
        "AND starts_with(gid, %s) ORDER BY prepared", (prefix,))]


def epoch_recorded(conn: psycopg.Connection, epochs: Name, writer: str, epoch: int) -> bool:
    if not exists(conn, epochs):
        return False
    return conn.execute(sql.SQL("SELECT count(*) FROM {} WHERE writer = %s AND epoch = %s")
                        .format(epochs.sql), (writer, epoch)).fetchone()[0] > 0


# ---- Arrow -> CSV for COPY ----------------------------------------------------------------

def array_literal(col: pa.Array) -> pa.Array:
    """A list column as PostgreSQL array literals ({1,2,NULL}, {"a","b"})."""
    value_type = col.type.value_type
    if pa.types.is_integer(value_type) or pa.types.is_string(value_type) or \
            pa.types.is_large_string(value_type):
        return _array_literal_arrow(col)
    import polars as pl  # late: Polars formats the other element types

    s = pl.from_arrow(col)
    inner = pl.element().cast(pl.String)
    text = pl.select(pl.lit(s).list.eval(inner.fill_null("NULL")).list.join(","))
    out = ("{" + text.to_series() + "}").to_arrow()
    return pc.if_else(pc.is_null(col), pa.nulls(len(col), pa.string()), out.cast(pa.string()))


def _array_literal_arrow(col: pa.Array) -> pa.Array:
    """``array_literal`` of integers or text, in Arrow (no Polars to import for a lookup)."""
    values = col.values   # the whole child (offsets below say which belong to which list)
    if pa.types.is_integer(values.type):
        text = pc.cast(values, pa.string())
    else:
        text = pc.replace_substring(pc.cast(values, pa.string()), "\\", "\\\\")
        text = pc.replace_substring(text, '"', '\\"')
        text = pc.binary_join_element_wise('"', text, '"', "")
    text = pc.fill_null(text, "NULL")
    lists = pa.ListArray.from_arrays(col.offsets, text)
    joined = pc.binary_join_element_wise("{", pc.binary_join(lists, ","), "}", "")
    return pc.if_else(pc.is_null(col), pa.nulls(len(col), pa.string()), joined)


def _for_csv(col: pa.Array) -> pa.Array:
    t = col.type
    if pa.types.is_timestamp(t) and t.tz is not None:
        # the session runs in UTC; the naive form formats many times faster
        return col.cast(pa.timestamp(t.unit))
    if pa.types.is_duration(t):
        micros = col.cast(pa.duration("us")).cast(pa.int64()).cast(pa.string())
        return pc.binary_join_element_wise(micros, "microseconds", " ")
    if pa.types.is_binary(t) or pa.types.is_large_binary(t):
        import polars as pl

        hexed = pl.from_arrow(col).bin.encode("hex").to_arrow().cast(pa.string())
        return pc.binary_join_element_wise("\\x", hexed, "")
    if pa.types.is_struct(t):
        import polars as pl

        return pl.from_arrow(col).struct.json_encode().to_arrow().cast(pa.string())
    if pa.types.is_list(t) or pa.types.is_large_list(t):
        return array_literal(col)
    return col


def csv_bytes(table: pa.Table) -> bytes:
    """The table as headerless CSV that COPY … (FORMAT csv) reads: NULL is an empty field,
    an empty string a quoted one."""
    columns = [_for_csv(c.combine_chunks()) for c in table.columns]
    table = pa.Table.from_arrays(columns, names=table.column_names)
    buf = io.BytesIO()
    pacsv.write_csv(table, buf, pacsv.WriteOptions(include_header=False,
                                                   batch_size=1 << 16))
    return buf.getvalue()


# ---- PostgreSQL text -> Arrow (logical replication sends values as text) -----------------

def from_text(text: pa.Array, t: pa.DataType) -> pa.Array:
    """Values in PostgreSQL's text output (DateStyle ISO, TimeZone UTC) as Arrow type ``t``,
    one vectorized cast per column."""
    if pa.types.is_string(t):
        return text
    if pa.types.is_boolean(t):
        return pc.equal(text, "t")
    if pa.types.is_timestamp(t):
        # '2026-01-01 10:00:00.5+00' (timestamptz) or without the zone (timestamp: UTC)
        fixed = pc.replace_substring_regex(text, r"([+-]\d\d)$", r"\1:00")
        zoned = pc.match_substring_regex(fixed, r"[+-]\d\d:\d\d$")
        if pc.any(zoned).as_py():
            return fixed.cast(t)
        return fixed.cast(pa.timestamp(t.unit)).cast(t)
    if pa.types.is_time(t):   # '10:11:12.5': Arrow casts text to a time only via a timestamp
        stamped = pc.binary_join_element_wise("1970-01-01 ", text, "")
        return stamped.cast(pa.timestamp(t.unit)).cast(t)
    if pa.types.is_binary(t):
        import polars as pl

        hexed = pc.utf8_slice_codeunits(text, 2)
        return pl.from_arrow(hexed).str.decode("hex").to_arrow().cast(t)
    return text.cast(t)


# ---- Arrow -> binary COPY ------------------------------------------------------------------

_PG_EPOCH_US = 946_684_800_000_000   # 2000-01-01 in microseconds since 1970
_PG_EPOCH_DAYS = 10_957
#: the binary COPY stream's header (signature, flags, extension length) and trailer
COPY_HEADER = b"PGCOPY\n\xff\r\n\x00" + b"\x00" * 8
COPY_TRAILER = b"\xff\xff"
#: PostgreSQL type -> big-endian NumPy type of its binary form (fixed-width types)
_FIXED = {"int2": ">i2", "int4": ">i4", "int8": ">i8", "float4": ">f4", "float8": ">f8",
          "bool": "u1", "timestamptz": ">i8", "timestamp": ">i8", "date": ">i4"}
_VARIABLE = {"text", "varchar", "bpchar", "name", "bytea", "json"}


def binary_supported(t: pa.DataType, udt: str) -> bool:
    """True when Arrow type ``t`` goes into a column of type ``udt`` by binary COPY here."""
    if udt in ("int2", "int4", "int8"):
        return pa.types.is_integer(t)
    if udt in ("float4", "float8"):
        return pa.types.is_floating(t) or pa.types.is_integer(t)
    if udt == "bool":
        return pa.types.is_boolean(t)
    if udt in ("timestamptz", "timestamp"):
        return pa.types.is_timestamp(t)
    if udt == "date":
        return pa.types.is_date32(t)
    if udt == "bytea":
        return pa.types.is_binary(t)
    if udt in _VARIABLE:
        return pa.types.is_string(t)
    return False


def _fixed_values(col: pa.Array, udt: str) -> np.ndarray:
    t = col.type
    if udt in ("timestamptz", "timestamp"):
        us = col.cast(pa.timestamp("us", tz=t.tz)).cast(pa.int64())
        values = us.fill_null(0).to_numpy() - _PG_EPOCH_US
    elif udt == "date":
        values = col.cast(pa.int32()).fill_null(0).to_numpy() - _PG_EPOCH_DAYS
    elif udt == "bool":
        values = col.fill_null(False).to_numpy(zero_copy_only=False)
    else:
        values = col.fill_null(0).to_numpy(zero_copy_only=False)
    return values.astype(_FIXED[udt])


def _fields(values: np.ndarray, width: int) -> pa.Array:
    """Binary values ``<int32 width><width bytes>`` from an (n,) big-endian NumPy array."""
    n = len(values)
    record = np.empty((n, 4 + width), np.uint8)
    record[:, :4] = np.frombuffer(struct.pack("!i", width), np.uint8)
    record[:, 4:] = values.view(np.uint8).reshape(n, width)
    fixed = pa.FixedSizeBinaryArray.from_buffers(pa.binary(4 + width), n,
                                                 [None, pa.py_buffer(record)])
    return fixed.cast(pa.binary())


_NULL_FIELD = pa.scalar(b"\xff\xff\xff\xff", pa.binary())


def binary_copy(table: pa.Table, udts: list[str]) -> bytes:
    """The rows of ``table`` as a whole COPY stream in the binary format (header, rows,
    trailer); see ``binary_copy_rows``."""
    return COPY_HEADER + bytes(binary_copy_rows(table, udts)) + COPY_TRAILER


def binary_copy_rows(table: pa.Table, udts: list[str]) -> memoryview:
    """The rows of ``table`` in COPY's binary format, without header and trailer (a COPY
    that stays open takes several of these), column i written as PostgreSQL type ``udts[i]``
    (all ``binary_supported``). Each column becomes one binary value per row (length, then
    the value; -1 for NULL), and Arrow's element-wise concatenation joins a row's fields, all
    in C++: no per-row Python. A view of Arrow's buffer: no copy of the rows."""
    n = table.num_rows
    pieces: list[pa.Array | pa.Scalar] = [pa.scalar(struct.pack("!h", table.num_columns),
                                                    pa.binary())]
    for col, udt in zip(table.columns, udts):
        col = col.combine_chunks()
        if udt in _FIXED:
            width = np.dtype(_FIXED[udt]).itemsize
            field = _fields(_fixed_values(col, udt), width)
        else:
            data = col.cast(pa.binary())
            lengths = pc.binary_length(data).fill_null(0).to_numpy(zero_copy_only=False)
            prefix = lengths.astype(">i4").view(np.uint8).reshape(n, 4)
            heads = pa.FixedSizeBinaryArray.from_buffers(
                pa.binary(4), n, [None, pa.py_buffer(np.ascontiguousarray(prefix))])
            field = pc.binary_join_element_wise(heads.cast(pa.binary()), data, b"")
        if col.null_count:
            field = pc.if_else(col.is_valid(), field, _NULL_FIELD)
        pieces.append(field)
    if not n:
        return memoryview(b"")
    rows = pc.binary_join_element_wise(*pieces, b"")
    offsets = np.frombuffer(rows.buffers()[1], np.int32)
    first, last = int(offsets[rows.offset]), int(offsets[rows.offset + n])
    return memoryview(rows.buffers()[2])[first:last]
