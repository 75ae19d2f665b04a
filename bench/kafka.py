"""Kafka JSON bids: caudal's kafka source and sink against librdkafka's mock cluster, beside
the ceiling of the same client (a plain confluent-kafka loop doing the same decode).

    .venv/bin/python -m bench.kafka --messages 2000000

1. fill: ``caudal run`` writes Nexmark bids as JSON into a topic (kafka sink, at_least_once);
2. ceiling: this process consumes the topic with a bare Consumer and decodes each polled batch
   with caudal's JSON decoder (values joined into JSON lines, one Arrow parse per batch);
3. source: ``caudal run`` reads the topic (bounded by latest-offset) into a blackhole sink;
4. exactly_once sink: ``caudal run`` writes Nexmark bids into a topic with transactions,
   checkpointing every second.

Whole processes against the mock cluster (a separate process of this machine). msgs/s is the
rate the run reports (its own clock, after start-up); per core divides the messages by the CPU
seconds the caudal process (or the loop) used, start-up included.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def start_cluster() -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen([sys.executable, "-m", "caudal.connectors.kafka_mock", "--stdin"],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True, cwd=REPO)
    return proc, proc.stdout.readline().strip()


def caudal_run(sql: str, *args: str) -> dict:
    """Run a job; its reported rows and rate, wall and CPU seconds."""
    with tempfile.NamedTemporaryFile("w", suffix=".sql", delete=False) as f:
        f.write(sql)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "caudal.cli", "run", f.name, *args],
                          capture_output=True, text=True, cwd=REPO,
                          env=dict(os.environ, PYTHONPATH=str(REPO)))
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    os.unlink(f.name)
    if proc.returncode != 0:
        raise SystemExit(f"caudal run failed: {proc.stderr.strip()}")
    found = re.search(r"([\d,]+) rows in, ([\d,]+) rows out in ([\d.]+)s", proc.stderr)
    rows_in, rows_out, seconds = int(found[1].replace(",", "")), \
        int(found[2].replace(",", "")), float(found[3])
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {"rows_in": rows_in, "rows_out": rows_out, "seconds": seconds, "wall": wall,
            "cpu": cpu}


def ceiling(bootstrap: str, topic: str, messages: int) -> dict:
    """A bare confluent-kafka consume loop with the same per-batch JSON decode."""
    import pyarrow as pa
    from confluent_kafka import Consumer, TopicPartition

    from caudal.formats.json import Decoder
    from caudal.types import TIMESTAMP

    schema = pa.schema([("auction", pa.int64()), ("bidder", pa.int64()),
                        ("price", pa.int64()), ("channel", pa.string()),
                        ("url", pa.string()), ("date_time", TIMESTAMP),
                        ("extra", pa.string())])
    decoder = Decoder(schema)
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "bench-ceiling",
                         "enable.auto.commit": False, "fetch.max.bytes": 64 << 20,
                         "queued.max.messages.kbytes": 256 << 10, "log_level": 0})
    parts = consumer.list_topics(topic, timeout=10).topics[topic].partitions
    consumer.assign([TopicPartition(topic, p, 0) for p in parts])
    cpu0, started = time.process_time(), time.perf_counter()
    seen = rows = 0
    while seen < messages:
        msgs = consumer.consume(65536, 0.005)
        if not msgs:
            continue
        values = [m.value() for m in msgs if m.error() is None]
        seen += len(msgs)
        rows += decoder.decode(b"\n".join(values) + b"\n").num_rows
    wall = time.perf_counter() - started
    cpu = time.process_time() - cpu0
    consumer.close()
    return {"rows_in": rows, "seconds": wall, "cpu": cpu}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=2_000_000)
    parser.add_argument("--json", action="store_true", help="print one JSON line per run")
    args = parser.parse_args()
    n = args.messages
    cluster, bootstrap = start_cluster()
    try:
        topic = f"bench-bids-{uuid.uuid4().hex[:6]}"
        gen = (f"CREATE TABLE gen WITH (connector = 'nexmark', table = 'bid', "
               f"events = '{int(n / 0.92) + 100}');\n")
        kafka = f"connector = 'kafka', bootstrap_servers = '{bootstrap}'"
        fill = caudal_run(gen + f"""CREATE TABLE t WITH ({kafka}, topic = '{topic}',
            'sink.commit_mode' = 'at_least_once');
            INSERT INTO t SELECT auction, bidder, price, channel, url, date_time, extra
            FROM gen;""")
        messages = fill["rows_out"]
        results = {"sink at_least_once (fill)": fill}
        results["client ceiling (consume + decode)"] = ceiling(bootstrap, topic, messages)
        results["kafka source -> blackhole"] = caudal_run(f"""
            CREATE TABLE bids (auction BIGINT, bidder BIGINT, price BIGINT, channel TEXT,
                url TEXT, date_time TIMESTAMP, extra TEXT) WITH ({kafka}, topic = '{topic}',
                'source.offset' = 'earliest', 'scan.bounded.mode' = 'latest-offset');
            CREATE TABLE out WITH (connector = 'blackhole');
            INSERT INTO out SELECT * FROM bids;""")
        eos_topic = topic + "-eos"
        with tempfile.TemporaryDirectory() as ck:
            results["sink exactly_once"] = caudal_run(gen + f"""
                CREATE TABLE t WITH ({kafka}, topic = '{eos_topic}');
                INSERT INTO t SELECT auction, bidder, price, channel, url, date_time, extra
                FROM gen;""", "--checkpoint-dir", ck, "--checkpoint-interval", "1s")
        print(f"{messages:,} JSON bids, mock cluster of 3 brokers at {bootstrap}")
        print(f"{'run':38} {'msgs/s':>10} {'per core':>10} {'cpu s':>7} {'wall s':>7}")
        for name, r in results.items():
            count = r["rows_in"] if "source" in name or "ceiling" in name else r["rows_out"]
            rate = count / r["seconds"]
            per_core = count / r["cpu"]
            print(f"{name:38} {rate / 1e3:9.0f}k {per_core / 1e3:9.0f}k {r['cpu']:7.2f} "
                  f"{r.get('wall', r['seconds']):7.2f}")
            if args.json:
                print(json.dumps({"run": name, "messages": count, **r}))
    finally:
        cluster.stdin.close()
        cluster.kill()


if __name__ == "__main__":
    main()
