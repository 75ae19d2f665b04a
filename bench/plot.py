"""The throughput plot of bench/README.md: events/s per Nexmark query, caudal at each
parallelism beside DuckDB's batch rate on the same events (events / DuckDB's query time).

    .venv/bin/python -m bench.plot [bench/results/latest.jsonl] [out.png]
"""

from __future__ import annotations

import sys
from pathlib import Path

from caudal.bench.report import QueryReport

BENCH = Path(__file__).resolve().parent


def plot(reports: list[QueryReport], out: Path) -> None:
    """A grouped bar chart (log scale) of the throughput runs that completed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = [r for r in reports if r.status == "ok" and r.rate is None and r.events_per_s]
    queries = list(dict.fromkeys(r.query for r in runs))
    levels = sorted({r.parallelism for r in runs})
    series: list[tuple[str, list[float]]] = []
    for p in levels:
        by_query = {r.query: r.events_per_s for r in runs if r.parallelism == p}
        series.append((f"caudal, parallelism {p} (generating events)",
                       [by_query.get(q) or 0.0 for q in queries]))
    p_mem = levels[0] if levels else 1
    memory = {r.query: r.events / r.memory_seconds for r in runs
              if r.parallelism == p_mem and r.memory_seconds}
    if memory:
        series.append((f"caudal, parallelism {p_mem} (events in memory)",
                       [memory.get(q, 0.0) for q in queries]))
    duck = {r.query: r.events / r.duckdb_seconds for r in runs
            if r.parallelism == p_mem and r.duckdb_seconds}
    if duck:
        series.append((f"DuckDB batch, {p_mem} thread{'s' if p_mem > 1 else ''} "
                       "(events in memory)", [duck.get(q, 0.0) for q in queries]))
    fig, ax = plt.subplots(figsize=(min(13.0, max(6.0, 0.7 * len(queries) + 2)), 5.0))
    width = 0.8 / max(1, len(series))
    for i, (label, values) in enumerate(series):
        xs = [k + (i - (len(series) - 1) / 2) * width for k in range(len(queries))]
        ax.bar(xs, [v / 1e6 for v in values], width, label=label)
    ax.set_xticks(range(len(queries)), queries)
    ax.set_yscale("log")
    low = min((v for _, values in series for v in values if v > 0), default=1e6)
    ax.set_ylim(bottom=max(low / 1e6 / 2, 0.01))
    ax.set_ylabel("million events per second")
    events = sorted({r.events for r in runs})
    machine = next((r.machine for r in runs if r.machine), {})
    loads = [r.machine.get("load_avg_1m") for r in runs if r.machine.get("load_avg_1m")]
    busy = f"; load average {min(loads):g}-{max(loads):g}: other work ran too" if loads else ""
    ax.set_title(f"Nexmark throughput, {', '.join(f'{e / 1e6:g}M' for e in events)} events; "
                 f"{machine.get('cpu', '?')}, {machine.get('cores', '?')} cores{busy}",
                 fontsize=9)
    ax.axhline(10, color="grey", linestyle=":", linewidth=1, label="10 M events/s")
    ax.legend(fontsize=8, loc="upper right")
    ax.grid(axis="y", which="both", alpha=0.3)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)


def main() -> None:
    source = Path(sys.argv[1]) if len(sys.argv) > 1 else BENCH / "results" / "latest.jsonl"
    out = Path(sys.argv[2]) if len(sys.argv) > 2 else BENCH / "nexmark_throughput.png"
    reports = [QueryReport.from_json(line) for line in source.read_text().splitlines()
               if line.strip()]
    plot(reports, out)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
