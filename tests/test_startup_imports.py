"""Start-up cost guard: `caudal run` of a trivial job imports only what the job uses.

Timing tests are noise on a shared machine, so this checks what start-up costs are made of
instead: which heavy modules a fresh process has imported. Polars (~0.3 s to import), DuckDB,
the Kafka/PostgreSQL clients and Ray must stay out of `import caudal.cli`, of `caudal
--version` and of a Parquet-to-blackhole job; they are imported where a job uses them.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ["polars", "duckdb", "pandas", "confluent_kafka", "psycopg", "ray", "asyncio",
         "caudal.frame"]

# ends with os._exit as the console script does (cli.entry): interpreter teardown with Arrow's
# thread pools running can abort (apache/arrow#34314), which is not what is tested here
_PROBE = """
import json, os, sys
{code}
print(json.dumps(sorted(m for m in {heavy!r} if m in sys.modules)), flush=True)
os._exit(0)
"""


#: what a trivial job (a SELECT of literal or computed columns, a filter, a LIMIT; from a
#: file or a generator to stdout or a blackhole) must not load either: pyarrow.compute
#: (~0.2 G instructions to import; caudal.compute calls the same kernels without it),
#: pyarrow.dataset (which imports it) and numpy.random (10-25 ms with secrets and hashlib:
#: random() makes its generator on first use)
TRIVIAL = [*HEAVY, "pyarrow.compute", "pyarrow.dataset", "numpy.random"]


def _imported(code: str, heavy: list[str] = HEAVY) -> list[str]:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    out = subprocess.run([sys.executable, "-c", _PROBE.format(code=code, heavy=heavy)],
                         capture_output=True, text=True, env=env, cwd=ROOT, timeout=120)
    assert out.returncode == 0, out.stderr[-3000:]  # the job's own error, when it fails
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_import_cli_is_light():
    assert _imported("import caudal.cli; caudal.cli._parser()") == []


def test_version_imports_no_engine():
    code = ("import caudal.cli\ntry:\n    caudal.cli.main(['--version'])\n"
            "except SystemExit:\n    pass\n"
            "assert 'pyarrow' not in sys.modules and 'sqlglot' not in sys.modules")
    assert _imported(code) == []


def test_parquet_to_blackhole_job_imports_only_what_it_uses(tmp_path):
    pq.write_table(pa.table({"a": list(range(10)), "b": [str(i) for i in range(10)]}),
                   tmp_path / "ten.parquet")
    job = tmp_path / "job.sql"
    job.write_text(
        f"CREATE TABLE src WITH (connector = 'filesystem', path = '{tmp_path / 'ten.parquet'}');\n"
        "CREATE TABLE out WITH (connector = 'blackhole');\n"
        "INSERT INTO out SELECT a, b FROM src WHERE a > 2;\n")
    code = f"import caudal.cli\nassert caudal.cli.main(['run', {str(job)!r}]) == 0"
    # dateutil (with calendar and locale) comes with converting Python values to Arrow: the
    # constant folding's empty batch is made without it (printing rows to stdout needs it)
    assert _imported(code, [*TRIVIAL, "dateutil"]) == []


@pytest.mark.parametrize(("name", "source", "query"), [
    ("csv", "(a BIGINT, b TEXT) WITH (connector = 'filesystem', path = '{dir}/ten.csv', "
     "format = 'csv')", "SELECT a, b, a * 2 AS doubled, 'x' AS tag FROM src"),
    ("json", "(a BIGINT, b TEXT) WITH (connector = 'filesystem', path = '{dir}/ten.json', "
     "format = 'json')", "SELECT a, upper(b) AS b, a + 1 AS next FROM src WHERE a > 2"),
    ("impulse", "WITH (connector = 'impulse', events = '1000')",
     "SELECT counter, counter * 2 AS d FROM src LIMIT 100"),
    ("literal", None, "SELECT 1 AS one, 'hello' AS greeting"),
])
def test_trivial_jobs_to_stdout_import_only_what_they_use(tmp_path, name, source, query):
    """A user's first jobs: computed columns of a small file or a generator, printed. Without
    a file and without checkpoints, neither is pyarrow's file system layer (nor ssl, which it
    imports) or Parquet loaded."""
    (tmp_path / "ten.csv").write_text("a,b\n" + "".join(f"{i},{i}\n" for i in range(10)))
    (tmp_path / "ten.json").write_text("".join(f'{{"a": {i}, "b": "{i}"}}\n'
                                               for i in range(10)))
    job = tmp_path / "job.sql"
    create = f"CREATE TABLE src {source.format(dir=tmp_path)};\n" if source else ""
    job.write_text(f"{create}{query};\n")
    code = (f"import caudal.cli, contextlib, io\nwith contextlib.redirect_stdout(io.StringIO()) "
            f"as out:\n    assert caudal.cli.main(['run', {str(job)!r}]) == 0\n"
            f"assert out.getvalue().count('\\n') > 1, out.getvalue()")
    no_files = ["pyarrow.fs", "pyarrow.parquet", "ssl"] if name in ("impulse", "literal") else []
    assert _imported(code, TRIVIAL + no_files) == []


def test_windowed_jobs_import_only_what_they_use(tmp_path):
    """INTERVAL literals are read without Polars at planning; a tumbling count and q7's
    window max join run on Arrow and NumPy alone (the column it reads late, ``x``, from the
    pages holding the kept rows: no DuckDB)."""
    pq.write_table(pa.table({
        "a": list(range(10)), "x": [f"x{i}" for i in range(10)],
        "t": pa.array([i * 1_000_000 for i in range(10)], pa.timestamp("us", tz="UTC"))}),
        tmp_path / "ten.parquet")
    window = "TABLE(TUMBLE(TABLE src, DESCRIPTOR(t), INTERVAL '2' SECOND))"
    job = tmp_path / "job.sql"
    job.write_text(
        f"CREATE TABLE src WITH (connector = 'filesystem', path = '{tmp_path / 'ten.parquet'}', "
        "event_time_field = 't');\n"
        "CREATE TABLE out WITH (connector = 'blackhole');\n"
        f"INSERT INTO out SELECT window_end, count(*) FROM {window} "
        "GROUP BY window_start, window_end;\n"
        "CREATE TABLE out2 WITH (connector = 'blackhole');\n"
        f"INSERT INTO out2 SELECT S.a, S.x FROM src S JOIN (SELECT max(a) AS m, window_end AS e "
        f"FROM {window} GROUP BY window_start, window_end) W ON S.a = W.m "
        "WHERE S.t BETWEEN W.e - INTERVAL '2' SECOND AND W.e;\n")
    code = f"import caudal.cli\nassert caudal.cli.main(['run', {str(job)!r}]) == 0"
    assert _imported(code) == []


def test_updating_aggregate_to_debezium_json_imports_no_polars(tmp_path):
    """An updating count/max per integer key keeps its state in NumPy and writes its
    changelog of integers as JSON with Arrow's kernels: no Polars (~0.2 s) in the job."""
    pq.write_table(pa.table({"a": [1, 2, 1, 3], "p": [5, 6, 7, 8]}), tmp_path / "in.parquet")
    job = tmp_path / "job.sql"
    job.write_text(
        f"CREATE TABLE src WITH (connector = 'filesystem', path = '{tmp_path / 'in.parquet'}');\n"
        f"CREATE TABLE out WITH (connector = 'filesystem', path = '{tmp_path / 'out'}', "
        "format = 'debezium_json');\n"
        "INSERT INTO out SELECT a, count(*) AS n, max(p) AS top FROM src GROUP BY a;\n")
    code = f"import caudal.cli\nassert caudal.cli.main(['run', {str(job)!r}]) == 0"
    assert _imported(code) == []
    lines = sorted((tmp_path / "out").glob("*.json"))[0].read_text().splitlines()
    assert sorted(lines) == sorted(
        f'{{"before":null,"after":{{"a":{a},"n":{n},"top":{top}}},"op":"c"}}'
        for a, n, top in [(1, 2, 7), (2, 1, 6), (3, 1, 8)])


def test_a_ray_worker_imports_no_sql_front_end():
    """A Ray worker builds subtasks from a planned graph: sqlglot (the parser) stays out of
    the modules it imports to start (the graph itself is plain data)."""
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    code = ("import sys, caudal.runtime.ray.actor, caudal.operators.registry, "
            "caudal.plan.compile, caudal.runtime.subtask; print('sqlglot' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env=env, cwd=ROOT, timeout=120, check=True)
    assert out.stdout.strip().splitlines()[-1] == "False"


def test_running_a_compiled_plan_imports_no_sql_front_end(tmp_path):
    """`caudal run job.plan` (caudal.plan_file) starts without sqlglot, the SQL planner or the
    optimizer: what it costs over `import pyarrow` is caudal's runtime and the job itself."""
    pq.write_table(pa.table({"a": list(range(10)), "b": [str(i) for i in range(10)]}),
                   tmp_path / "ten.parquet")
    job = tmp_path / "job.sql"
    job.write_text(
        f"CREATE TABLE src WITH (connector = 'filesystem', path = '{tmp_path / 'ten.parquet'}');\n"
        "SELECT a, upper(b) AS b, a * 10 AS t FROM src WHERE a > 2;\n")
    plan = tmp_path / "job.plan"
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    subprocess.run([sys.executable, "-m", "caudal.cli", "compile", str(job), "-o", str(plan)],
                   env=env, cwd=ROOT, timeout=120, check=True, capture_output=True)
    code = (f"import caudal.cli, contextlib, io\nwith contextlib.redirect_stdout(io.StringIO()) "
            f"as out:\n    assert caudal.cli.main(['run', {str(plan)!r}]) == 0\n"
            f"assert out.getvalue().count('\\n') == 8, out.getvalue()")
    front_end = ["sqlglot", "caudal.sql.planner", "caudal.plan.optimizer", "caudal.job",
                 "caudal.plan.physical_planner"]
    # the function families it does not call (upper() and operators only): a lookup imports
    # one family (~35 M instructions for all of them)
    assert _imported(code, TRIVIAL + front_end + UNCALLED_FAMILIES) == []


#: function families neither trivial job below calls, nor the SQL front end needs
UNCALLED_FAMILIES = [f"caudal.plan.functions.{family}"
                     for family in ("conditional", "json", "math")]


@pytest.mark.parametrize("compiled", [False, True])
def test_literal_job_loads_no_uncalled_function_family(tmp_path, compiled):
    """`SELECT 1, 'hello'` into a blackhole, from the .sql and from a compiled plan: neither
    imports the function families it does not call (nor the catalog that lists them all),
    and the plan also not the date/time family; without checkpoints, no checkpoint manifest nor coordinator messages."""
    job = tmp_path / "job.sql"
    job.write_text("CREATE TABLE out WITH (connector = 'blackhole');\n"
                   "INSERT INTO out SELECT 1 AS a, 'hello' AS b;\n")
    if compiled:
        env = dict(os.environ, PYTHONPATH=str(ROOT))
        subprocess.run([sys.executable, "-m", "caudal.cli", "compile", str(job), "-o",
                        str(tmp_path / "job.plan")], env=env, cwd=ROOT, timeout=120,
                       check=True, capture_output=True)
        job = tmp_path / "job.plan"
    code = f"import caudal.cli\nassert caudal.cli.main(['run', {str(job)!r}]) == 0"
    unused = [*UNCALLED_FAMILIES, "caudal.plan.functions.catalog", "caudal.checkpoint.manifest",
              "caudal.checkpoint.messages"]
    if compiled:
        unused += ["caudal.plan.functions.time", "caudal.plan.functions.strings"]
    assert _imported(code, TRIVIAL + unused) == []


def test_a_sql_job_run_again_starts_from_the_plan_cache(tmp_path):
    """The second `caudal run job.sql` of a literal SELECT printed to stdout (caudal.plan_cache)
    imports no SQL front end; printing the rows converts no Python string by pyarrow's type
    inference (which imports dateutil), the argument parser's help formatters do not
    import shutil (with zlib, bz2, lzma), and only run's subparser is built (the bench
    harness's parser, in its own module, is not)."""
    job = tmp_path / "job.sql"
    job.write_text("SELECT 1 AS a, 'hello' AS b;\n")
    code = (f"import caudal.cli, contextlib, io\nwith contextlib.redirect_stdout(io.StringIO()) "
            f"as out:\n    assert caudal.cli.main(['run', {str(job)!r}]) == 0\n"
            f"assert 'hello' in out.getvalue(), out.getvalue()")
    front_end = ["sqlglot", "caudal.sql.planner", "caudal.job", "caudal.plan.optimizer"]
    lean = ["dateutil", "shutil", "caudal.formats.json", "caudal.bench.command"]
    assert "sqlglot" in _imported(code, ["sqlglot"])  # the first run plans
    assert _imported(code, TRIVIAL + front_end + lean) == []


def test_planning_imports_no_importlib_metadata(tmp_path):
    """sqlglot imports importlib.metadata (~17 ms with the email and zipfile modules) for
    dialect plug-ins, which caudal never looks up: the CLI imports sqlglot with a stand-in
    (caudal.sql.sqlglot_import), so a planned job loads none of it, and a plug-in lookup
    still works."""
    job = tmp_path / "job.sql"
    job.write_text("SELECT 1 AS a, 'hello' AS b;\n")
    code = (f"import caudal.cli, contextlib, io\nwith contextlib.redirect_stdout(io.StringIO()) "
            f"as out:\n    assert caudal.cli.main(['run', '--no-plan-cache', {str(job)!r}]) == 0")
    assert _imported(code, ["sqlglot", "importlib.metadata", "email"]) == ["sqlglot"]
    lookup = ("from caudal.sql.sqlglot_import import import_sqlglot\nimport_sqlglot()\n"
              "import sys\nassert 'importlib.metadata' not in sys.modules\n"
              "from sqlglot.dialects.dialect import Dialect\n"
              "try:\n    Dialect.get_or_raise('no_such_dialect')\nexcept ValueError as e:\n"
              "    assert 'no_such_dialect' in str(e)\n"
              "import importlib.metadata\nassert hasattr(importlib.metadata, 'version')")
    assert _imported(lookup, ["importlib.metadata"]) == ["importlib.metadata"]


#: the loader thread of caudal.native_preload runs only with two processors or more
MANY_CPUS = (len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
             else os.cpu_count() or 1) > 1


@pytest.mark.skipif(not MANY_CPUS, reason="one processor: no loader thread")
def test_a_planned_run_loads_native_libraries_on_a_thread(tmp_path):
    """A .sql that will be planned (not in the plan cache) has NumPy's and Arrow's libraries
    loaded by a thread while the main thread imports sqlglot (caudal.native_preload); the
    thread is joined and the BLAS thread count it set is gone before the job runs. A cache
    hit starts no thread (nothing to overlap: it needs pyarrow at once)."""
    job = tmp_path / "job.sql"
    job.write_text("SELECT 1 AS a, 'hello' AS b;\n")
    spy = ("import caudal.native_preload as n, caudal.cli, contextlib, io, threading\n"
           "started = []\n"
           "load = n.NativePreload.load_libraries\n"
           "n.NativePreload.load_libraries = lambda self: started.append(load(self)) or "
           "started[-1]\n"
           "seen = []\n"
           "finish = n.NativePreload.finish\n"
           "def at_finish(self):\n"
           "    seen.append((self.thread is not None, os.environ.get('OPENBLAS_NUM_THREADS')))\n"
           "    finish(self)\n"
           "n.NativePreload.finish = at_finish\n"
           "with contextlib.redirect_stdout(io.StringIO()) as out:\n"
           "    assert caudal.cli.main(['run', {args}]) == 0\n"
           "assert 'hello' in out.getvalue(), out.getvalue()\n"
           "assert started == {started}, started\n"
           "assert seen == [({started} == [True], '1')], seen\n"
           "assert 'OPENBLAS_NUM_THREADS' not in os.environ\n"
           "assert not [t for t in threading.enumerate() if t.name == 'caudal-native-preload']\n")
    cache = f"('CAUDAL_PLAN_CACHE', {str(tmp_path / 'cache')!r})"
    for args, started, preload in (
            (f"'--no-plan-cache', {str(job)!r}", [False], "1"),  # the thread is opt-in
            (f"'--no-plan-cache', {str(job)!r}", [True], "thread"),
            (f"{str(job)!r}", [True], "thread"),  # the first run plans and stores
            (f"{str(job)!r}", [], "thread")):     # the second finds it
        code = (f"os.environ.update([{cache}, ('CAUDAL_NATIVE_PRELOAD', {preload!r})])\n"
                + spy.format(args=args, started=started))
        assert _imported(code, []) == []


def _clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("OPENBLAS_NUM_THREADS", "GOTO_NUM_THREADS", "OMP_NUM_THREADS",
                        "CAUDAL_NATIVE_PRELOAD")}
    return dict(env, PYTHONPATH=str(ROOT), **extra)


@pytest.mark.skipif(not Path("/proc/self/task").is_dir() or not MANY_CPUS,
                    reason="counts threads in /proc; OpenBLAS starts one per core")
def test_numpy_loads_without_openblas_threads_unless_the_user_sets_them():
    """OpenBLAS's threads (one per core, spinning tens of ms for work caudal never gives
    them) are not started for `caudal run`; a thread count the user set is left alone, and
    the variable set for NumPy's load is removed once it has loaded."""
    code = ("import os\nfrom caudal.native_preload import NativePreload\n"
            "before = os.environ.get('OPENBLAS_NUM_THREADS')\n"
            "n = NativePreload()\nimport numpy\nn.finish()\n"
            "assert os.environ.get('OPENBLAS_NUM_THREADS') == before\n"
            "print(len(os.listdir('/proc/self/task')))")
    runs = {}
    for name, env in (("ours", _clean_env()), ("user", _clean_env(OPENBLAS_NUM_THREADS="2")),
                      ("off", _clean_env(CAUDAL_NATIVE_PRELOAD="0"))):
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                             env=env, cwd=ROOT, timeout=120)
        assert out.returncode == 0, out.stderr[-3000:]
        runs[name] = int(out.stdout.split()[-1])
    assert runs["ours"] == 1 and runs["user"] == 2 and runs["off"] > 1, runs


@pytest.mark.skipif(not MANY_CPUS, reason="one processor: no loader thread")
def test_native_preload_races_the_imports_without_deadlock():
    """The loader thread and the main thread's imports of the same files at once (main
    importing pyarrow first, or sqlglot first as the CLI does): the dynamic loader's lock
    orders them, the loader thread holds no GIL while it waits, and every process ends with
    working modules. Several fresh processes at a time, each within the timeout."""
    code = ("from caudal.native_preload import NativePreload\n"
            "n = NativePreload()\nassert n.load_libraries()\n"
            "{first}\nimport pyarrow as pa\nimport sqlglot\nn.finish()\n"
            "assert pa.array([1, 2, 3]).to_pylist() == [1, 2, 3]\n"
            "assert sqlglot.parse_one('SELECT 1').sql() == 'SELECT 1'\nprint('ok')")
    procs = [subprocess.Popen([sys.executable, "-c", code.format(first=first)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              env=_clean_env(CAUDAL_NATIVE_PRELOAD="thread"), cwd=ROOT)
             for first in ("import sqlglot", "import numpy", "pass") * 2]
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0 and out.strip() == "ok", err[-3000:]


def test_native_preload_off_or_without_the_packages_does_nothing(monkeypatch):
    """CAUDAL_NATIVE_PRELOAD=0, or an extension file it cannot find: no thread, no
    variable; the imports load the libraries as before."""
    import caudal.native_preload as native

    for name in ("OPENBLAS_NUM_THREADS", "GOTO_NUM_THREADS", "OMP_NUM_THREADS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("CAUDAL_NATIVE_PRELOAD", "0")
    off = native.NativePreload()  # (numpy is imported in this process: off anyway)
    assert not off.load_libraries() and "OPENBLAS_NUM_THREADS" not in os.environ
    assert native._extension("no_such_package_here", ("lib",)) is None
    assert native._extension("pyarrow", ("no_such_module",)) is None
    assert native._extension("pyarrow", ("lib",)).endswith(b".so")


#: what planning a job without joins, aggregates, top-N or IGNORE NULLS does not need: the
#: passes over those nodes are skipped when their classes were never imported, the aggregate
#: kernels are imported when lowering first asks them, VALUES' one row and its content hash
#: are made without dateutil and OpenSSL (hashlib)
PLANNING_UNUSED = ["caudal.plan.join_nodes", "caudal.plan.window_max_join",
                   "caudal.plan.late_columns", "caudal.plan.rank_limits",
                   "caudal.sql.aggregates", "caudal.operators.local_window_partials",
                   "hashlib", "dateutil"]


@pytest.mark.parametrize("sink", ["stdout", "blackhole"])
def test_planning_a_literal_job_loads_no_pass_it_does_not_need(tmp_path, sink):
    job = tmp_path / "job.sql"
    create = "CREATE TABLE out WITH (connector = 'blackhole');\nINSERT INTO out " \
        if sink == "blackhole" else ""
    job.write_text(f"{create}SELECT 1 AS a, 'hello' AS b, upper('x') AS c;\n")
    code = (f"import caudal.cli, contextlib, io\nwith contextlib.redirect_stdout(io.StringIO()) "
            f"as out:\n    assert caudal.cli.main(['run', '--no-plan-cache', {str(job)!r}]) == 0\n"
            f"assert ('hello' in out.getvalue()) == ({sink!r} == 'stdout'), out.getvalue()")
    assert _imported(code, TRIVIAL + PLANNING_UNUSED) == []


def test_planning_passes_still_run_where_their_nodes_are(tmp_path):
    """The same job with a join, a GROUP BY, a top-N and IGNORE NULLS loads them again."""
    pq.write_table(pa.table({"a": [1, 2, 2], "b": ["x", None, "y"]}), tmp_path / "t.parquet")
    job = tmp_path / "job.sql"
    job.write_text(
        f"CREATE TABLE t WITH (connector = 'filesystem', path = '{tmp_path / 't.parquet'}');\n"
        "CREATE TABLE out WITH (connector = 'blackhole');\n"
        "INSERT INTO out SELECT x.a, array_agg(y.b IGNORE NULLS) AS bs FROM t x "
        "JOIN t y ON x.a = y.a GROUP BY x.a;\n"
        "CREATE TABLE out2 WITH (connector = 'blackhole');\n"
        "INSERT INTO out2 SELECT a, b FROM (SELECT a, b, ROW_NUMBER() OVER (PARTITION BY a "
        "ORDER BY b) AS rn FROM t) WHERE rn <= 1;\n")
    code = f"import caudal.cli\nassert caudal.cli.main(['run', '--no-plan-cache', {str(job)!r}]) == 0"
    used = ["caudal.plan.join_nodes", "caudal.plan.window_max_join", "caudal.plan.late_columns",
            "caudal.plan.rank_limits", "caudal.sql.aggregates"]
    assert _imported(code, used) == sorted(used)


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="Linux processor affinity")
def test_native_preload_starts_no_thread_on_one_processor():
    """Under `taskset -c 0` the loader thread would overlap nothing: it is not started (the
    BLAS setting still applies)."""
    code = ("import os\nos.sched_setaffinity(0, {min(os.sched_getaffinity(0))})\n"
            "from caudal.native_preload import NativePreload\n"
            "n = NativePreload()\nassert not n.load_libraries()\n"
            "assert os.environ['OPENBLAS_NUM_THREADS'] == '1'\nn.finish()\nprint('ok')")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env=_clean_env(CAUDAL_NATIVE_PRELOAD="thread"), cwd=ROOT, timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr[-3000:]
