"""The ``caudal`` command: run, explain and inspect streaming SQL jobs."""

from __future__ import annotations

import argparse
import gc
import os
import signal
import sys
import threading
import time
from pathlib import Path

from caudal import __version__
from caudal.checkpoint import DEFAULT_INTERVAL
from caudal.errors import CaudalError
from caudal.terminal import draw_status, erase_status

EPILOG = """examples:
  caudal run job.sql                     run until every source is exhausted (or Ctrl-C)
  caudal run job.sql --parallelism 4     four subtasks per operator
  caudal explain job.sql                 print the logical plan and the dataflow graph
  caudal compile job.sql -o job.plan     plan once; `caudal run job.plan` starts without
                                         the SQL planner (docs/operations.md)
  caudal run job.sql --checkpoint-dir ck  checkpoint every 10s; run again to resume
  caudal checkpoints ck                  list the checkpoints of a directory
  caudal bench nexmark -q q1 --compare duckdb   Nexmark q1, and DuckDB on the same events

durations are written 500ms, 10s, 1m, 2h.
"""


def _columns() -> int:
    """What argparse's help formatter takes for its width (shutil.get_terminal_size less 2)."""
    try:
        columns = int(os.environ.get("COLUMNS", "0"))
    except ValueError:
        columns = 0
    if columns <= 0:
        try:
            columns = os.get_terminal_size(sys.__stdout__.fileno()).columns
        except (AttributeError, ValueError, OSError):
            columns = 0
    return (columns or 80) - 2


class _Parser(argparse.ArgumentParser):
    """argparse builds a help formatter for every ``add_argument`` (to check its metavar),
    and the formatter imports shutil for the terminal's width, with zlib, bz2 and lzma: ~9 M
    instructions of every start-up. These formatters get the width without it."""

    def _get_formatter(self) -> argparse.HelpFormatter:
        return self.formatter_class(prog=self.prog, width=_columns())


#: the subcommands, in the order ``caudal --help`` lists them, with their one-line help
_COMMAND_HELP = {
    "run": "run a SQL file",
    "serve": "run the job server: REST API, web console, Prometheus metrics",
    "checkpoints": "list the checkpoints of a checkpoint directory",
    "compile": "plan a SQL file once, into a plan file that caudal run runs",
    "explain": "print the plans of a SQL file",
    "functions": "list the scalar functions SQL can call",
    "bench": "run benchmarks (Nexmark)",
}


def _parser(command: str | None = None) -> argparse.ArgumentParser:
    """The caudal command's parser. Given ``command`` (the subcommand the arguments name:
    _command_of), only that subcommand gets its arguments and the others their name and
    one-line help, which is all ``caudal --help`` shows of them: each ``add_argument`` costs
    a help formatter, and ``bench`` imports its module (~1-3 ms of every start-up)."""
    p = _Parser(
        prog="caudal", epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
        description="caudal: stateful stream processing with SQL over Apache Arrow.")
    p.add_argument("--version", action="version", version=f"caudal {__version__}")
    p.add_argument("--debug", action="store_true",
                   help="show tracebacks on errors (or CAUDAL_DEBUG=1)")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for name, summary in _COMMAND_HELP.items():
        if command is None or command == name:
            _ADD_COMMAND[name](sub, summary)
        else:
            sub.add_parser(name, help=summary)
    return p


def _add_run(sub, summary: str) -> None:
    run = sub.add_parser("run", help=summary,
                         description="Run the statements of FILE as one streaming job (or the "
                                     "plan in FILE, written by caudal compile). Exits 0 when "
                                     "every source is exhausted; Ctrl-C stops it.")
    run.add_argument("file", help="a .sql file (CREATE TABLE/VIEW, INSERT INTO, SELECT), or a "
                                  "plan written by caudal compile")
    run.add_argument("--parallelism", "-p", type=int, metavar="N",
                     help="subtasks per operator (default 1; a plan's own)")
    run.add_argument("--checkpoint-dir", metavar="DIR",
                     help="where checkpoints are written (and resumed from)")
    run.add_argument("--checkpoint-interval", metavar="DURATION",
                     help=f"time between checkpoints (default {DEFAULT_INTERVAL}; with "
                          "--checkpoint-dir)")
    run.add_argument("--fresh", action="store_true",
                     help="start over: delete the checkpoints in --checkpoint-dir")
    run.add_argument("--from-epoch", type=int, metavar="N",
                     help="resume from complete checkpoint N instead of the newest (what the "
                          "sinks committed after N is written again)")
    run.add_argument("--max-restarts", type=int, default=3, metavar="N",
                     help="restarts from the last checkpoint after a failure (default 3)")
    run.add_argument("--batch-rows", type=int, default=65536, metavar="N",
                     help="target rows per batch read from a source (default 65536)")
    run.add_argument("--linger", default="5ms", metavar="DURATION",
                     help="longest wait to fill a batch before sending it (default 5ms)")
    run.add_argument("--udf", action="append", default=[], metavar="FILE.py",
                     help="a Python file defining UDFs (@caudal.udf / @caudal.udaf), callable "
                          "by name in the SQL; repeatable")
    run.add_argument("--no-plan-cache", action="store_true",
                     help="plan the .sql even when the plan cache holds its plan with every "
                          "input unchanged, and store nothing (or CAUDAL_PLAN_CACHE=0; "
                          "docs/operations.md)")
    run.add_argument("--metrics-port", type=int, metavar="P",
                     help="serve Prometheus metrics of this job on 127.0.0.1:P")
    run.add_argument("--metrics-file", metavar="FILE",
                     help="write a JSON snapshot of the job's metrics to FILE every second")
    run.add_argument("--tap-socket", metavar="PATH",
                     help="serve a live preview of any operator's output on this Unix socket "
                          "(the job server uses it; docs/operations.md)")
    _runtime_arguments(run)
    run.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                     help="show tracebacks on errors")


def _add_serve(sub, summary: str) -> None:
    serve = sub.add_parser(
        "serve", help=summary,
        description="Serve the REST API (/api/v1), the web console (/) and Prometheus "
                    "metrics (/metrics); pipelines run as supervised child processes and "
                    "resume after a restart of the server.")
    serve.add_argument("--host", default="127.0.0.1",
                       help="address to bind (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=5115, help="port (default 5115)")
    serve.add_argument("--state-dir", default=".caudal", metavar="DIR",
                       help="where pipelines, checkpoints and logs are kept (default .caudal)")
    serve.add_argument("--token", default=os.environ.get("CAUDAL_TOKEN"),
                       help="bearer token required by the API and console (or CAUDAL_TOKEN)")
    serve.add_argument("--insecure", action="store_true",
                       help="allow a non-loopback --host without a --token")
    serve.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                       help="show tracebacks on errors")


def _add_checkpoints(sub, summary: str) -> None:
    checkpoints = sub.add_parser(
        "checkpoints", help=summary,
        description="List the complete checkpoints in DIR (a --checkpoint-dir): epoch, time, "
                    "size and the state size of each operator.")
    checkpoints.add_argument("dir", metavar="DIR")
    checkpoints.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                             help="show tracebacks on errors")


def _add_compile(sub, summary: str) -> None:
    compile_ = sub.add_parser(
        "compile", help=summary,
        description="Plan the statements of FILE and write the physical dataflow to OUTPUT. "
                    "`caudal run OUTPUT` then starts without parsing or planning SQL (the "
                    "SQL front end is ~0.15-0.3 s of a run's start-up). Before it runs, a "
                    "plan is checked against its inputs (the columns of tables whose schema "
                    "was inferred, each table's options) and against the caudal running it "
                    "(another version or build refuses it): compile it again then. A plan "
                    "file is pickled Python: run only plans you trust.")
    compile_.add_argument("file", help="a .sql file")
    compile_.add_argument("--output", "-o", required=True, metavar="OUTPUT",
                          help="the plan file to write (e.g. job.plan)")
    compile_.add_argument("--parallelism", "-p", type=int, default=1, metavar="N",
                          help="subtasks per operator the plan is made for (default 1)")
    compile_.add_argument("--udf", action="append", default=[], metavar="FILE.py",
                          help=argparse.SUPPRESS)  # only to say that plans hold no UDFs
    compile_.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                          help="show tracebacks on errors")


def _add_explain(sub, summary: str) -> None:
    explain = sub.add_parser("explain", help=summary,
                             description="Print each statement's logical plan and the "
                                         "physical dataflow graph, without running.")
    explain.add_argument("file", help="a .sql file, or a plan written by caudal compile")
    explain.add_argument("--parallelism", "-p", type=int, metavar="N",
                         help="subtasks per operator (default 1; a plan's own)")
    explain.add_argument("--udf", action="append", default=[], metavar="FILE.py",
                         help="a Python file defining UDFs; repeatable")
    _runtime_arguments(explain)
    explain.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                         help="show tracebacks on errors")


def _add_functions(sub, summary: str) -> None:
    functions = sub.add_parser("functions", help=summary,
                               description="List every scalar function with its signature.")
    functions.add_argument("--markdown", action="store_true",
                           help="print the tables of the SQL reference (docs/sql.md): scalar "
                                "functions by family, then aggregates")


def _add_bench(sub, summary: str) -> None:
    from caudal.bench.command import add_parser

    add_parser(sub, summary)


_ADD_COMMAND = {"run": _add_run, "serve": _add_serve, "checkpoints": _add_checkpoints,
                "compile": _add_compile, "explain": _add_explain, "functions": _add_functions,
                "bench": _add_bench}


def _command_of(argv: list[str]) -> str | None:
    """The subcommand ``argv`` names (its first word not an option: the options before it,
    --debug and --version, take no value), or None when it names none known."""
    word = next((a for a in argv if not a.startswith("-")), None)
    return word if word in _COMMAND_HELP else None


def _read(path: str) -> str:
    try:
        return Path(path).read_text()
    except OSError as e:
        raise CaudalError(f"cannot read {path}: {e.strerror}") from None
    except UnicodeDecodeError:
        raise CaudalError(f"{path} is not a SQL file (not UTF-8 text)") from None


def _read_job(path: str):
    """The SQL text of ``path``, or the plan it holds when ``caudal compile`` wrote it."""
    from caudal.plan_file import is_plan, load_plan

    try:
        data = Path(path).read_bytes()
    except OSError as e:
        raise CaudalError(f"cannot read {path}: {e.strerror}") from None
    if is_plan(data):
        return load_plan(data, path)
    try:
        return data.decode()
    except UnicodeDecodeError:
        raise CaudalError(f"{path} is neither a SQL file (UTF-8 text) nor a caudal plan") \
            from None


def _human(n: float) -> str:
    for unit, size in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(n) >= size:
            return f"{n / size:.1f}{unit}"
    return f"{n:.0f}"


def _runtime_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--runtime", choices=("local", "ray"), default="local",
                        help="local: threads of this process (default); ray: actors of a Ray "
                             "cluster (docs/ray.md)")
    parser.add_argument("--address", metavar="ADDRESS",
                        help="with --runtime ray: the cluster (auto, HOST:PORT or ray://…); "
                             "without it (or RAY_ADDRESS) a local Ray is started for the "
                             "job")


def _make_runtime(args):
    from caudal.runtime import make_runtime

    return make_runtime(args.runtime, args.address, args.batch_rows, args.linger, cli=True)


def _format_watermark(us: int | None) -> str:
    from caudal.watermark import WATERMARK_MAX, WATERMARK_MIN

    if us is None or us <= WATERMARK_MIN:
        return "-"
    if us >= WATERMARK_MAX:
        return "end"
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(us / 1e6))


class StatusLine:
    """A live line on stderr (only on a TTY): events/s in and out, watermark, elapsed."""

    def __init__(self, runtime, stream=None):
        self.runtime = runtime
        # sys.stderr of this run, not of caudal.cli's import (an in-process caller's may change)
        self.stream = stream if stream is not None else sys.stderr
        self.stop = threading.Event()
        self.started = time.monotonic()
        self.thread = threading.Thread(target=self._loop, daemon=True)

    def __enter__(self):
        if self.stream.isatty():
            self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        if self.thread.is_alive():
            self.thread.join(1)
            erase_status(self.stream)

    def _loop(self) -> None:
        last_in = last_out = 0
        last_t = time.monotonic()
        while not self.stop.wait(0.5):
            stats = self.runtime.stats()
            runners = self.runtime.runners
            rows_in = sum(s.rows_in for s, r in zip(stats, runners) if r.source is not None)
            rows_out = sum(s.rows_out for s, r in zip(stats, runners) if r.vertex.sink is None
                           and not self.runtime.graph.outputs_of(r.vertex.id)) + sum(
                getattr(op, "rows", 0) for r in runners for op in r.operators)
            marks = [s.watermark for s in stats if s.watermark is not None]
            now = time.monotonic()
            dt = max(now - last_t, 1e-6)
            line = (f"in {_human(rows_in)} ({_human((rows_in - last_in) / dt)}/s)  "
                    f"out {_human(rows_out)} ({_human((rows_out - last_out) / dt)}/s)  "
                    f"watermark {_format_watermark(min(marks) if marks else None)}  "
                    f"elapsed {now - self.started:.1f}s")
            last_in, last_out, last_t = rows_in, rows_out, now
            draw_status(line, self.stream)


def _load_udfs(paths: list[str]):
    """Run each ``--udf`` file (its decorators register the UDFs); the context in which the
    job is planned with them callable by name."""
    from contextlib import nullcontext

    if not paths:
        return nullcontext()
    import runpy

    from caudal.plan.functions.python_udf import job_context

    for path in paths:
        if not Path(path).is_file():
            raise CaudalError(f"--udf {path}: no such file")
        try:
            runpy.run_path(path, run_name="caudal_udfs")
        except CaudalError:
            raise
        except Exception as e:
            raise CaudalError(f"--udf {path}: {type(e).__name__}: {e}") from None
    return job_context()


class _Terminated(KeyboardInterrupt):
    """SIGTERM to a job without --checkpoint-dir: it stops as Ctrl-C stops it, saying so
    (the default action ended the process without a word, exit 143)."""


def _terminated(signum, frame) -> None:
    raise _Terminated


def cmd_run(args) -> int:
    # Start-up allocates ~10^6 objects (modules, sqlglot's classes, the plan) and frees few:
    # the cyclic collector would walk them again and again (~5 % of a trivial job's
    # instructions, bench/README.md). It is off until the job is deployed, then what start-up
    # built is frozen (kept out of every later collection) and it is on again.
    gc.disable()
    from caudal.runtime.huge_pages import disable_huge_pages

    disable_huge_pages()  # before the libraries allocate (caudal.runtime.huge_pages says why)
    # SIGUSR1 asks a checkpointed job for a checkpoint now (runtime.supervisor); until the
    # job runs, and without checkpoints, it must not end the process (its default action)
    signal.signal(signal.SIGUSR1, signal.SIG_IGN)

    if args.parallelism is not None and args.parallelism < 1:
        raise CaudalError("--parallelism must be at least 1")
    if args.batch_rows < 1:  # 0 read nothing, for ever
        raise CaudalError("--batch-rows must be at least 1", hint="the default is 65536")
    if args.max_restarts < 0:
        raise CaudalError("--max-restarts must be 0 or more")
    if args.metrics_port is not None and not 0 <= args.metrics_port <= 65535:
        raise CaudalError(f"--metrics-port {args.metrics_port} is not a port",
                          hint="0-65535; 0 picks a free one")
    if args.metrics_file:
        from caudal.server.metrics import check_metrics_file

        check_metrics_file(args.metrics_file)
    if not args.checkpoint_dir:  # flags about checkpoints, given without any: a mistake
        for flag, given in (("--from-epoch", args.from_epoch is not None),
                            ("--fresh", args.fresh),
                            ("--checkpoint-interval", args.checkpoint_interval is not None)):
            if given:
                raise CaudalError(f"{flag} needs --checkpoint-dir",
                                  hint="the directory whose checkpoints it is about")
    native = None
    if args.runtime == "local":  # (before anything imports NumPy: caudal.native_preload)
        from caudal.native_preload import NativePreload

        native = NativePreload()
    try:
        job = _read_job(args.file)
        if not isinstance(job, str):  # a compiled plan (caudal.plan_file): no SQL front end
            _check_plan_arguments(job, args)
            args.parallelism = job.parallelism
        parallelism = args.parallelism = args.parallelism or 1
        slot = _cache_slot(job, args, parallelism) if isinstance(job, str) else None
        if native is not None and isinstance(job, str) and not _cached(slot):
            # it will be planned: NumPy's and Arrow's libraries load on a thread while this one
            # imports sqlglot (which needs neither)
            if native.load_libraries():
                from caudal.sql.sqlglot_import import import_sqlglot

                import_sqlglot()
        runtime = _make_runtime(args)
        if hasattr(runtime, "prestart") and args.address:
            # a cluster that runs already: the workers start while the job is planned (without
            # --address planning comes first, so a mistake in the SQL is said before Ray starts)
            runtime.prestart(parallelism)
        if isinstance(job, str):
            compiled = _plan_sql(job, args, parallelism, slot)
        else:
            from caudal.plan_file import check_inputs

            check_inputs(job, args.file)
            compiled = job
    finally:  # (NumPy is imported by now: the runtime's modules import it)
        if native is not None:
            native.finish()
    for notice in compiled.notices():
        print(f"caudal: {notice}", file=sys.stderr)
    taps = runtime.job.taps  # the same across restarts (each fresh runtime keeps it)
    if args.checkpoint_dir:
        from caudal.checkpoint.errors import JobFinished
        from caudal.runtime.supervisor import attach

        runtime = attach(runtime, compiled, args)
        try:
            runtime.deploy(compiled.graph)
        except JobFinished as e:
            print(f"caudal: {e}", file=sys.stderr)
            return e.exit_code
    else:
        runtime.deploy(compiled.graph)
    gc.freeze()
    gc.enable()
    from contextlib import ExitStack

    with ExitStack() as stack:
        if args.metrics_port is not None or args.metrics_file:
            from caudal.server.metrics import MetricsFile, serve_job_metrics

            if args.metrics_port is not None:
                server = serve_job_metrics(runtime, args.metrics_port, Path(args.file).stem)
                stack.callback(server.shutdown)
            if args.metrics_file:
                stack.enter_context(MetricsFile(runtime, args.metrics_file))
        if args.tap_socket:
            from caudal.server.tap_socket import TapServer

            try:
                tap_server = TapServer(taps, {v.id: f"[{v.id}] {v.name}"
                                              for v in compiled.graph.vertices}, args.tap_socket)
            except OSError as e:
                raise CaudalError(f"--tap-socket {args.tap_socket}: cannot listen there "
                                  f"({e.strerror or e})") from None
            stack.callback(tap_server.close)
        stack.enter_context(StatusLine(runtime))
        if not args.checkpoint_dir:  # (with one, the supervisor's savepoint handles SIGTERM)
            signal.signal(signal.SIGTERM, _terminated)
        try:
            result = runtime.run()
        except KeyboardInterrupt as stop:
            # (with --checkpoint-dir the supervisor takes a savepoint instead, and returns;
            # a second Ctrl-C while it does ends here)
            if args.checkpoint_dir:
                print("\ncaudal: stopped at once by a second Ctrl-C, before the savepoint "
                      "completed; the same command resumes from the newest complete "
                      f"checkpoint in {args.checkpoint_dir}", file=sys.stderr)
                return 130
            by = "SIGTERM" if isinstance(stop, _Terminated) else "Ctrl-C"
            print(f"\ncaudal: stopped by {by}; without --checkpoint-dir there is nothing "
                  "to resume from, and files a sink had not committed are left out (with "
                  f"one, {by} takes a savepoint and the same command resumes)",
                  file=sys.stderr)
            return 143 if by == "SIGTERM" else 130
    rate = result.rows_in / result.elapsed_s if result.elapsed_s > 0 else 0.0
    summary = (f"caudal: {result.rows_in:,} rows in, {result.rows_out:,} rows out in "
               f"{result.elapsed_s:.2f}s ({_human(rate)} rows/s)")
    if result.bad_rows_dropped:
        summary += f"; {result.bad_rows_dropped:,} bad rows dropped"
        if result.bad_row_examples:
            summary += f" (first: {result.bad_row_examples[0]})"
    if result.late_rows:
        summary += f"; {result.late_rows:,} late rows dropped"
    untimed = result.metrics.get("null_time_rows", 0)
    if untimed:   # in no window (a batch GROUP BY's NULL group), joined to no version
        summary += (f"; {untimed:,} rows with a NULL event time dropped (no window or "
                    f"temporal join can place them)")
    udf_dropped = result.metrics.get("udf_rows_dropped", 0)
    if udf_dropped:
        summary += f"; {udf_dropped:,} rows dropped by UDFs (on_error='drop')"
    corrupt = result.metrics.get("corrupt_retractions", 0)
    if corrupt:
        summary += (f"; {corrupt:,} retractions of rows never inserted ignored (the input "
                    "changelog is inconsistent)")
    print(summary, file=sys.stderr)
    return 0


def _cache_slot(text: str, args, parallelism: int) -> tuple[str, str] | None:
    """The plan cache's directory and entry name for the job of a .sql (caudal.plan_cache),
    or None when it is off or unusable here."""
    from caudal import plan_cache

    if not plan_cache.enabled(args.no_plan_cache, args.udf):
        return None
    folder = plan_cache.directory()
    if folder is None:
        return None
    try:
        return folder, plan_cache.key(text, parallelism)
    except Exception:  # noqa: BLE001 - e.g. the working directory was deleted: no cache
        return None


def _cached(slot: tuple[str, str] | None) -> bool:
    """Whether the cache holds an entry for ``slot`` (which may still be stale)."""
    from caudal import plan_cache

    return slot is not None and plan_cache.exists(*slot)


def _plan_sql(text: str, args, parallelism: int, slot: tuple[str, str] | None):
    """The job of a .sql: from the plan cache (caudal.plan_cache) when an entry's recorded
    inputs are all unchanged, else planned (and stored when the job can be cached)."""
    from caudal import plan_cache

    if slot is not None:
        cached = plan_cache.lookup(slot[0], slot[1], args.file)
        if cached is not None:
            return cached
    from caudal.sql.sqlglot_import import import_sqlglot

    import_sqlglot()   # (without what planning does not use)
    from caudal.job import compile_sql

    started = time.time_ns()
    with _load_udfs(args.udf):
        compiled = compile_sql(text, parallelism)
    if slot is not None:
        plan_cache.store(slot[0], slot[1], compiled, parallelism, args.file, started)
    return compiled


def _check_plan_arguments(plan, args) -> None:
    """Options that planning would have used cannot change a compiled plan: say so."""
    if args.parallelism is not None and args.parallelism != plan.parallelism:
        raise CaudalError(f"{args.file} was compiled for --parallelism {plan.parallelism}, "
                          f"not {args.parallelism} (compile it again with -p "
                          f"{args.parallelism})")
    if args.udf:
        raise CaudalError(f"--udf cannot be given with a compiled plan ({args.file}): plans "
                          "hold no Python functions; run the .sql file")


def cmd_compile(args) -> int:
    from caudal.job import compile_sql

    if args.parallelism < 1:
        raise CaudalError("--parallelism must be at least 1")
    text = _read(args.file)
    with _load_udfs(args.udf):  # planned with them, to refuse them by name (dump_plan)
        plan = compile_sql(text, args.parallelism).plan(args.parallelism, args.file)
    from caudal.plan_file import dump_plan

    data = dump_plan(plan)
    try:
        Path(args.output).write_bytes(data)
    except OSError as e:
        raise CaudalError(f"cannot write {args.output}: {e.strerror}") from None
    print(f"caudal: wrote {args.output} ({len(data):,} bytes; run it with caudal run "
          f"{args.output})", file=sys.stderr)
    return 0


def cmd_explain(args) -> int:
    from caudal.job import explain_sql

    if args.parallelism is not None and args.parallelism < 1:
        raise CaudalError("--parallelism must be at least 1")
    job = _read_job(args.file)
    if not isinstance(job, str):
        _check_plan_arguments(job, args)
        print(f"-- compiled from {job.compiled_from or '?'}, parallelism {job.parallelism}\n"
              f"Physical dataflow:\n{job.graph.explain()}")
        if args.runtime == "ray":
            _explain_placement(job.graph, args.address)
        return 0
    text, parallelism = job, args.parallelism or 1
    with _load_udfs(args.udf):
        print(explain_sql(text, parallelism))
        if args.runtime == "ray":
            from caudal.job import compile_sql

            _explain_placement(compile_sql(text, parallelism).graph, args.address)
    return 0


def _explain_placement(graph, address: str | None) -> None:
    """Print where Ray would place the subtasks of ``graph`` (a .sql's or a plan's)."""
    from caudal.runtime.ray.executor import RayRuntime

    print("\n" + RayRuntime(address=address).explain_plan(graph))


def cmd_checkpoints(args) -> int:
    from caudal.checkpoint.listing import list_checkpoints

    print(list_checkpoints(args.dir))
    return 0


def cmd_functions(args) -> int:
    from caudal.plan.functions.catalog import describe

    if args.markdown:
        from caudal.sql.reference import aggregates_markdown, functions_markdown

        print(functions_markdown() + "\n#### Aggregates\n\n" + aggregates_markdown(), end="")
        return 0

    rows = describe()
    width = max(len(name) for name, _ in rows)
    for name, signature in rows:
        print(f"{name:<{width}}  {signature}")
    return 0


def cmd_serve(args) -> int:
    from caudal.server.main import serve

    return serve(args)


def cmd_bench(args) -> int:
    from caudal.bench.command import cmd_bench as run_bench

    return run_bench(args)


COMMANDS = {"run": cmd_run, "compile": cmd_compile, "explain": cmd_explain, "checkpoints": cmd_checkpoints,
            "functions": cmd_functions, "bench": cmd_bench, "serve": cmd_serve}


#: prctl's option: a signal for this process when its parent dies
_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """A job server's child (CAUDAL_PARENT_PID) gets SIGTERM when the server dies, and stops
    at once if it already has."""
    parent = os.environ.pop("CAUDAL_PARENT_PID", None)
    if not parent:
        return
    import ctypes

    try:
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):
        return
    if os.getppid() != int(parent):
        os.kill(os.getpid(), signal.SIGTERM)


def main(argv: list[str] | None = None) -> int:
    _die_with_parent()
    parser = _parser(_command_of(sys.argv[1:] if argv is None else argv))
    args = parser.parse_args(argv)
    debug = args.debug or os.environ.get("CAUDAL_DEBUG", "").strip().lower() not in (
        "", "0", "false", "no", "off")
    if args.command is None:
        parser.print_help()
        return 2
    try:
        return COMMANDS[args.command](args)
    except CaudalError as e:
        if isinstance(e.__cause__, BrokenPipeError):  # a sink's print, in a subtask's thread
            return _stdout_closed()
        if debug:
            raise
        print("caudal: error: " + " ".join(str(e).split()), file=sys.stderr)  # one line
        return e.exit_code
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return _stdout_closed()
    except Exception as e:  # a bug in caudal: one line unless --debug
        if debug:
            raise
        first = (str(e).strip().splitlines() or [""])[0]  # library messages run on for lines
        print(f"caudal: internal error: {type(e).__name__}: {first} (run with --debug for the "
              f"traceback)", file=sys.stderr)
        return 1


def _stdout_closed() -> int:
    """Output piped into `head` and closed: not an error. Later writes (the flush at exit)
    go nowhere."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    return 0


def entry() -> None:
    """The console script. Ends the process with ``os._exit`` once output is flushed: with
    both polars and pyarrow loaded, interpreter teardown can abort in their thread pools
    (apache/arrow#34314), which would turn a finished job's exit code into 134."""
    code = main()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    entry()
