"""The caudal command as users run it: a real process, exit codes, one-line errors."""

from __future__ import annotations

import pytest

from caudal import __version__
from tests.conftest import run_cli
from tests.helpers import read_committed


def test_version():
    proc = run_cli("--version")
    assert proc.returncode == 0
    assert __version__ in proc.stdout


def test_help_reads_like_the_docs():
    proc = run_cli("run", "--help")
    assert proc.returncode == 0
    for flag in ("--parallelism", "--checkpoint-dir", "--checkpoint-interval"):
        assert flag in proc.stdout


def _subcommand(parser, name: str):
    return next(a for a in parser._actions if a.dest == "command").choices[name]


def test_a_command_is_parsed_by_its_own_subparser_alone_with_the_same_help():
    """`caudal run …` builds only run's subparser (the others: name and one-line help), so
    every help text, the list of commands and every subcommand's options read as with all of
    them built; `caudal --debug run` and an unknown word are told apart."""
    from caudal import cli

    full = cli._parser()
    assert list(_subcommand(full, "run")._actions) and set(
        next(a for a in full._actions if a.dest == "command").choices) == set(cli._COMMAND_HELP)
    for name in cli._COMMAND_HELP:
        alone = cli._parser(name)
        assert alone.format_help() == full.format_help()
        assert _subcommand(alone, name).format_help() == _subcommand(full, name).format_help()
        others = [other for other in cli._COMMAND_HELP if other != name]
        assert all(len(_subcommand(alone, other)._actions) == 1 for other in others)  # -h
    assert cli._command_of(["--debug", "run", "job.sql"]) == "run"
    assert cli._command_of(["--version"]) is None and cli._command_of(["runn"]) is None
    args = cli._parser("run").parse_args(["run", "job.sql", "-p", "2", "--no-plan-cache"])
    assert (args.command, args.file, args.parallelism, args.no_plan_cache) == \
        ("run", "job.sql", 2, True)


def test_run_writes_parquet_and_exits_zero(tmp_path, bids_parquet):
    path, table = bids_parquet
    out = tmp_path / "out"
    job = tmp_path / "job.sql"
    job.write_text(f"""
CREATE TABLE bids WITH (connector = 'filesystem', path = '{path}');
CREATE TABLE out WITH (connector = 'filesystem', path = '{out}');
INSERT INTO out SELECT auction, price FROM bids WHERE price > 100;
""")
    proc = run_cli("run", str(job), "--parallelism", "2")
    assert proc.returncode == 0, proc.stderr
    got = read_committed(out)
    expected = sum(1 for p in table.column("price").to_pylist() if p is not None and p > 100)
    assert got.num_rows == expected
    assert "rows in" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_bare_select_prints_to_stdout(tmp_path, bids_parquet):
    path, table = bids_parquet
    job = tmp_path / "job.sql"
    job.write_text(f"CREATE TABLE bids WITH (connector = 'filesystem', path = '{path}');\n"
                   "SELECT auction, price FROM bids WHERE auction = 1001 AND price > 9000;\n")
    proc = run_cli("run", str(job))
    assert proc.returncode == 0, proc.stderr
    lines = [line for line in proc.stdout.splitlines() if line.strip()]
    expected = [r for r in table.to_pylist() if r["auction"] == 1001 and r["price"] is not None
                and r["price"] > 9000]
    assert lines[0].split() == ["auction", "price"]
    assert len(lines) - 1 == len(expected)


def test_sql_error_is_one_line_with_position_and_exit_2(tmp_path, bids_parquet):
    path, _ = bids_parquet
    job = tmp_path / "job.sql"
    job.write_text(f"CREATE TABLE bids WITH (connector = 'filesystem', path = '{path}');\n"
                   "SELECT auction,\n       pricee FROM bids;\n")
    proc = run_cli("run", str(job))
    assert proc.returncode == 2
    err = proc.stderr.strip()
    assert len(err.splitlines()) == 1
    assert "line 3, column 8" in err and "pricee" in err and "price" in err
    assert "Traceback" not in err


def test_debug_shows_traceback(tmp_path):
    job = tmp_path / "job.sql"
    job.write_text("SELECT a FROM nowhere;")
    proc = run_cli("--debug", "run", str(job))
    assert proc.returncode != 0
    assert "Traceback" in proc.stderr



@pytest.mark.parametrize(("value", "traceback"), [("1", True), ("0", False), ("", False)])
def test_caudal_debug_env_is_debug_unless_zero(tmp_path, value, traceback):
    """CAUDAL_DEBUG=1 is --debug; CAUDAL_DEBUG=0 is off, as CAUDAL_PLAN_CACHE=0 is (it turned
    tracebacks on: any non-empty value did)."""
    job = tmp_path / "job.sql"
    job.write_text("SELECT a FROM nowhere;")
    proc = run_cli("run", str(job), env={"CAUDAL_DEBUG": value})
    assert proc.returncode != 0
    assert ("Traceback" in proc.stderr) == traceback, proc.stderr


@pytest.mark.parametrize("parallelism", ["1", "2"])
def test_output_piped_into_head_ends_quietly_with_0(tmp_path, parallelism):
    """`caudal run job.sql | head` stops when head closes the pipe, without an error: it said
    `caudal: error: BrokenPipeError: [Errno 32] Broken pipe` and exited 1."""
    import subprocess
    import sys

    job = tmp_path / "job.sql"
    job.write_text("CREATE TABLE bids WITH (connector = 'nexmark', table = 'bid', "
                   "events = '200000');\nSELECT auction, price FROM bids;")
    proc = subprocess.Popen([sys.executable, "-m", "caudal.cli", "run", str(job), "-p",
                             parallelism], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdout.readline()
    proc.stdout.close()  # as head does after its lines
    stderr = proc.stderr.read().decode()
    assert proc.wait(120) == 0, stderr
    assert "error" not in stderr, stderr

def test_unknown_connector_and_option(tmp_path):
    job = tmp_path / "job.sql"
    job.write_text("CREATE TABLE t (a BIGINT) WITH (connector = 'kafkaa');\nSELECT a FROM t;")
    proc = run_cli("run", str(job))
    assert proc.returncode == 2
    assert "unknown connector 'kafkaa'" in proc.stderr and "filesystem" in proc.stderr
    job.write_text("CREATE TABLE t (a BIGINT) WITH (connector = 'filesystem', path = 'x', "
                   "colour = 'red');\nSELECT a FROM t;")
    proc = run_cli("run", str(job))
    assert proc.returncode == 2
    assert "unknown option 'colour'" in proc.stderr and "path" in proc.stderr


def test_missing_file(tmp_path):
    job = tmp_path / "job.sql"
    job.write_text("CREATE TABLE t WITH (connector = 'filesystem', path = '/nonexistent/x.parquet');"
                   "\nSELECT * FROM t;")
    proc = run_cli("run", str(job))
    assert proc.returncode == 2
    assert "/nonexistent/x.parquet" in proc.stderr
    proc = run_cli("run", str(tmp_path / "missing.sql"))
    assert proc.returncode == 2
    assert "missing.sql" in proc.stderr


def test_explain(tmp_path, bids_parquet):
    path, _ = bids_parquet
    job = tmp_path / "job.sql"
    job.write_text(f"CREATE TABLE bids WITH (connector = 'filesystem', path = '{path}');\n"
                   "CREATE TABLE out WITH (connector = 'blackhole');\n"
                   "INSERT INTO out SELECT auction, price * 2 AS p FROM bids WHERE price > 1;\n")
    proc = run_cli("explain", str(job), "--parallelism", "2")
    assert proc.returncode == 0, proc.stderr
    assert "Logical plan" in proc.stdout and "Physical dataflow" in proc.stdout
    assert "Filter" in proc.stdout and "parallelism=2" in proc.stdout
    # projection pushdown: only the used columns are read
    assert "columns [auction, price]" in proc.stdout


def test_bad_data_drop_is_reported(tmp_path):
    data = tmp_path / "in.json"
    data.write_text('{"a": 1}\n{"a": "oops"}\nnot json\n{"a": 4}\n')
    out = tmp_path / "out"
    job = tmp_path / "job.sql"
    job.write_text(f"CREATE TABLE t (a BIGINT) WITH (connector = 'filesystem', path = '{data}', "
                   f"format = 'json', bad_data = 'drop');\n"
                   f"CREATE TABLE o WITH (connector = 'filesystem', path = '{out}');\n"
                   "INSERT INTO o SELECT a FROM t;")
    proc = run_cli("run", str(job))
    assert proc.returncode == 0, proc.stderr
    assert "2 bad rows dropped" in proc.stderr
    assert sorted(read_committed(out).column("a").to_pylist()) == [1, 4]
    # (into another directory: the first run's output is there, and sink.mode = 'error')
    job.write_text(job.read_text().replace("'drop'", "'fail'").replace(str(out),
                                                                     str(out) + "2"))
    proc = run_cli("run", str(job))
    assert proc.returncode == 2
    assert "in.json" in proc.stderr and "line 2" in proc.stderr


def test_text_that_is_not_utf8_follows_bad_data(tmp_path):
    """Arrow's JSON reader took bytes that are not UTF-8 into a TEXT column, and the job died
    later with Python's UnicodeDecodeError (no file, no line, bad_data ignored)."""
    for fmt, body in (("json", b'{"a": 1, "b": "\xff\xfe"}\n{"a": 2, "b": "ok"}\n'),
                      ("csv", b"a,b\n1,\xff\xfe\n2,ok\n")):
        data = tmp_path / f"in.{fmt}"
        data.write_bytes(body)
        job = tmp_path / f"{fmt}.sql"
        line = 1 if fmt == "json" else 2
        for mode in ("fail", "drop"):
            job.write_text(f"CREATE TABLE t (a BIGINT, b TEXT) WITH (connector = 'filesystem', "
                           f"path = '{data}', format = '{fmt}', bad_data = '{mode}');\n"
                           "SELECT a, b FROM t;")
            proc = run_cli("run", str(job))
            assert "Traceback" not in proc.stderr and "Unicode" not in proc.stderr
            assert f"in.{fmt} line {line}: not valid UTF-8 (byte 0xff" in proc.stderr, proc.stderr
            if mode == "fail":
                assert proc.returncode == 2
                assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
            else:
                assert proc.returncode == 0, proc.stderr
                assert "1 bad rows dropped" in proc.stderr
                assert "ok" in proc.stdout


def test_a_file_that_cannot_be_read_is_named_in_one_line(tmp_path):
    """A cut-short Parquet file and a CSV header that is not UTF-8 were 'internal error:
    ArrowInvalid: Parquet magic bytes…' / 'UnicodeDecodeError…', naming no file."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    files = tmp_path / "in"
    files.mkdir()
    pq.write_table(pa.table({"a": [1, 2]}), files / "a.parquet")
    whole = (files / "a.parquet").read_bytes()
    (files / "b.parquet").write_bytes(whole[:len(whole) // 2])
    (tmp_path / "h.csv").write_bytes(b"a,\xffb\n1,2\n")
    cases = {
        f"path = '{files}'": ("b.parquet is not a Parquet file, or is cut short", "(a BIGINT)"),
        f"path = '{files / 'b.parquet'}'": ("b.parquet is not a Parquet file", ""),
        f"path = '{tmp_path / 'h.csv'}'": ("h.csv line 1 (the header): not valid UTF-8", ""),
        f"path = '{tmp_path / 'h.csv'}', format = 'csv'":
            ("h.csv line 1 (the header): not valid UTF-8", "(a BIGINT)"),
    }
    job = tmp_path / "job.sql"
    for options, (message, columns) in cases.items():
        job.write_text(f"CREATE TABLE t {columns} WITH (connector = 'filesystem', {options});\n"
                       "SELECT count(*) AS n FROM t;")
        proc = run_cli("run", str(job))
        assert proc.returncode == 2, proc.stderr
        assert message in proc.stderr, proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
        assert "Arrow" not in proc.stderr and "Unicode" not in proc.stderr


def test_a_sink_path_that_cannot_be_written_is_one_line(tmp_path):
    """Was 'internal error: NotADirectoryError: [Errno 20] Cannot create directory…'."""
    (tmp_path / "afile").write_text("")
    (tmp_path / "parts").mkdir()
    (tmp_path / "parts" / "b=x").write_text("")  # a file where a partition directory goes
    source = (f"CREATE TABLE t (a BIGINT, b TEXT) WITH (connector = 'filesystem', "
              f"path = '{tmp_path / 'in.json'}');\n")
    (tmp_path / "in.json").write_text('{"a": 1, "b": "x"}\n')
    job = tmp_path / "job.sql"
    for sink, where in (
            (f"(a BIGINT, b TEXT) WITH (connector = 'filesystem', path = '{tmp_path}/afile/o')",
             f"cannot create the directory '{tmp_path}/afile/o' (Not a directory)"),
            (f"(a BIGINT, b TEXT) PARTITIONED BY (b) WITH (connector = 'filesystem', "
             f"path = '{tmp_path}/parts', sink.mode = 'append')",
             f"cannot create the directory '{tmp_path}/parts/b=x' (File exists)")):
        job.write_text(source + f"CREATE TABLE o {sink};\nINSERT INTO o SELECT a, b FROM t;")
        proc = run_cli("run", str(job))
        assert proc.returncode == 2, proc.stderr
        assert proc.stderr.strip() == (f"caudal: error: line 2: table 'o': {where} "
                                       "(give the table a path this user can write)")


def test_run_refuses_bad_numbers_in_one_line(tmp_path):
    """--batch-rows 0 ran for ever; --max-restarts -1 was taken silently."""
    job = tmp_path / "job.sql"
    job.write_text("SELECT 1 AS x;")
    for flags, message in (
            (["--batch-rows", "0"], "--batch-rows must be at least 1"),
            (["--max-restarts", "-1"], "--max-restarts must be 0 or more"),
            (["--checkpoint-interval", "abc", "--checkpoint-dir", str(tmp_path / "ck")],
             "bad --checkpoint-interval 'abc'")):
        proc = run_cli("run", str(job), *flags, timeout=30)
        assert proc.returncode == 2, proc.stderr
        assert proc.stderr.startswith(f"caudal: error: {message}"), proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("sent, code, said", [("SIGINT", 130, "Ctrl-C"),
                                                ("SIGTERM", 143, "SIGTERM")])
def test_ctrl_c_without_checkpoints_says_what_became_of_the_output(tmp_path, sent, code, said):
    """Was a bare 'stopped': a user could not tell that the sink's output was not committed.
    SIGTERM (a service manager, kill) ended the process silently with 143."""
    import signal
    import subprocess
    import sys
    import time

    job = tmp_path / "job.sql"
    job.write_text("CREATE TABLE bids WITH (connector = 'nexmark', table = 'bid', "
                   "events = '100000000', event_rate = '20000', pace = 'true');\n"
                   f"CREATE TABLE o WITH (connector = 'filesystem', path = '{tmp_path / 'o'}');"
                   "\nINSERT INTO o SELECT auction, price FROM bids;")
    # a suite started in the background by a non-interactive shell inherits SIGINT ignored,
    # and so would the job (which then rightly ignores Ctrl-C, as Unix programs do): the job
    # gets the default disposition, as from a terminal
    ignored = signal.getsignal(signal.SIGINT) == signal.SIG_IGN
    if ignored:
        signal.signal(signal.SIGINT, signal.SIG_DFL)
    try:
        proc = subprocess.Popen([sys.executable, "-m", "caudal.cli", "run", str(job)],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    finally:
        if ignored:
            signal.signal(signal.SIGINT, signal.SIG_IGN)
    deadline = time.monotonic() + 60
    while not (tmp_path / "o").exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    time.sleep(0.5)
    proc.send_signal(getattr(signal, sent))
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == code
    assert "Traceback" not in err
    assert err.strip().splitlines()[-1].startswith(
        f"caudal: stopped by {said}; without --checkpoint-dir there is nothing to resume from")


def test_a_debezium_change_without_its_row_is_malformed(tmp_path):
    """A 'c' with "after": null was read as a row of NULLs, and a 'u' or 'd' with
    "before": null retracted a row of NULLs (a wrong count downstream); Flink refuses both."""
    data = tmp_path / "in.json"
    job = tmp_path / "job.sql"
    good = '{"before": null, "after": {"a": 1}, "op": "c"}\n'
    for line, message in (
            ('{"before": null, "after": null, "op": "c"}', 'op \'c\' with "after": null'),
            ('{"before": null, "after": {"a": 2}, "op": "u"}', 'op \'u\' with "before": null'),
            ('{"before": null, "after": null, "op": "d"}', 'op \'d\' with "before": null')):
        data.write_text(good + line + "\n")
        for mode in ("fail", "drop"):
            job.write_text(f"CREATE TABLE t (a BIGINT, PRIMARY KEY (a) NOT ENFORCED) WITH ("
                           f"connector = 'filesystem', path = '{data}', "
                           f"format = 'debezium_json', bad_data = '{mode}');\n"
                           "SELECT count(*) AS n FROM t;")
            proc = run_cli("run", str(job))
            assert message in proc.stderr, proc.stderr
            if mode == "fail":
                assert proc.returncode == 2
                assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
            else:
                assert proc.returncode == 0, proc.stderr
                assert "1 bad rows dropped" in proc.stderr
                assert proc.stdout.split()[-1] == "1", proc.stdout


def test_a_parquet_value_that_does_not_convert_names_the_column(tmp_path):
    """Was Arrow's 'Failed to parse string: 'q' as a scalar of type int64', no column."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"a": ["1", "q"]}), tmp_path / "in.parquet")
    job = tmp_path / "job.sql"
    job.write_text(f"CREATE TABLE t (a BIGINT) WITH (connector = 'filesystem', "
                   f"path = '{tmp_path / 'in.parquet'}');\nSELECT a FROM t;")
    proc = run_cli("run", str(job))
    assert proc.returncode == 2
    assert proc.stderr.strip() == (
        f"caudal: error: file {tmp_path / 'in.parquet'} row group 0: column 'a' is TEXT in "
        "the file, not BIGINT, got 'q' (declare it TEXT, and TRY_CAST it in the query)")


def test_a_compressed_file_cut_short_is_named_in_one_line(tmp_path):
    """Was 'error: OSError: Truncated compressed stream' (no file, exit 1, bad_data or not)
    for JSON, and 'internal error: OSError…' for CSV."""
    import gzip

    job = tmp_path / "job.sql"
    for name, body in (("in.json.gz", b'{"a": 1}\n{"a": 2}\n'), ("in.csv.gz", b"a\n1\n2\n")):
        whole = gzip.compress(body)
        (tmp_path / name).write_bytes(whole[:20])
        for mode in ("fail", "drop"):
            job.write_text(f"CREATE TABLE t (a BIGINT) WITH (connector = 'filesystem', "
                           f"path = '{tmp_path / name}', bad_data = '{mode}');\n"
                           "SELECT sum(a) AS s FROM t;")
            proc = run_cli("run", str(job))
            assert proc.returncode == 2, proc.stderr
            assert f"{name} cannot be read: Truncated compressed stream" in proc.stderr
            assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr


def test_json_lines_cut_short_or_with_a_key_twice_say_where(tmp_path):
    """A line cut short was 'not valid JSON (Expecting value at column 1)' (Python's json
    counted the line break as a line 2); a key written twice was Arrow's 'JSON parse error:
    Column(/a) was specified twice'."""
    data = tmp_path / "in.json"
    data.write_text('{"a": 1, "a": 2}\n{"a": 5}\n{"a": 1, "b": \n')
    job = tmp_path / "job.sql"
    job.write_text(f"CREATE TABLE t (a BIGINT, b TEXT) WITH (connector = 'filesystem', "
                   f"path = '{data}', bad_data = 'drop');\nSELECT a FROM t;")
    proc = run_cli("run", str(job))
    assert proc.returncode == 0, proc.stderr
    assert "2 bad rows dropped (first: " in proc.stderr
    assert "in.json line 1: key 'a' appears twice in the object)" in proc.stderr
    data.write_text('{"a": 5}\n{"a": 1, "b": \n')
    job.write_text(job.read_text().replace("'drop'", "'fail'"))
    proc = run_cli("run", str(job))
    assert proc.returncode == 2
    assert "in.json line 2: not valid JSON (Expecting value at column 15)" in proc.stderr


def test_json_unstructured_and_json_columns_send_bad_utf8_to_bad_data(tmp_path):
    """json.unstructured and a column declared JSON decoded blocks in Python and died with
    'UnicodeDecodeError…' (no line, bad_data ignored)."""
    data = tmp_path / "in.json"
    data.write_bytes(b'{"a": 1, "j": {"x": "ok"}}\n{"a": 2, "j": {"x": "\xff"}}\n')
    job = tmp_path / "job.sql"
    for table, column in (("(value TEXT) WITH (json.unstructured = 'true', ", "value"),
                          ("(a BIGINT, j JSON) WITH (", "j")):
        job.write_text(f"CREATE TABLE t {table}connector = 'filesystem', path = '{data}', "
                       f"bad_data = 'drop');\nSELECT count({column}) AS n FROM t;")
        proc = run_cli("run", str(job))
        assert proc.returncode == 0, proc.stderr
        assert "1 bad rows dropped (first: " in proc.stderr
        assert "in.json line 2: not valid UTF-8 (byte 0xff" in proc.stderr
        assert proc.stdout.split()[-1] == "1", proc.stdout


def test_late_data_and_idle_timeout_are_checked_without_a_window(tmp_path):
    """Only window aggregates read them, so a query without one took any value silently."""
    (tmp_path / "in.json").write_text('{"a": 1}\n')
    job = tmp_path / "job.sql"
    for option, message in (("late_data = 'keep'", "late_data = 'keep' in table 't' "
                                                    "(accepted: drop, side:<table>)"),
                            ("idle_timeout = 'x'", "bad idle_timeout 'x' (write a number")):
        job.write_text(f"CREATE TABLE t (a BIGINT) WITH (connector = 'filesystem', "
                       f"path = '{tmp_path / 'in.json'}', {option});\nSELECT a FROM t;")
        proc = run_cli("run", str(job))
        assert proc.returncode == 2, proc.stderr
        assert proc.stderr.startswith(f"caudal: error: line 1: {message}"), proc.stderr



@pytest.mark.parametrize("connector", [
    "connector = 'kafka', bootstrap_servers = '127.0.0.1:1', topic = 'x'",
    "connector = 'nats', servers = 'nats://127.0.0.1:1', subject = 'x'",
    "connector = 'redis', url = 'redis://127.0.0.1:1/0', stream = 'x'",
    "connector = 'rabbitmq', url = 'amqp://guest:guest@127.0.0.1:1/%2F', queue = 'x'"])
def test_a_bad_connect_timeout_is_refused_at_planning_with_its_line(tmp_path, connector):
    """It was read only when connecting: one line without the table's line or name, or
    none at all for a job that never connected."""
    job = tmp_path / "job.sql"
    job.write_text(f"\nCREATE TABLE t (a BIGINT) WITH ({connector}, connect_timeout = 'soon');"
                   f"\nSELECT a FROM t;")
    proc = run_cli("run", str(job), timeout=60)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.startswith("caudal: error: line 2: bad connect_timeout 'soon'"), \
        proc.stderr


@pytest.mark.parametrize("options, message", [
    ("connector = 'mqtt', url = 'http://127.0.0.1:1883', topic = 'x'",
     "url = 'http://127.0.0.1:1883' of table 't' (tcp://host:port"),
    ("connector = 'mqtt', url = 'ssl://127.0.0.1:8883', topic = 'x'",
     "url = 'ssl://127.0.0.1:8883' of table 't' (tcp://host:port"),
    ("connector = 'redis', url = 'redis://127.0.0.1:6379/x', stream = 'x'",
     "url = 'redis://127.0.0.1:6379/x' of table 't' (redis://host:port/db"),
    ("connector = 'redis', url = 'http://127.0.0.1:6379/0', stream = 'x'",
     "url = 'http://127.0.0.1:6379/0' of table 't' (redis://host:port/db")])
def test_a_url_the_connector_would_misread_is_refused(tmp_path, options, message):
    """An MQTT url of another scheme was read as tcp:// (ssl:// then spoke plain TCP), and a
    Redis url whose database is not a number read database 0; both are refused at
    planning."""
    job = tmp_path / "job.sql"
    job.write_text(f"CREATE TABLE t (a BIGINT) WITH ({options});\nSELECT a FROM t;")
    proc = run_cli("run", str(job), timeout=60)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.startswith(f"caudal: error: line 1: {message}"), proc.stderr

def test_a_csv_quote_never_closed_does_not_swallow_the_rest_of_the_file(tmp_path):
    """Arrow's reader took every line after an unclosed quote into one field: 5 rows gone,
    no error, nothing counted."""
    rows = ["a,b"] + [f"{i},x" for i in range(1, 6)] + ['6,"oops'] + \
        [f"{i},y" for i in range(7, 12)] + ['12,"a ""quoted"" one"']
    data = tmp_path / "in.csv"
    data.write_text("\n".join(rows) + "\n")
    job = tmp_path / "job.sql"
    for mode in ("fail", "drop"):
        job.write_text(f"CREATE TABLE t (a BIGINT, b TEXT) WITH (connector = 'filesystem', "
                       f"path = '{data}', bad_data = '{mode}');\nSELECT count(*) AS n FROM t;")
        proc = run_cli("run", str(job))
        assert ("in.csv line 7: a quoted field opened on this row is not closed by the end "
                "of the file (lines 7-13 would be one field)") in proc.stderr, proc.stderr
        if mode == "fail":
            assert proc.returncode == 2
        else:
            assert proc.returncode == 0 and "1 bad rows dropped" in proc.stderr
            assert proc.stdout.split()[-1] == "5", proc.stdout
    data.write_text("\n".join(rows[:6] + rows[-1:] + ['13,5"3']) + "\n")  # closed, bare: fine
    proc = run_cli("run", str(job))
    assert proc.returncode == 0 and "bad rows" not in proc.stderr, proc.stderr
    assert proc.stdout.split()[-1] == "7", proc.stdout


def test_run_refuses_flags_that_would_be_ignored_or_crash(tmp_path):
    """--from-epoch, --fresh and --checkpoint-interval without --checkpoint-dir were ignored
    silently (a job the user meant to checkpoint ran without checkpoints); --metrics-port
    99999 was 'internal error: OverflowError: bind(): port must be 0-65535.'"""
    job = tmp_path / "job.sql"
    job.write_text("SELECT 1 AS x;")
    for flags, message in (
            (["--from-epoch", "1"], "--from-epoch needs --checkpoint-dir"),
            (["--fresh"], "--fresh needs --checkpoint-dir"),
            (["--checkpoint-interval", "1s"], "--checkpoint-interval needs --checkpoint-dir"),
            (["--metrics-port", "99999"], "--metrics-port 99999 is not a port")):
        proc = run_cli("run", str(job), *flags, timeout=60)
        assert proc.returncode == 2, proc.stderr
        assert proc.stderr.startswith(f"caudal: error: {message}"), proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1


def test_runtime_error_names_the_expression_in_one_line(tmp_path):
    job = tmp_path / "job.sql"
    job.write_text("CREATE TABLE bids WITH (connector = 'nexmark', table = 'bid', "
                   "events = '100');\n\nSELECT auction,\n       price / (bidder - bidder) AS x\n"
                   "FROM bids;")
    proc = run_cli("run", str(job))
    assert proc.returncode != 0
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("caudal: error: line 4, column 8: division by zero in")
    assert "Traceback" not in proc.stderr


def test_empty_script_says_so(tmp_path):
    job = tmp_path / "job.sql"
    job.write_text("-- nothing yet\n")
    proc = run_cli("run", str(job))
    assert proc.returncode == 2
    assert "the script is empty" in proc.stderr


def test_functions_markdown_is_the_reference_tables():
    proc = run_cli("functions", "--markdown")
    assert proc.returncode == 0
    assert "| `date_format` |" in proc.stdout and "| `array_agg` |" in proc.stdout



def test_status_line_uses_the_stderr_of_its_run(monkeypatch):
    """cli.main called in-process after sys.stderr changed (pytest's capture, a
    redirect_stderr) asked the stream of caudal.cli's import whether it is a TTY: a closed
    one failed the run ('I/O operation on closed file')."""
    import io
    import sys

    from caudal.cli import StatusLine

    err = io.StringIO()
    monkeypatch.setattr(sys, "stderr", err)
    assert StatusLine(None).stream is err
