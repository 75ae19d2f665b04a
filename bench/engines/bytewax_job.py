"""The engine comparison's queries written for Bytewax, as a Bytewax user writes them: a
dataflow of Python functions over one row at a time. Runs in Bytewax's own venv (it imports
nothing of caudal):

    python bytewax_job.py QUERY INPUT.csv OUTPUT.csv

QUERY is ``filter``, ``tumble`` or ``updating`` (see bench/engines/queries.py). The input is
the bids CSV with a header line; the output a CSV without one.
"""

from __future__ import annotations

import sys
from datetime import UTC, datetime, timedelta

import bytewax.operators as op
import bytewax.operators.windowing as win
from bytewax.connectors.files import CSVSource, FileSink
from bytewax.dataflow import Dataflow
from bytewax.testing import run_main

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
WINDOW = timedelta(seconds=10)


def _time(row: dict) -> datetime:
    return datetime.fromisoformat(row["date_time"]).replace(tzinfo=UTC)


def build(query: str, source: str, sink: str) -> Dataflow:
    flow = Dataflow(f"bench_{query}")
    rows = op.input("bids", flow, CSVSource(source))
    if query == "filter":
        kept = op.filter("price", rows, lambda r: int(r["price"]) > 1000)
        lines = op.map("line", kept, lambda r: ",".join(
            (r["auction"], r["bidder"], r["price"], r["date_time"])))
    elif query == "tumble":
        # Bytewax's watermark runs on with the system clock after the newest event: a stall
        # longer than this wait (a loaded machine) makes the rows after it late and dropped
        clock = win.EventClock(_time, wait_for_system_duration=timedelta(minutes=5))
        counted = win.count_window("count", rows, clock,
                                   win.TumblingWindower(length=WINDOW, align_to=EPOCH),
                                   lambda r: r["auction"])

        def line(item):
            auction, (window_id, n) = item
            start = EPOCH + window_id * WINDOW
            return f"{auction},{start:%Y-%m-%d %H:%M:%S},{n}"
        lines = op.map("line", counted.down, line)
    elif query == "updating":
        keyed = op.key_on("auction", rows, lambda r: r["auction"])

        def step(state, row):
            n, top = state if state is not None else (0, None)
            price = int(row["price"])
            state = (n + 1, price if top is None or price > top else top)
            return state, state
        running = op.stateful_map("count_max", keyed, step)
        lines = op.map("line", running, lambda kv: f"{kv[0]},{kv[1][0]},{kv[1][1]}")
    else:
        raise SystemExit(f"unknown query {query!r}")
    # FileSink is a partitioned sink: it takes (key, line) pairs
    op.output("out", op.key_on("one_file", lines, lambda _: "out"), FileSink(sink))
    return flow


if __name__ == "__main__":
    query, source, sink = sys.argv[1:4]
    run_main(build(query, source, sink))
