"""Time values in JSON as Flink, Arroyo and Debezium write them: zone-less timestamp text,
epoch numbers in the declared precision's unit (or milliseconds with
json.timestamp_format = 'unix_millis'), DATE as days; what caudal writes reads back the same,
in caudal and in DuckDB; json.unstructured reads whole lines."""

from __future__ import annotations

import datetime as dt
import json

import pyarrow as pa
import pytest

from caudal.errors import CaudalError, ConfigError
from caudal.formats import json as jsonl
from caudal.job import run_sql
from caudal.sql.planner import Planner
from tests.helpers import normalized_rows

UTC = dt.UTC
T0 = dt.datetime(2024, 1, 1, 10, 0, 0, 123000, tzinfo=UTC)
T0_MS = 1704103200123


def _files(directory):
    return sorted(p for p in directory.iterdir() if not p.name.startswith((".", "_")))


def _read(out):
    return [json.loads(line) for f in _files(out) for line in f.read_text().splitlines()]


def test_timestamp_text_with_and_without_zone():
    decoder = jsonl.Decoder(pa.schema([("ts", pa.timestamp("us", tz="UTC"))]))
    for text in ["2024-01-01 10:00:00.123", "2024-01-01T10:00:00.123",
                 "2024-01-01T10:00:00.123Z", "2024-01-01T12:00:00.123+02:00"]:
        got = decoder.decode(json.dumps({"ts": text}).encode() + b"\n")
        assert got.column("ts").to_pylist() == [T0], text


def test_epoch_numbers_follow_the_declared_precision(tmp_path):
    path = tmp_path / "in.json"
    path.write_text(json.dumps({"ms": T0_MS, "us": T0_MS * 1000, "ns": T0_MS * 1_000_000,
                                "day": 19723, "text": "2024-01-01 10:00:00.123"}) + "\n")
    out = tmp_path / "out"
    run_sql(f"""
CREATE TABLE src (ms TIMESTAMP(3), us TIMESTAMP(6), ns TIMESTAMP(9), `day` DATE,
                  text TIMESTAMP(3))
  WITH ('connector' = 'filesystem', 'path' = '{path}', 'format' = 'json');
CREATE TABLE out WITH ('connector' = 'filesystem', 'path' = '{out}', 'format' = 'parquet');
INSERT INTO out SELECT * FROM src;""")
    import pyarrow.parquet as pq

    got = pq.read_table(_files(out)[0]).to_pylist()[0]
    assert got == {"ms": T0, "us": T0, "ns": T0, "day": dt.date(2024, 1, 1), "text": T0}


def test_unix_millis_reads_and_writes_milliseconds(tmp_path):
    path = tmp_path / "in.json"
    path.write_text(json.dumps({"id": 1, "ts": T0_MS, "d": 1704067200000}) + "\n"
                    + json.dumps({"id": 2, "ts": None, "d": None}) + "\n")
    out = tmp_path / "out"
    run_sql(f"""
CREATE TABLE src (id BIGINT, ts TIMESTAMP, d DATE)
  WITH (connector = 'filesystem', path = '{path}', format = 'json',
        'json.timestamp_format' = 'unix_millis');
CREATE TABLE out WITH (connector = 'filesystem', path = '{out}', format = 'json',
                       'json.timestamp_format' = 'unix_millis');
INSERT INTO out SELECT id, ts, d, ts + INTERVAL '1' SECOND AS later FROM src;""")
    rows = sorted(_read(out), key=lambda r: r["id"])
    assert rows == [{"id": 1, "ts": T0_MS, "d": 1704067200000, "later": T0_MS + 1000},
                    {"id": 2, "ts": None, "d": None, "later": None}]


@pytest.mark.parametrize("options, text", [
    ("", "2024-01-01T10:00:00.123"),
    (", 'json.timestamp-format.standard' = 'SQL'", "2024-01-01 10:00:00.123"),
    (", 'json.timestamp-format.standard' = 'ISO-8601'", "2024-01-01T10:00:00.123"),
])
def test_written_text_round_trips_and_duckdb_reads_it(tmp_path, duck, options, text):
    src = tmp_path / "in.json"
    src.write_text(json.dumps({"id": 1, "ts": "2024-01-01T10:00:00.123Z"}) + "\n"
                   + json.dumps({"id": 2, "ts": "2024-06-30 23:59:59"}) + "\n")
    out, back = tmp_path / "out", tmp_path / "back"
    run_sql(f"""
CREATE TABLE src (id BIGINT, ts TIMESTAMP(3))
  WITH (connector = 'filesystem', path = '{src}', format = 'json');
CREATE TABLE out (id BIGINT, ts TIMESTAMP(3), ltz TIMESTAMP_LTZ(3))
  WITH (connector = 'filesystem', path = '{out}', format = 'json'{options});
INSERT INTO out SELECT id, ts, ts FROM src;""")
    rows = sorted(_read(out), key=lambda r: r["id"])
    assert rows[0]["ts"] == text and rows[0]["ltz"] == text + "Z"
    # caudal reads its own output back to the same instants
    run_sql(f"""
CREATE TABLE again (id BIGINT, ts TIMESTAMP(3), ltz TIMESTAMP_LTZ(3))
  WITH (connector = 'filesystem', path = '{out}', format = 'json'{options});
CREATE TABLE back WITH (connector = 'filesystem', path = '{back}', format = 'parquet');
INSERT INTO back SELECT * FROM again;""")
    import pyarrow.parquet as pq

    got = pa.concat_tables([pq.read_table(f) for f in _files(back)]).sort_by("id")
    assert got.column("ts").to_pylist() == [T0, dt.datetime(2024, 6, 30, 23, 59, 59,
                                                                 tzinfo=UTC)]
    assert got.column("ltz").to_pylist() == got.column("ts").to_pylist()
    # DuckDB reads the same files to the same values (zone-less text as UTC)
    files = [str(f) for f in _files(out)]
    theirs = duck.sql(f"SELECT id, CAST(ts AS TIMESTAMP) AS ts, "
                      f"CAST(ltz AS TIMESTAMPTZ) AS ltz FROM read_json({files}, "
                      "columns = {id: 'BIGINT', ts: 'TIMESTAMP', ltz: 'TIMESTAMPTZ'})"
                      ).to_arrow_table()
    assert normalized_rows(theirs) == normalized_rows(got)


def test_debezium_records_with_epoch_timestamps(tmp_path, duck):
    path = tmp_path / "cdc.json"
    records = [
        {"before": None, "after": {"id": 1, "created": T0_MS, "seen": T0_MS * 1000,
                                   "day": 19723}, "op": "c"},
        {"before": None, "after": {"id": 2, "created": T0_MS + 5, "seen": None,
                                   "day": 0}, "op": "r"},
        {"before": {"id": 1, "created": T0_MS, "seen": T0_MS * 1000, "day": 19723},
         "after": {"id": 1, "created": T0_MS + 1000, "seen": T0_MS * 1000 + 7,
                   "day": 19724}, "op": "u"},
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    out = tmp_path / "out"
    run_sql(f"""
CREATE TABLE cdc (id BIGINT, created TIMESTAMP(3), seen TIMESTAMP(6), `day` DATE,
                  PRIMARY KEY (id) NOT ENFORCED)
  WITH ('connector' = 'filesystem', 'path' = '{path}', 'format' = 'debezium_json');
CREATE TABLE out WITH ('connector' = 'filesystem', 'path' = '{out}',
                       'format' = 'debezium_json');
INSERT INTO out SELECT id, created, seen, `day` FROM cdc;""")
    lines = _read(out)
    assert [x["op"] for x in lines] == ["c", "c", "u"]
    assert lines[2]["after"] == {"id": 1, "created": "2024-01-01T10:00:01.123",
                                 "seen": "2024-01-01T10:00:00.123007", "day": "2024-01-02"}
    assert lines[1]["after"]["day"] == "1970-01-01"


def test_epoch_number_without_precision_names_the_column(tmp_path):
    path = tmp_path / "in.json"
    path.write_text(json.dumps({"ts": T0_MS}) + "\n")
    with pytest.raises(CaudalError, match=r"line 1: column 'ts' holds an epoch number; "
                                          r"declare TIMESTAMP\(3\)"):
        run_sql(f"CREATE TABLE src (ts TIMESTAMP) WITH (connector = 'filesystem', "
                f"path = '{path}', format = 'json');\nSELECT * FROM src;")


def test_unstructured_reads_whole_lines(tmp_path):
    path = tmp_path / "in.json"
    path.write_text('{"user": {"name": "ann"}, "n": 1}\n\n{"user": {"name": "bo"}, "n": 2}\n')
    out = tmp_path / "out"
    run_sql(f"""
CREATE TABLE raw (value JSON)
  WITH (connector = 'filesystem', path = '{path}', format = 'json',
        'json.unstructured' = 'true');
CREATE TABLE out WITH (connector = 'filesystem', path = '{out}', format = 'json');
INSERT INTO out SELECT extract_json_string(value, '$.user.name') AS name,
                       value->>'n' AS n, value FROM raw;""")
    rows = sorted(_read(out), key=lambda r: r["n"])
    assert rows == [{"name": "ann", "n": "1", "value": '{"user": {"name": "ann"}, "n": 1}'},
                    {"name": "bo", "n": "2", "value": '{"user": {"name": "bo"}, "n": 2}'}]
    # no declared column: the one column value
    job = Planner().plan_script(f"CREATE TABLE raw WITH (connector = 'filesystem', "
                                f"path = '{path}', format = 'json', "
                                f"'json.unstructured' = 'true');\nSELECT * FROM raw;")
    assert job.outputs[0].plan.schema.names == ["value"]


def test_json_option_errors(tmp_path):
    path = tmp_path / "in.json"
    path.write_text('{"a": 1}\n')
    source = ("CREATE TABLE src (a BIGINT{extra}) WITH (connector = 'filesystem', "
              f"path = '{path}', format = 'json', {{option}});\nSELECT * FROM src;")
    with pytest.raises(ConfigError, match=r"line 1: json.timestamp_format = 'iso'.*"
                                          r"accepted: rfc3339, unix_millis"):
        Planner().plan_script(source.format(extra="", option="'json.timestamp_format' = 'iso'"))
    with pytest.raises(ConfigError, match="json.unstructured = 'true' reads one TEXT"):
        Planner().plan_script(source.format(extra="", option="'json.unstructured' = 'true'"))
    with pytest.raises(ConfigError, match="unknown option 'json.nope'"):
        Planner().plan_script(source.format(extra="", option="'json.nope' = '1'"))
    with pytest.raises(ConfigError, match="json.unstructured is for reading"):
        Planner().plan_script(f"CREATE TABLE s WITH (connector = 'impulse', events = '1');\n"
                              f"CREATE TABLE o WITH (connector = 'filesystem', "
                              f"path = '{tmp_path / 'o'}', format = 'json', "
                              f"'json.unstructured' = 'true');\nINSERT INTO o SELECT * FROM s;")


def test_file_path_metadata(tmp_path):
    (tmp_path / "d").mkdir()
    for name in ("a.json", "b.json"):
        (tmp_path / "d" / name).write_text('{"x": 1}\n{"x": 2}\n')
    out = tmp_path / "out"
    run_sql(f"""
CREATE TABLE src (x BIGINT, f STRING METADATA FROM 'file.name' VIRTUAL,
                  p STRING METADATA FROM 'file.path' VIRTUAL)
  WITH (connector = 'filesystem', path = '{tmp_path / "d"}', format = 'json');
CREATE TABLE out WITH (connector = 'filesystem', path = '{out}', format = 'json');
INSERT INTO out SELECT f, x, p FROM src;""", parallelism=2)
    rows = sorted((r["f"], r["x"], r["p"].endswith("/d/" + r["f"])) for r in _read(out))
    assert rows == [("a.json", 1, True), ("a.json", 2, True), ("b.json", 1, True),
                    ("b.json", 2, True)]


_NESTED = pa.schema([
    pa.field("ts", pa.timestamp("us", tz="UTC"), metadata={b"caudal.precision": b"6"}),
    ("d", pa.date32()),
    ("w", pa.struct([("start", pa.timestamp("us", tz="UTC")), ("raw", pa.binary())])),
    ("l", pa.list_(pa.struct([("t", pa.timestamp("us", tz="UTC")), ("d", pa.date32())]))),
])


def _rows():
    from hypothesis import strategies as st

    instant = st.one_of(st.none(), st.datetimes(
        min_value=dt.datetime(1970, 1, 2), max_value=dt.datetime(2200, 1, 1),
        timezones=st.just(UTC)).map(lambda t: t.replace(microsecond=t.microsecond // 1000
                                                         * 1000)))
    day = st.one_of(st.none(), st.dates(min_value=dt.date(1970, 1, 2),
                                        max_value=dt.date(2200, 1, 1)))
    inner = st.one_of(st.none(), st.fixed_dictionaries({"t": instant, "d": day}))
    return st.lists(st.fixed_dictionaries({
        "ts": instant, "d": day,
        "w": st.one_of(st.none(), st.fixed_dictionaries(
            {"start": instant, "raw": st.one_of(st.none(), st.binary(max_size=4))})),
        "l": st.one_of(st.none(), st.lists(inner, max_size=3))}), min_size=1, max_size=20)


@pytest.mark.parametrize("options", [None, {"json.timestamp_format": "unix_millis"},
                                     {"json.timestamp-format.standard": "SQL"}])
def test_encode_then_decode_is_identity_nested(options):
    from hypothesis import given, settings

    @settings(max_examples=40, deadline=None)
    @given(_rows())
    def check(rows):
        batch = pa.RecordBatch.from_pylist(rows, schema=_NESTED)
        data = jsonl.encode(batch.slice(1) if len(rows) > 1 else batch, options)
        got = jsonl.Decoder(_NESTED, options).decode(data)
        expected = rows[1:] if len(rows) > 1 else rows
        assert got.to_pylist() == expected

    check()


def test_epoch_numbers_in_nested_rows(tmp_path):
    path = tmp_path / "in.json"
    path.write_text(json.dumps({"r": {"at": T0_MS, "ltz": "2024-01-01T10:00:00.123Z"}}) + "\n")
    out = tmp_path / "out"
    run_sql(f"""
CREATE TABLE src (r ROW<at TIMESTAMP(3), ltz TIMESTAMP_LTZ(3)>)
  WITH ('connector' = 'filesystem', 'path' = '{path}', 'format' = 'json');
CREATE TABLE out WITH ('connector' = 'filesystem', 'path' = '{out}', 'format' = 'json');
INSERT INTO out SELECT r.at AS at, r.ltz AS ltz FROM src;""")
    assert _read(out) == [{"at": "2024-01-01T10:00:00.123", "ltz": "2024-01-01T10:00:00.123"}]


def test_json_columns_are_written_as_values(tmp_path):
    """Arroyo's JSON type: a sink column declared JSON embeds its text as a JSON value."""
    path = tmp_path / "in.json"
    path.write_text('{"user": {"name": "ann", "tags": ["a", "b"]}, "n": 1}\n'
                    '{"user": null, "n": 2}\n')
    out = tmp_path / "out"
    run_sql(f"""
CREATE TABLE raw (value JSON) WITH (connector = 'filesystem', path = '{path}', format = 'json',
                                    'json.unstructured' = 'true');
CREATE TABLE out (n BIGINT, `user` JSON, note TEXT, pretty JSON)
  WITH (connector = 'filesystem', path = '{out}', format = 'json');
INSERT INTO out SELECT CAST(value->>'n' AS BIGINT), value->'user', value->'user',
                       '{{' || chr(10) || '"k": 1}}' FROM raw;""")
    rows = sorted(_read(out), key=lambda r: r["n"])
    assert rows == [
        {"n": 1, "user": {"name": "ann", "tags": ["a", "b"]},
         "note": '{"name":"ann","tags":["a","b"]}', "pretty": {"k": 1}},
        {"n": 2, "user": None, "note": "null", "pretty": {"k": 1}}]
    with pytest.raises(CaudalError, match="column 'bad' is declared JSON but a row holds text "
                                          "that is not JSON: 'nope'"):
        run_sql(f"""
CREATE TABLE s WITH (connector = 'impulse', events = '1');
CREATE TABLE o (bad JSON) WITH (connector = 'filesystem', path = '{tmp_path / "o"}',
                                format = 'json');
INSERT INTO o SELECT 'nope' FROM s;""")


def test_json_columns_are_read_raw_and_round_trip(tmp_path):
    path = tmp_path / "in.json"
    path.write_text('{"id": 1, "v": {"a": [1, 2]}}\n\n{"id": 2, "v": "s"}\n{"id": 3}\n'
                    '{"id": 4, "v": null}\n{"id": 5, "v": 7.5}\n')
    out, back = tmp_path / "out", tmp_path / "back"
    run_sql(f"""
CREATE TABLE src (id BIGINT, v JSON) WITH (connector = 'filesystem', path = '{path}',
                                           format = 'json');
CREATE TABLE out (id BIGINT, v JSON, a1 TEXT)
  WITH (connector = 'filesystem', path = '{out}', format = 'json');
INSERT INTO out SELECT id, v, v->'a'->>1 FROM src;""")
    rows = sorted(_read(out), key=lambda r: r["id"])
    assert rows == [{"id": 1, "v": {"a": [1, 2]}, "a1": "2"},
                    {"id": 2, "v": "s", "a1": None}, {"id": 3, "v": None, "a1": None},
                    {"id": 4, "v": None, "a1": None}, {"id": 5, "v": 7.5, "a1": None}]
    run_sql(f"""
CREATE TABLE again (id BIGINT, v JSON) WITH (connector = 'filesystem', path = '{out}',
                                             format = 'json');
CREATE TABLE back (id BIGINT, v JSON) WITH (connector = 'filesystem', path = '{back}',
                                            format = 'json');
INSERT INTO back SELECT * FROM again;""")
    assert sorted(_read(back), key=lambda r: r["id"]) == [
        {"id": r["id"], "v": r["v"]} for r in rows]
