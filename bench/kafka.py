"""Kafka JSON bids: caudal's kafka source and exactly-once sink against librdkafka's mock
cluster, beside the ceiling of the same client (a plain confluent-kafka loop doing the same
decode).

    .venv/bin/python -m bench.kafka --topics 8 --sink-events 1000000

The mock cluster keeps only about 30k messages per partition (4 partitions per topic), so the
input is spread over ``--topics`` topics of 100k bids each, read by one job as a UNION ALL of
one kafka table per topic:

1. fill: this process writes Nexmark bids (caudal's generator, JSON-encoded by caudal's json
   format) into the topics with a plain producer;
2. ceiling: this process consumes every partition of every topic with one bare Consumer and
   decodes each polled batch with caudal's JSON decoder (values joined into JSON lines, one
   Arrow parse per batch), until each partition's end; then again with CPython's cycle
   collector paused while each batch's message objects live (what caudal's source does);
3. source: ``caudal run`` of the UNION ALL into a blackhole sink (bounded by latest-offset);
   the same job over empty topics gives the start-up CPU to subtract. Once through the native
   drain (``kafka_native``, the default) and once through confluent-kafka's Consumer
   (``CAUDAL_KAFKA_NATIVE=0``), alternated ``--pairs`` times;
4. exactly_once sink: ``caudal run`` of Nexmark bids into a topic, transactions per 1 s
   checkpoint; the same job into a blackhole gives the start-up and generator CPU to
   subtract. Its ceiling: this process encodes the same bids with caudal's JSON encoder and
   produces them with a bare transactional producer.

msgs/s is the rate the run reports (its own clock, after start-up); per core divides the
messages by the CPU seconds used (the loop's; or the caudal process's minus its baseline
run's: start-up, and for the sink the generator).
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

from caudal.connectors.kafka_mock import cluster
from caudal.connectors.kafka_native import ENV

REPO = Path(__file__).resolve().parents[1]
PER_TOPIC = 60_000
COLUMNS = ("auction BIGINT, bidder BIGINT, price BIGINT, channel TEXT, url TEXT, "
           "date_time TIMESTAMP, extra TEXT")


def caudal_run(sql: str, *args: str, env: dict | None = None, repo: Path = REPO) -> dict:
    """Run a job as a user would (caudal from ``repo``); its reported rows and rate, wall
    and CPU seconds."""
    with tempfile.NamedTemporaryFile("w", suffix=".sql", delete=False) as f:
        f.write(sql)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "caudal.cli", "run", f.name, *args],
                          capture_output=True, text=True, cwd=repo,
                          env=dict(os.environ, PYTHONPATH=str(repo), **(env or {})))
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    os.unlink(f.name)
    if proc.returncode != 0:
        raise SystemExit(f"caudal run failed: {proc.stderr.strip()}")
    found = re.search(r"([\d,]+) rows in, ([\d,]+) rows out in ([\d.]+)s", proc.stderr)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {"rows_in": int(found[1].replace(",", "")),
            "rows_out": int(found[2].replace(",", "")), "seconds": float(found[3]),
            "wall": wall, "cpu": cpu}


def fill(bootstrap: str, topics: list[str]) -> int:
    """PER_TOPIC JSON bids into each topic (keys spread them over the partitions)."""
    import pyarrow.parquet as pq
    from confluent_kafka import Producer

    from bench.data import bids_parquet
    from caudal.connectors.kafka_sink import split_lines
    from caudal.formats.json import encode

    data = pq.read_table(bids_parquet(PER_TOPIC * 2)).slice(0, PER_TOPIC)
    values = split_lines(encode(data.combine_chunks().to_batches()[0])).to_pylist()
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 20, "log_level": 0,
                         "queue.buffering.max.messages": 1_000_000})
    for topic in topics:
        for i, v in enumerate(values):
            try:
                producer.produce(topic, v, str(i).encode())
            except BufferError:
                producer.poll(0.1)
                producer.produce(topic, v, str(i).encode())
        producer.poll(0)
    assert producer.flush(60) == 0
    return len(values) * len(topics)


def ceiling(bootstrap: str, topics: list[str], paused: bool = False) -> dict:
    """A bare confluent-kafka consume loop with the same per-batch JSON decode; ``paused``:
    with CPython's cycle collector paused while a batch's messages live, as caudal does."""
    import contextlib

    import pyarrow as pa
    from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, TopicPartition

    from caudal.connectors.messages import paused_gc
    from caudal.formats.json import Decoder
    from caudal.types import TIMESTAMP

    schema = pa.schema([("auction", pa.int64()), ("bidder", pa.int64()),
                        ("price", pa.int64()), ("channel", pa.string()),
                        ("url", pa.string()), ("date_time", TIMESTAMP),
                        ("extra", pa.string())])
    decoder = Decoder(schema)
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "bench-ceiling",
                         "enable.auto.commit": False, "fetch.max.bytes": 64 << 20,
                         "queued.max.messages.kbytes": 256 << 10, "log_level": 0,
                         "enable.partition.eof": True})
    parts = [TopicPartition(t, p, OFFSET_BEGINNING) for t in topics for p in range(4)]
    consumer.assign(parts)
    cpu0, started = time.process_time(), time.perf_counter()
    rows = 0
    ended = 0
    while ended < len(parts):
        with paused_gc() if paused else contextlib.nullcontext():
            msgs = consumer.consume(65536, 0.005)
            values = []
            for m in msgs:
                err = m.error()
                if err is None:
                    values.append(m.value())
                elif err.code() == KafkaError._PARTITION_EOF:
                    ended += 1
            del msgs
        if values:
            rows += decoder.decode(b"\n".join(values) + b"\n").num_rows
    wall = time.perf_counter() - started
    cpu = time.process_time() - cpu0
    consumer.close()
    return {"rows_in": rows, "seconds": wall, "cpu": cpu, "wall": wall}


def sink_ceiling(bootstrap: str, topic: str, events: int) -> dict:
    """A bare confluent-kafka producer loop writing the same JSON (caudal's encoder), in
    one transaction per 100k messages."""
    import pyarrow.parquet as pq
    from confluent_kafka import Producer

    from bench.data import bids_parquet
    from caudal.formats.json import encode

    table = pq.read_table(bids_parquet(events)).combine_chunks()
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 20, "log_level": 0,
                         "batch.size": 1 << 20, "queue.buffering.max.messages": 1_000_000,
                         "queue.buffering.max.kbytes": 1 << 20,
                         "transactional.id": f"bench-ceiling-{topic}"})
    producer.init_transactions(10)
    cpu0, started = time.process_time(), time.perf_counter()
    count = 0
    producer.begin_transaction()
    for batch in table.to_batches(max_chunksize=65536):
        for v in encode(batch).split(b"\n")[:-1]:
            try:
                producer.produce(topic, v)
            except BufferError:
                producer.poll(0.1)
                producer.produce(topic, v)
        producer.poll(0)
        count += batch.num_rows
        if count % 131072 == 0:
            producer.commit_transaction(30)
            producer.begin_transaction()
    producer.commit_transaction(30)
    wall = time.perf_counter() - started
    return {"rows_out": count, "seconds": wall, "cpu": time.process_time() - cpu0,
            "wall": wall}


def union_job(bootstrap: str, topics: list[str]) -> str:
    kafka = f"connector = 'kafka', bootstrap_servers = '{bootstrap}'"
    ddl = "".join(f"""CREATE TABLE t{i} ({COLUMNS}) WITH ({kafka}, topic = '{t}',
        'source.offset' = 'earliest', 'scan.bounded.mode' = 'latest-offset');\n"""
                  for i, t in enumerate(topics))
    union = " UNION ALL ".join(f"SELECT * FROM t{i}" for i in range(len(topics)))
    return ddl + f"CREATE TABLE out WITH (connector = 'blackhole');\nINSERT INTO out {union};"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--topics", type=int, default=8)
    parser.add_argument("--sink-events", type=int, default=1_000_000)
    parser.add_argument("--json", action="store_true", help="also print one JSON line a run")
    parser.add_argument("--pairs", type=int, default=1,
                        help="source runs of each reading path, alternated: the native drain "
                             "(kafka_native) and confluent-kafka's Consumer")
    parser.add_argument("--no-sink", action="store_true", help="measure the source only")
    parser.add_argument("--before", type=Path, metavar="TREE",
                        help="also run the native drain from this copy of caudal (e.g. an "
                             "earlier commit's tree), in each pair: before vs after")
    parser.add_argument("--no-consumer", action="store_true",
                        help="leave out the confluent Consumer runs")
    args = parser.parse_args()
    with cluster() as bootstrap:
        stem = f"bench-{uuid.uuid4().hex[:6]}"
        topics = [f"{stem}-{i}" for i in range(args.topics)]
        empty = [f"{stem}-empty-{i}" for i in range(args.topics)]
        filled = fill(bootstrap, topics)
        from confluent_kafka import Producer

        touch = Producer({"bootstrap.servers": bootstrap, "log_level": 0})
        for t in empty:   # create them (no rows): the start-up baseline reads nothing
            touch.list_topics(t, timeout=10)
        results = {"client ceiling (consume + decode)": ceiling(bootstrap, topics),
                   "  the same, GC paused": ceiling(bootstrap, topics, paused=True)}
        for pair in range(args.pairs):
            paths = [("native drain", "1", REPO)]
            if args.before:
                paths.append(("native drain, before", "1", args.before.resolve()))
            if not args.no_consumer:
                paths.append(("confluent Consumer", "0", REPO))
            for path, flag, repo in paths:
                env = {ENV: flag}
                base = caudal_run(union_job(bootstrap, empty), env=env, repo=repo)
                source = caudal_run(union_job(bootstrap, topics), env=env, repo=repo)
                source["cpu_startup"] = base["cpu"]
                source["load"] = os.getloadavg()[0]
                results[f"source -> blackhole, {path}" + (f" #{pair + 1}" if pair else "")] = \
                    source
        if args.no_sink:
            report(results, filled, args)
            return
        gen = (f"CREATE TABLE gen WITH (connector = 'nexmark', table = 'bid', "
               f"events = '{int(args.sink_events / 0.92)}');\n")
        with tempfile.TemporaryDirectory() as ck:
            # the same generator into a blackhole: start-up and generating, to subtract
            sink_base = caudal_run(gen + "CREATE TABLE out WITH (connector = 'blackhole');\n"
                                   "INSERT INTO out SELECT auction, bidder, price, channel, "
                                   "url, date_time, extra FROM gen;")
            sink = caudal_run(gen + f"""CREATE TABLE t WITH (connector = 'kafka',
                bootstrap_servers = '{bootstrap}', topic = '{stem}-eos');
                INSERT INTO t SELECT auction, bidder, price, channel, url, date_time, extra
                FROM gen;""", "--checkpoint-dir", ck, "--checkpoint-interval", "1s")
        sink["cpu_startup"] = sink_base["cpu"]
        results["client ceiling (encode + produce, txn)"] = sink_ceiling(
            bootstrap, f"{stem}-ceiling", int(args.sink_events / 0.92))
        results["caudal exactly_once kafka sink"] = sink
        report(results, filled, args)


def report(results: dict, filled: int, args: argparse.Namespace) -> None:
    """One line a run: msgs/s on the run's own clock; per core = messages per CPU second
    with the baseline run's CPU subtracted, and (whole) without subtracting anything."""
    print(f"{filled:,} JSON bids in {args.topics} topics; mock cluster of 3 brokers; "
          f"load average {os.getloadavg()[0]:.2f}")
    print(f"{'run':44} {'messages':>10} {'msgs/s':>9} {'per core':>9} {'(whole)':>8} "
          f"{'cpu s':>6} {'baseline cpu s':>14} {'load':>5}")
    for name, r in results.items():
        count = r["rows_out"] if "rows_out" in r and "source" not in name else r["rows_in"]
        cpu = r["cpu"] - r.get("cpu_startup", 0.0)
        print(f"{name:44} {count:10,} {count / r['seconds'] / 1e3:8.0f}k "
              f"{count / cpu / 1e3:8.0f}k {count / r['cpu'] / 1e3:7.0f}k {r['cpu']:6.2f} "
              f"{r.get('cpu_startup', 0):14.2f} {r.get('load', float('nan')):5.1f}")
        if args.json:
            print(json.dumps({"run": name, "messages": count, **r}))


if __name__ == "__main__":
    main()
