"""The kafka source's native drain: librdkafka's consumer queue read in C, no Python object
per message.

confluent-kafka hands over one Python ``Message`` per message (~1.2 µs each with its value
copied into a bytes object, plus the cycle collector they set off): more than Arrow takes to
parse the JSON. Here caudal keeps its own librdkafka consumer (the library the
confluent-kafka wheel ships) and reads a polled batch with a handful of ctypes calls:
``consume`` (up to ``max_rows`` messages), ``describe`` (each message's error, partition,
offset and value and key lengths into NumPy arrays) and ``take`` (the kept values into one
buffer, newline-separated for JSON, plus keys and timestamps when metadata columns want them;
then every message destroyed). ctypes releases the GIL during each call. No Python callback is
set on this consumer, so draining its queue never calls into Python.

A JSON batch whose columns are all of the common types (integers, DOUBLE, BOOLEAN, TEXT,
TIMESTAMP read from text) is first decoded by ``TypedJson``: C that writes the values
straight into Arrow buffers (~3x faster than Arrow's JSON parser on Nexmark bids). It accepts
only what caudal's JSON decoder accepts and decodes it to the same values; on anything else
(see ``caudal_json_decode``) it gives the batch up and Arrow's parser decodes it as before,
bad_data handling included.

The C part (``kafka_native.c`` beside this file) is compiled with ``gcc`` on first use into
the user's cache directory, keyed by a hash of its source and of the library's path. Without
gcc, without the library, when compiling fails, or with ``CAUDAL_KAFKA_NATIVE=0``,
``load()`` answers None (one debug log line) and the source reads through confluent-kafka's
``Consumer`` as before.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import logging
import os
import shutil
import subprocess
import tempfile
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from caudal.types import TIMESTAMP, is_json

#: set to 0 to read through confluent-kafka's Consumer (the pure-Python path)
ENV = "CAUDAL_KAFKA_NATIVE"
SOURCE = Path(__file__).with_name("kafka_native.c")
log = logging.getLogger(__name__)
_lock = threading.Lock()

_P = ctypes.c_void_p
_SIGNATURES = {
    "caudal_consumer_new": (_P, [_P, _P, ctypes.c_int, ctypes.c_char_p, ctypes.c_size_t]),
    "caudal_assign": (ctypes.c_int, [_P, ctypes.c_char_p, _P, _P, ctypes.c_int,
                                     ctypes.c_char_p, ctypes.c_size_t]),
    "caudal_position": (ctypes.c_int, [_P, ctypes.c_char_p, _P, _P, ctypes.c_int]),
    "caudal_commit": (ctypes.c_int, [_P, ctypes.c_char_p, _P, _P, ctypes.c_int]),
    "caudal_consume": (ctypes.c_ssize_t, [_P, ctypes.c_int, _P, ctypes.c_size_t]),
    "caudal_describe": (None, [_P, ctypes.c_int, _P, _P, _P, _P, _P, _P]),
    "caudal_take": (None, [_P, ctypes.c_int, _P, _P, _P, ctypes.c_int, _P, _P, _P]),
    "caudal_destroy": (None, [_P, ctypes.c_int]),
    "caudal_json_decode": (ctypes.c_int64, [_P, _P, ctypes.c_int64, _P, ctypes.c_int]),
    "caudal_json_decode_messages": (ctypes.c_int64, [_P, ctypes.c_int, _P, _P, ctypes.c_int]),
    "rd_kafka_queue_get_consumer": (_P, [_P]),
    "rd_kafka_queue_destroy": (None, [_P]),
    "rd_kafka_consumer_close": (ctypes.c_int, [_P]),
    "rd_kafka_destroy": (None, [_P]),
    "rd_kafka_err2str": (ctypes.c_char_p, [ctypes.c_int]),
}


def _librdkafka() -> Path | None:
    """The librdkafka that confluent-kafka's wheel ships (``confluent_kafka.libs``)."""
    import confluent_kafka

    libs = Path(confluent_kafka.__file__).resolve().parent.with_name("confluent_kafka.libs")
    found = sorted(libs.glob("librdkafka*.so*"))
    return found[0] if found else None


def _cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(Path.home(), ".cache")
    return Path(base) / "caudal" / "kafka_native"


def _compile(library: Path) -> Path:
    """The shared object for ``library``, compiled once per source and library."""
    source = SOURCE.read_bytes()
    key = hashlib.sha256(source + str(library).encode()).hexdigest()[:16]
    target = _cache_dir() / f"kafka_native-{key}.so"
    if target.exists():
        return target
    gcc = shutil.which("gcc") or shutil.which("cc")
    if gcc is None:
        raise OSError("no C compiler (gcc) on PATH")
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(suffix=".so", dir=target.parent)
    os.close(fd)
    try:
        subprocess.run([gcc, "-O2", "-shared", "-fPIC", "-o", tmp, str(SOURCE), str(library),
                        f"-Wl,-rpath,{library.parent}"], check=True, capture_output=True,
                       timeout=120)
        os.replace(tmp, target)   # atomic: processes compiling at once all succeed
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return target


@functools.cache
def _load() -> ctypes.CDLL | None:
    try:
        library = _librdkafka()
        if library is None:
            raise OSError("confluent-kafka ships no librdkafka shared library")
        lib = ctypes.CDLL(str(_compile(library)))
        for name, (restype, argtypes) in _SIGNATURES.items():
            fn = getattr(lib, name)
            fn.restype, fn.argtypes = restype, argtypes
        return lib
    except (OSError, subprocess.SubprocessError, AttributeError) as e:
        log.debug("kafka native drain unavailable (%s): reading through confluent-kafka", e)
        return None


def load() -> ctypes.CDLL | None:
    """The compiled drain, or None when it cannot be had or is turned off (see the module
    docstring)."""
    if os.environ.get(ENV, "1").strip().lower() in ("0", "false", "no", "off"):
        log.debug("kafka native drain off (%s=0): reading through confluent-kafka", ENV)
        return None
    with _lock:
        return _load()


def _setting(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _ptr(array: np.ndarray | None) -> int | None:
    return None if array is None else array.ctypes.data


class Drained:
    """One polled batch, still owned by librdkafka until ``close`` (use ``with``): each
    message's error code, partition, offset and value and key lengths (-1: none), and how many
    values hold a newline."""

    def __init__(self, lib: ctypes.CDLL, msgs: Any, n: int):
        self.lib, self.msgs, self.n = lib, msgs, n
        self.err = np.empty(n, np.int32)
        self.parts = np.empty(n, np.int32)
        self.offsets = np.empty(n, np.int64)
        self.value_lens = np.empty(n, np.int64)
        self.key_lens = np.empty(n, np.int64)
        newlines = ctypes.c_int64()
        lib.caudal_describe(msgs, n, _ptr(self.err), _ptr(self.parts), _ptr(self.offsets),
                            _ptr(self.value_lens), _ptr(self.key_lens),
                            ctypes.addressof(newlines))
        self.newlines = newlines.value

    def take(self, keep: np.ndarray, sep: int | None, keys: bool, stamps: bool,
             into: bytearray | None = None
             ) -> tuple[bytearray, np.ndarray, tuple[bytes, np.ndarray] | None,
                        np.ndarray | None]:
        """The kept messages' values in one buffer (each followed by ``sep`` unless None)
        with each one's end (``ends[i]``; starts at ``ends[i-1]``, 0 for the first), their
        keys likewise (when ``keys``), and their timestamps in ms, -1 for none (``stamps``);
        then the batch is released. ``into``: a buffer to reuse for the values (resized),
        when the caller is done with what it held."""
        keep8 = np.ascontiguousarray(keep, np.uint8)
        rows = int(keep8.sum())
        total = int(self.value_lens[keep].clip(0).sum()) + (rows if sep is not None else 0)
        values = _resized(into, total) if into is not None else bytearray(total)
        ends = np.empty(rows, np.int64)
        key_buf = key_ends = None
        if keys:
            key_buf = bytearray(int(self.key_lens[keep].clip(0).sum()))
            key_ends = np.empty(rows, np.int64)
        times = np.empty(rows, np.int64) if stamps else None
        self.lib.caudal_take(self.msgs, self.n, _ptr(keep8), _address(values), _ptr(ends),
                             -1 if sep is None else sep,
                             _address(key_buf) if keys else None, _ptr(key_ends),
                             _ptr(times))
        self.msgs = None
        return values, ends, (bytes(key_buf), key_ends) if keys else None, times

    def close(self) -> None:
        if self.msgs is not None:
            self.lib.caudal_destroy(self.msgs, self.n)
            self.msgs = None

    def __enter__(self) -> Drained:
        return self

    def __exit__(self, *_: Any) -> None:
        self.close()


def _resized(buffer: bytearray, size: int) -> bytearray:
    """``buffer`` resized in place (no fresh zeroed memory each batch; only a growth is
    zeroed), or a new one when something still holds a view of it."""
    try:
        if len(buffer) > size:
            del buffer[size:]
        elif len(buffer) < size:
            buffer.extend(bytes(size - len(buffer)))
    except BufferError:
        return bytearray(size)
    return buffer


def _address(buffer: bytearray) -> int:
    if not buffer:
        return 0
    return ctypes.addressof((ctypes.c_char * len(buffer)).from_buffer(buffer))


class NativeConsumer:
    """caudal's own librdkafka consumer of one topic's assigned partitions."""

    def __init__(self, lib: ctypes.CDLL, config: dict[str, Any], topic: str):
        self.lib, self.topic = lib, topic.encode()
        settings = {k: _setting(v) for k, v in config.items() if not callable(v)}
        keys = (ctypes.c_char_p * len(settings))(*[k.encode() for k in settings])
        values = (ctypes.c_char_p * len(settings))(*[v.encode() for v in settings.values()])
        errstr = ctypes.create_string_buffer(512)
        self.rk = lib.caudal_consumer_new(keys, values, len(settings), errstr, 512)
        if not self.rk:
            raise ValueError(errstr.value.decode(errors="replace"))
        self.queue = lib.rd_kafka_queue_get_consumer(self.rk)
        self._msgs = (ctypes.c_void_p * 0)()
        #: the values buffer of JSON batches, reused (Arrow's parser copies what it keeps)
        self.json_buffer = bytearray()

    def assign(self, starts: dict[int, int]) -> None:
        parts = np.array(list(starts), np.int32)
        offsets = np.array(list(starts.values()), np.int64)
        errstr = ctypes.create_string_buffer(512)
        if self.lib.caudal_assign(self.rk, self.topic, _ptr(parts), _ptr(offsets),
                                  len(parts), errstr, 512):
            from caudal.errors import RuntimeFailure

            raise RuntimeFailure(f"assigning partitions of topic {self.topic.decode()!r} "
                                 f"failed: {errstr.value.decode(errors='replace')}")

    def positions(self, parts: np.ndarray) -> np.ndarray:
        """Each partition's position: the offset after the last message handed over (< 0:
        none yet)."""
        out = np.empty(len(parts), np.int64)
        self.lib.caudal_position(self.rk, self.topic, _ptr(parts), _ptr(out), len(parts))
        return out

    def commit(self, offsets: dict[int, int]) -> None:
        parts = np.array(list(offsets), np.int32)
        values = np.array(list(offsets.values()), np.int64)
        self.lib.caudal_commit(self.rk, self.topic, _ptr(parts), _ptr(values), len(parts))

    def consume(self, max_rows: int, timeout: float) -> Drained | None:
        if len(self._msgs) < max_rows:
            self._msgs = (ctypes.c_void_p * max_rows)()
        n = self.lib.caudal_consume(self.queue, int(timeout * 1000), self._msgs, max_rows)
        if n <= 0:
            return None
        return Drained(self.lib, self._msgs, n)

    def error_text(self, code: int) -> str:
        return (self.lib.rd_kafka_err2str(code) or b"").decode(errors="replace")

    def close(self) -> None:
        if self.rk:
            self.lib.rd_kafka_queue_destroy(self.queue)
            self.lib.rd_kafka_consumer_close(self.rk)
            self.lib.rd_kafka_destroy(self.rk)
            self.rk = None


class _Column(ctypes.Structure):
    """``caudal_column`` of kafka_native.c: one declared column's Arrow buffers."""

    _fields_ = [("kind", ctypes.c_int), ("name", ctypes.c_char_p),
                ("name_len", ctypes.c_int64), ("validity", _P), ("values", _P),
                ("data", _P), ("data_cap", ctypes.c_int64), ("data_len", ctypes.c_int64),
                ("nulls", ctypes.c_int64)]


#: the column types the C decoder reads, by its kind codes (kafka_native.c), and their widths
_KINDS: dict[pa.DataType, tuple[int, int]] = {
    pa.int8(): (1, 1), pa.int16(): (2, 2), pa.int32(): (3, 4), pa.int64(): (4, 8),
    pa.float64(): (5, 8), pa.bool_(): (6, 0), pa.string(): (7, 0), TIMESTAMP: (8, 8)}
_STRING, _BOOL = 7, 6
_MAX_COLUMNS = 64   # the C decoder marks the keys seen in one 64-bit word


class TypedJson:
    """The C decoder of JSON messages for one json.Decoder's schema (see the module doc)."""

    def __init__(self, lib: ctypes.CDLL, decoder: Any, kinds: list[tuple[int, int]]):
        self.lib, self.decoder, self.kinds = lib, decoder, kinds
        self.names = [f.name.encode() for f in decoder.schema]

    @classmethod
    def of(cls, lib: ctypes.CDLL, decoder: Any) -> TypedJson | None:
        """The C decoder for ``decoder`` (caudal.formats.json.Decoder), None when one of its
        columns is of a type it does not read."""
        schema = decoder.schema
        if decoder.options.unstructured or not 0 < len(schema) <= _MAX_COLUMNS:
            return None
        kinds = []
        for field in schema:
            kind = _KINDS.get(field.type)
            if kind is None or is_json(field):
                return None
            kinds.append(kind)
        return cls(lib, decoder, kinds)

    def decode(self, values: bytearray, ends: np.ndarray) -> pa.Table | None:
        """The table of the messages laid end to end in ``values`` (message ``i`` ends at
        ``ends[i]``, its last byte a newline; none holds another), or None when the C
        decoder gives the batch up (or a TIMESTAMP column is read from epoch numbers now)."""
        if not len(values):
            return None
        ends64 = np.ascontiguousarray(ends, np.int64)
        return self._run(len(ends), len(values), lambda cols: self.lib.caudal_json_decode(
            _address(values), _ptr(ends64), len(ends), cols, len(cols)))

    def decode_messages(self, drained: Drained, keep: np.ndarray) -> pa.Table | None:
        """``decode`` straight from a polled batch's kept messages, before ``take`` (none
        may hold a line break: ``drained.newlines == 0``); the batch stays open."""
        keep8 = np.ascontiguousarray(keep, np.uint8)
        size = int(drained.value_lens[keep].clip(0).sum())
        return self._run(int(keep8.sum()), size, lambda cols: self.lib.caudal_json_decode_messages(
            drained.msgs, drained.n, _ptr(keep8), cols, len(cols)))

    def _run(self, n: int, size: int, call: Any) -> pa.Table | None:
        """Arrow buffers for ``n`` rows of ``size`` bytes of JSON, filled by ``call``."""
        parse = self.decoder.parse_schema
        schema = self.decoder.schema
        if not parse.equals(schema):   # a time column flipped to numbers by the data
            return None
        if n == 0 or size == 0:
            return None
        bits = (n + 7) // 8
        cols = (_Column * len(self.kinds))()
        buffers = []
        for col, (kind, width), name in zip(cols, self.kinds, self.names):
            validity = _zeroed(bits)
            data = None
            if kind == _STRING:
                main = pa.allocate_buffer(4 * (n + 1))
                data = pa.allocate_buffer(size, resizable=True)
                col.data, col.data_cap = data.address, size
            elif kind == _BOOL:
                main = _zeroed(bits)
            else:
                main = pa.allocate_buffer(width * n)
            col.kind, col.name, col.name_len = kind, name, len(name)
            col.validity, col.values = validity.address, main.address
            buffers.append((validity, main, data))
        if call(cols) >= 0:
            return None
        arrays = []
        for col, field, (validity, main, data) in zip(cols, schema, buffers):
            nulls = col.nulls
            parts = [validity if nulls else None, main]
            if data is not None:
                # in place (mimalloc/jemalloc), so a batch holds only what its texts take
                data.resize(col.data_len, shrink_to_fit=True)
                parts.append(data)
            arrays.append(pa.Array.from_buffers(field.type, n, parts, null_count=nulls))
        return pa.Table.from_arrays(arrays, schema=schema)


def _zeroed(size: int) -> pa.Buffer:
    buffer = pa.allocate_buffer(size)
    ctypes.memset(buffer.address, 0, size)
    return buffer
