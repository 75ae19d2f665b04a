"""``caudal bench nexmark``: run Nexmark queries, measure them, compare with DuckDB.

    caudal bench nexmark --query q1 --events 10M --parallelism 2 --compare duckdb
    caudal bench nexmark --query q1 --rate 100k            # latency at a fixed input rate
    caudal bench nexmark --query all --events 1M --json results.jsonl

A query caudal cannot plan yet is reported as "not yet supported by caudal (needs …)" with the
planner's reason, and the run goes on with the next query.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from caudal.durations import parse_duration_s
from caudal.errors import CaudalError, ConfigError

if TYPE_CHECKING:  # imported where used: `caudal run` builds this parser, and must not
    # load the planner-heavy harness modules for it (start-up time)
    from caudal.bench.jobs import RunSettings
    from caudal.bench.queries import Query
    from caudal.bench.report import QueryReport

#: seconds of input a latency run lasts when --events is not given
DEFAULT_LATENCY_SECONDS = 10.0


def count(text: str) -> int:
    """10M, 500k, 2G, 1_000_000 -> an int (argparse type)."""
    raw = text.strip().lower().replace("_", "").replace(",", "")
    scale = {"k": 1_000, "m": 1_000_000, "g": 1_000_000_000}.get(raw[-1:], 1)
    try:
        value = float(raw[:-1] if scale > 1 else raw) * scale
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a count (e.g. 10M, 500k)") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be positive")
    return int(value)


def add_parser(sub, summary: str) -> None:
    """Add ``bench`` (with its ``nexmark`` subcommand) to the caudal command's subparsers,
    with the one-line help ``summary`` (caudal.cli lists it without importing this module)."""
    bench = sub.add_parser("bench", help=summary,
                           description="Benchmarks of caudal, with a batch engine's time on "
                                       "the same data in the same run.")
    bench.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                       help="show tracebacks on errors")
    kinds = bench.add_subparsers(dest="suite", metavar="SUITE")
    nx = kinds.add_parser(
        "nexmark", help="the Nexmark queries over the built-in generator",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Run Nexmark queries (bench/nexmark/*.sql) over caudal's nexmark "
                    "generator and report events/s, events/s per core, peak RSS and, with "
                    "--rate, end-to-end latency percentiles.",
        epilog=__doc__.split("\n\n")[1])
    nx.add_argument("--query", "-q", action="append", metavar="QN",
                    help="query to run (q0 … q22, count1s, or all); repeat or separate with "
                         "commas (default: all)")
    nx.add_argument("--events", type=count, metavar="N",
                    help="events of the sequence, all kinds (default 10M; with --rate, "
                         f"{DEFAULT_LATENCY_SECONDS:g} s worth)")
    nx.add_argument("--parallelism", "-p", type=int, default=1, metavar="P",
                    help="subtasks per operator, and DuckDB threads (default 1)")
    nx.add_argument("--rate", type=count, metavar="R",
                    help="latency run: generate R events per second of wall-clock time and "
                         "report p50/p99/p999 from generation to the sink")
    nx.add_argument("--event-rate", type=count, default=100_000, metavar="R",
                    help="events per second of event time, when --rate is not given "
                         "(default 100k: 10M events span 100 s of event time)")
    nx.add_argument("--compare", choices=["duckdb"],
                    help="also time DuckDB's batch answer over the same events")
    nx.add_argument("--seed", type=int, default=0)
    nx.add_argument("--batch-rows", type=int, default=65536, metavar="N",
                    help="target rows per source batch (default 65536)")
    nx.add_argument("--linger", default=None, metavar="DURATION",
                    help="longest wait to fill a batch (default 5ms; 1ms with --rate)")
    nx.add_argument("--queries", type=Path, metavar="DIR",
                    help="directory of query files (default: bench/nexmark of the checkout)")
    nx.add_argument("--json", type=Path, metavar="FILE",
                    help="append one JSON line per query to FILE")
    nx.add_argument("--no-warmup", action="store_true",
                    help="do not run a small warm-up of each query first")
    nx.add_argument("--repeat", type=int, default=1, metavar="N",
                    help="time each engine N times and keep the fastest (default 1; a "
                         "shared machine makes single runs noisy)")
    nx.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                    help="show tracebacks on errors")


def settings_of(args) -> RunSettings:
    from caudal.bench.jobs import RunSettings

    if args.parallelism < 1:
        raise ConfigError("--parallelism must be at least 1")
    if args.rate is not None:
        events = args.events or int(args.rate * DEFAULT_LATENCY_SECONDS)
        return RunSettings(events=events, event_rate=args.rate, seed=args.seed,
                           parallelism=args.parallelism, pace=True)
    return RunSettings(events=args.events or 10_000_000, event_rate=args.event_rate,
                       seed=args.seed, parallelism=args.parallelism)


def bench_query(query: Query, settings: RunSettings, compare: str | None = None,
                batch_rows: int = 65536, linger_s: float = 0.005,
                warmup: bool = True, info: dict | None = None,
                repeat: int = 1) -> QueryReport:
    """Run one query (and its DuckDB version) and gather the figures."""
    from caudal.bench.jobs import NotSupported, compile_query, is_updating, plan_summary
    from caudal.bench.report import QueryReport
    from caudal.bench.runner import run_caudal

    report = QueryReport(query=query.name, title=query.title, kind=query.kind,
                         events=settings.events, parallelism=settings.parallelism,
                         status="ok", machine=info or {})
    try:
        compiled = compile_query(query, settings)
    except NotSupported as e:
        report.status, report.reason = "unsupported", str(e)
        return report
    report.plan, report.updating = plan_summary(compiled), is_updating(compiled)
    try:
        run = run_caudal(query, settings, batch_rows, linger_s, warmup,
                         1 if settings.pace else repeat)
    except ImportError as e:  # planned, but its operator is still being written
        needs = f" (needs {query.needs})" if query.needs else ""
        report.status = "unsupported"
        report.reason = f"not yet supported by caudal{needs}: {type(e).__name__}: {e}"
        return report
    except Exception as e:  # noqa: BLE001 - reported, the suite goes on
        report.status = "failed"
        report.reason = f"caudal failed: {type(e).__name__}: {e}"
        return report
    report.seconds = run.seconds
    report.cpu_seconds = run.cpu_seconds
    report.events_per_s = settings.events / run.seconds
    report.events_per_cpu_s = settings.events / run.cpu_seconds if run.cpu_seconds else None
    report.rows_in, report.rows_out, report.net_rows = run.rows_in, run.rows_out, run.net_rows
    report.peak_rss_mb = run.peak_rss / 1e6
    if settings.pace:
        report.rate = settings.event_rate
        report.achieved_rate = settings.events / (run.paced_seconds or run.seconds)
        report.latency_ms = run.latency
    if compare == "duckdb":
        if query.duckdb_sql is None:
            report.duckdb_note = f"no batch answer: {query.batch_reason}"
        else:
            _compare_duckdb(query, settings, report, batch_rows, linger_s, warmup, repeat)
    return report


def _compare_duckdb(query: Query, settings: RunSettings, report: QueryReport,
                    batch_rows: int, linger_s: float, warmup: bool, repeat: int = 1) -> None:
    """caudal over events generated beforehand (unless pacing), then DuckDB on the same."""
    import dataclasses
    import os

    from caudal.bench import events
    from caudal.bench.duckdb_baseline import run_duckdb
    from caudal.bench.jobs import compile_query, source_columns
    from caudal.bench.runner import run_caudal

    try:
        columns = source_columns(compile_query(query, settings))
        if not settings.pace:
            memory = dataclasses.replace(settings, source="memory")
            report.memory_load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
            run = run_caudal(query, memory, batch_rows, linger_s, warmup, repeat)
            report.memory_seconds, report.memory_cpu_seconds = run.seconds, run.cpu_seconds
        batch = run_duckdb(query, settings, columns, repeat=repeat)
    except Exception as e:  # noqa: BLE001 - reported with the figures
        report.duckdb_note = f"comparison failed: {type(e).__name__}: {e}"
        return
    finally:
        events.clear()
    report.duckdb_seconds = batch.seconds
    report.duckdb_rows = batch.rows
    report.duckdb_peak_rss_mb = batch.peak_rss / 1e6
    if batch.seconds and report.seconds is not None and not settings.pace:
        report.generator_ratio = report.seconds / batch.seconds
        if report.memory_seconds is not None:
            report.ratio = report.memory_seconds / batch.seconds
    if report.net_rows is not None:
        report.rows_match = batch.rows == report.net_rows


def cmd_bench(args) -> int:
    if getattr(args, "suite", None) != "nexmark":
        print("usage: caudal bench nexmark [--query QN] [--events N] [--parallelism P] "
              "[--rate R] [--compare duckdb]", file=sys.stderr)
        return 2
    from caudal.bench.queries import load_queries, select
    from caudal.bench.report import console_lines, machine

    queries = load_queries(args.queries)
    names = [n.strip() for item in (args.query or ["all"]) for n in item.split(",") if n.strip()]
    chosen = select(queries, names)
    settings = settings_of(args)
    linger = args.linger or ("1ms" if args.rate is not None else "5ms")
    linger_s = parse_duration_s(linger, "--linger")
    info = machine()
    print(f"caudal bench nexmark: {len(chosen)} quer{'y' if len(chosen) == 1 else 'ies'}, "
          f"{settings.events:,} events, parallelism {settings.parallelism}, "
          + (f"paced at {settings.event_rate:,.0f} events/s" if settings.pace else
             f"event time {settings.event_rate:,.0f} events/s, unpaced")
          + f"; {info['cpu']}, {info['cores']} cores, load {info['load_avg_1m']}", flush=True)
    failed = 0
    for query in chosen:
        try:
            report = bench_query(query, settings, args.compare, args.batch_rows, linger_s,
                                 not args.no_warmup, info, args.repeat)
        except CaudalError:
            raise
        except Exception:  # noqa: BLE001 - a bug: show it, go on with the next query
            import traceback

            traceback.print_exc()
            failed += 1
            continue
        failed += report.status == "failed" or report.rows_match is False
        print("\n".join(console_lines(report)), flush=True)
        if args.json is not None:
            with args.json.open("a") as f:
                f.write(report.to_json() + "\n")
    return 1 if failed else 0
