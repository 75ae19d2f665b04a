"""caudal.formats.csv: quote-aware blocks, NULL versus empty text, timestamps, bad rows."""

from __future__ import annotations

import datetime as dt
import io

import pyarrow as pa
import pytest

from caudal.connectors.base import SourceMetrics
from caudal.errors import ConfigError
from caudal.formats import csv
from caudal.formats.bad_data import BadDataPolicy
from caudal.types import TIMESTAMP

UTC = dt.UTC


def read(data: bytes, schema: pa.Schema, mode: str = "fail", block_size: int = 1 << 20):
    metrics = SourceMetrics()
    tables = list(csv.read(io.BytesIO(data), schema, BadDataPolicy(mode, metrics, "f"),
                           block_size))
    return pa.concat_tables(tables) if tables else schema.empty_table(), metrics


def test_row_boundaries_ignore_newlines_in_quotes() -> None:
    data = b'a,"x\ny",b\n"q""\n",2\nlast'
    assert csv.cut(data) == len(b'a,"x\ny",b\n"q""\n",2\n')
    assert csv.cut(b'a,"open\n') == 0
    assert csv.split_rows(data, 1) == [(1, b'a,"x\ny",b\n'), (3, b'"q""\n",2\n'), (5, b"last\n")]


def test_quoted_newlines_across_blocks() -> None:
    rows = "".join(f'{i},"line {i}\nnext ""{i}"""\n' for i in range(100))
    data = ("n,s\n" + rows).encode()
    schema = pa.schema([("n", pa.int64()), ("s", pa.string())])
    table, _ = read(data, schema, block_size=64)
    assert table.column("n").to_pylist() == list(range(100))
    assert table.column("s")[7].as_py() == 'line 7\nnext "7"'


def test_null_is_an_empty_field_and_empty_text_is_quoted() -> None:
    table, _ = read(b's,n\n"",1\n,\nNULL,2\n', pa.schema([("s", pa.string()),
                                                          ("n", pa.int64())]))
    assert table.to_pylist() == [{"s": "", "n": 1}, {"s": None, "n": None},
                                 {"s": "NULL", "n": 2}]


def test_timestamps_with_and_without_zone() -> None:
    table, _ = read(b"t\n2026-01-01T02:00:00+02:00\n2026-01-01 00:00:00.5\n2026-01-01\n"
                    b"2026-01-01T00:00:00Z\n\n", pa.schema([("t", TIMESTAMP)]))
    assert table.column("t").to_pylist() == [
        dt.datetime(2026, 1, 1, tzinfo=UTC), dt.datetime(2026, 1, 1, 0, 0, 0, 500000, tzinfo=UTC),
        dt.datetime(2026, 1, 1, tzinfo=UTC), dt.datetime(2026, 1, 1, tzinfo=UTC)]


def test_bad_rows_dropped_in_order() -> None:
    rows = ["a,b"] + [f"{i},{i}" for i in range(50)]
    rows[11] = "ten,10"
    rows[31] = "30"
    rows[41] = "40,40,40"
    table, metrics = read(("\r\n".join(rows) + "\r\n").encode(),
                          pa.schema([("b", pa.int64()), ("a", pa.int64())]), "drop",
                          block_size=32)
    assert table.column("b").to_pylist() == [i for i in range(50) if i not in (10, 30, 40)]
    assert table.column("a").null_count == 0 and table.num_rows == 47
    assert metrics.bad_rows_dropped == 3
    assert metrics.bad_row_examples == ["f line 12: column 'a' expects BIGINT, got 'ten'",
                                        "f line 32: expected 2 fields, got 1",
                                        "f line 42: expected 2 fields, got 3"]


def test_nested_columns_are_refused() -> None:
    with pytest.raises(ConfigError, match="CSV input cannot hold BIGINT\\[\\]"):
        csv.Decoder(["l"], pa.schema([("l", pa.list_(pa.int64()))]), "f")


@pytest.mark.parametrize("kind", [pa.map_(pa.string(), pa.int64()), pa.duration("us")])
def test_maps_and_intervals_are_refused_naming_parquet_only(kind: pa.DataType) -> None:
    # JSON input refuses them too: the hint named it (a second refusal)
    with pytest.raises(ConfigError) as refused:
        csv.Decoder(["m"], pa.schema([("m", kind)]), "f")
    assert refused.value.hint == "use format = 'parquet', or declare it as TEXT"


def test_writer_then_reader() -> None:
    batch = pa.record_batch({"t": pa.array([dt.datetime(2026, 1, 1, tzinfo=UTC), None], TIMESTAMP),
                             "b": pa.array([b"\x01", None]), "s": ["a\nb", ""],
                             "l": pa.array([[1], None], pa.list_(pa.int64()))})
    out = io.BytesIO()
    writer = csv.Writer(out, batch.schema)
    writer.write(batch)
    data = out.getvalue()
    assert data.startswith(b'"t","b","s","l"\n"2026-01-01T00:00:00Z","\\x01","a\nb","[1]"\n')
    table, _ = read(data, pa.schema([("t", TIMESTAMP), ("b", pa.binary()), ("s", pa.string()),
                                     ("l", pa.string())]))
    assert table.to_pylist() == [
        {"t": dt.datetime(2026, 1, 1, tzinfo=UTC), "b": b"\x01", "s": "a\nb", "l": "[1]"},
        {"t": None, "b": None, "s": "", "l": None}]


@pytest.mark.parametrize("parallelism", [1, 2])
def test_numbers_with_leading_zeros_are_inferred_as_text_as_duckdb_does(tmp_path, duck,
                                                                        parallelism) -> None:
    """A zip code or id column ("007", "01.5") was inferred as a number and lost its zeros
    ("007" -> 7); DuckDB's sniffer reads such a column as text, a signed "-007" as a number."""
    from tests.helpers import normalized_rows, run_to_table

    path = tmp_path / "in.csv"
    path.write_text("id,code,price,delta\n1,007,01.5,-007\n2,10,2.5,3\n3,,3,\n4,0,0.5,0\n")
    query = "SELECT id, code, price, delta FROM t"
    got = run_to_table(f"CREATE TABLE t WITH (connector = 'filesystem', path = '{path}', "
                       "format = 'csv');", query, tmp_path / "out", parallelism)
    assert got.schema.field("code").type == pa.string()
    want = duck.sql(query.replace("FROM t", f"FROM read_csv_auto('{path}')")).to_arrow_table()
    assert normalized_rows(got) == normalized_rows(want)


BOOLEAN_FILES = {"true false": True, "T F": True, "t f": True, "yes no": True,
                 "YES No": True, "tRuE fAlSe": True, "y n": False, "Y N": False,
                 "1 0": False, "TrUe 0": False}


@pytest.mark.parametrize("pair", sorted(BOOLEAN_FILES))
def test_boolean_text_as_duckdb_reads_it(tmp_path, duck, pair) -> None:
    """Declared BOOLEAN, DuckDB's read_csv takes t/true/y/yes/1 and f/false/n/no/0 in any
    case (caudal took true/false and 1/0 only: 'T' was a malformed record); its sniffer
    infers BOOLEAN from true/false, t/f and yes/no, not y/n (TEXT) nor 1/0 (BIGINT)."""
    yes, no = pair.split()
    path = tmp_path / "b.csv"
    path.write_text(f"b,k\n{yes},1\n{no},2\n,3\n")
    declared, _ = read(path.read_bytes(), pa.schema([("b", pa.bool_()), ("k", pa.int32())]))
    want = duck.sql(f"SELECT b FROM read_csv('{path}', columns = {{'b': 'BOOLEAN', "
                    "'k': 'INT'}, header = true)").fetchall()
    assert declared.column("b").to_pylist() == [r[0] for r in want] == [True, False, None]
    schema = csv.infer_schema(io.BytesIO(path.read_bytes()))
    inferred = duck.sql(f"SELECT typeof(b) FROM read_csv('{path}') LIMIT 1").fetchall()[0][0]
    assert pa.types.is_boolean(schema.field("b").type) == BOOLEAN_FILES[pair] == \
        (inferred == "BOOLEAN")


def test_other_boolean_text_is_a_malformed_record_naming_the_accepted() -> None:
    from caudal.errors import DataError

    with pytest.raises(DataError, match=r"line 2: column 'b' expects BOOLEAN, got 'on' "
                                        r"\(BOOLEAN text: true/t/yes/y/1 or false/f/no/n/0"):
        read(b"b\non\n", pa.schema([("b", pa.bool_())]))
    table, metrics = read(b"b\non\nT\n", pa.schema([("b", pa.bool_())]), mode="drop")
    assert table.column("b").to_pylist() == [True]


@pytest.mark.parametrize("char", ["-", ".", "e", "1", "n"])
def test_sink_refuses_a_delimiter_that_values_hold(char: str) -> None:
    # -5 and 2024-01-02 are written unquoted: such a file's rows did not read back
    with pytest.raises(ConfigError, match="can be part of a number"):
        csv.check_options({"csv.field-delimiter": char}, None, sink=True)
    csv.check_options({"csv.field-delimiter": char}, None)   # a source may read such files
    csv.check_options({"csv.field-delimiter": "|"}, None, sink=True)
