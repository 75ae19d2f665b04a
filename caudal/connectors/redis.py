"""The ``redis`` connector (redis-py): a Redis Stream as a source; strings, hashes, lists or a
stream as a sink.

Source: the stream key is one caudal partition, read by one subtask through a consumer group
(``group``, default ``caudal-<table>``; consumer ``consumer``, default ``caudal``). The id of
the last entry read is the partition's offset in checkpoint state. A (re)started job first
reads the entries the group delivered to its consumer but nobody acknowledged (its pending
entries list) after that id, then new ones (``>``); entries are XACKed only once a checkpoint
holding them is complete: at least once. When the connection drops mid-run, the source
connects again and reads its pending entries after the last id it handed on (a reply lost
with the connection is there): nothing lost or doubled. ``'scan.bounded.mode' =
'latest-offset'`` ends after the stream's last entry at start.

Sink: the key of each row is ``key_format`` with ``{column}`` replaced by the column's value
(one Arrow kernel per batch). ``target`` = ``string`` (SET key value; a delete of an updating
query is DEL), ``hash`` (HSET key <hash.field_format> value; delete HDEL), ``list`` (RPUSH)
or ``stream`` (XADD key * <value.field> value). The commands of an epoch are held in the
sink's pre-commit state and run when the checkpoint completes in one MULTI/EXEC transaction
with a marker (``caudal:commit:<writer>:<run>`` = epoch); recovery runs a checkpoint's
commands again only when the marker says they did not run: exactly once for every target.
"""

from __future__ import annotations

import re
import uuid
from typing import Any

import numpy as np
import pyarrow as pa

from caudal import compute as pc
from caudal.connectors import messages as mx
from caudal.connectors.base import LOOKUP_OPTIONS, LookupSource, Source
from caudal.errors import ConfigError, RuntimeFailure
from caudal.formats import text
from caudal.plan.changelog import DELETE, OP, UPDATE_BEFORE, ops_of
from caudal.plan.tables import TableSpec

DEFAULT_URL = "redis://127.0.0.1:6379/0"
TARGETS = ("string", "hash", "list", "stream")
#: entries of the pending list looked at per XPENDING call when acknowledging
ACK_CHUNK = 10_000
UNCHECKPOINTED_FLUSH = 10_000
#: how long a commit marker outlives its last commit (a recovery later than this repeats)
MARKER_TTL_S = 7 * 86400
#: the staged commands of pre-committed epochs, as the checkpoint stores them
STAGED = pa.schema([("epoch", pa.int64()), ("delete", pa.bool_()), ("key", pa.binary()),
                    ("field", pa.binary()), ("value", pa.binary())])

COMMON = {
    "url": f"redis://host:port/db (default {DEFAULT_URL})",
    "format": mx.FORMAT_OPTION,
    "connect_timeout": mx.CONNECT_TIMEOUT_OPTION,
    "value.field": "the stream entry field holding the message (default value)",
}
SOURCE_OPTIONS = {
    **COMMON,
    **LOOKUP_OPTIONS,
    "key_format": "a lookup table: the key of each row, e.g. 'bid:{auction}' (a string key "
                  "holding the row as JSON, as the sink writes it)",
    "stream": "the stream key to read",
    "group": "the consumer group (default caudal-<table>; created when missing)",
    "consumer": "the consumer's name in the group (default caudal)",
    "scan.startup.mode": "where a new group starts: earliest (default) or latest",
    "scan.bounded.mode": "latest-offset: end after the stream's last entry at start; default "
                         "unbounded",
}
SINK_OPTIONS = {
    **COMMON,
    "target": "string (default), hash, list or stream",
    "key_format": "the key, with {column} for a column's value, e.g. 'bid:{auction}'",
    "hash.field_format": "target hash: the field, with {column} as in key_format",
}
FIELD = re.compile(r"\{([^{}]+)\}")


def url(table: TableSpec) -> str:
    """The server's url; one redis-py would misread is refused (it reads a database that is
    not a number, ``redis://h:6379/x``, as database 0)."""
    raw = table.options.get("url", DEFAULT_URL)
    if not re.fullmatch(r"rediss?://[^/]*(/\d*)?|unix://.+", raw.split("?", 1)[0]):
        raise ConfigError(f"url = {raw!r} of table {table.name!r}", line=table.line,
                          hint="redis://host:port/db, e.g. " + DEFAULT_URL)
    return raw


def client(table: TableSpec, retry_commands: bool = True) -> Any:
    """A connected client (bounded retries, then one line). ``retry_commands=False``: a
    command whose connection drops fails instead of being sent again (the stream source must
    know: a lost XREADGROUP reply leaves entries in its pending list)."""
    import redis

    def attempt() -> Any:
        extra: dict[str, Any] = {}
        if not retry_commands:
            from redis.backoff import NoBackoff
            from redis.retry import Retry

            extra["retry"] = Retry(NoBackoff(), 0)
        c = redis.Redis.from_url(url(table), socket_connect_timeout=2, socket_timeout=30,
                                 **extra)
        c.ping()
        return c

    return mx.retrying(table, url(table), "connecting", attempt, (redis.RedisError, OSError))


def _id(raw: bytes | str) -> tuple[int, int]:
    text_ = raw.decode() if isinstance(raw, bytes) else raw
    ms, _, seq = text_.partition("-")
    return int(ms), int(seq or 0)


class RedisSource(Source):
    bounded = False
    OPTIONS = SOURCE_OPTIONS
    FORMAT_ALIASES = mx.FORMAT_ALIASES

    @classmethod
    def validate(cls, table: TableSpec) -> None:
        url(table)
        if table.options.get("key_format") and not table.options.get("stream"):
            return   # a lookup table (RedisLookup checks it)
        mx.require(table, "stream", "events")
        mx.choice(table, "scan.startup.mode", ("earliest", "latest", "earliest-offset",
                                               "latest-offset"), "earliest")
        mx.bounded_latest(table)
        if table.schema is not None:
            mx.value_format(table)

    @classmethod
    def infer_schema(cls, table: TableSpec) -> pa.Schema | None:
        raise ConfigError(f"redis table {table.name!r} declares no columns", line=table.line,
                          hint="declare them: CREATE TABLE t (id BIGINT, …) WITH (…)")

    def __init__(self, table: TableSpec):
        super().__init__(table)
        self.decoder = mx.MessageDecoder(self)
        self.schema = self.decoder.schema
        self.key = table.options["stream"]
        self.group = table.options.get("group") or f"caudal-{table.name}"
        self.consumer = table.options.get("consumer") or "caudal"
        self.field = table.options.get("value.field", "value").encode()
        self.bounded = mx.bounded_latest(table)
        self._redis: Any = None
        self._assigned = False
        self._done = False
        self._last = "0-0"
        #: True while re-reading this consumer's pending entries (after a restart)
        self._pending_phase = True
        #: the server's id of this source's connection, and of a dropped one not yet
        #: closed on the server (``_reconnect``)
        self._client_id: int | None = None
        self._stale: int | None = None
        self._stop: tuple[int, int] = (0, 0)

    def partitions(self, parallelism: int) -> list[str]:
        self.parallelism = parallelism
        return [self.key]

    def open(self, assigned: list[str], offsets: dict[str, Any] | None = None) -> None:
        import redis

        if not assigned:
            return
        self._assigned = True
        self._redis = client(self.table, retry_commands=False)
        self._client_id = self._redis.client_id()
        start = "$" if mx.choice(self.table, "scan.startup.mode", (
            "earliest", "latest", "earliest-offset", "latest-offset"),
            "earliest").startswith("latest") else "0"
        try:
            self._redis.xgroup_create(self.key, self.group, id=start, mkstream=True)
        except redis.ResponseError as e:
            if "BUSYGROUP" not in str(e):
                raise RuntimeFailure(f"redis table {self.table.name!r}: cannot create group "
                                     f"{self.group!r} on {self.key!r}: {e}") from None
        self._last = (offsets or {}).get(self.key) or "0-0"
        if self.bounded:
            info = self._redis.xinfo_stream(self.key)
            self._stop = _id(info.get("last-generated-id") or b"0-0")
            if info.get("length", 0) == 0 or _id(self._last) >= self._stop:
                self._done = True

    def poll(self, max_rows: int, timeout: float) -> pa.RecordBatch | None:
        import redis

        if self._done or not self._assigned:
            return None
        since = self._last if self._pending_phase else ">"
        block = None if self._pending_phase else max(1, int(timeout * 1000))
        try:
            if self._stale is not None:
                self._close_stale()
            got = self._redis.xreadgroup(self.group, self.consumer, {self.key: since},
                                         count=max_rows, block=block)
        except (redis.ConnectionError, redis.TimeoutError):
            # the connection dropped: entries of a lost reply are in this consumer's pending
            # list, so read it again after the last entry handed on (bounded retries)
            self._reconnect()
            return None
        except Exception as e:  # noqa: BLE001 - one line; the job restarts from a checkpoint
            raise RuntimeFailure(f"redis table {self.table.name!r}: reading stream "
                                 f"{self.key!r} failed ({str(e).splitlines()[0]})",
                                 hint="the job restarts from its last checkpoint") from None
        entries = got[0][1] if got else []
        if self._pending_phase and not entries:
            self._pending_phase = False
            return None
        if not entries:
            if self.bounded:   # '>' found nothing: the group has been given every entry
                self._done = True
            return None
        ids = [e[0] for e in entries]
        if self.bounded:
            keep = [_id(i) <= self._stop for i in ids]
            if not all(keep):
                self._done = True
                entries = [e for e, k in zip(entries, keep) if k]
                ids = [e[0] for e in entries]
                if not entries:
                    return None
        self._last = ids[-1].decode()
        if self.bounded and _id(self._last) >= self._stop:
            self._done = True
        field = self.field
        # the Python the client forces: one dict per entry, its value taken out
        values = [fields.get(field, b"") if fields else b"" for _, fields in entries]
        batch = self.decoder.decode(
            values, lambda i: f"stream {self.key!r} entry {ids[i].decode()}")
        if batch is None or batch.num_rows == 0:
            return None
        self.metrics.rows_read += batch.num_rows
        return batch

    def _reconnect(self) -> None:
        """A new connection; the old one is remembered (``_stale``) to be closed on the
        server before anything is read again. The server may not have seen it drop: a
        blocked XREADGROUP there can still be handed new entries (into this consumer's
        pending list) after the pending list was read again, and they would never be
        handed on, then acknowledged at a checkpoint: lost."""
        if self._stale is None:
            self._stale = self._client_id
        self._redis.close()
        self._redis = client(self.table, retry_commands=False)
        self._pending_phase = True

    def _close_stale(self) -> None:
        """CLIENT KILL the dropped connection (Redis runs commands one at a time: once this
        has run it takes nothing more), then learn this connection's id."""
        import redis

        try:
            self._redis.client_kill_filter(_id=self._stale)
        except redis.ResponseError:   # already gone
            pass
        self._stale = None
        self._client_id = self._redis.client_id()

    def finished(self) -> bool:
        return self.bounded and (self._done or not self._assigned)

    def offsets(self) -> dict[str, Any]:
        return {self.key: self._last} if self._assigned else {}

    def checkpoint_completed(self, offsets: dict[str, Any]) -> None:
        """XACK this consumer's pending entries up to the checkpoint's last id."""
        upto = offsets.get(self.key)
        if upto is None or self._redis is None:
            return
        try:
            while True:
                pending = self._redis.xpending_range(self.key, self.group, "-", upto,
                                                     ACK_CHUNK, consumername=self.consumer)
                if not pending:
                    return
                self._redis.xack(self.key, self.group, *[p["message_id"] for p in pending])
                if len(pending) < ACK_CHUNK:
                    return
        except Exception:  # noqa: BLE001 - acked at the next checkpoint; replay is safe
            return

    def close(self) -> None:
        if self._redis is not None:
            self._redis.close()
            self._redis = None


class KeyFormat:
    """``'bid:{auction}'`` -> one binary key per row, built by one Arrow kernel."""

    def __init__(self, table: TableSpec, option: str, pattern: str, columns: list[str]):
        self.pieces: list[tuple[bool, str]] = []
        names = {c.lower(): c for c in columns}
        pos = 0
        for m in FIELD.finditer(pattern):
            if m.start() > pos:
                self.pieces.append((False, pattern[pos:m.start()]))
            name = m.group(1).strip()
            if name.lower() not in names:
                raise ConfigError(f"{option} = {pattern!r} of table {table.name!r} names "
                                  f"{name!r}, not a column", line=table.line,
                                  hint="its columns: " + ", ".join(columns))
            self.pieces.append((True, names[name.lower()]))
            pos = m.end()
        if pos < len(pattern):
            self.pieces.append((False, pattern[pos:]))

    def build(self, rows: pa.RecordBatch) -> pa.Array:
        n = rows.num_rows
        parts = [text.to_text(rows.column(p)).fill_null("") if is_col else
                 pa.array(np.full(n, p, object), pa.string()) for is_col, p in self.pieces]
        if not parts:
            return pa.array(np.full(n, b"", object), pa.binary())
        if len(parts) == 1:
            return parts[0].cast(pa.binary())
        return pc.binary_join_element_wise(*parts, "").cast(pa.binary())


class RedisSink(mx.MessageSink):
    OPTIONS = SINK_OPTIONS
    writes_by_key = True

    @classmethod
    def validate(cls, table: TableSpec) -> None:
        url(table)
        target = mx.choice(table, "target", TARGETS, "string")
        mx.require(table, "key_format", "bid:{auction}")
        if target == "hash":
            mx.require(table, "hash.field_format", "{bidder}")
        if table.schema is not None:
            columns = [f.name for f in table.schema if f.name != OP]
            KeyFormat(table, "key_format", table.options["key_format"], columns)
            if target == "hash":
                KeyFormat(table, "hash.field_format", table.options["hash.field_format"],
                          columns)
            fmt = mx.value_format(table)
            if fmt == "debezium_json":
                raise ConfigError(f"redis table {table.name!r}: format debezium_json is not "
                                  f"written to Redis", line=table.line,
                                  hint="use json; an updating query upserts and deletes keys")

    @classmethod
    def takes_changelog(cls, table: TableSpec) -> bool:
        return table.options.get("target", "string").strip().lower() in ("string", "hash")

    def open(self, schema: pa.Schema, restored: dict[str, Any] | None = None) -> None:
        super().open(schema, restored)
        opts = self.table.options
        self.target = mx.choice(self.table, "target", TARGETS, "string")
        columns = [f.name for f in schema if f.name != OP]
        self.keys = KeyFormat(self.table, "key_format", opts["key_format"], columns)
        self.fields = KeyFormat(self.table, "hash.field_format", opts["hash.field_format"],
                                columns) if self.target == "hash" else None
        self.value_field = opts.get("value.field", "value").encode()
        self._redis = client(self.table)
        self._token = (restored or {}).get("token") or uuid.uuid4().hex[:12]
        self._marker = f"caudal:commit:{self.writer_id()}:{self._token}"
        self._staged: list[pa.Table] = []
        self._pending: dict[int, pa.Table] = {}
        self._internal = 0
        if restored and restored.get("pending"):
            rows = restored["rows"]
            epochs = np.asarray(rows.column("epoch"))
            for e in restored["pending"]:
                self._pending[int(e)] = rows.filter(pa.array(epochs == int(e)))

    def write(self, batch: pa.RecordBatch) -> None:
        deletes = None
        if OP in batch.schema.names:
            ops = ops_of(batch)
            deletes = (ops == DELETE) | (ops == UPDATE_BEFORE)
        values, rows = mx.encode_values(batch, self.format, self.table, self.schema)
        n = rows.num_rows
        keys = self.keys.build(rows)
        fields = self.fields.build(rows) if self.fields is not None else \
            pa.nulls(n, pa.binary())
        self._staged.append(pa.table([
            pa.array(np.zeros(n, np.int64)),
            pa.array(deletes if deletes is not None else np.zeros(n, bool)),
            keys, fields, values], schema=STAGED))
        if not self.checkpointing and sum(t.num_rows for t in self._staged) >= \
                UNCHECKPOINTED_FLUSH:
            self._internal -= 1
            self.pre_commit(self._internal)
            self.commit(self._internal)

    def pre_commit(self, epoch: int) -> dict[str, Any]:
        if self._staged:
            sealed = pa.concat_tables(self._staged)
            self._staged = []
            sealed = sealed.set_column(0, "epoch", pa.array(np.full(sealed.num_rows, epoch,
                                                                    np.int64)))
            self._pending[epoch] = pa.concat_tables([self._pending[epoch], sealed]) \
                if epoch in self._pending else sealed
        if not self._pending:
            return {"epoch": epoch, "pending": []}
        order = sorted(self._pending)
        return {"epoch": epoch, "pending": order, "token": self._token,
                "rows": pa.concat_tables([self._pending[e] for e in order])}

    def commit(self, epoch: int) -> None:
        ready = sorted(e for e in self._pending if e <= epoch)
        if not ready:
            return
        todo = ready
        if ready[-1] > 0:   # a checkpoint's epochs (a run without checkpoints counts down)
            done = self._redis.get(self._marker)
            todo = [e for e in ready if done is None or e > int(done)]
        if todo:
            pipe = self._redis.pipeline(transaction=True)
            for e in todo:
                self._commands(pipe, self._pending[e])
            if todo[-1] > 0:
                pipe.set(self._marker, todo[-1], ex=MARKER_TTL_S)
            try:
                pipe.execute()
            except Exception as e:  # noqa: BLE001 - one line; the job restarts
                raise RuntimeFailure(f"redis table {self.table.name!r}: committing checkpoint "
                                     f"{ready[-1]} failed ({str(e).splitlines()[0]})",
                                     hint="the job restarts from its last checkpoint") from None
        for e in ready:
            del self._pending[e]

    def _commands(self, pipe: Any, rows: pa.Table) -> None:
        """The epoch's commands, in row order (a key's delete before its new value)."""
        deletes = rows.column("delete").to_pylist()
        keys = rows.column("key").to_pylist()
        values = rows.column("value").to_pylist()
        target = self.target
        if target == "string":
            for d, k, v in zip(deletes, keys, values):
                if d:
                    pipe.delete(k)
                else:
                    pipe.set(k, v)
        elif target == "hash":
            for d, k, f, v in zip(deletes, keys, rows.column("field").to_pylist(), values):
                if d:
                    pipe.hdel(k, f)
                else:
                    pipe.hset(k, f, v)
        elif target == "list":
            for k, v in zip(keys, values):
                pipe.rpush(k, v)
        else:
            field = self.value_field
            for k, v in zip(keys, values):
                pipe.xadd(k, {field: v})

    def abort(self, epoch: int) -> None:
        self._pending.pop(epoch, None)

    def close(self) -> None:
        if self._staged or self._pending:
            self._internal -= 1
            self.pre_commit(self._internal)
            self.commit(self._internal)
        self._redis.close()


class RedisLookup(LookupSource):
    """String keys looked up by MGET (one round trip per 1 000 keys): ``key_format`` built
    from the join's keys by the same kernel as the sink's, values decoded as JSON at once."""

    @classmethod
    def validate(cls, table: TableSpec, keys: list[str]) -> None:
        url(table)
        pattern = mx.require(table, "key_format", "bid:{auction}")
        columns = table.read_schema().names
        used = {name.lower() for is_col, name in KeyFormat(table, "key_format", pattern,
                                                             columns).pieces if is_col}
        if used != {k.lower() for k in keys}:
            raise ConfigError(f"redis table {table.name!r} is looked up by key_format "
                              f"{pattern!r}, which needs a join on exactly "
                              f"{', '.join(sorted(used)) or 'no column'}, not "
                              f"{', '.join(keys)}", line=table.line,
                              hint="join on the columns key_format names")
        mx.value_format(table)

    def __init__(self, table: TableSpec, keys: list[str]):
        super().__init__(table, keys)
        from caudal import formats

        self.format = KeyFormat(table, "key_format", table.options["key_format"], self.keys)
        self._json = formats.get("json").Decoder(self.schema, table.options)
        self._redis: Any = None

    def lookup(self, keys: pa.Table) -> pa.Table:
        if keys.num_rows == 0:
            return self.schema.empty_table()
        if self._redis is None:
            self._redis = client(self.table)
        names = self.format.build(keys.combine_chunks().to_batches()[0]).to_pylist()
        values: list[Any] = []
        for lo in range(0, len(names), 1000):
            values.extend(self._redis.mget(names[lo:lo + 1000]))
        found = [i for i, v in enumerate(values) if v is not None]
        if not found:
            return self.schema.empty_table()
        try:
            rows = self._json.decode(b"\n".join(values[i] for i in found) + b"\n")
        except pa.ArrowInvalid as e:
            raise RuntimeFailure(f"lookup in redis table {self.table.name!r}: a value is not "
                                 f"a JSON row of its columns ({str(e).splitlines()[0]})",
                                 hint="the keys must hold rows as JSON objects") from None
        take = pa.array(found, pa.int64())
        for k in self.keys:   # the keys asked for (a value may lack its key columns)
            at = rows.schema.get_field_index(k)
            rows = rows.set_column(at, self.schema.field(k),
                                   keys.column(k).take(take).cast(self.schema.field(k).type))
        return rows

    def close(self) -> None:
        if self._redis is not None:
            self._redis.close()


SOURCE = RedisSource
SINK = RedisSink
LOOKUP = RedisLookup
