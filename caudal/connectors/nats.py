"""The ``nats`` connector (nats-py): JetStream streams and core NATS subjects.

Source, JetStream (``stream`` set): the stream is one caudal partition, read by one subtask
through a durable pull consumer (``consumer``, default ``caudal-<table>``) with AckAll. The
next stream sequence to read is the partition's offset in checkpoint state; a job (re)starting
from a checkpoint re-creates the consumer at that sequence, so what was read after the
checkpoint is read again (at least once). Messages are acknowledged only once the checkpoint
holding them completes (``checkpoint_completed``): the consumer's ack floor never passes what
a checkpoint holds. Redeliveries of the server (after ``ack_wait``) are dropped by sequence.
``'scan.bounded.mode' = 'latest-offset'`` reads up to the stream's last sequence at start.

Source, core NATS (no ``stream``): a plain subscription; nothing is stored by the server, so
messages published while the job is down are lost (at most once).

Sink, JetStream: each message carries ``Nats-Msg-Id = <run>-<epoch>-<writer>-<row>``. Rows are
held in the sink's pre-commit state and published when their checkpoint completes; a restart
publishes the checkpoint's rows again with the same ids, which JetStream drops as duplicates
within the stream's ``duplicate_window`` (default 2 minutes): exactly once as long as the job
recovers within that window. Core NATS sink: published as rows come (at most once).
"""

from __future__ import annotations

import asyncio
import collections
import uuid
from typing import Any

import numpy as np
import pyarrow as pa

from caudal.connectors import messages as mx
from caudal.connectors.base import Source
from caudal.errors import ConfigError, RuntimeFailure
from caudal.plan.tables import TableSpec

FETCH_TIMEOUT_MIN = 0.05
#: messages published concurrently (each awaits its JetStream acknowledgement)
PUBLISH_WINDOW = 2000
UNCHECKPOINTED_FLUSH = 10_000

COMMON = {
    "servers": "comma-separated NATS URLs, e.g. nats://127.0.0.1:4222",
    "subject": "the subject to read (wildcards allowed) or write",
    "stream": "the JetStream stream: at-least-once source, exactly-once sink (without it: "
              "core NATS, at most once)",
    "format": mx.FORMAT_OPTION,
    "connect_timeout": mx.CONNECT_TIMEOUT_OPTION,
}
SOURCE_OPTIONS = {
    **COMMON,
    "consumer": "name of the durable JetStream consumer (default caudal-<table>)",
    "scan.startup.mode": "where a job without checkpoint starts: earliest (default), latest, "
                         "or group (after the consumer's ack floor)",
    "scan.bounded.mode": "latest-offset: read the stream up to its last sequence at start, "
                         "then end; default unbounded",
    "ack_wait": "how long the server waits for an ack before redelivering (default 1h: "
                "longer than a checkpoint interval)",
}
SINK_OPTIONS = dict(COMMON)
STARTUP = ("earliest", "latest", "group", "earliest-offset", "latest-offset", "group-offsets")


def servers(table: TableSpec) -> list[str]:
    return [s.strip() for s in mx.require(table, "servers", "nats://127.0.0.1:4222").split(",")
            if s.strip()]


def connect(table: TableSpec, loop: mx.AsyncLoop, reconnected: Any = None) -> Any:
    """A connected client, after bounded retries (then one line). The client reconnects by
    itself when the connection drops; ``reconnected`` (a coroutine function) is told."""
    import nats

    urls = servers(table)

    per_try = min(2.0, mx.connect_timeout(table))

    async def attempt() -> Any:
        # the client keeps trying a server it never reached: one try is cut at ``per_try``
        # and caudal's bounded retry decides what comes next
        return await asyncio.wait_for(nats.connect(
            urls, connect_timeout=per_try, allow_reconnect=True, max_reconnect_attempts=-1,
            reconnect_time_wait=0.5, error_cb=_quiet, disconnected_cb=_quiet_cb,
            reconnected_cb=reconnected or _quiet_cb, closed_cb=_quiet_cb), per_try)

    return mx.retrying(table, ",".join(urls), "connecting",
                       lambda: loop.run(attempt(), timeout=per_try + 5))


async def _quiet(_: Exception) -> None:
    """The client retries by itself; caudal's calls fail with one line instead."""


async def _quiet_cb() -> None:
    return None


class NatsSource(Source):
    bounded = False
    OPTIONS = SOURCE_OPTIONS
    FORMAT_ALIASES = mx.FORMAT_ALIASES

    @classmethod
    def validate(cls, table: TableSpec) -> None:
        servers(table)
        mx.require(table, "subject", "bids")
        mx.choice(table, "scan.startup.mode", STARTUP, "earliest")
        bounded = mx.bounded_latest(table)
        if bounded and not table.options.get("stream"):
            raise ConfigError(f"table {table.name!r}: scan.bounded.mode = 'latest-offset' "
                              f"needs a JetStream stream (core NATS keeps no log)",
                              line=table.line, hint="set stream = '<name>'")
        if table.schema is not None:
            mx.value_format(table)
        from caudal.durations import parse_duration_s

        parse_duration_s(table.options.get("ack_wait", "1h"), "ack_wait")

    @classmethod
    def infer_schema(cls, table: TableSpec) -> pa.Schema | None:
        raise ConfigError(f"nats table {table.name!r} declares no columns", line=table.line,
                          hint="declare them: CREATE TABLE t (id BIGINT, …) WITH (…)")

    def __init__(self, table: TableSpec):
        super().__init__(table)
        self.decoder = mx.MessageDecoder(self)
        self.schema = self.decoder.schema
        self.stream = table.options.get("stream")
        self.subject = table.options["subject"]
        self.bounded = mx.bounded_latest(table)
        self.finite = False
        self.consumer = table.options.get("consumer") or f"caudal-{table.name}"
        self._loop: mx.AsyncLoop | None = None
        self._nc: Any = None
        self._sub: Any = None
        self._assigned = False
        self._next = 0
        self._stop = 0
        self._done = False
        #: the last message of each polled batch by stream sequence, kept to ack (AckAll)
        self._to_ack: dict[int, Any] = {}
        self._queue: collections.deque = collections.deque()
        #: set by the client when it has reconnected (JetStream: the consumer is re-created)
        self._reconnected = False

    def partitions(self, parallelism: int) -> list[str]:
        self.parallelism = parallelism
        return [self.stream or self.subject]

    def open(self, assigned: list[str], offsets: dict[str, Any] | None = None) -> None:
        if not assigned:
            self._done = True
            return
        self._assigned = True
        self._loop = mx.AsyncLoop(f"nats-{self.table.name}")

        async def reconnected() -> None:
            self._reconnected = True

        self._nc = connect(self.table, self._loop, reconnected)
        if self.stream is None:
            self._loop.run(self._subscribe_core(), timeout=10)
            return
        start = (offsets or {}).get(assigned[0])
        self._loop.run(self._open_stream(start), timeout=mx.connect_timeout(self.table) + 10)

    async def _subscribe_core(self) -> None:
        queue = self._queue

        async def handler(msg: Any) -> None:
            queue.append(msg.data)

        self._sub = await self._nc.subscribe(self.subject, cb=handler)

    async def _open_stream(self, start: int | None) -> None:
        from nats.js.errors import NotFoundError


        js = self._nc.jetstream()
        self._js = js
        try:
            info = await js.stream_info(self.stream)
        except NotFoundError:
            raise ConfigError(f"JetStream stream {self.stream!r} of table {self.table.name!r} "
                              f"does not exist", line=self.table.line,
                              hint="create it (nats stream add), or check the stream "
                                   "option") from None
        last, first = info.state.last_seq, info.state.first_seq
        self._stop = last
        if start is None:
            mode = mx.choice(self.table, "scan.startup.mode", STARTUP, "earliest")
            mode = mode.split("-")[0]
            if mode == "latest":
                start = last + 1
            elif mode == "group":
                try:
                    ci = await js.consumer_info(self.stream, self.consumer)
                    start = ci.ack_floor.stream_seq + 1
                except NotFoundError:
                    start = first
            else:
                start = first
        start = max(int(start), 1)
        self._next = start
        if self.bounded and start > last:
            self._done = True
            return
        await self._create_consumer(start)

    async def _create_consumer(self, start: int) -> None:
        """The durable pull consumer, (re)created to deliver from stream sequence ``start``."""
        from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
        from nats.js.errors import NotFoundError

        from caudal.durations import parse_duration_s

        js = self._js
        if self._sub is not None:
            try:
                await self._sub.unsubscribe()
            except Exception:  # noqa: BLE001 - the old subscription of a lost connection
                pass
        try:
            await js.delete_consumer(self.stream, self.consumer)
        except NotFoundError:
            pass
        ack_wait = parse_duration_s(self.table.options.get("ack_wait", "1h"), "ack_wait")
        config = ConsumerConfig(deliver_policy=DeliverPolicy.BY_START_SEQUENCE,
                                opt_start_seq=start, ack_policy=AckPolicy.ALL,
                                max_ack_pending=-1, ack_wait=ack_wait,
                                filter_subject=self.subject)
        self._sub = await js.pull_subscribe(self.subject, durable=self.consumer,
                                            stream=self.stream, config=config)

    # -- reading ------------------------------------------------------------------------------

    def poll(self, max_rows: int, timeout: float) -> pa.RecordBatch | None:
        if self._done or not self._assigned:
            return None
        if self.stream is None:
            return self._poll_core(max_rows, timeout)
        if self._reconnected:
            # the connection dropped: messages of a fetch whose reply was lost count as
            # delivered (the server would send them again only after ack_wait, and an AckAll
            # of a later one would drop them): deliver again from the next sequence
            try:
                self._loop.run(self._create_consumer(self._next), timeout=30)
            except TimeoutError:  # the server does not answer yet (nats' is one too)
                return None  # try again at the next poll
            self._reconnected = False
        msgs = self._loop.run(self._fetch(max_rows, timeout), timeout=timeout + 30)
        if not msgs:
            if self.bounded:
                self._check_drained()
            return None
        # the Python the client forces: one object per message for its sequence and bytes
        seqs = np.fromiter((m.metadata.sequence.stream for m in msgs), np.int64, len(msgs))
        keep = seqs >= self._next   # redeliveries of what was read already
        if self.bounded:
            if (seqs > self._stop).any():
                self._done = True
            keep &= seqs <= self._stop
        if not keep.all():
            msgs = [m for m, k in zip(msgs, keep) if k]
            seqs = seqs[keep]
        if not msgs:
            return None
        self._next = int(seqs.max()) + 1
        self._to_ack[self._next - 1] = msgs[-1] if seqs[-1] == seqs.max() else \
            msgs[int(np.argmax(seqs))]
        if self.bounded and self._next > self._stop:
            self._done = True
        batch = self.decoder.decode(
            [m.data for m in msgs],
            lambda i: f"stream {self.stream!r} sequence {int(seqs[i])}")
        if batch is None or batch.num_rows == 0:
            return None
        self.metrics.rows_read += batch.num_rows
        return batch

    async def _fetch(self, n: int, timeout: float) -> list:
        import nats.errors

        try:
            return await self._sub.fetch(batch=max(1, n), timeout=max(timeout,
                                                                        FETCH_TIMEOUT_MIN))
        except nats.errors.TimeoutError:
            return []
        except (nats.errors.ConnectionClosedError, nats.errors.NoServersError) as e:
            raise RuntimeFailure(f"nats table {self.table.name!r}: lost the server "
                                 f"({type(e).__name__})",
                                 hint="the job restarts from its last checkpoint") from None

    def _check_drained(self) -> None:
        """Bounded: nothing came within the timeout; done if the consumer has nothing left
        (the last sequences of the stream may be of other subjects than the filter)."""
        try:
            info = self._loop.run(self._js.consumer_info(self.stream, self.consumer),
                                  timeout=10)
        except Exception:  # noqa: BLE001 - looked at again at the next empty poll
            return
        if info.num_pending == 0 and info.num_ack_pending == 0 or \
                info.num_pending == 0 and info.delivered.stream_seq < self._next:
            self._done = True

    def _poll_core(self, max_rows: int, timeout: float) -> pa.RecordBatch | None:
        import time

        queue = self._queue
        if not queue:
            time.sleep(min(timeout, 0.05))
            if not queue:
                return None
        values = [queue.popleft() for _ in range(min(max_rows, len(queue)))]
        batch = self.decoder.decode(values, lambda i: f"subject {self.subject!r}")
        if batch is not None:
            self.metrics.rows_read += batch.num_rows
        return batch

    # -- end, checkpoints ---------------------------------------------------------------------

    def finished(self) -> bool:
        return self.bounded and (self._done or not self._assigned)

    def offsets(self) -> dict[str, Any]:
        if self.stream is None or not self._assigned:
            return {}
        return {self.stream: self._next}

    def checkpoint_completed(self, offsets: dict[str, Any]) -> None:
        """Ack (AckAll) the newest message the completed checkpoint holds."""
        upto = offsets.get(self.stream) if self.stream else None
        if upto is None or self._loop is None:
            return
        held = [s for s in self._to_ack if s < int(upto)]
        if not held:
            return
        msg = self._to_ack[max(held)]
        for s in held:
            del self._to_ack[s]
        try:
            self._loop.run(msg.ack(), timeout=10)
        except Exception:  # noqa: BLE001 - the next checkpoint acks further; replay is safe
            pass

    def close(self) -> None:
        if self._loop is not None:
            try:
                self._loop.run(self._nc.drain() if self.stream is None else self._nc.close(),
                               timeout=5)
            except Exception:  # noqa: BLE001 - closing a lost connection
                pass
            self._loop.stop()
            self._loop = None


class NatsSink(mx.MessageSink):
    OPTIONS = SINK_OPTIONS

    @classmethod
    def validate(cls, table: TableSpec) -> None:
        servers(table)
        mx.require(table, "subject", "results")
        if table.schema is not None:
            mx.value_format(table)

    def open(self, schema: pa.Schema, restored: dict[str, Any] | None = None) -> None:
        super().open(schema, restored)
        self.subject = self.table.options["subject"]
        self.stream = self.table.options.get("stream")
        self._loop = mx.AsyncLoop(f"nats-sink-{self.table.name}")
        self._nc = connect(self.table, self._loop)
        self._js = self._nc.jetstream()
        #: names this run's messages: a restored state brings the run that staged them
        self._token = (restored or {}).get("token") or uuid.uuid4().hex[:12]
        self._staged: list[pa.Array] = []
        self._pending: dict[int, pa.Array] = {}
        self._internal = 0
        if restored and restored.get("pending"):
            values = restored["rows"]
            epochs = np.asarray(values.column("epoch"))
            for e in restored["pending"]:
                self._pending[int(e)] = values.column("value").combine_chunks().filter(
                    pa.array(epochs == int(e)))
            # messages of a restored run keep that run's token (the ids JetStream saw)
            self._token = restored["token"]

    def write(self, batch: pa.RecordBatch) -> None:
        values, _ = mx.encode_values(batch, self.format, self.table, self.schema)
        if self.stream is None:
            self._loop.run(self._publish_core(values.to_pylist()), timeout=60)
            return
        self._staged.append(values)
        if not self.checkpointing and sum(len(v) for v in self._staged) >= \
                UNCHECKPOINTED_FLUSH:
            self._internal -= 1
            self.pre_commit(self._internal)
            self.commit(self._internal)

    async def _publish_core(self, values: list[bytes]) -> None:
        for v in values:
            await self._nc.publish(self.subject, v)

    def pre_commit(self, epoch: int) -> dict[str, Any]:
        if self.stream is None:
            self._loop.run(self._nc.flush(timeout=mx.connect_timeout(self.table)), timeout=60)
            return {}
        if self._staged:
            sealed = pa.concat_arrays(self._staged)
            self._staged = []
            self._pending[epoch] = pa.concat_arrays([self._pending[epoch], sealed]) \
                if epoch in self._pending else sealed
        if not self._pending:
            return {"epoch": epoch, "pending": []}
        order = sorted(self._pending)
        rows = pa.table({
            "epoch": pa.array(np.concatenate([np.full(len(self._pending[e]), e, np.int64)
                                              for e in order])),
            "value": pa.concat_arrays([self._pending[e] for e in order])})
        return {"epoch": epoch, "pending": order, "token": self._token, "rows": rows}

    def commit(self, epoch: int) -> None:
        if self.stream is None:
            return
        for e in sorted(x for x in self._pending if x <= epoch):
            prefix = f"{self._token}-{e}-{self.writer_id()}-"
            self._loop.run(self._publish_js(prefix, self._pending[e].to_pylist(), e),
                           timeout=None)
            del self._pending[e]

    async def _publish_js(self, prefix: str, values: list[bytes], epoch: int) -> None:
        from nats.js.errors import NoStreamResponseError

        js, subject, stream = self._js, self.subject, self.stream
        for lo in range(0, len(values), PUBLISH_WINDOW):
            chunk = values[lo:lo + PUBLISH_WINDOW]
            tries = 0
            while True:
                results = await asyncio.gather(*[
                    js.publish(subject, v, stream=stream, timeout=10,
                               headers={"Nats-Msg-Id": f"{prefix}{lo + i}"})
                    for i, v in enumerate(chunk)], return_exceptions=True)
                failed = [r for r in results if isinstance(r, BaseException)]
                if not failed:
                    break
                tries += 1
                if tries >= 5:
                    what = "no stream takes the subject" if isinstance(
                        failed[0], NoStreamResponseError) else type(failed[0]).__name__
                    raise RuntimeFailure(f"nats table {self.table.name!r}: publishing "
                                         f"checkpoint {epoch} to stream {stream!r} failed "
                                         f"({what})",
                                         hint="check the stream and its subjects; the job "
                                              "restarts from its last checkpoint")
                # the whole chunk again: ids make the ones already stored duplicates
                await asyncio.sleep(0.2 * 2 ** tries)

    def abort(self, epoch: int) -> None:
        self._pending.pop(epoch, None)

    def close(self) -> None:
        if self.stream is not None and (self._staged or self._pending):
            self._internal -= 1
            self.pre_commit(self._internal)
            self.commit(self._internal)
        try:
            self._loop.run(self._nc.close(), timeout=5)
        except Exception:  # noqa: BLE001 - closing a lost connection
            pass
        self._loop.stop()


SOURCE = NatsSource
SINK = NatsSink
