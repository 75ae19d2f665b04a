"""The stdout sink prints what people should see; the blackhole sink only counts."""

from __future__ import annotations

import datetime as dt
import decimal

import pyarrow as pa
import pytest

from caudal.connectors import registry
from caudal.connectors.blackhole import BlackholeSink
from caudal.connectors.stdout import StdoutSink
from caudal.errors import ConfigError
from caudal.plan.tables import TableSpec
from caudal.types import TIMESTAMP
from tests.conftest import run_cli


def batch() -> pa.RecordBatch:
    return pa.record_batch({
        "id": pa.array([1, None, 300]),
        "name": pa.array(["a", None, "two\nlines"]),
        "t": pa.array([dt.datetime(2026, 1, 1, tzinfo=dt.UTC), None,
                       dt.datetime(2026, 1, 1, 0, 0, 0, 5, tzinfo=dt.UTC)], TIMESTAMP),
        "price": pa.array([decimal.Decimal("1.5"), None, decimal.Decimal("10.25")],
                          pa.decimal128(10, 2)),
    })


def sink(**options: str) -> StdoutSink:
    spec = TableSpec("out", "stdout", options)
    registry.check_options(spec, StdoutSink)
    out = registry.sink_class(spec)(spec, 0, 1)
    out.open(batch().schema)
    return out


def test_table_format(capsys) -> None:
    out = sink()
    out.write(batch())
    out.write(batch().slice(0, 1))
    out.write(batch().slice(0, 0))
    assert capsys.readouterr().out == (
        "  id  name        t                           price\n"
        "   1  a           2026-01-01 00:00:00          1.50\n"
        "NULL  NULL        NULL                         NULL\n"
        " 300  two\\nlines  2026-01-01 00:00:00.000005  10.25\n"
        "   1  a           2026-01-01 00:00:00          1.50\n")


def test_json_format(capsys) -> None:
    out = sink(format="json")
    out.write(batch().slice(0, 2))
    assert capsys.readouterr().out == (
        '{"id":1,"name":"a","t":"2026-01-01T00:00:00","price":1.50}\n'
        '{"id":null,"name":null,"t":null,"price":null}\n')


def test_bad_options() -> None:
    with pytest.raises(ConfigError, match="format = 'csv'"):
        StdoutSink.validate(TableSpec("out", "stdout", {"format": "csv"}))
    with pytest.raises(ConfigError, match="unknown option 'colour'"):
        registry.check_options(TableSpec("out", "stdout", {"colour": "red"}), StdoutSink)
    with pytest.raises(ConfigError, match="cannot be read from"):
        registry.source_class(TableSpec("out", "stdout"))


def test_blackhole_counts(capsys) -> None:
    spec = TableSpec("nothing", "blackhole")
    hole = registry.sink_class(spec)(spec, 0, 1)
    assert isinstance(hole, BlackholeSink)
    hole.open(batch().schema)
    hole.write(batch())
    hole.write(batch())
    hole.pre_commit(1)
    hole.commit(1)
    assert hole.rows == 6
    assert capsys.readouterr().out == ""


def test_table_columns_keep_their_widths_across_batches(capsys) -> None:
    first = pa.record_batch({"id": pa.array([1, 22]), "name": pa.array(["ab", "cd"]),
                             "last": pa.array(["x", "y"])})
    later = pa.record_batch({"id": pa.array([123456, 3]),
                             "name": pa.array(["abcdefgh", "ñ"]),
                             "last": pa.array(["z" * 60, "w"])})
    out = StdoutSink(TableSpec("out", "stdout", {}), 0, 1)
    out.open(first.schema)
    out.write(first)
    out.write(later)
    lines = capsys.readouterr().out.splitlines()
    assert lines == ["id  name  last", " 1  ab    x", "22  cd    y",
                     "1…  abc…  " + "z" * 39 + "…", " 3  ñ     w"]
    # every column starts where the header's does, whatever the batch
    assert {line.index("  ", 2) for line in lines} == {2}


def test_rows_never_continue_a_status_line() -> None:
    import io

    from caudal import terminal

    status, rows = io.StringIO(), io.StringIO()
    terminal.draw_status("in 10 (5/s)", status)
    with terminal.rows_output(status):
        rows.write("row\n")
    # the status line was erased (cursor back to column 0) before the row was written
    assert status.getvalue() == terminal.ERASE_LINE + "in 10 (5/s)" + terminal.ERASE_LINE
    terminal.draw_status("in 20 (5/s)", status)
    terminal.erase_status(status)
    with terminal.rows_output(status):  # nothing drawn: nothing to erase
        pass
    assert status.getvalue().endswith("in 20 (5/s)" + terminal.ERASE_LINE)


def test_outputs_sharing_stdout_are_titled(tmp_path) -> None:
    """Two bare SELECTs print under their own title and header, never under each other's."""
    script = tmp_path / "two.sql"
    script.write_text(
        "CREATE TABLE t WITH (connector = 'impulse', events = '3');\n"
        "SELECT counter AS a FROM t;\n"
        "SELECT counter * 10 AS b FROM t;\n")
    proc = run_cli("run", str(script), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    blocks = [b for b in proc.stdout.split("-- ") if b]
    assert sorted(b.splitlines()[0] for b in blocks) == ["SELECT at line 2",
                                                         "SELECT at line 3"]
    rows: dict[str, list[int]] = {}
    for block in blocks:
        title, header, *values = block.strip().splitlines()
        rows.setdefault(header.strip(), []).extend(int(v) for v in values)
    assert sorted(rows["a"]) == [0, 1, 2] and sorted(rows["b"]) == [0, 10, 20]
