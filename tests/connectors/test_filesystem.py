"""The filesystem connector: round trips through sink and source, partitions, offsets,
two-phase commit, bad records and configuration errors, on real files in tmp_path."""

from __future__ import annotations

import datetime as dt
import decimal
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from caudal.connectors import registry
from caudal.connectors.filesystem import FileSystemSink, FileSystemSource
from caudal.errors import ConfigError, DataError
from caudal.plan.tables import TableSpec
from caudal.types import TIMESTAMP

UTC = dt.UTC


def sample() -> pa.Table:
    return pa.table({
        "id": pa.array([1, 2, None, 4, 5], pa.int64()),
        "name": pa.array(["a", "", None, "x, \"quoted\"\nnew line", "é ü 日本"]),
        "price": pa.array([decimal.Decimal("1.50"), None, decimal.Decimal("-3.25"),
                           decimal.Decimal("0.00"), decimal.Decimal("99999.99")],
                          pa.decimal128(10, 2)),
        "ratio": pa.array([0.5, None, -1e20, 3.0, 1e-7], pa.float64()),
        "ok": pa.array([True, False, None, True, False]),
        "day": pa.array([dt.date(2026, 1, 1), None, dt.date(1999, 12, 31), dt.date(2026, 2, 28),
                         dt.date(1970, 1, 1)]),
        "t": pa.array([dt.datetime(2026, 1, 1, tzinfo=UTC),
                       dt.datetime(2026, 1, 1, 0, 0, 1, 500, tzinfo=UTC), None,
                       dt.datetime(1969, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
                       dt.datetime(2026, 6, 30, 12, 0, 0, 250000, tzinfo=UTC)], TIMESTAMP),
    })


def source_spec(path: Path | str, schema: pa.Schema | None = None, **options: str) -> TableSpec:
    spec = TableSpec("src", "filesystem", {"path": str(path), **options}, schema)
    if spec.schema is None:
        spec.schema = FileSystemSource.infer_schema(spec)
    FileSystemSource.validate(spec)
    return spec


def read_all(spec: TableSpec, assigned: list[str] | None = None,
             offsets: dict | None = None, max_rows: int = 3) -> tuple[pa.Table, FileSystemSource]:
    source = FileSystemSource(spec)
    source.open(source.partitions(1) if assigned is None else assigned, offsets)
    batches = []
    while not source.finished():
        batch = source.poll(max_rows, 0.1)
        if batch is None:
            break
        assert batch.num_rows <= max_rows
        assert batch.schema.equals(source.schema)
        batches.append(batch)
    assert source.finished() and source.poll(max_rows, 0.1) is None
    source.close()
    return pa.Table.from_batches(batches, source.schema), source


def write_epochs(path: Path, epochs: list[list[pa.RecordBatch]], schema: pa.Schema,
                 subtask: int = 0, **options: str) -> FileSystemSink:
    sink = FileSystemSink(TableSpec("out", "filesystem", {"path": str(path), **options}),
                          subtask, 1)
    sink.open(schema)
    for epoch, batches in enumerate(epochs, start=1):
        for batch in batches:
            sink.write(batch)
        sink.pre_commit(epoch)
        sink.commit(epoch)
    sink.close()
    return sink


def visible(path: Path) -> list[str]:
    return sorted(p.name for p in path.iterdir() if not p.name.startswith("."))


@pytest.mark.parametrize("fmt", ["parquet", "json", "csv"])
def test_round_trip(tmp_path: Path, fmt: str) -> None:
    table = sample()
    batches = table.to_batches(max_chunksize=2)
    out = tmp_path / "out"
    write_epochs(out, [batches[:2], batches[2:]], table.schema, format=fmt)
    assert visible(out) == [f"part-000-000001-0-0.{fmt}", f"part-000-000002-0-0.{fmt}"]
    got, source = read_all(source_spec(out, table.schema))
    assert got.equals(table), got.to_pylist()
    assert source.metrics.rows_read == len(table)
    assert source.metrics.bad_rows_dropped == 0


def test_json_nested_round_trip(tmp_path: Path) -> None:
    table = pa.table({
        "tags": pa.array([["a", "b"], None, []], pa.list_(pa.string())),
        "w": pa.array([{"start": dt.datetime(2026, 1, 1, tzinfo=UTC), "n": 1}, None,
                       {"start": None, "n": None}],
                      pa.struct([("start", TIMESTAMP), ("n", pa.int64())])),
        "raw": pa.array([b"\x00\xff", None, b""]),
    })
    write_epochs(tmp_path / "out", [table.to_batches()], table.schema, format="json")
    got, _ = read_all(source_spec(tmp_path / "out", table.schema))
    assert got.equals(table), got.to_pylist()


def test_json_output_text(tmp_path: Path) -> None:
    write_epochs(tmp_path, [sample().slice(0, 3).to_batches()], sample().schema, format="json")
    rows = [json.loads(line, parse_float=decimal.Decimal) for line in
            (tmp_path / "part-000-000001-0-0.json").read_text().splitlines()]
    # a TIMESTAMP is written without a zone suffix, as Flink and Arroyo write it
    assert rows[0]["t"] == "2026-01-01T00:00:00"
    assert rows[1]["t"] == "2026-01-01T00:00:01.000500"
    # a DECIMAL as a JSON number with its digits, as Flink writes it
    assert rows[2] == {"id": None, "name": None, "price": decimal.Decimal("-3.25"),
                       "ratio": decimal.Decimal("-1e20"),
                       "ok": None, "day": "1999-12-31", "t": None}


def test_infer_schema_per_format(tmp_path: Path) -> None:
    write_epochs(tmp_path / "pq", [sample().to_batches()], sample().schema)
    assert FileSystemSource.infer_schema(source_spec(tmp_path / "pq")).equals(sample().schema)
    (tmp_path / "a.jsonl").write_text('{"x": 1, "s": "a", "t": "2026-01-01T00:00:00Z", "n": null}\n'
                                      '{"x": 2, "s": "b"}\n')
    got = FileSystemSource.infer_schema(source_spec(tmp_path / "a.jsonl"))
    assert got == pa.schema([("x", pa.int64()), ("s", pa.string()), ("t", TIMESTAMP),
                             ("n", pa.string())])
    (tmp_path / "b.csv").write_text("x,s,t\n1,a,2026-01-01T00:00:00Z\n2,,2026-01-01 10:00:00\n")
    got = FileSystemSource.infer_schema(source_spec(tmp_path / "b.csv"))
    assert got.names == ["x", "s", "t"] and got.field("x").type == pa.int64()
    table, _ = read_all(source_spec(tmp_path / "b.csv", pa.schema([("t", TIMESTAMP)])))
    assert table.column("t").to_pylist() == [dt.datetime(2026, 1, 1, tzinfo=UTC),
                                             dt.datetime(2026, 1, 1, 10, tzinfo=UTC)]


@pytest.mark.parametrize("fmt", ["parquet", "json", "csv"])
def test_projection_reads_only_named_columns(tmp_path: Path, fmt: str) -> None:
    table = sample()
    write_epochs(tmp_path, [table.to_batches()], table.schema, format=fmt)
    spec = source_spec(tmp_path, table.schema)
    spec.projection = ["t", "id"]
    got, _ = read_all(spec)
    assert got.equals(table.select(["t", "id"]))
    spec.projection = []
    got, _ = read_all(spec)
    assert got.num_rows == len(table) and got.num_columns == 0


def test_parquet_partitions_are_row_groups(bids_parquet) -> None:
    path, table = bids_parquet
    spec = source_spec(path)
    parts = FileSystemSource(spec).partitions(2)
    assert parts[:2] == ["bids.parquet#0", "bids.parquet#1"] and len(parts) == 8
    got = pa.concat_tables([read_all(spec, parts[i::2], max_rows=1000)[0] for i in range(2)])
    assert got.num_rows == table.num_rows
    assert sorted(got.column("url").to_pylist()) == sorted(table.column("url").to_pylist())
    assert got.sort_by("date_time").column("date_time").equals(table.column("date_time"))


def test_batches_fill_to_max_rows(bids_parquet) -> None:
    path, table = bids_parquet
    source = FileSystemSource(source_spec(path))
    source.open(source.partitions(1))
    sizes = []
    while (batch := source.poll(1024, 0.1)) is not None:
        sizes.append(batch.num_rows)
    assert sum(sizes) == 5000 and sizes[:-1] == [1024] * (len(sizes) - 1)


def test_directory_split_across_two_subtasks(tmp_path: Path) -> None:
    table = sample()
    for i in range(3):
        write_epochs(tmp_path, [table.to_batches()], table.schema, subtask=i, format="json")
    (tmp_path / "_SUCCESS").write_text("")
    (tmp_path / "notes.txt").write_text("not data")
    spec = source_spec(tmp_path, table.schema)
    parts = FileSystemSource(spec).partitions(2)
    assert parts == [f"part-00{i}-000001-0-0.json" for i in range(3)]
    halves = [read_all(spec, parts[i::2])[0] for i in range(2)]
    assert sum(h.num_rows for h in halves) == 3 * len(table)
    assert sorted(pa.concat_tables(halves).column("id").to_pylist(), key=str) == \
        sorted(table.column("id").to_pylist() * 3, key=str)


@pytest.mark.parametrize("fmt", ["parquet", "json", "csv"])
def test_resume_from_offsets(tmp_path: Path, fmt: str) -> None:
    table = sample()
    write_epochs(tmp_path, [table.to_batches(), table.to_batches()], table.schema, format=fmt)
    spec = source_spec(tmp_path, table.schema)
    source = FileSystemSource(spec)
    parts = source.partitions(1)
    source.open(parts)
    first = [source.poll(3, 0.1), source.poll(3, 0.1)]
    offsets = json.loads(json.dumps(source.offsets()))
    assert sum(offsets.values()) == 6
    source.close()
    rest, resumed = read_all(spec, parts, offsets)
    assert pa.Table.from_batches(first + rest.to_batches()).equals(
        pa.concat_tables([table, table]))
    assert resumed.offsets() == {parts[0]: 5, parts[1]: 5}


def test_parquet_resume_skips_consumed_row_groups(bids_parquet) -> None:
    path, table = bids_parquet
    spec = source_spec(path)
    parts = FileSystemSource(spec).partitions(1)
    offsets = {parts[0]: 700, parts[1]: 100}
    got, _ = read_all(spec, parts, offsets, max_rows=4096)
    assert got.equals(table.slice(800))


def test_hidden_until_commit_then_idempotent(tmp_path: Path) -> None:
    table = sample()
    sink = FileSystemSink(TableSpec("out", "filesystem", {"path": str(tmp_path / "o")}), 2, 4)
    sink.open(table.schema)
    sink.pre_commit(1)  # nothing written: no file at all
    assert list((tmp_path / "o").iterdir()) == []
    sink.write(table.to_batches()[0])
    state = sink.pre_commit(2)
    assert visible(tmp_path / "o") == []
    assert [p[1] for p in state["pending"]] == ["part-002-000002-0-0.parquet"]
    assert all(p[0].startswith(".") for p in state["pending"])
    sink.commit(2)
    sink.commit(2)
    assert visible(tmp_path / "o") == ["part-002-000002-0-0.parquet"]
    # a restarted sink finishes the commit of the restored state, once
    again = FileSystemSink(sink.table, 2, 4)
    again.open(table.schema, json.loads(json.dumps(state)))
    again.commit(2)
    assert visible(tmp_path / "o") == ["part-002-000002-0-0.parquet"]
    assert pq.read_table(tmp_path / "o" / "part-002-000002-0-0.parquet").equals(table)


def test_commit_after_restart_from_pre_commit_state(tmp_path: Path) -> None:
    table = sample()
    sink = FileSystemSink(TableSpec("out", "filesystem", {"path": str(tmp_path)}), 0, 1)
    sink.open(table.schema)
    sink.write(table.to_batches()[0])
    state = sink.pre_commit(7)  # the process dies here, before commit
    restarted = FileSystemSink(sink.table, 0, 1)
    restarted.open(table.schema, json.loads(json.dumps(state)))
    assert visible(tmp_path) == []
    restarted.commit(7)
    restarted.commit(7)
    assert visible(tmp_path) == ["part-000-000007-0-0.parquet"]


def test_uncommitted_epochs_are_carried_to_the_next_state(tmp_path: Path) -> None:
    table = sample()
    sink = FileSystemSink(TableSpec("out", "filesystem", {"path": str(tmp_path)}), 0, 1)
    sink.open(table.schema)
    sink.write(table.to_batches()[0])
    sink.pre_commit(1)
    sink.write(table.to_batches()[0])
    state = sink.pre_commit(2)  # epoch 1 not committed yet: its files are in the state
    assert len(state["pending"]) == 2
    restarted = FileSystemSink(sink.table, 0, 1)
    restarted.open(table.schema, state)
    restarted.commit(2)
    assert visible(tmp_path) == ["part-000-000001-0-0.parquet", "part-000-000002-0-0.parquet"]


def test_abort_removes_files(tmp_path: Path) -> None:
    table = sample()
    sink = FileSystemSink(TableSpec("out", "filesystem", {"path": str(tmp_path),
                                                          "format": "csv"}), 0, 1)
    sink.open(table.schema)
    sink.write(table.to_batches()[0])
    sink.pre_commit(1)
    assert len(list(tmp_path.iterdir())) == 1
    sink.abort(1)
    sink.abort(1)
    sink.commit(1)
    assert list(tmp_path.iterdir()) == []


def test_rollover_and_existing_names(tmp_path: Path) -> None:
    table = sample()
    (tmp_path / "part-000-000001-0-0.json").write_text('{"id": 100}\n')  # an earlier run's file
    sink = write_epochs(tmp_path, [table.to_batches()], table.schema, format="json",
                        rollover_rows="2")
    assert sink.rows == 5
    assert visible(tmp_path) == ["part-000-000001-0-0.json", "part-000-000001-0-1.json",
                                 "part-000-000001-0-2.json", "part-000-000001-0-3.json"]
    assert (tmp_path / "part-000-000001-0-0.json").read_text() == '{"id": 100}\n'
    got, _ = read_all(source_spec(tmp_path, table.schema))
    assert got.num_rows == 6


def test_json_bad_lines_fail_with_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "in.json"
    path.write_text('{"a": 1, "s": "x"}\n\n{"a": "two"}\n{"a": 3}\n')
    schema = pa.schema([("a", pa.int64()), ("s", pa.string())])
    with pytest.raises(DataError) as info:
        read_all(source_spec(path, schema))
    message = str(info.value)
    assert f"{path} line 3" in message and "'a' expects BIGINT" in message and '"two"' in message


@pytest.mark.parametrize("line,reason", [
    ('{"a": 1', "not valid JSON"),
    ("[1, 2]", "expected a JSON object"),
    ('{"a": 1.5}', "column 'a' expects BIGINT, got 1.5"),
    ('{"s": 5}', "column 's' expects TEXT, got 5"),
    ('{"t": "yesterday"}', "column 't' expects TIMESTAMP"),
    ('{"a": 99999999999999999999}', "column 'a' expects BIGINT"),
])
def test_json_bad_line_reasons(tmp_path: Path, line: str, reason: str) -> None:
    path = tmp_path / "in.json"
    path.write_text('{"a": 1}\n' + line + "\n")
    schema = pa.schema([("a", pa.int64()), ("s", pa.string()), ("t", TIMESTAMP)])
    with pytest.raises(DataError, match="line 2: " + reason.replace("[", r"\[")):
        read_all(source_spec(path, schema))


def test_json_bad_lines_dropped_and_counted(tmp_path: Path) -> None:
    path = tmp_path / "in.json"
    lines = [f'{{"a": {i}, "t": "2026-01-01T00:00:0{i % 10}Z"}}' for i in range(1000)]
    lines[10] = '{"a": "ten"}'
    lines[500] = "garbage"
    lines[999] = '{"a": 999, "t": 5}'
    lines.insert(700, '{"t": null}')  # a missing field is NULL, not bad
    path.write_text("\n".join(lines))  # no final newline
    spec = source_spec(path, pa.schema([("a", pa.int64()), ("t", TIMESTAMP)]), bad_data="drop")
    got, source = read_all(spec, max_rows=128)
    assert got.num_rows == 998
    assert got.column("a").to_pylist()[:11] == list(range(10)) + [11]
    assert got.column("a").null_count == 1
    assert source.metrics.bad_rows_dropped == 3
    assert source.metrics.bad_row_examples[0].endswith("line 11: column 'a' expects BIGINT, "
                                                       'got "ten"')
    assert "line 501: not valid JSON" in source.metrics.bad_row_examples[1]
    # an epoch number needs a declared precision (TIMESTAMP(3): milliseconds) to be read
    assert "line 1001: column 't' holds an epoch number; declare TIMESTAMP(3)" in \
        source.metrics.bad_row_examples[2]


def test_csv_bad_rows(tmp_path: Path) -> None:
    path = tmp_path / "in.csv"
    path.write_text('a,s,t\n1,"multi\nline",2026-01-01T00:00:00Z\nx,b,\n3,c\n4,,2026-13-01\n'
                    '5,"e",2026-01-01 00:00:01\n')
    schema = pa.schema([("a", pa.int64()), ("s", pa.string()), ("t", TIMESTAMP)])
    with pytest.raises(DataError, match=r"in.csv line 4: column 'a' expects BIGINT, got 'x'"):
        read_all(source_spec(path, schema))
    got, source = read_all(source_spec(path, schema, bad_data="drop"))
    assert got.column("a").to_pylist() == [1, 5]
    assert got.column("s").to_pylist() == ["multi\nline", "e"]
    assert [e.split(" line ")[1] for e in source.metrics.bad_row_examples] == [
        "4: column 'a' expects BIGINT, got 'x'", "5: expected 3 fields, got 2",
        "6: column 't' expects TIMESTAMP, got '2026-13-01'"]


def test_csv_declared_column_missing_from_header(tmp_path: Path) -> None:
    (tmp_path / "in.csv").write_text("a,b\n1,2\n")
    with pytest.raises(ConfigError, match="has no column 'c'"):
        source_spec(tmp_path / "in.csv", pa.schema([("c", pa.int64())]))
    got, _ = read_all(source_spec(tmp_path / "in.csv", pa.schema([("B", pa.int64())])))
    assert got.column("B").to_pylist() == [2]


def test_parquet_declared_columns_checked(bids_parquet) -> None:
    path, table = bids_parquet
    with pytest.raises(ConfigError, match="has no column 'nope'"):
        source_spec(path, pa.schema([("nope", pa.int64())]))
    got, _ = read_all(source_spec(path, pa.schema([("PRICE", pa.float64())])), max_rows=10_000)
    assert got.column("PRICE").to_pylist() == table.column("price").cast(pa.float64()).to_pylist()


def test_configuration_errors(tmp_path: Path) -> None:
    missing = TableSpec("bids", "filesystem", {"path": str(tmp_path / "nope.parquet")})
    with pytest.raises(ConfigError, match=r"table 'bids': path .*nope.parquet.* does not exist"):
        FileSystemSource.infer_schema(missing)
    with pytest.raises(ConfigError, match="unknown option 'pth'"):
        registry.check_options(TableSpec("t", "filesystem", {"pth": "x"}), FileSystemSource)
    registry.check_options(TableSpec("t", "filesystem", {"path": "x", "bad_data": "drop"}),
                           FileSystemSource)
    with pytest.raises(ConfigError, match="unknown format 'xml'"):
        FileSystemSource.validate(TableSpec("t", "filesystem", {"path": str(tmp_path),
                                                                "format": "xml"}))
    with pytest.raises(ConfigError, match="cannot tell the format"):
        FileSystemSource.infer_schema(TableSpec("t", "filesystem", {"path": str(tmp_path)}))
    with pytest.raises(ConfigError, match="rollover_rows"):
        FileSystemSink.validate(TableSpec("t", "filesystem", {"path": str(tmp_path),
                                                              "rollover_rows": "0"}))
    with pytest.raises(ConfigError, match="has no 'path' option"):
        FileSystemSink.validate(TableSpec("t", "filesystem", {}))
    assert registry.source_class(TableSpec("t", "filesystem")) is FileSystemSource
    assert registry.sink_class(TableSpec("t", "filesystem")) is FileSystemSink


def test_compressed_csv_and_nanosecond_parquet(tmp_path: Path) -> None:
    import gzip
    with gzip.open(tmp_path / "a.csv.gz", "wt") as f:
        f.write("a\n1\n2\n")
    got, _ = read_all(source_spec(tmp_path / "a.csv.gz"))
    assert got.column("a").to_pylist() == [1, 2]
    ns = pa.table({"t": pa.array([1_767_225_600_123_456_000], pa.timestamp("ns"))})
    pq.write_table(ns, tmp_path / "ns.parquet")
    got, _ = read_all(source_spec(tmp_path / "ns.parquet"))
    assert got.schema.field("t").type == TIMESTAMP
    assert got.column("t")[0].value == 1_767_225_600_123_456
    # sub-microsecond digits are refused, no longer truncated (tests/formats/
    # test_nanosecond_values.py: truncating merged distinct values)
    ns = pa.table({"t": pa.array([1_767_225_600_123_456_789], pa.timestamp("ns"))})
    pq.write_table(ns, tmp_path / "fine.parquet")
    with pytest.raises(DataError, match="finer than a microsecond"):
        read_all(source_spec(tmp_path / "fine.parquet"))


def test_partitioned_by_writes_a_directory_per_partition(tmp_path: Path, duck) -> None:
    """PARTITIONED BY (k, d): rows go to k=<value>/d=<value>/ (escaped, NULL as Flink's
    default name), files without the partition columns; parallelism 2."""
    from caudal.job import run_sql

    source = tmp_path / "in.parquet"
    n = 3000
    pq.write_table(pa.table({
        "v": pa.array(range(n), pa.int64()),
        "k": pa.array([None if i % 7 == 0 else f"a:{i % 3}/x" for i in range(n)]),
        "d": pa.array([i % 2 for i in range(n)], pa.int32()),
    }), source)
    out = tmp_path / "out"
    run_sql(f"""CREATE TABLE src WITH (connector = 'filesystem', path = '{source}');
        CREATE TABLE dst (v BIGINT, k VARCHAR, d INT) PARTITIONED BY (k, d)
        WITH ('connector' = 'filesystem', 'path' = '{out}', 'format' = 'parquet');
        INSERT INTO dst SELECT v, k, d FROM src;""", parallelism=2)
    directories = sorted(str(p.parent.relative_to(out)) for p in out.rglob("part-*"))
    assert set(directories) == {f"k={k}/d={d}" for k in ("a%3A0%2Fx", "a%3A1%2Fx",
                                                         "a%3A2%2Fx", "__DEFAULT_PARTITION__")
                                for d in (0, 1)}
    rows = []
    for path in out.rglob("part-*"):
        table = pq.read_table(path)
        assert table.column_names == ["v"]
        k, d = (part.split("=", 1)[1] for part in path.parent.relative_to(out).parts)
        rows += [(v, k, d) for v in table.column("v").to_pylist()]
    expected = duck.sql(f"SELECT v, coalesce(replace(replace(k, ':', '%3A'), '/', '%2F'), "
                        f"'__DEFAULT_PARTITION__'), d::VARCHAR FROM '{source}'").fetchall()
    assert sorted(rows) == sorted(expected)


def test_partitioned_by_unknown_column_is_refused(tmp_path: Path) -> None:
    from caudal.job import compile_sql

    with pytest.raises(ConfigError, match="PARTITIONED BY names 'nope'"):
        compile_sql(f"""CREATE TABLE dst (v BIGINT) PARTITIONED BY (nope)
            WITH ('connector' = 'filesystem', 'path' = '{tmp_path}');
            CREATE TABLE src WITH (connector = 'nexmark', table = 'bid', events = '10');
            INSERT INTO dst SELECT price FROM src;""")


@pytest.mark.parametrize("fmt", ["parquet", "csv"])
def test_partitioned_table_reads_back_its_partition_values(tmp_path: Path, fmt: str) -> None:
    """What a PARTITIONED BY sink writes, a PARTITIONED BY source reads back (the partition
    columns from the directories, cast to their declared types; NULL from the default)."""
    from caudal.job import run_sql
    from tests.changelog_helpers import fold, run_changelog

    columns = "(v BIGINT, k VARCHAR, d INT) PARTITIONED BY (k, d)"
    out = tmp_path / "parts"
    run_sql(f"""CREATE TABLE src WITH (connector = 'nexmark', table = 'bid', events = '2000');
        CREATE TABLE dst {columns} WITH ('connector' = 'filesystem', 'path' = '{out}',
                                       'format' = '{fmt}');
        INSERT INTO dst SELECT price, CASE WHEN bidder % 5 = 0 THEN NULL
                                           ELSE 'b/' || (bidder % 3)::TEXT END,
                               (auction % 2)::INT FROM src;""", parallelism=2)
    back = fold(run_changelog(
        f"CREATE TABLE parts {columns} WITH ('connector' = 'filesystem', 'path' = '{out}', "
        f"'format' = '{fmt}');", "SELECT v, k, d FROM parts", tmp_path / "back"))
    again = fold(run_changelog(
        "CREATE TABLE src WITH (connector = 'nexmark', table = 'bid', events = '2000');",
        "SELECT price AS v, CASE WHEN bidder % 5 = 0 THEN NULL ELSE 'b/' || (bidder % 3)::TEXT "
        "END AS k, (auction % 2)::INT AS d FROM src", tmp_path / "direct"))
    assert sorted(back.to_pylist(), key=repr) == sorted(again.to_pylist(), key=repr)


def _timed_parquet(path: Path, groups: int = 3, rows: int = 5) -> pa.Table:
    times = [dt.datetime(2026, 1, 1, tzinfo=UTC) + dt.timedelta(seconds=7 * i)
             for i in range(groups * rows)]
    times[3] = None  # a NULL event time in the first row group
    table = pa.table({"a": pa.array(range(groups * rows), pa.int64()),
                      "t": pa.array(times[::-1], TIMESTAMP)})  # out of order
    pq.write_table(table, path, row_group_size=rows)
    return table


@pytest.mark.parametrize("statistics", [True, False])
def test_watermark_from_row_group_statistics(tmp_path: Path, statistics: bool) -> None:
    """With the event time read for the watermark only, the column is not decoded (NULL) and
    the watermark is the largest event time of the row groups read to their end (minus the
    delay): from the statistics, or from the decoded column when the file has none."""
    path = tmp_path / "t.parquet"
    table = _timed_parquet(path)
    if not statistics:
        pq.write_table(table, path, row_group_size=5, write_statistics=False)
    spec = source_spec(path, event_time_field="t")
    spec.event_time, spec.watermark_delay_us, spec.event_time_unread = "t", 1_000_000, True
    source = FileSystemSource(spec)
    source.open(source.partitions(1))
    assert source.watermark() is None
    times = table.column("t").cast(pa.int64()).to_pylist()
    seen, marks = [], []
    while (batch := source.poll(5, 0.1)) is not None:
        seen.append(batch)
        marks.append(source.watermark())
    got = pa.Table.from_batches(seen)
    assert got.column("a").equals(table.column("a"))
    assert got.column("t").null_count == (len(table) if statistics else 1)
    # a row group's maximum counts once it has been read to its end (the next poll)
    groups = [max(t for t in times[i:i + 5] if t is not None) for i in (0, 5, 10)]
    assert marks == [None, groups[0] - 1_000_000, max(groups[:2]) - 1_000_000]
    source.poll(5, 0.1)
    assert source.watermark() == max(groups) - 1_000_000
    source.close()


def test_event_time_for_the_watermark_only_is_not_decoded(tmp_path: Path) -> None:
    """A filter whose source declares an event time that no operator reads: same rows as
    DuckDB, and the plan marks the column as read for the watermark only (a window's plan
    does not)."""
    import duckdb

    from caudal.job import compile_sql, run_sql

    path = tmp_path / "t.parquet"
    _timed_parquet(path)
    ddl = (f"CREATE TABLE src WITH (connector = 'filesystem', path = '{path}', "
           "event_time_field = 't');\n"
           f"CREATE TABLE out WITH (connector = 'filesystem', path = '{tmp_path / 'o'}', "
           "format = 'parquet');\n")
    query = "INSERT INTO out SELECT a, a * 2 AS b FROM src WHERE a % 3 <> 0;"
    compiled = compile_sql(ddl + query)
    assert [v.source.event_time_unread for v in compiled.graph.vertices if v.source] == [True]
    window = ("INSERT INTO out SELECT count(*) AS a, 0 AS b FROM TABLE(TUMBLE(TABLE src, "
              "DESCRIPTOR(t), INTERVAL '10' SECOND)) GROUP BY window_start, window_end;")
    assert [v.source.event_time_unread for v in compile_sql(ddl + window).graph.vertices
            if v.source] == [False]
    run_sql(ddl + query)
    got = sorted(pq.read_table(tmp_path / "o").to_pylist(), key=lambda r: r["a"])
    want = duckdb.sql(f"SELECT a, a * 2 AS b FROM '{path}' WHERE a % 3 <> 0 ORDER BY a")
    assert got == [dict(zip(("a", "b"), r)) for r in want.fetchall()]


@pytest.mark.parametrize("parallelism", [1, 2, 3])
def test_parquet_filter_to_parquet_equals_duckdb(tmp_path: Path, parallelism: int) -> None:
    """The stateless benchmark's shape (filter, project, Parquet in and out) at parallelism
    1-3: the files written (integers and times delta-encoded, as asked) read back by DuckDB hold exactly
    DuckDB's answer over the input; one file per subtask that read rows, row groups whole."""
    import duckdb
    import numpy as np

    from caudal.job import run_sql

    rng = np.random.default_rng(7)
    n = 50_000
    src = tmp_path / "bids.parquet"
    pq.write_table(pa.table({
        "auction": rng.integers(1000, 1100, n), "bidder": rng.integers(-(1 << 62), 1 << 62, n),
        "price": pa.array(np.where(rng.random(n) < 0.05, None, rng.integers(0, 5000, n)),
                          pa.int64()),
        "channel": rng.choice(["Apple", "Google", "Baidu", "Facebook"], n),
        "date_time": pa.array(np.sort(rng.integers(0, 10**12, n)), pa.timestamp("us", "UTC"))}),
        src, row_group_size=7_000)
    out = tmp_path / "out"
    run_sql(f"""
        CREATE TABLE bid WITH (connector = 'filesystem', path = '{src}',
                               event_time_field = 'date_time', watermark_delay = '1s');
        CREATE TABLE o WITH (connector = 'filesystem', path = '{out}', format = 'parquet',
                             'parquet.integer_encoding' = 'delta');
        INSERT INTO o SELECT auction, bidder, price * 908 / 1000 AS price_eur, channel,
               date_time FROM bid WHERE price > 1000 AND channel <> 'Apple';""",
            parallelism=parallelism)
    files = sorted(out.glob("*.parquet"))
    assert len(files) == parallelism
    for f in files:
        meta = pq.ParquetFile(f).metadata
        assert meta.num_row_groups == 1 and "DELTA_BINARY_PACKED" in \
            meta.row_group(0).column(0).encodings
    con = duckdb.connect()
    got = con.sql(f"SELECT * FROM read_parquet('{out}/*.parquet') "
                  "ORDER BY ALL").fetchall()
    want = con.sql(f"SELECT auction, bidder, price * 908 // 1000 AS price_eur, channel, "
                   f"date_time FROM '{src}' WHERE price > 1000 AND channel <> 'Apple' "
                   "ORDER BY ALL").fetchall()
    assert got == want and len(want) > 10_000
