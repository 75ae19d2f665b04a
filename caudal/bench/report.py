"""Benchmark results as data (JSON lines), as console lines and as the README's table."""

from __future__ import annotations

import json
import os
import platform
import subprocess
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class QueryReport:
    """Everything one ``caudal bench nexmark --query qN`` measured, as plain data."""

    query: str
    title: str
    kind: str
    events: int
    parallelism: int
    #: "ok", "unsupported" (caudal cannot plan it yet) or "failed"
    status: str
    reason: str = ""
    #: how caudal planned it (jobs.plan_summary) and whether its result is a changelog
    plan: str = ""
    updating: bool = False
    seconds: float | None = None
    cpu_seconds: float | None = None
    events_per_s: float | None = None
    events_per_cpu_s: float | None = None
    rows_in: int | None = None
    rows_out: int | None = None
    #: result rows: rows_out, or inserts minus retractions when ``updating``
    net_rows: int | None = None
    peak_rss_mb: float | None = None
    #: latency runs: the input rate asked for and the one achieved, and percentiles in ms
    rate: float | None = None
    achieved_rate: float | None = None
    latency_ms: dict[str, float] = field(default_factory=dict)
    #: caudal's time over the same events generated beforehand (the replay source)
    memory_seconds: float | None = None
    #: its CPU seconds (all threads) and the 1-minute load average as it started: a wall
    #: time far above the CPU time on a shared machine is other work's, not caudal's
    memory_cpu_seconds: float | None = None
    memory_load: float | None = None
    duckdb_seconds: float | None = None
    duckdb_rows: int | None = None
    duckdb_peak_rss_mb: float | None = None
    #: why DuckDB has no figure ("batch: none (…)") when it has none
    duckdb_note: str = ""
    #: caudal seconds / DuckDB seconds, both over events in memory
    ratio: float | None = None
    #: caudal seconds generating its events as it runs / DuckDB seconds
    generator_ratio: float | None = None
    #: whether DuckDB's row count equals caudal's result rows (None: not compared)
    rows_match: bool | None = None
    machine: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, line: str) -> QueryReport:
        return cls(**json.loads(line))


def machine() -> dict[str, Any]:
    """What the figures were measured on: CPU model, cores, memory, OS, versions, load."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory_gb = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                memory_gb = round(int(line.split()[1]) / 1024 / 1024, 1)
    except OSError:
        pass
    import duckdb
    import pyarrow

    info: dict[str, Any] = {
        "cpu": cpu, "cores": os.cpu_count(), "memory_gb": memory_gb,
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(), "pyarrow": pyarrow.__version__,
        "duckdb": duckdb.__version__,
        "load_avg_1m": round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None,
    }
    try:
        info["commit"] = subprocess.run(["git", "rev-parse", "--short", "HEAD"],
                                        capture_output=True, text=True, timeout=5,
                                        cwd=Path(__file__).parent).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        info["commit"] = None
    return info


def human(n: float | None, unit: str = "") -> str:
    if n is None:
        return "-"
    for suffix, size in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(n) >= size:
            return f"{n / size:.1f} {suffix}{unit}"
    return f"{n:.0f} {unit}".rstrip()


def console_lines(r: QueryReport) -> list[str]:
    """What ``caudal bench nexmark`` prints for one query."""
    head = f"{r.query:<8} {r.title[:60]}"
    if r.status != "ok":
        return [head, f"         {r.reason}"]
    lines = [head, f"         plan: {r.plan}" + (" (updating: the result is a changelog)"
                                                    if r.updating else "")]
    lines.append(f"         caudal: {human(r.events)} events, parallelism {r.parallelism}: "
                 f"{r.seconds:.3f} s, {human(r.events_per_s, 'events/s')}, "
                 f"{human(r.events_per_cpu_s, 'events/s')} per core (per CPU-second; "
                 f"{(r.cpu_seconds or 0) / r.seconds:.2f} cores busy), "
                 f"peak RSS {r.peak_rss_mb:.0f} MB, {r.rows_in:,} rows in, "
                 f"{r.rows_out:,} rows out"
                 + (f" ({r.net_rows:,} result rows after retractions)" if r.updating else ""))
    if r.rate is not None:
        if r.latency_ms:
            lat = r.latency_ms
            lines.append(f"         latency at {human(r.rate, 'events/s')} (achieved "
                         f"{human(r.achieved_rate, 'events/s')}): p50 {lat['p50']:.2f} ms, "
                         f"p99 {lat['p99']:.2f} ms, p999 {lat['p999']:.2f} ms, "
                         f"max {lat['max']:.2f} ms over {int(lat['samples']):,} rows")
        else:
            lines.append("         latency: not measured (the result has no time column "
                         "to measure from; see the query's '-- latency:' header)")
    if r.memory_seconds is not None:
        lines.append(f"         caudal over the same events generated beforehand (in memory): "
                     f"{r.memory_seconds:.3f} s, "
                     f"{human(r.events / r.memory_seconds, 'events/s')}"
                     + (f" ({r.memory_cpu_seconds:.2f} CPU s, "
                        f"{r.memory_cpu_seconds / r.memory_seconds:.2f} cores busy"
                        + (f", load {r.memory_load:.2f}" if r.memory_load is not None else "")
                        + ")" if r.memory_cpu_seconds is not None else ""))
    if r.duckdb_seconds is not None:
        check = {True: "same row count", False: "ROW COUNTS DIFFER",
                 None: "row counts not comparable"}[r.rows_match]
        ratios = []
        if r.ratio is not None:
            ratios.append(f"caudal/duckdb {r.ratio:.2f}x over events in memory")
        if r.generator_ratio is not None:
            ratios.append(f"{r.generator_ratio:.2f}x with caudal generating its events")
        lines.append(f"         duckdb: {r.duckdb_seconds:.3f} s ({r.parallelism} "
                     f"thread{'s' if r.parallelism > 1 else ''}), {r.duckdb_rows:,} rows "
                     f"({check})" + ("; " + ", ".join(ratios) if ratios else ""))
    elif r.duckdb_note:
        lines.append(f"         duckdb: {r.duckdb_note}")
    return lines


def _short_reason(r: QueryReport) -> str:
    """The first clause of an unsupported/failed reason, for a table cell."""
    head = r.reason.split(": ", 1)[0]
    return head if len(head) < 110 else head[:107] + "..."


def markdown_table(reports: list[QueryReport]) -> str:
    """The README's figures table: one row per query and parallelism; the planner's
    reasons for queries caudal cannot run yet are listed below it."""
    head = ("| query | caudal runs it as | P | events/s (generator) | per core | peak RSS | "
            "caudal s (generator) | caudal s (in memory) | DuckDB s | ratio (in memory) | "
            "ratio (generator) | rows = DuckDB's |\n"
            "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|")
    rows = [head]
    notes: dict[str, str] = {}

    def seconds(x: float | None) -> str:
        return f"{x:.3f}" if x is not None else "-"

    def ratio(x: float | None) -> str:
        return f"{x:.2f}x" if x is not None else "-"

    for r in reports:
        if r.status != "ok":
            rows.append(f"| {r.query} | {_short_reason(r)} | {r.parallelism} "
                        f"| | | | | | | | | |")
            notes.setdefault(r.query, r.reason)
            continue
        duck = seconds(r.duckdb_seconds) if r.duckdb_seconds is not None else \
            ("none" if r.duckdb_note.startswith("no batch") else "-")
        if r.duckdb_note:
            notes.setdefault(r.query, "DuckDB: " + r.duckdb_note)
        match = {True: "yes", False: "**no**", None: "-"}[r.rows_match]
        rows.append(f"| {r.query} | {r.plan} | {r.parallelism} | {human(r.events_per_s)} | "
                    f"{human(r.events_per_cpu_s)} | {r.peak_rss_mb:.0f} MB | "
                    f"{seconds(r.seconds)} | {seconds(r.memory_seconds)} | {duck} | "
                    f"{ratio(r.ratio)} | {ratio(r.generator_ratio)} | {match} |")
    if notes:
        rows.append("")
        rows.extend(f"- {q}: {text}" for q, text in notes.items())
    return "\n".join(rows)


def latency_table(reports: list[QueryReport]) -> str:
    """The README's latency table: one row per latency run."""
    rows = ["| query | P | input rate | achieved | p50 | p99 | p999 | max | rows timed | "
            "load |", "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in reports:
        if r.status != "ok" or not r.latency_ms:
            continue
        lat = r.latency_ms
        rows.append(f"| {r.query} | {r.parallelism} | {human(r.rate, '/s')} | "
                    f"{human(r.achieved_rate, '/s')} | {lat['p50']:.2f} ms | "
                    f"{lat['p99']:.2f} ms | {lat['p999']:.2f} ms | {lat['max']:.2f} ms | "
                    f"{int(lat['samples']):,} | {r.machine.get('load_avg_1m', '-')} |")
    return "\n".join(rows)


#: the README section between these markers is rewritten by ``update_readme``
BEGIN = "<!-- figures: generated by bench/run_all.py; edits between the markers are lost -->"
END = "<!-- end of figures -->"


def figures_section(reports: list[QueryReport]) -> str:
    """The generated part of bench/README.md: machine, throughput table, latency table."""
    throughput = [r for r in reports if r.rate is None]
    latency = [r for r in reports if r.rate is not None]
    info = next((r.machine for r in reports if r.machine), {})
    loads = sorted({r.machine.get("load_avg_1m") for r in throughput
                    if r.machine.get("load_avg_1m") is not None})
    events = sorted({r.events for r in throughput})
    lines = [
        f"Machine: {info.get('cpu', '?')}, {info.get('cores', '?')} cores, "
        f"{info.get('memory_gb', '?')} GB, {info.get('os', '?')}; Python "
        f"{info.get('python', '?')}, pyarrow {info.get('pyarrow', '?')}, DuckDB "
        f"{info.get('duckdb', '?')}; caudal commit {info.get('commit') or '?'}.",
        "",
        f"Throughput runs: {', '.join(human(e) for e in events)} events each. 1-minute load "
        f"average when the runs started: {loads[0] if loads else '?'} to "
        f"{loads[-1] if loads else '?'} (anything above 0 is other work on the machine).",
        "",
        markdown_table(throughput),
    ]
    if latency:
        lines += ["", "Latency (input paced on the wall clock; time from an event's "
                      "generation, or a window's end, to the result's arrival at the sink):",
                  "", latency_table(latency)]
    return "\n".join(lines)


def update_readme(reports: list[QueryReport], path: Path) -> None:
    """Replace the figures section of ``path`` (appended when the markers are missing)."""
    text = path.read_text() if path.exists() else ""
    block = f"{BEGIN}\n{figures_section(reports)}\n{END}"
    if BEGIN in text and END in text:
        head, rest = text.split(BEGIN, 1)
        tail = rest.split(END, 1)[1]
        text = head + block + tail
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    path.write_text(text)
