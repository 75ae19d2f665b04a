"""The debezium_json format: changelog batches to before/after/op lines and back, as a sink
(updating and append-only queries) and as an updating source, with corrupt changelogs
counted, never crashing and never producing negative counts."""

from __future__ import annotations

import datetime as dt
import io
import json

import pyarrow as pa
import pyarrow.compute as pc
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from caudal.connectors.base import SourceMetrics
from caudal.errors import DataError
from caudal.formats import debezium_json
from caudal.formats import json as json_format
from caudal.formats.bad_data import BadDataPolicy
from caudal.job import run_sql
from caudal.plan.changelog import DELETE, INSERT, OP, OP_TYPE, UPDATE_AFTER, UPDATE_BEFORE
from tests.changelog_helpers import fold, read_changes, run_changelog
from tests.conftest import run_cli
from tests.helpers import normalized_rows

SCHEMA = pa.schema([("k", pa.int64()), ("name", pa.string()),
                    ("t", pa.timestamp("us", tz="UTC"))])
T0 = dt.datetime(2026, 1, 1, 12, 0, 0, 250000, tzinfo=dt.UTC)


def _batch(ks, names, ops=None) -> pa.RecordBatch:
    arrays = [pa.array(ks, pa.int64()), pa.array(names, pa.string()),
              pa.array([T0] * len(ks), SCHEMA.field("t").type)]
    batch = pa.RecordBatch.from_arrays(arrays, schema=SCHEMA)
    if ops is not None:
        batch = batch.append_column(pa.field(OP, OP_TYPE), pa.array(ops, OP_TYPE))
    return batch


def _lines(data: bytes) -> list[dict]:
    return [json.loads(line) for line in data.decode().splitlines()]


def test_update_pairs_become_one_u_line():
    batch = _batch([1, 1, 1, 2], ["a", "a", "b", "z"], [1, -2, 2, -1])
    lines = _lines(debezium_json.encode(batch))
    assert [x["op"] for x in lines] == ["c", "u", "d"]
    assert lines[0] == {"before": None, "after": {"k": 1, "name": "a",
                                                  "t": "2026-01-01T12:00:00.250"}, "op": "c"}
    assert lines[1]["before"]["name"] == "a" and lines[1]["after"]["name"] == "b"
    assert lines[2]["after"] is None and lines[2]["before"]["k"] == 2


def test_half_pairs_are_deletes_and_creates():
    batch = _batch([1, 2, 3], ["a", "b", "c"], [2, -2, -2])
    assert [x["op"] for x in _lines(debezium_json.encode(batch))] == ["c", "d", "d"]


def test_append_only_batches_are_creates():
    lines = _lines(debezium_json.encode(_batch([1, 2], ["a", None])))
    assert [x["op"] for x in lines] == ["c", "c"]
    assert lines[1]["after"]["name"] is None


def test_round_trip():
    batch = _batch([1, 1, 1, 2, 3], ["a", "a", "b", "z", "q"], [1, -2, 2, -1, 1])
    policy = BadDataPolicy("fail", SourceMetrics(), "test")
    back = list(debezium_json.read(io.BytesIO(debezium_json.encode(batch)), SCHEMA, policy))
    table = pa.concat_tables(back)
    assert table.column(OP).to_pylist() == [1, -2, 2, -1, 1]
    assert table.drop_columns([OP]).equals(pa.Table.from_batches([batch]).drop_columns([OP]))


def test_bad_op_fails_or_is_dropped():
    data = b'{"before": null, "after": {"k": 1}, "op": "x"}\n' \
           b'{"before": null, "after": {"k": 2}, "op": "r"}\n'
    with pytest.raises(DataError, match="'x' is not c, r, u or d"):
        list(debezium_json.read(io.BytesIO(data), SCHEMA, BadDataPolicy("fail",
                                                                        SourceMetrics(), "f")))
    metrics = SourceMetrics()
    out = pa.concat_tables(debezium_json.read(io.BytesIO(data), SCHEMA,
                                              BadDataPolicy("drop", metrics, "f")))
    assert out.column("k").to_pylist() == [2] and metrics.bad_rows_dropped == 1



def test_a_bad_op_names_its_line_in_fail_and_drop(tmp_path):
    """An op that is not c, r, u or d (or an op without the image it needs) names the line
    of the file, as a record the JSON decoder refuses does; drop counts each and keeps the
    rest, including after a line the decoder refused."""
    path = tmp_path / "changes.json"
    path.write_text('{"before": null, "after": {"k": 1, "v": 1}, "op": "c"}\n\n'
                    '{"before": null, "after": {"k": 2, "v": 2}, "op": "x"}\n'
                    '{"before": null, "after": {"k": 3, "v": "three"}, "op": "c"}\n'
                    '{"before": null, "after": {"k": 4, "v": 4}, "op": "d"}\n'
                    '{"before": null, "after": {"k": 5, "v": 5}, "op": "c"}\n')
    job = tmp_path / "job.sql"
    for policy in ("fail", "drop"):
        job.write_text(f"CREATE TABLE src (k BIGINT, v BIGINT) WITH (connector = 'filesystem',"
                       f" path = '{path}', format = 'debezium_json', bad_data = '{policy}');\n"
                       f"CREATE TABLE out WITH (connector = 'filesystem', path = "
                       f"'{tmp_path / policy}', format = 'debezium_json');\n"
                       f"INSERT INTO out SELECT k, v FROM src;\n")
        result = run_cli("run", str(job))
        if policy == "fail":
            assert result.returncode != 0 and "Traceback" not in result.stderr
            assert f"{path} line 3: debezium op 'x' is not c, r, u or d" in result.stderr, \
                result.stderr
        else:
            assert result.returncode == 0, result.stderr
            rows = [json.loads(x) for f in (tmp_path / policy).iterdir()
                    for x in f.read_text().splitlines()]
            assert sorted(r["after"]["k"] for r in rows) == [1, 5]
            assert "3 bad rows dropped" in result.stderr, result.stderr
            assert f"(first: file {path} line 3: debezium op 'x'" in result.stderr

CHANGELOG = [
    {"before": None, "after": {"k": 1, "v": 10}, "op": "c"},
    {"before": None, "after": {"k": 1, "v": 5}, "op": "c"},
    {"before": None, "after": {"k": 2, "v": 7}, "op": "r"},
    {"before": {"k": 1, "v": 10}, "after": {"k": 1, "v": 12}, "op": "u"},
    {"before": {"k": 2, "v": 7}, "after": {"k": 3, "v": 7}, "op": "u"},
    {"before": {"k": 1, "v": 5}, "after": None, "op": "d"},
]
CORRUPT = [
    {"before": {"k": 9, "v": 1}, "after": None, "op": "d"},   # never inserted
    {"before": {"k": 1, "v": 99}, "after": None, "op": "d"},  # no such value for key 1
]


def _source(tmp_path, records) -> str:
    path = tmp_path / "changes.json"
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return (f"CREATE TABLE src (k BIGINT, v BIGINT) WITH (connector = 'filesystem', "
            f"path = '{path}', format = 'debezium_json');")


@pytest.mark.parametrize("parallelism", [1, 3])
def test_changelog_source_feeds_updating_aggregate(tmp_path, parallelism):
    query = "SELECT k, count(*) AS n, sum(v) AS s, max(v) AS mx FROM src GROUP BY k"
    got = fold(run_changelog(_source(tmp_path, CHANGELOG), query, tmp_path / "out",
                             parallelism=parallelism))
    assert normalized_rows(got) == [(1, 1, 12, 12), (3, 1, 7, 7)]


def test_changelog_source_feeds_join(tmp_path, duck):
    dim = tmp_path / "dim.json"
    dim.write_text("".join(json.dumps({"k": k, "label": f"L{k}"}) + "\n" for k in (1, 2, 3)))
    ddl = _source(tmp_path, CHANGELOG) + (f"\nCREATE TABLE dim (k BIGINT, label TEXT) WITH "
                                           f"(connector = 'filesystem', path = '{dim}', "
                                           f"format = 'json');")
    query = "SELECT d.label, s.v FROM dim AS d LEFT JOIN src AS s ON s.k = d.k"
    got = fold(run_changelog(ddl, query, tmp_path / "out"))
    assert normalized_rows(got) == [("L1", 12), ("L2", None), ("L3", 7)]


def test_corrupt_changelog_is_counted_not_fatal(tmp_path):
    script = _source(tmp_path, CHANGELOG + CORRUPT) + (
        f"\nCREATE TABLE out WITH (connector = 'filesystem', path = '{tmp_path / 'out'}', "
        f"format = 'debezium_json');\nINSERT INTO out SELECT k, count(*) AS n, min(v) AS lo "
        f"FROM src GROUP BY k;")
    result = run_sql(script)
    assert result.metrics["corrupt_retractions"] == 2
    schema = pa.schema([("k", pa.int64()), ("n", pa.int64()), ("lo", pa.int64())])
    got = fold(read_changes(tmp_path / "out", schema))
    assert normalized_rows(got) == [(1, 1, 12), (3, 1, 7)]


def test_cli_reports_corrupt_retractions(tmp_path):
    script = tmp_path / "q.sql"
    script.write_text(_source(tmp_path, CHANGELOG + CORRUPT) +
                      "\nSELECT v, count(*) AS n FROM src GROUP BY v;")
    done = run_cli("run", str(script))
    assert done.returncode == 0, done.stderr
    assert "2 retractions of rows never inserted ignored" in done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].split() == ["op", "v", "n"]
    assert sorted(line.split() for line in lines[1:]) == [["+I", "12", "1"], ["+I", "7", "1"]]


def test_append_only_query_into_debezium_sink(tmp_path):
    data = tmp_path / "rows.json"
    data.write_text("".join(json.dumps({"k": k, "v": k * 10}) + "\n" for k in range(5)))
    ddl = (f"CREATE TABLE t (k BIGINT, v BIGINT) WITH (connector = 'filesystem', "
           f"path = '{data}', format = 'json');")
    changes = run_changelog(ddl, "SELECT k, v FROM t WHERE k > 1", tmp_path / "out")
    assert changes.column(OP).to_pylist() == [1, 1, 1]


#: text that Arrow's kernels write (no character JSON escapes) or any text (Polars writes
#: the batches holding an escaped character)
_texts = st.one_of(st.none(), st.text(alphabet=st.characters(
    codec="utf-8", exclude_characters='"\\', exclude_categories=("Cc",)), max_size=6),
    st.text(alphabet=st.characters(codec="utf-8"), max_size=6))


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.one_of(st.none(), st.integers(-2**63, 2**63 - 1)),
                          st.one_of(st.none(), st.booleans()), _texts,
                          st.sampled_from([INSERT, DELETE, UPDATE_BEFORE, UPDATE_AFTER])),
                min_size=1, max_size=30),
       st.sampled_from(["i", "ib", "is", "ibs", "s"]))
def test_arrow_lines_are_the_bytes_polars_writes(rows, columns):
    """Rows of integers, booleans and text (with the characters JSON escapes, which go to
    Polars) encode to the same bytes by Arrow's kernels as by Polars's writer, in both the
    json and the debezium_json formats."""
    arrays = {"i": pa.array([r[0] for r in rows], pa.int64()),
              "b": pa.array([r[1] for r in rows], pa.bool_()),
              "s": pa.array([r[2] for r in rows], pa.string())}
    data = [arrays[c] for c in columns]
    ops = pa.array([r[3] for r in rows], OP_TYPE)
    changelog = pa.RecordBatch.from_arrays([*data, ops], names=[*columns, OP])
    plain = pa.RecordBatch.from_arrays(data, names=list(columns))
    fast = (debezium_json.encode(changelog), json_format.encode(plain))
    plain_text = not pc.any(pc.match_substring_regex(arrays["s"], r'["\\\x00-\x1f]')).as_py()
    if plain_text or "s" not in columns:
        assert json_format.object_texts(data, list(columns)) is not None
    original = json_format.object_texts
    json_format.object_texts = lambda *a: None  # every batch through Polars
    try:
        slow = (debezium_json.encode(changelog), json_format.encode(plain))
    finally:
        json_format.object_texts = original
    assert fast == slow


def test_writer_hands_the_stream_arrow_lines_uncopied():
    """Plain rows' lines go to the stream as the Arrow buffer they were put together in
    (a 300 k-row changelog batch is ~20 MB: no copy into a bytes object), with the bytes
    ``encode`` gives; rows Polars encodes still go as bytes."""
    class Stream(io.BytesIO):
        def __init__(self):
            super().__init__()
            self.kinds = []

        def write(self, data):
            self.kinds.append(type(data))
            return super().write(data)

    for fmt in (debezium_json, json_format):
        batch = pa.record_batch({"k": pa.array([1, 2, 3]), "v": pa.array([1.5, 2.0, -7.25])})
        stream = Stream()
        fmt.Writer(stream, batch.schema).write(batch)
        assert stream.kinds == [pa.Buffer]
        assert stream.getvalue() == fmt.encode(batch)
        dated = pa.record_batch({"d": pa.array([0], pa.date32())})
        stream = Stream()
        fmt.Writer(stream, dated.schema).write(dated)
        assert stream.kinds == [bytes] and stream.getvalue() == fmt.encode(dated)
