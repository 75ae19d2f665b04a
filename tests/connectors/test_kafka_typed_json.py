"""The C decoder of JSON messages (kafka_native.TypedJson) against caudal's JSON decoder.

The C decoder may give a batch up (the source then decodes it with Arrow's parser); when it
does decode one, Arrow's path must accept the same batch and give the same table, bit for bit
(-0.0 included). Random flat objects, with their keys in any order, missing, repeated or
unknown, values of every JSON type in many spellings, and random corruptions of them.
"""

from __future__ import annotations

import ctypes
import json

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from caudal.connectors import kafka_native
from caudal.formats.json import Decoder
from caudal.types import JSON_KEY, TIMESTAMP

LIB = kafka_native.load()
pytestmark = pytest.mark.skipif(LIB is None, reason="no native kafka drain (gcc, librdkafka)")

SCHEMA = pa.schema([("i8", pa.int8()), ("i16", pa.int16()), ("i32", pa.int32()),
                    ("i64", pa.int64()), ("f", pa.float64()), ("b", pa.bool_()),
                    ("s", pa.string()), ("t", TIMESTAMP), ("ü", pa.string())])
KEYS = [*SCHEMA.names, "x", "I64", "i6", "i644", ""]


def _batch(messages: list[bytes]) -> tuple[bytearray, np.ndarray]:
    values = bytearray(b"".join(m + b"\n" for m in messages))
    ends = np.cumsum([len(m) + 1 for m in messages]).astype(np.int64)
    return values, ends


class _Message(ctypes.Structure):
    """librdkafka's rd_kafka_message_t (the fields the decoder reads: payload and len)."""

    _fields_ = [("err", ctypes.c_int), ("rkt", ctypes.c_void_p),
                ("partition", ctypes.c_int32), ("payload", ctypes.c_void_p),
                ("len", ctypes.c_size_t), ("key", ctypes.c_void_p),
                ("key_len", ctypes.c_size_t), ("offset", ctypes.c_int64),
                ("_private", ctypes.c_void_p)]


class _Drained:
    """What TypedJson.decode_messages reads of a polled batch, over Python bytes."""

    def __init__(self, messages: list[bytes]):
        self.held = [ctypes.create_string_buffer(m, len(m)) for m in messages]
        self.structs = [_Message(payload=ctypes.addressof(b), len=len(m))
                        for b, m in zip(self.held, messages)]
        self.n = len(messages)
        self.msgs = (ctypes.c_void_p * self.n)(*[ctypes.addressof(m) for m in self.structs])
        self.value_lens = np.array([len(m) for m in messages], np.int64)


def _typed(messages: list[bytes], schema: pa.Schema = SCHEMA) -> pa.Table | None:
    """The C decoder's table, from one buffer and straight from the messages (the same)."""
    typed = kafka_native.TypedJson.of(LIB, Decoder(schema))
    assert typed is not None
    got = typed.decode(*_batch(messages))
    keep = np.ones(len(messages), bool)
    direct = typed.decode_messages(_Drained(messages), keep)
    assert (got is None) == (direct is None)
    assert got is None or got.equals(direct)
    return got


def _same(messages: list[bytes], schema: pa.Schema = SCHEMA) -> pa.Table | None:
    """The C decoder's table, checked against Arrow's path (None when C gave up)."""
    got = _typed(messages, schema)
    if got is None:
        return None
    values, _ = _batch(messages)
    expected = Decoder(schema).decode(bytes(values), len(messages), True)
    assert got.schema.equals(expected.schema)
    for name in schema.names:
        a, b = got.column(name).combine_chunks(), expected.column(name).combine_chunks()
        assert a.equals(b), (name, a, b)
        assert a.is_valid().equals(b.is_valid())
        if pa.types.is_floating(a.type):
            assert (np.signbit(a.fill_null(0).to_numpy()) ==
                    np.signbit(b.fill_null(0).to_numpy())).all()
    return got


INTS = st.one_of(st.integers(-2**63, 2**63 - 1), st.integers(-2**70, 2**70),
                 st.sampled_from([0, -1, 127, 128, -128, -129, 32767, 32768, -32769,
                                  2**31 - 1, 2**31, -2**31 - 1, 2**63 - 1, 2**63, -2**63,
                                  -2**63 - 1, 10**19, 10**25]))
NUMBER_TEXT = st.one_of(
    INTS.map(str),
    st.floats(allow_nan=False, allow_infinity=False).map(repr),
    st.sampled_from(["-0", "0.0", "-0.0", "1e3", "1E3", "1e+3", "1e-3", "1.5e0", "1e400",
                     "-1e400", "1e-400", "5e-324", "1.7976931348623157e308",
                     "1.7976931348623159e308", "2.2250738585072011e-308", "01", "-", "1.",
                     ".5", "1e", "+1", "NaN", "Infinity", "-Infinity", "0x10", "1.0",
                     "123456789012345678901234567890", "1" * 45, "0.1", "100e-2",
                     "9007199254740993", "1e99", "1e100", "-1e-99"]))
TIMES = st.one_of(
    st.datetimes().map(lambda d: d.isoformat()),
    st.datetimes().map(lambda d: d.isoformat(sep=" ")),
    st.datetimes().map(lambda d: d.isoformat() + "Z"),
    st.tuples(st.datetimes(), st.integers(-23, 23), st.sampled_from([0, 30, 45, 59]),
              st.sampled_from(["{}{:02d}:{:02d}", "{}{:02d}{:02d}", "{}{:02d}"])).map(
        lambda x: x[0].isoformat() + x[3].format("-" if x[1] < 0 else "+", abs(x[1]),
                                                   x[2])),
    st.sampled_from(["2024-01-01", "2024-01-01T10", "2024-01-01T10:00", "2024-01-01T10Z",
                     "2024-01-01T10:00Z", "2024-01-01T10:00:00.123456789",
                     "2024-01-01T10:00:00.1234567", "2024-02-29T00:00:00",
                     "2023-02-29T00:00:00", "2024-01-01T24:00:00", "2024-01-01T10:00:60",
                     "2024-01-01t10:00:00", "2024-01-01T10:00:00z", "2024-01-01T10:00:00.Z",
                     "0000-01-01T00:00:00", "0001-01-01T00:00:00", "9999-12-31T23:59:59.999999",
                     "2024-01-01T10:00:00+24:00", "2024-01-01T10:00:00+23:59",
                     "2024-01-01T10:00:00-00:00", "2024-1-01T10:00:00", " 2024-01-01",
                     "2024-01-01T10:00:00+1", "2024-01-01T10:00:00+01:0", "2024-01-01 ",
                     "2024-01-01T", "2024-01-01T10:00:00.", "1969-12-31T23:59:59.5",
                     "2024-01-01T10:00:00+01:00:00", "2024-13-01", "2024-00-10"]))
TEXTS = st.one_of(st.text(), st.text(alphabet=st.characters(codec="utf-8")),
                  st.sampled_from(["", "\x00", "\u2028", "😀", "\ud7ff", "\ue000", "\U0010ffff"]))
RAW_STRINGS = st.one_of(
    TEXTS.map(lambda s: json.dumps(s)),
    TEXTS.map(lambda s: json.dumps(s, ensure_ascii=False)),
    TIMES.map(json.dumps),
    st.sampled_from(['"\\ud800"', '"\\udc00"', '"\\ud83d\\ude00"', '"\\uD83D\\uDE00"',
                     '"\\ud800\\u0041"', '"\\ud800x"', '"\\u0000"', '"\\/"', '"\\x"',
                     '"\\u12"', '"\\u12G4"', '"a\x01"', '"a\x7f"', '"\t"', '"\\"',
                     '"\\\\"', '"\\b\\f\\n\\r\\t\\"\\\\"', '"abc']))
SCALARS = st.one_of(NUMBER_TEXT, RAW_STRINGS,
                    st.sampled_from(["true", "false", "null", "nul", "True", "tru", "nulll",
                                     "[]", "{}", "[1,2]", '{"a":[1,{"b":null}]}', "[", "{",
                                     '{"a"}', "[1,]", '{"a":1,}', "[[[[[[]]]]]]"]))
GOOD = {"i8": st.integers(-128, 127).map(str), "i16": st.integers(-2**15, 2**15 - 1).map(str),
        "i32": st.integers(-2**31, 2**31 - 1).map(str), "i64": INTS.map(str),
        "f": NUMBER_TEXT, "b": st.sampled_from(["true", "false"]), "s": RAW_STRINGS,
        "ü": RAW_STRINGS, "t": TIMES.map(json.dumps)}
WS = st.sampled_from(["", "", "", " ", "\t", "\r", "  \t "])


@st.composite
def message(draw: st.DrawFn) -> bytes:
    keys = draw(st.lists(st.sampled_from(KEYS), max_size=9))
    parts = []
    for key in keys:
        name = json.dumps(key, ensure_ascii=draw(st.booleans()))
        if draw(st.integers(0, 30)) == 0:
            name = '"\\u0069' + key[1:] + '"' if key.startswith("i") else name
        value = draw(GOOD[key] if key in GOOD and draw(st.integers(0, 9)) else SCALARS)
        parts.append(draw(WS) + name + draw(WS) + ":" + draw(WS) + value + draw(WS))
    text = ("{" + ",".join(parts) + "}" if parts else "{" + draw(WS) + "}") + draw(WS)
    data = text.encode("utf-8", "surrogatepass")
    if draw(st.integers(0, 19)) == 0:   # a corruption: a byte replaced, inserted or removed
        at = draw(st.integers(0, len(data)))
        what = draw(st.sampled_from(["replace", "insert", "cut"]))
        byte = bytes([draw(st.sampled_from([0x00, 0x01, 0x80, 0xC0, 0xE0, 0xED, 0xF5, 0xFF,
                                            ord('"'), ord("\\"), ord("}"), ord(","),
                                            ord(" "), ord("{"), ord("\r")]))])
        data = (data[:at] + byte + data[at + 1:] if what == "replace"
                else data[:at] + byte + data[at:] if what == "insert" else data[:at])
    return data.replace(b"\n", b" ")


@settings(max_examples=400, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.lists(message(), min_size=1, max_size=4))
def test_c_decoder_matches_arrows_path(messages: list[bytes]) -> None:
    event("decoded in C" if _same(messages) is not None else "given up")


def test_common_forms_are_decoded_in_c() -> None:
    """Every form the C decoder is meant to take is taken (and equals Arrow's path)."""
    messages = [
        b'{"i8":-128,"i16":32767,"i32":-2147483648,"i64":9223372036854775807,"f":-0,'
        b'"b":true,"s":"a\\"\\\\\\/\\b\\f\\n\\r\\t\\u00e9\\ud83d\\ude00\\u0000z","t":'
        b'"2024-01-01T10:00:00.123Z","\xc3\xbc":"\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80"}',
        b'{ "t" : "2024-01-01 10:00:00" , "x" : {"a": [1, 2.5e3, "b", null, true]},'
        b' "f": 1e-3, "b": false, "i64": -0 }\r',
        b'{"t":"2024-01-01T10:00:00.5+02:00","s":null,"f":1.5e99}',
        b'{"t":"2024-02-29","i8":null,"x":1,"x":2}',
        b'{"t":"2024-01-01T10:00-0130"}',
        b'{"t":"2024-01-01T10+05"}',
        b"{}",
        b'{"f":12345678901234567890}',
    ]
    got = _same(messages)
    assert got is not None and got.num_rows == len(messages)
    assert got.column("s")[0].as_py() == 'a"\\/\b\f\n\r\té😀\x00z'
    assert got.column("f")[0].as_py() == 0 and np.signbit(got.column("f")[0].as_py())


@pytest.mark.parametrize("bad", [
    b'{"i64":1.0}', b'{"i64":1e3}', b'{"i64":9223372036854775808}', b'{"i8":128}',
    b'{"f":1e400}', b'{"f":NaN}', b'{"b":1}', b'{"s":1}', b'{"i64":"1"}', b'{"i64":1,"i64":2}',
    b'{"s":"\\ud800"}', b'{"s":"\\udc00"}', b'{"s":"\xff"}', b'{"s":"\xed\xa0\x80"}',
    b'{"s":"a\x01"}', b'{"t":12}', b'{"t":"2024-01-01T10:00:00.1234567"}',
    b'{"t":"2024-02-30"}', b'{"i64":1} x', b'{"i64":1}{}', b' {"i64":1}', b'', b'null',
    b'{"\\u0069\\u0036\\u0034":1}', b'{"x":[}', b'{"i64":[1]}', b'{"i64":1,}'])
def test_gives_up_where_arrows_path_decides(bad: bytes) -> None:
    """What caudal's decoder refuses (or reads in ways the C decoder does not) is left to
    it: the whole batch, good messages included."""
    assert _typed([b'{"i64":1}', bad]) is None


def test_only_schemas_of_the_types_it_reads() -> None:
    assert kafka_native.TypedJson.of(LIB, Decoder(pa.schema([("d", pa.date32())]))) is None
    assert kafka_native.TypedJson.of(LIB, Decoder(pa.schema([("f", pa.float32())]))) is None
    assert kafka_native.TypedJson.of(
        LIB, Decoder(pa.schema([("value", pa.string())]), {"json.unstructured": "true"})) is None
    json_col = pa.field("j", pa.string(), metadata={JSON_KEY: b"true"})
    assert kafka_native.TypedJson.of(LIB, Decoder(pa.schema([json_col]))) is None


def test_epoch_timestamps_are_left_to_arrow() -> None:
    """A TIMESTAMP column read from epoch numbers (unix_millis, or flipped by the data) is
    not read in C."""
    schema = pa.schema([("t", TIMESTAMP)])
    decoder = Decoder(schema, {"json.timestamp_format": "unix_millis"})
    typed = kafka_native.TypedJson.of(LIB, decoder)
    assert typed is None or typed.decode(*_batch([b'{"t":1000}'])) is None
