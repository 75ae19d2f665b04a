"""A throwaway Kafka cluster in one process: librdkafka's mock brokers, for tests, benchmarks
and trying the kafka connector without a server.

``python -m caudal.connectors.kafka_mock`` prints the bootstrap list on its first line and
serves until killed (or until its standard input closes, with ``--stdin``). Topics are created
on first use with 4 partitions. The mock speaks the Kafka protocol, transactions included, but
does not hide aborted or open transactions from read_committed consumers, nor store offsets
committed inside a transaction: exactly-once checks against it read the output with
``committed_messages`` of tests/connectors/kafka_verify.py.
"""

from __future__ import annotations

import argparse
import sys
import time


def serve(brokers: int = 3) -> None:
    from confluent_kafka import Producer

    holder = Producer({"test.mock.num.brokers": brokers, "log_level": 0})
    meta = holder.list_topics(timeout=10)
    print(",".join(f"{b.host}:{b.port}" for b in sorted(meta.brokers.values(),
                                                         key=lambda b: b.id)), flush=True)
    return holder


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--brokers", type=int, default=3)
    parser.add_argument("--stdin", action="store_true",
                        help="stop when standard input closes (the parent process ended)")
    args = parser.parse_args(argv)
    holder = serve(args.brokers)
    try:
        if args.stdin:
            sys.stdin.read()
        else:
            while True:
                time.sleep(3600)
    except KeyboardInterrupt:
        pass
    del holder


if __name__ == "__main__":
    main()
