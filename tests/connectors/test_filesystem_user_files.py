"""Files as users have them (a review from outside): what caudal reads from them against
DuckDB's read_csv / read_json / read_parquet of the same files, and one-line refusals where
caudal cannot read them."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from caudal.errors import CaudalError
from tests.helpers import normalized_rows, run_to_table


def _source(path, fmt: str = "csv", columns: str = "", **options: str) -> str:
    extra = "".join(f", '{k}' = '{v}'" for k, v in options.items())
    return (f"CREATE TABLE t {columns} WITH (connector = 'filesystem', path = '{path}', "
            f"format = '{fmt}'{extra});")


def _refusal(tmp_path, ddl: str, select: str = "SELECT * FROM t") -> str:
    with pytest.raises(CaudalError) as caught:
        run_to_table(ddl, select, tmp_path / "out")
    text = str(caught.value)
    assert "\n" not in text.strip() and "Traceback" not in text
    return text


def test_csv_integers_past_bigint_are_read_exactly_as_duckdb_reads_them(tmp_path, duck) -> None:
    """A CSV column of integers, one past BIGINT (an id of 20 digits), was inferred as
    DOUBLE: 12345678901234567891 became 12345678901234567168. DuckDB's sniffer reads it as
    HUGEINT; caudal as DECIMAL(38, 0), the same values."""
    path = tmp_path / "in.csv"
    path.write_text("id,big\n1,12345678901234567891\n2,-5\n3,\n")
    got = run_to_table(_source(path), "SELECT id, big FROM t", tmp_path / "out")
    assert got.schema.field("big").type == pa.decimal128(38, 0)
    want = duck.sql(f"SELECT id, big FROM read_csv('{path}')").to_arrow_table()
    assert normalized_rows(got) == normalized_rows(want)


def test_csv_header_naming_a_column_twice_or_none_as_duckdb(tmp_path, duck) -> None:
    """``a,b,a`` in a header gave Python's KeyError from Arrow ('Field "a" exists 2 times'),
    and a trailing comma a column named ''. DuckDB's sniffer names them a_1 and column3."""
    path = tmp_path / "in.csv"
    path.write_text("a,b,a,\n1,2,3,\n")
    got = run_to_table(_source(path), "SELECT * FROM t", tmp_path / "out")
    want = duck.sql(f"SELECT * FROM read_csv('{path}')").to_arrow_table()
    assert got.column_names == want.column_names == ["a", "b", "a_1", "column3"]
    assert normalized_rows(got) == normalized_rows(want)
    got = run_to_table(_source(path, columns="(a BIGINT, a_1 BIGINT)"), "SELECT * FROM t",
                       tmp_path / "out2")
    assert normalized_rows(got) == [(1, 3)]


def test_csv_ragged_row_while_inferring_names_its_line(tmp_path) -> None:
    """Inference passed Arrow's 'CSV parse error: Expected 2 columns, got 1: 2'; the line
    is after a quoted newline, so Arrow's row number is not the line."""
    path = tmp_path / "in.csv"
    path.write_text('a,b\n1,"x\ny"\n2\n3,z\n')
    text = _refusal(tmp_path, _source(path))
    assert str(path) in text and "line 4" in text and "expected 2 fields, got 1" in text
    assert "CSV parse error" not in text


def test_csv_field_longer_than_a_parse_block_is_inferred(tmp_path) -> None:
    """A 3 MB field made inference fail with Arrow's 'straddling object straddles two block
    boundaries (try to increase block size?)'; the declared table read it."""
    path = tmp_path / "in.csv"
    path.write_text("a,b\n1," + "x" * 3_000_000 + "\n2,y\n")
    got = run_to_table(_source(path), "SELECT a, length(b) AS n FROM t", tmp_path / "out")
    assert normalized_rows(got) == [(1, 3_000_000), (2, 1)]


@pytest.mark.parametrize("fmt", ["json", "csv", "parquet"])
def test_directory_with_files_of_another_format_is_refused(tmp_path, fmt) -> None:
    """``format = 'json'`` over a directory skipped its other files without a word (a .csv
    beside .json files: its rows were silently not read). Files of no known extension
    (notes, READMEs) are still skipped, as documented."""
    data = tmp_path / "in"
    data.mkdir()
    (data / "a.json").write_text('{"a": 1}\n')
    (data / "b.csv").write_text("a\n2\n")
    pq.write_table(pa.table({"a": [3]}), data / "c.parquet")
    (data / "notes.txt").write_text("hello\n")
    (data / "_SUCCESS").write_text("")          # hidden: written by Spark, always skipped
    text = _refusal(tmp_path, _source(data, fmt, "(a BIGINT)"))
    others = {"json": "b.csv", "csv": "a.json", "parquet": "a.json"}[fmt]
    assert others in text and "notes.txt" not in text and fmt in text


def test_parquet_type_mismatch_with_bad_data_drop_says_drop_does_not_skip_it(tmp_path) -> None:
    """bad_data = 'drop' skips malformed records of text files; a Parquet file whose column
    has another type is no record's fault, and the job stops: the line says so rather than
    leaving the user to wonder why 'drop' did not drop."""
    data = tmp_path / "in"
    data.mkdir()
    pq.write_table(pa.table({"a": [1]}), data / "1.parquet")
    pq.write_table(pa.table({"a": ["x"]}), data / "2.parquet")
    text = _refusal(tmp_path, _source(data, "parquet", "(a BIGINT)", bad_data="drop"))
    assert "2.parquet" in text and "'a'" in text and "TEXT" in text
    assert "bad_data" in text


def test_json_first_line_longer_than_the_inference_window_is_inferred(tmp_path) -> None:
    """A first line past 4 MB gave 'Empty JSON file' (the window was cut at its last
    newline, and there was none)."""
    path = tmp_path / "in.json"
    path.write_text('{"a": "' + "x" * (5 << 20) + '", "n": 1}\n{"a": "y", "n": 2}\n')
    got = run_to_table(_source(path, "json"), "SELECT length(a) AS l, n FROM t",
                       tmp_path / "out")
    assert normalized_rows(got) == [(1, 2), (5 << 20, 1)]


def test_csv_with_a_byte_order_mark_longer_than_the_inference_window(tmp_path) -> None:
    """With a BOM the window read was 3 bytes short of its size once the mark was removed,
    so it was taken whole: its last row, cut in the middle ("1,2024-"), made the timestamp
    column TEXT."""
    row = "1,2024-01-02 10:00:00\n"
    window = (4 << 20) - 3                       # the window's bytes after the BOM
    name = "a" * ((window - len(",ts\n") - 7) % len(row) or len(row))  # cut 7 bytes in
    header = f"{name},ts\n"
    assert (window - len(header)) % len(row) == 7
    count = window // len(row) + 10
    path = tmp_path / "in.csv"
    path.write_bytes(b"\xef\xbb\xbf" + (header + row * count).encode())
    got = run_to_table(_source(path), "SELECT ts FROM t", tmp_path / "out")
    assert pa.types.is_timestamp(got.schema.field("ts").type) and got.num_rows == count


@pytest.mark.parametrize(("lines_", "want"), [
    ('{"a": 1}\n\n{"a": "x"}\n', "line 3: key 'a' holds a string here, a number on an "
                                 "earlier line"),
    ('{"a": 1}\n{"b": {"c": 1}}\n{"b": {"c": "s"}}\n', "line 3: key 'b.c' holds a string"),
    ('{"a": 1}\n\nnot json\n', "line 3: not valid JSON"),
    ('{"a": 1}\n{"a": 1}\n{"a": 1} x\n', "line 3: not valid JSON"),
])
def test_json_inference_errors_name_the_line_and_what_is_wrong(tmp_path, lines_, want) -> None:
    """Inference passed Arrow's 'JSON parse error: Column(/a) changed from number to string
    in row 1' (a row counted from 0 without blank lines) and 'Invalid value. in row 1'."""
    path = tmp_path / "in.json"
    path.write_text(lines_)
    text = _refusal(tmp_path, _source(path, "json"))
    assert str(path) in text and want in text and "JSON parse error" not in text


@pytest.mark.parametrize(("option", "sep"), [(";", ";"), ("\\t", "\t"), ("|", "|")])
def test_csv_field_delimiter_reads_and_writes_as_duckdb(tmp_path, duck, option, sep) -> None:
    """Semicolon (a European spreadsheet's CSV) and tab-separated files had no option: read
    without declared columns they were one column named 'a;b'. Flink's csv.field-delimiter
    (one character; '\\t' is a tab) reads and writes them."""
    path = tmp_path / "in.csv"
    path.write_text(f'a{sep}b{sep}c\n1{sep}"x{sep}y"{sep}2.5\n2{sep}"say ""hi"""{sep}\n')
    query = "SELECT a, b, c FROM t"
    want = duck.sql(query.replace("FROM t", f"FROM read_csv('{path}', delim = '{sep}', "
                                  "quote = '\"')")).to_arrow_table()
    got = run_to_table(_source(path, **{"csv.field-delimiter": option}), query,
                       tmp_path / "out")
    assert normalized_rows(got) == normalized_rows(want)
    declared = run_to_table(_source(path, columns="(a BIGINT, b TEXT, c DOUBLE)",
                                    **{"csv.field-delimiter": option}), query,
                            tmp_path / "out2")
    assert normalized_rows(declared) == normalized_rows(want)
    out = tmp_path / "written"
    from caudal.job import run_sql
    run_sql(_source(path, **{"csv.field-delimiter": option}) +
            f"CREATE TABLE w WITH (connector = 'filesystem', path = '{out}', format = 'csv', "
            f"'csv.field-delimiter' = '{option}');\nINSERT INTO w {query};")
    back = duck.sql(f"SELECT a, b, c FROM read_csv('{out}/*.csv', delim = '{sep}')")
    assert normalized_rows(back.to_arrow_table()) == normalized_rows(want)


def test_csv_field_delimiter_of_more_than_one_character_is_refused(tmp_path) -> None:
    path = tmp_path / "in.csv"
    path.write_text("a;;b\n1;;2\n")
    text = _refusal(tmp_path, _source(path, **{"csv.field-delimiter": ";;"}))
    assert "csv.field-delimiter" in text and "one character" in text


def test_json_directory_infers_from_several_files_as_duckdb(tmp_path, duck) -> None:
    """The columns came from the first file alone: a key that only later files have (``b``)
    was silently not read, and a key that is an integer there and 2.5 in the second file
    failed the job. DuckDB's read_json samples several files; so does caudal now (up to 32
    files or 4 MB)."""
    data = tmp_path / "in"
    data.mkdir()
    (data / "1.json").write_text('{"a": 1, "n": null}\n')
    (data / "2.json").write_text('{"a": 2.5, "b": "new", "s": {"x": 1}}\n')
    (data / "3.json").write_text('{"a": 3, "n": 7, "s": {"y": "z"}}\n')
    (data / "30.json").write_text("")
    query = "SELECT a, b, n, s FROM t"
    got = run_to_table(_source(data, "json"), query, tmp_path / "out")
    want = duck.sql(query.replace("FROM t", f"FROM read_json('{data}/*.json')")
                    ).to_arrow_table()
    assert normalized_rows(got) == normalized_rows(want)
    (data / "4.json").write_text('{"a": "text"}\n')
    text = _refusal(tmp_path, _source(data, "json"))
    assert "'a'" in text and "4.json" in text and "1.json" in text
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "1.json").write_text("\n")
    text = _refusal(tmp_path, _source(empty, "json"))
    assert "1.json holds no JSON lines" in text


def test_csv_bad_rows_in_a_large_block_are_found_in_linear_time() -> None:
    """Finding the bad rows of a block counted the newlines before every row from the
    block's start (quadratic): 2 MB of rows with quoted fields and a few bad ones took
    minutes under bad_data = 'drop' (a 3 MB file: 100 s)."""
    import io
    import time

    from caudal.connectors.base import SourceMetrics
    from caudal.formats import csv
    from caudal.formats.bad_data import BadDataPolicy

    rows = ["a,b"] + [f'{i},"v\r\n{i}"' if i % 5000 else f"x{i},q" for i in range(1, 120_000)]
    data = ("\r\n".join(rows) + "\r\n").encode()
    metrics = SourceMetrics()
    schema = pa.schema([("a", pa.int64()), ("b", pa.string())])
    started = time.process_time()
    got = pa.concat_tables(csv.read(io.BytesIO(data), schema,
                                    BadDataPolicy("drop", metrics, "f")))
    assert time.process_time() - started < 10
    assert metrics.bad_rows_dropped == 23 and got.num_rows == 119_999 - 23
    assert metrics.bad_row_examples[0].startswith("f line 10000: ")  # 2 lines a row
