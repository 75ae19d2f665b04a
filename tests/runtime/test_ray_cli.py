"""``caudal run --runtime ray`` and ``caudal explain --runtime ray`` as a user runs them, against
the session's 3-node cluster (``--address``): a SELECT prints on the driver's terminal,
checkpoints go to an S3 server on loopback (moto_server, a real process), and EXPLAIN shows
which node runs which subtasks."""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.fs as pafs
import pytest

from caudal.job import compile_sql
from tests.changelog_helpers import fold, read_changes
from tests.conftest import run_cli
from tests.helpers import normalized_rows, read_committed
from tests.sql.test_joins_sql import DDL as NEXMARK_DDL
from tests.sql.test_joins_sql import _bench_query, _duck, nexmark  # noqa: F401

S3_ENV = {"AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test",
          "AWS_DEFAULT_REGION": "us-east-1"}


@pytest.fixture(scope="module")
def s3_server():
    """A moto S3 server on a free loopback port; yields its host:port."""
    moto = shutil.which("moto_server") or str(Path(sys.executable).parent / "moto_server")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([moto, "-H", "127.0.0.1", "-p", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(300):
            try:
                socket.create_connection(("127.0.0.1", port), 0.2).close()
                break
            except OSError:
                time.sleep(0.1)
        yield f"127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(10)


JOB = """
CREATE TABLE bid WITH (connector = 'nexmark', table = 'bid', events = '6000',
                       event_rate = '1000', pace = 'false', event_time_field = 'date_time');
CREATE TABLE out WITH (connector = 'filesystem', path = '{out}', format = 'parquet');
INSERT INTO out SELECT auction, count(*) AS n, window_start AS ws
FROM TABLE(TUMBLE(TABLE bid, DESCRIPTOR(date_time), INTERVAL '1' SECOND))
GROUP BY auction, window_start, window_end;
"""


def test_checkpoints_on_s3_and_output_as_local(ray_cluster, s3_server, tmp_path):
    fs = pafs.S3FileSystem(endpoint_override=s3_server, scheme="http", access_key="test",
                           secret_key="test", region="us-east-1", allow_bucket_creation=True)
    fs.create_dir("caudal")
    outs = {}
    for runtime in ("local", "ray"):
        out = tmp_path / runtime
        out.mkdir()
        job = tmp_path / f"{runtime}.sql"
        job.write_text(JOB.format(out=out))
        args = ["run", str(job), "-p", "2"]
        if runtime == "ray":
            args += ["--runtime", "ray", "--address", ray_cluster.address,
                     "--checkpoint-dir",
                     f"s3://caudal/ck?endpoint_override={s3_server}&scheme=http&region=us-east-1"
                     "&allow_delayed_open=true",
                     "--checkpoint-interval", "200ms"]
        done = run_cli(*args, env=S3_ENV, timeout=240)
        assert done.returncode == 0, done.stderr
        outs[runtime] = normalized_rows(read_committed(out))
    assert outs["ray"] == outs["local"] and outs["local"]
    names = [i.path for i in fs.get_file_info(pafs.FileSelector("caudal/ck", recursive=True))]
    assert any(n.endswith("_manifest.json") for n in names), names


def test_select_prints_on_the_driver(ray_cluster, tmp_path):
    job = tmp_path / "q.sql"
    job.write_text("CREATE TABLE bid WITH (connector = 'nexmark', table = 'bid', "
                   "events = '3000', event_rate = '1000', pace = 'false');\n"
                   "SELECT count(*) AS n FROM bid;")
    done = run_cli("run", str(job), "-p", "2", "--runtime", "ray", "--address",
                   ray_cluster.address, timeout=240)
    assert done.returncode == 0, done.stderr
    assert "2760" in done.stdout.split()[-1] or "2760" in done.stdout, done.stdout
    assert "WARNING" not in done.stderr and "(raylet)" not in done.stderr, done.stderr


def test_explain_shows_placement(ray_cluster, tmp_path):
    job = tmp_path / "q.sql"
    job.write_text("CREATE TABLE bid WITH (connector = 'nexmark', table = 'bid');\n"
                   "CREATE TABLE o WITH (connector = 'blackhole');\n"
                   "INSERT INTO o SELECT auction, count(*) FROM bid GROUP BY auction;")
    done = run_cli("explain", str(job), "-p", "3", "--runtime", "ray", "--address",
                   ray_cluster.address, timeout=240)
    assert done.returncode == 0, done.stderr
    lines = [ln for ln in done.stdout.splitlines() if ln.strip().startswith("worker ")]
    assert len(lines) == 3, done.stdout
    nodes = {ln.split(" on node ")[1].split(":")[0] for ln in lines}
    assert len(nodes) == 3, done.stdout   # one slot per node of the 3-node cluster


def test_status_line_and_metrics_on_ray(ray_cluster):  # noqa: F811
    """The status line and the metrics snapshot read a Ray job as they read a local one."""
    import io
    import threading

    from caudal.cli import StatusLine
    from caudal.job import compile_sql
    from caudal.runtime.ray.executor import RayRuntime
    from caudal.server.metrics import snapshot

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    graph = compile_sql(
        "CREATE TABLE bid WITH (connector = 'nexmark', table = 'bid', events = '20000', "
        "event_rate = '10000', event_time_field = 'date_time');\n"
        "CREATE TABLE o WITH (connector = 'blackhole');\n"
        "INSERT INTO o SELECT auction, count(*) FROM TABLE(TUMBLE(TABLE bid, "
        "DESCRIPTOR(date_time), INTERVAL '1' SECOND)) GROUP BY auction, window_start, "
        "window_end;", 2).graph
    runtime = RayRuntime()
    runtime.deploy(graph)
    done = {}
    job = threading.Thread(target=lambda: done.setdefault("result", runtime.run()))
    job.start()
    terminal = Terminal()
    with StatusLine(runtime, stream=terminal):
        time.sleep(1.2)
        snap = snapshot(runtime)
    job.join(120)
    assert "in " in terminal.getvalue() and "watermark" in terminal.getvalue()
    sources = [s for s in snap["subtasks"] if s["source"]]
    assert len(sources) == 2 and sum(s["rows_in"] for s in sources) > 0
    assert done["result"].rows_in == 18400


def test_a_mistake_in_the_sql_is_one_line_with_workers_prestarted(ray_cluster, tmp_path):
    """With --address the workers start before the job is planned; a planning error still
    ends the run with one line (and the workers with the driver)."""
    job = tmp_path / "q.sql"
    job.write_text("CREATE TABLE bid WITH (connector = 'nexmark', table = 'bid');\n"
                   "SELECT nosuchcolumn FROM bid;")
    done = run_cli("run", str(job), "-p", "2", "--runtime", "ray", "--address",
                   ray_cluster.address, timeout=240)
    assert done.returncode == 2, done.stderr
    lines = [ln for ln in done.stderr.splitlines() if ln.strip()]
    assert "nosuchcolumn" in lines[0] and "Traceback" not in done.stderr, done.stderr
    assert "WARNING" not in done.stderr and "(raylet)" not in done.stderr, done.stderr


@pytest.mark.slow
def test_without_address_the_job_gets_a_ray_of_its_own(ray_cluster, tmp_path):
    """The session's cluster is the last one started on this machine, which Ray's own
    default (``ray.init()`` without an address) would join: without ``--address`` caudal
    starts a local Ray instead, so its subtasks all run on one node."""
    job = tmp_path / "q.sql"
    job.write_text("CREATE TABLE bid WITH (connector = 'nexmark', table = 'bid');\n"
                   "CREATE TABLE o WITH (connector = 'blackhole');\n"
                   "INSERT INTO o SELECT auction, count(*) FROM bid GROUP BY auction;")
    done = run_cli("explain", str(job), "-p", "3", "--runtime", "ray", timeout=240,
                   env={"RAY_ADDRESS": ""})
    assert done.returncode == 0, done.stderr
    lines = [ln for ln in done.stdout.splitlines() if ln.strip().startswith("worker ")]
    nodes = {ln.split(" on node ")[1].split(":")[0] for ln in lines}
    assert len(lines) == 3 and len(nodes) == 1, done.stdout


def _plan_on_ray_and_sql_locally(ray_cluster, tmp_path, script: str,
                                  *ray_args: str) -> tuple[Path, Path]:
    """Compile ``script`` (its sink writes to ``{out}``) at -p 2 and run the plan on the
    session's cluster through the CLI (with ``ray_args``), and run the .sql locally: the two
    output folders."""
    outs = {}
    for runtime in ("ray", "local"):
        outs[runtime] = tmp_path / runtime
        job = tmp_path / f"{runtime}.sql"
        job.write_text(script.replace("{out}", str(outs[runtime])))
        if runtime == "ray":
            plan = tmp_path / "job.plan"
            done = run_cli("compile", str(job), "-o", str(plan), "-p", "2")
            assert done.returncode == 0, done.stderr
            args = [str(plan), "--runtime", "ray", "-p", "2", "--address", ray_cluster.address,
                    *ray_args]
            shown = run_cli("explain", str(plan), "--runtime", "ray", "--address",
                            ray_cluster.address, timeout=240)
            assert shown.returncode == 0, shown.stderr
            assert "worker 1 on node" in shown.stdout, shown.stdout
        else:
            args = [str(job), "-p", "2"]
        done = run_cli("run", *args, "--batch-rows", "2000", timeout=240)
        assert done.returncode == 0, done.stderr
        assert "Traceback" not in done.stderr and "(raylet)" not in done.stderr, done.stderr
    return outs["ray"], outs["local"]


def test_a_compiled_nexmark_plan_runs_on_ray(ray_cluster, tmp_path, duck, nexmark):  # noqa: F811
    """Nexmark q8 (a window join) compiled to a plan at -p 2, run on Ray through the CLI:
    the changelog folds to what the .sql gives locally, and to DuckDB's answer."""
    query, duck_query = _bench_query("q8")
    script = (f"SET updating_flush = '0';\n{NEXMARK_DDL}\nCREATE TABLE out WITH (connector = "
              "'filesystem', path = '{out}', format = 'debezium_json');\n"
              f"INSERT INTO out {query};\n")
    ray_out, local_out = _plan_on_ray_and_sql_locally(ray_cluster, tmp_path, script)
    schema = compile_sql(script.replace("{out}", str(ray_out))).job.outputs[-1].plan.table \
        .schema
    got = normalized_rows(fold(read_changes(ray_out, schema)))
    assert got == normalized_rows(fold(read_changes(local_out, schema)))
    expected = _duck(duck, nexmark, duck_query)
    assert expected.num_rows > 0 and got == normalized_rows(expected)


def test_a_compiled_plan_ships_its_literal_rows_to_ray(ray_cluster, tmp_path):
    """VALUES is a table of the compiling process's memory: the plan carries it, the driver
    running the plan ships it to the workers (p=2, joined with a generator's bids), with
    checkpoints (a python source's offset is a row count)."""
    script = ("CREATE TABLE bid WITH (connector = 'nexmark', table = 'bid', events = '3000', "
              "event_rate = '1000', pace = 'false');\n"
              "CREATE TABLE out WITH (connector = 'filesystem', path = '{out}', "
              "format = 'parquet');\n"
              "INSERT INTO out SELECT b.auction, b.price, v.label FROM bid AS b JOIN "
              "(VALUES (0, 'even'), (1, 'odd')) AS v(id, label) ON b.bidder % 2 = v.id;\n")
    ray_out, local_out = _plan_on_ray_and_sql_locally(
        ray_cluster, tmp_path, script, "--checkpoint-dir", str(tmp_path / "ck"),
        "--checkpoint-interval", "200ms")
    got = normalized_rows(read_committed(ray_out))
    assert len(got) == 2760 and got == normalized_rows(read_committed(local_out))
    assert list((tmp_path / "ck").rglob("_manifest.json"))
