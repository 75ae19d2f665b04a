"""Flink's Nexmark queries (``bench/nexmark/flink/``, the nexmark repository's files) as
Flink's runner assembles them: ``ddl_gen.sql`` + ``ddl_views.sql`` + ``qN.sql``, the
``${…}`` placeholders substituted. Run one with caudal:

    .venv/bin/python -m bench.flink_nexmark q5 [--events 1M] [--tps 10M] [--parallelism 2]
    .venv/bin/python -m bench.flink_nexmark q13 --print      # the assembled script only

The datagen table paces at ``--tps`` events per second as Flink's source does (10 M by
default, so in practice flat out); ``--flat-out`` adds ``'pace' = 'false'``. Outputs other
than the blackhole (q10's partitioned csv files) and q13's side input file go under
``--dir``. tests/bench/test_flink_nexmark.py compares every query with DuckDB.
"""

from __future__ import annotations

import argparse
import re
import sys
import tempfile
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
FLINK = BENCH / "nexmark" / "flink"
QUERIES = [f"q{n}" for n in range(24)]
#: what Flink cannot run (the nexmark README: FLINK-19059); caudal refuses it too
NOT_RUN_BY_FLINK = {"q6"}
#: rows of the side input file of q13 (Flink's side_input_gen.sh writes 10 000)
SIDE_INPUT_ROWS = 10_000
#: Flink's runner's defaults (nexmark.yaml: 10 M events/s, 100 M events)
DEFAULT_TPS = 10_000_000
DEFAULT_EVENTS = 100_000_000


def placeholders(events: int, tps: float, work: Path) -> dict[str, str]:
    """The values Flink's runner gives the ``${…}`` placeholders."""
    return {"TPS": f"{tps:g}", "EVENTS_NUM": str(events), "PERSON_PROPORTION": "1",
            "AUCTION_PROPORTION": "3", "BID_PROPORTION": "46", "NEXMARK_TABLE": "datagen",
            "SUBMIT_TIME": "0", "NEXMARK_DIR": str(work), "FLINK_HOME": str(work)}


def substitute(text: str, values: dict[str, str]) -> str:
    return re.sub(r"\$\{(\w+)\}", lambda m: values[m.group(1)], text)


def ddl_gen(values: dict[str, str], options: dict[str, str] | None = None) -> str:
    """The datagen table, with connector ``options`` added after ``'connector'``."""
    text = substitute((FLINK / "ddl_gen.sql").read_text(), values)
    if options:
        added = ", ".join(f"'{k}' = '{v}'" for k, v in options.items())
        text = text.replace("'connector' = 'nexmark',", f"'connector' = 'nexmark',\n    "
                            f"{added},", 1)
    return text


def script(name: str, values: dict[str, str], options: dict[str, str] | None = None,
           sink: str | None = None) -> str:
    """The three files joined as Flink's runner joins them; ``sink`` replaces the
    blackhole connector's options (a capture), ``options`` are added to the datagen's."""
    text = substitute((FLINK / f"{name}.sql").read_text(), values)
    if sink is not None:
        text = re.sub(r"'connector'\s*=\s*'blackhole'", sink, text)
    views = substitute((FLINK / "ddl_views.sql").read_text(), values)
    return f"{ddl_gen(values, options)};\n{views};\n{text}"


def write_side_input(work: Path) -> Path:
    """The file Flink's side_input_gen.sh writes (``i,i`` for i in [0, 10000)), where
    q13 reads it (``${FLINK_HOME}/data/side_input.txt``)."""
    path = work / "data" / "side_input.txt"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{i},{i}\n" for i in range(SIDE_INPUT_ROWS)))
    return path


def _count(text: str) -> float:
    text = text.strip().lower().replace("_", "")
    scale = {"k": 1e3, "m": 1e6, "g": 1e9}.get(text[-1:], 1)
    return float(text[:-1] if scale != 1 else text) * scale


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.flink_nexmark",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("query", choices=QUERIES)
    parser.add_argument("--events", default="1M", help="events.num (default 1M)")
    parser.add_argument("--tps", default=f"{DEFAULT_TPS}",
                        help="first-event.rate, events per second (default 10M)")
    parser.add_argument("--parallelism", type=int, default=1)
    parser.add_argument("--flat-out", action="store_true", help="'pace' = 'false'")
    parser.add_argument("--dir", type=Path, default=None,
                        help="where q10 writes and q13's side input is (default: a temp dir)")
    parser.add_argument("--print", action="store_true", help="print the script, run nothing")
    args = parser.parse_args(argv)
    work = args.dir or Path(tempfile.mkdtemp(prefix="flink-nexmark-"))
    values = placeholders(int(_count(args.events)), _count(args.tps), work)
    text = script(args.query, values, {"pace": "false"} if args.flat_out else None)
    if args.print:
        print(text)
        return 0
    if args.query == "q13":
        write_side_input(work)
    from caudal.errors import CaudalError
    from caudal.job import run_sql

    started = time.perf_counter()
    try:
        run_sql(text, parallelism=args.parallelism)
    except CaudalError as e:
        print(f"{args.query}: {e}", file=sys.stderr)
        return 1
    seconds = time.perf_counter() - started
    events = int(values["EVENTS_NUM"])
    print(f"{args.query}: {events:,} events at parallelism {args.parallelism} in {seconds:.2f} s "
          f"({events / seconds:,.0f} events/s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
