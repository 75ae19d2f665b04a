"""The engine comparison's queries run by PyFlink's Table API, the SQL text as in
bench/engines/queries.py. Runs in PyFlink's own venv (it imports nothing of caudal):

    python pyflink_job.py INPUT.csv OUTPUT_DIR 'SELECT …' 'col TYPE, …' append|updating

Streaming mode, parallelism 1, the input declared with a watermark. Flink's filesystem sink
takes only appends, so an updating query goes to the ``print`` connector (its changelog lines
on standard output, ``+I[…]``/``-U[…]``/``+U[…]``), with mini-batches on, as a Flink user
tuning throughput sets them.
"""

from __future__ import annotations

import sys

from pyflink.table import EnvironmentSettings, TableEnvironment

BIDS = ("CREATE TABLE bids (auction BIGINT, bidder BIGINT, price BIGINT, channel STRING, "
        "url STRING, date_time TIMESTAMP(3), extra STRING, "
        "WATERMARK FOR date_time AS date_time - INTERVAL '1' SECOND) "
        "WITH ('connector' = 'filesystem', 'path' = '{path}', 'format' = 'csv')")


def main(source: str, sink: str, select: str, columns: str, kind: str) -> None:
    env = TableEnvironment.create(EnvironmentSettings.in_streaming_mode())
    config = env.get_config()
    config.set("parallelism.default", "1")
    env.execute_sql(BIDS.format(path=source))
    if kind == "updating":
        config.set("table.exec.mini-batch.enabled", "true")
        config.set("table.exec.mini-batch.allow-latency", "1 s")
        config.set("table.exec.mini-batch.size", "10000")
        options = "'connector' = 'print'"
    else:
        options = f"'connector' = 'filesystem', 'path' = '{sink}', 'format' = 'csv'"
    env.execute_sql(f"CREATE TABLE answer ({columns}) WITH ({options})")
    env.execute_sql(f"INSERT INTO answer {select}").wait()


if __name__ == "__main__":
    main(*sys.argv[1:6])
