"""The ``webhook`` sink: rows POSTed to an HTTP endpoint as JSON arrays of row objects.

Each request carries at most ``batch.max_rows`` rows (default 500) and an ``Idempotency-Key``
header ``<run>-<epoch>-<writer>-<batch>``, the same every time that batch is sent (retries and
recovery). With checkpoints the rows of an epoch are held in the sink's pre-commit state and
sent when the checkpoint completes; after a crash the checkpoint's batches are sent again,
split the same way and with the same keys. The endpoint thus sees every row at least once, and
exactly once if it drops requests whose Idempotency-Key it has already taken. Without
checkpoints rows are sent as batches fill up (at least once).

Connection failures, 408, 429 and 5xx answers are retried with growing waits (``retries``
times, starting at ``retry.backoff``); another answer, or the last failure, stops the job with
one line naming the endpoint and the status.
"""

from __future__ import annotations

import http.client
import time
import urllib.parse
import uuid
from typing import Any

import numpy as np
import pyarrow as pa

from caudal.connectors import messages as mx
from caudal.connectors.base import Sink
from caudal.durations import parse_duration_s
from caudal.errors import ConfigError, RuntimeFailure
from caudal.formats import json as json_format
from caudal.plan.tables import TableSpec
from caudal.types import conform_batch

DEFAULT_BATCH = 500
RETRYABLE = {408, 425, 429, 500, 502, 503, 504}
STAGED = pa.schema([("epoch", pa.int64()), ("body", pa.binary())])

OPTIONS = {
    "endpoint": "the URL rows are POSTed to (http:// or https://)",
    "format": "json (the only one: a JSON array of row objects per request)",
    "headers": "extra request headers: 'Name: value, Other: value'",
    "batch.max_rows": f"rows per request at most (default {DEFAULT_BATCH})",
    "retries": "how many times a failed request is sent again (default 8)",
    "retry.backoff": "the first wait before a retry, doubled each time up to 5s (default 100ms)",
    "timeout": "how long to wait for an answer (default 10s)",
}


def parse_headers(table: TableSpec) -> dict[str, str]:
    raw = table.options.get("headers", "")
    out = {}
    for part in raw.split(","):
        if not part.strip():
            continue
        name, sep, value = part.partition(":")
        if not sep or not name.strip():
            raise ConfigError(f"headers = {raw!r} of table {table.name!r}", line=table.line,
                              hint="'Name: value, Other: value'")
        out[name.strip()] = value.strip()
    return out


def _positive_int(table: TableSpec, key: str, default: int) -> int:
    low = 1 if key == "batch.max_rows" else 0
    return mx.int_option(table, key, default, low, 1 << 30,
                         "rows" if key == "batch.max_rows" else "tries")


class WebhookSink(Sink):
    OPTIONS = OPTIONS

    @classmethod
    def validate(cls, table: TableSpec) -> None:
        endpoint = mx.require(table, "endpoint", "http://127.0.0.1:8080/in")
        url = urllib.parse.urlsplit(endpoint)
        if url.scheme not in ("http", "https") or not url.hostname:
            raise ConfigError(f"endpoint = {endpoint!r} of table {table.name!r}",
                              line=table.line, hint="an http:// or https:// URL")
        if table.options.get("format", "json").strip().lower() != "json":
            raise ConfigError(f"format = {table.options['format']!r} of webhook table "
                              f"{table.name!r}", line=table.line, hint="accepted: json")
        parse_headers(table)
        _positive_int(table, "batch.max_rows", DEFAULT_BATCH)
        _positive_int(table, "retries", 8)
        parse_duration_s(table.options.get("retry.backoff", "100ms"), "retry.backoff")
        parse_duration_s(table.options.get("timeout", "10s"), "timeout")

    def open(self, schema: pa.Schema, restored: dict[str, Any] | None = None) -> None:
        super().open(schema, restored)
        opts = self.table.options
        self.url = urllib.parse.urlsplit(opts["endpoint"])
        self.headers = {"Content-Type": "application/json", **parse_headers(self.table)}
        self.max_rows = _positive_int(self.table, "batch.max_rows", DEFAULT_BATCH)
        self.retries = _positive_int(self.table, "retries", 8)
        self.backoff = parse_duration_s(opts.get("retry.backoff", "100ms"), "retry.backoff")
        self.timeout = parse_duration_s(opts.get("timeout", "10s"), "timeout")
        self._conn: http.client.HTTPConnection | None = None
        self._token = (restored or {}).get("token") or uuid.uuid4().hex[:12]
        #: this epoch's rows, encoded as JSON objects (one binary value per row)
        self._rows: list[pa.Array] = []
        self._count = 0
        self._pending: dict[int, pa.Array] = {}
        self._internal = 0
        self.requests = 0
        self.retried = 0
        if restored and restored.get("pending"):
            rows = restored["rows"]
            epochs = np.asarray(rows.column("epoch"))
            values = rows.column("body").combine_chunks()
            for e in restored["pending"]:
                self._pending[int(e)] = values.filter(pa.array(epochs == int(e)))

    def write(self, batch: pa.RecordBatch) -> None:
        data = conform_batch(batch, self.schema)
        values = mx.split_lines(json_format.encode(data, self.table.options, self.schema))
        self._rows.append(values)
        self._count += len(values)
        if not self.checkpointing and self._count >= self.max_rows:
            self._internal -= 1
            self.pre_commit(self._internal)
            self.commit(self._internal)

    def pre_commit(self, epoch: int) -> dict[str, Any]:
        if self._rows:
            sealed = pa.concat_arrays(self._rows)
            self._rows, self._count = [], 0
            self._pending[epoch] = pa.concat_arrays([self._pending[epoch], sealed]) \
                if epoch in self._pending else sealed
        if not self._pending:
            return {"epoch": epoch, "pending": []}
        order = sorted(self._pending)
        rows = pa.table({
            "epoch": pa.array(np.concatenate([np.full(len(self._pending[e]), e, np.int64)
                                              for e in order])),
            "body": pa.concat_arrays([self._pending[e] for e in order])}, schema=STAGED)
        return {"epoch": epoch, "pending": order, "token": self._token, "rows": rows}

    def commit(self, epoch: int) -> None:
        for e in sorted(x for x in self._pending if x <= epoch):
            rows = self._pending[e]
            for index, lo in enumerate(range(0, len(rows), self.max_rows)):
                chunk = rows.slice(lo, self.max_rows).to_pylist()
                body = b"[" + b",".join(chunk) + b"]"
                self._post(body, f"{self._token}-{e}-{self.writer_id()}-{index}", e)
            del self._pending[e]

    def _post(self, body: bytes, key: str, epoch: int) -> None:
        headers = dict(self.headers)
        headers["Idempotency-Key"] = key
        path = self.url.path or "/"
        if self.url.query:
            path += "?" + self.url.query
        wait = self.backoff
        last = ""
        for attempt in range(self.retries + 1):
            if attempt:
                self.retried += 1
                time.sleep(wait)
                wait = min(wait * 2, 5.0)
            try:
                conn = self._connection()
                conn.request("POST", path, body, headers)
                answer = conn.getresponse()
                answer.read()
                self.requests += 1
                if 200 <= answer.status < 300:
                    return
                last = f"HTTP {answer.status} {answer.reason}"
                if answer.status not in RETRYABLE:
                    break
            except (OSError, http.client.HTTPException) as e:
                last = str(e) or type(e).__name__
                self._close_connection()
        raise RuntimeFailure(f"webhook table {self.table.name!r}: POST to "
                             f"{self.table.options['endpoint']} failed ({last}) for the rows "
                             f"of checkpoint {epoch}",
                             hint="check the endpoint; the job restarts from its last "
                                  "checkpoint and sends them again with the same "
                                  "Idempotency-Key")

    def _connection(self) -> http.client.HTTPConnection:
        if self._conn is None:
            cls = http.client.HTTPSConnection if self.url.scheme == "https" else \
                http.client.HTTPConnection
            self._conn = cls(self.url.hostname, self.url.port, timeout=self.timeout)
        return self._conn

    def _close_connection(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def abort(self, epoch: int) -> None:
        self._pending.pop(epoch, None)

    def close(self) -> None:
        if self._rows or self._pending:
            self._internal -= 1
            self.pre_commit(self._internal)
            self.commit(self._internal)
        self._close_connection()


SINK = WebhookSink
