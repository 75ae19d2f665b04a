"""The engine comparison's queries written for Pathway's table API. Runs in Pathway's own venv
(it imports nothing of caudal):

    python pathway_job.py QUERY INPUT.csv OUTPUT.csv

Pathway's CSV output is a changelog: each row carries ``time`` and ``diff`` (+1 insert, -1
retraction) columns after the query's own.
"""

from __future__ import annotations

import datetime
import sys

import pathway as pw


class Bids(pw.Schema):
    auction: int
    bidder: int
    price: int
    channel: str
    url: str
    date_time: str
    extra: str


def build(query: str, source: str, sink: str) -> None:
    bids = pw.io.csv.read(source, schema=Bids, mode="static")
    if query == "filter":
        out = bids.filter(pw.this.price > 1000).select(
            pw.this.auction, pw.this.bidder, pw.this.price, pw.this.date_time)
    elif query == "tumble":
        timed = bids.with_columns(
            ts=pw.this.date_time.dt.strptime("%Y-%m-%d %H:%M:%S.%f"))
        out = timed.windowby(
            pw.this.ts, window=pw.temporal.tumbling(duration=datetime.timedelta(seconds=10)),
            instance=pw.this.auction,
        ).reduce(auction=pw.this._pw_instance, window_start=pw.this._pw_window_start,
                 n=pw.reducers.count())
    elif query == "updating":
        out = bids.groupby(pw.this.auction).reduce(
            pw.this.auction, n=pw.reducers.count(), top=pw.reducers.max(pw.this.price))
    else:
        raise SystemExit(f"unknown query {query!r}")
    pw.io.csv.write(out, sink)


if __name__ == "__main__":
    query, source, sink = sys.argv[1:4]
    build(query, source, sink)
    pw.run(monitoring_level=pw.MonitoringLevel.NONE)
