"""What a read_committed consumer of a real Kafka cluster would read from a topic, computed
from the raw log of librdkafka's mock cluster.

The mock cluster writes transaction markers (control batches) but hands aborted and still-open
transactions to read_committed consumers like committed ones (its Fetch response carries no
aborted-transaction list nor a last stable offset). So exactly-once checks cannot trust
confluent-kafka's read_committed consumer there; this module fetches the partitions' record
batches itself (Fetch v4, RecordBatch v2, uncompressed) and applies the markers: a
transactional producer's records count once its COMMIT marker follows, never after an ABORT,
and not while its transaction is open. The mock fences a transactional.id without aborting
(another producer id, no ABORT marker), so a transaction open at the end of the log counts as
aborted, as a real cluster aborts it.
"""

from __future__ import annotations

import socket
import struct
from collections import defaultdict

from confluent_kafka import Consumer, KafkaException


def _string(s: str) -> bytes:
    b = s.encode()
    return struct.pack(">h", len(b)) + b


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    shift = result = 0
    while True:
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            break
        shift += 7
    return (result >> 1) ^ -(result & 1), pos


def _fetch(host: str, port: int, topic: str, partition: int, offset: int) -> tuple[int, bytes]:
    """One Fetch v4 (read_uncommitted): (high watermark, raw record batches)."""
    body = struct.pack(">iiiib", -1, 100, 1, 64 << 20, 0) + struct.pack(">i", 1) + \
        _string(topic) + struct.pack(">i", 1) + struct.pack(">iqi", partition, offset, 32 << 20)
    header = struct.pack(">hhi", 1, 4, 7) + _string("caudal-verify")
    request = header + body
    with socket.create_connection((host, port), timeout=10) as sock:
        sock.sendall(struct.pack(">i", len(request)) + request)
        size = struct.unpack(">i", _recv(sock, 4))[0]
        data = _recv(sock, size)
    pos = 4 + 4  # correlation id, throttle time
    pos += 4     # topics array length (1)
    name_len = struct.unpack_from(">h", data, pos)[0]
    pos += 2 + name_len + 4   # partitions array length (1)
    _, error, high, _lso = struct.unpack_from(">ihqq", data, pos)
    pos += 4 + 2 + 8 + 8
    if error:
        raise RuntimeError(f"fetch {topic}:{partition} failed with error {error}")
    aborted = struct.unpack_from(">i", data, pos)[0]
    pos += 4 + max(aborted, 0) * 16
    length = struct.unpack_from(">i", data, pos)[0]
    pos += 4
    return high, data[pos:pos + max(length, 0)]


def _recv(sock: socket.socket, n: int) -> bytes:
    out = bytearray()
    while len(out) < n:
        chunk = sock.recv(n - len(out))
        if not chunk:
            raise ConnectionError("broker closed the connection")
        out += chunk
    return bytes(out)


def _batches(raw: bytes):
    """(base offset, last offset, producer id, transactional, control, records) per batch;
    a record is (offset, key, value)."""
    pos = 0
    while pos + 12 <= len(raw):
        base, length = struct.unpack_from(">qi", raw, pos)
        end = pos + 12 + length
        if end > len(raw):
            return   # a partial batch at the end of the response
        attributes, last_delta = struct.unpack_from(">hi", raw, pos + 21)
        producer = struct.unpack_from(">q", raw, pos + 43)[0]
        count = struct.unpack_from(">i", raw, pos + 57)[0]
        if attributes & 0x07:
            raise RuntimeError("compressed batches are not supported by the verifier")
        records = []
        p = pos + 61
        for _ in range(count):
            size, p = _varint(raw, p)
            start = p
            p += 1  # attributes
            _, p = _varint(raw, p)           # timestamp delta
            delta, p = _varint(raw, p)
            key_len, p = _varint(raw, p)
            key = raw[p:p + key_len] if key_len >= 0 else None
            p += max(key_len, 0)
            value_len, p = _varint(raw, p)
            value = raw[p:p + value_len] if value_len >= 0 else None
            p = start + size
            records.append((base + delta, key, value))
        yield base, base + last_delta, producer, bool(attributes & 0x10), \
            bool(attributes & 0x20), records
        pos = end


def committed_messages(bootstrap: str, topic: str) -> list[tuple[bytes | None, bytes | None]]:
    """(key, value) of every message a read_committed consumer sees, partition by partition."""
    return read_log(bootstrap, topic)[0]


def aborted_messages(bootstrap: str, topic: str) -> list[tuple[bytes | None, bytes | None]]:
    """(key, value) of the messages of aborted transactions, and of transactions a fenced
    producer left open (a real cluster aborts both: its consumers never see them)."""
    return [m for messages in read_log(bootstrap, topic)[1].values() for m in messages]


def aborted_transactions(bootstrap: str, topic: str) -> dict[int, list]:
    """``aborted_messages`` by the producer id that wrote them (one transaction spans
    topics under one producer id: this pairs a transaction's records across topics)."""
    return read_log(bootstrap, topic)[1]


def read_log(bootstrap: str, topic: str) -> tuple[list, dict[int, list]]:
    """The committed messages of a topic, and the aborted ones (or left open by a fenced
    producer) by producer id. Read it once every producer of the topic is done: an open
    transaction counts as aborted."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "caudal-verify"})
    try:
        meta = consumer.list_topics(topic, timeout=10)
    except KafkaException:
        return [], {}
    finally:
        consumer.close()
    found = meta.topics.get(topic)
    if found is None or found.error is not None:
        return [], {}
    out: list = []
    aborted: dict[int, list] = defaultdict(list)
    for number, part in sorted(found.partitions.items()):
        broker = meta.brokers[part.leader]
        offset, high = 0, None
        open_txn: dict[int, list] = defaultdict(list)
        while high is None or offset < high:
            high, raw = _fetch(broker.host, broker.port, topic, number, offset)
            progressed = False
            for _base, last, producer, transactional, control, records in _batches(raw):
                progressed = True
                offset = last + 1
                if control:
                    kind = struct.unpack_from(">hh", records[0][1])[1] if records else 0
                    pending = open_txn.pop(producer, [])
                    (out if kind == 1 else aborted[producer]).extend(pending)
                elif transactional:
                    open_txn[producer].extend((k, v) for _, k, v in records)
                else:
                    out.extend((k, v) for _, k, v in records)
            if not progressed:
                break
        # a transaction still open at the end of the log was fenced: the mock gives the new
        # producer of its transactional.id another producer id and writes no ABORT marker
        # for the old one, whose records hang open forever; a real cluster aborts them (at
        # the fencing init_transactions, or after transaction.timeout.ms)
        for producer, pending in open_txn.items():
            aborted[producer].extend(pending)
    return out, dict(aborted)
