"""A throwaway Kafka cluster in one process: librdkafka's mock brokers, for tests, benchmarks
and trying the kafka connector without a server.

``python -m caudal.connectors.kafka_mock`` prints the bootstrap list on its first line and
serves until killed (or until its standard input closes, with ``--stdin``). The brokers listen
on ports the library picks; ``--port 9092`` also forwards that fixed port to the first broker,
so that a job written for ``localhost:9092`` finds the cluster (clients learn the brokers'
own addresses from its metadata). Topics are created
on first use with 4 partitions. The mock speaks the Kafka protocol, transactions included, but
does not hide aborted or open transactions from read_committed consumers, nor store offsets
committed inside a transaction: exactly-once checks against it read the output with
``committed_messages`` of tests/connectors/kafka_verify.py.
"""

from __future__ import annotations

import argparse
import contextlib
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path


def serve(brokers: int = 3):
    from confluent_kafka import Producer

    holder = Producer({"test.mock.num.brokers": brokers, "log_level": 0})
    meta = holder.list_topics(timeout=10)
    print(",".join(f"{b.host}:{b.port}" for b in sorted(meta.brokers.values(),
                                                         key=lambda b: b.id)), flush=True)
    return holder


@contextlib.contextmanager
def cluster(brokers: int = 3) -> Iterator[str]:
    """A mock cluster in a child process for the duration of the block: its bootstrap list.
    (In a child, not in this process, so that jobs run as other processes reach it too.)"""
    proc = subprocess.Popen([sys.executable, "-m", "caudal.connectors.kafka_mock", "--stdin",
                             "--brokers", str(brokers)], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                            cwd=Path(__file__).resolve().parents[2])
    try:
        yield proc.stdout.readline().strip()
    finally:
        proc.stdin.close()
        proc.kill()
        proc.wait()


def forward(port: int, target: str) -> None:
    """Relay connections to 127.0.0.1:``port`` to ``target`` (host:port), in threads."""
    host, target_port = target.rsplit(":", 1)
    server = socket.create_server(("127.0.0.1", port))

    def pipe(a: socket.socket, b: socket.socket) -> None:
        try:
            while data := a.recv(1 << 16):
                b.sendall(data)
        except OSError:
            pass
        finally:
            for s in (a, b):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def accept() -> None:
        while True:
            client, _ = server.accept()
            upstream = socket.create_connection((host, int(target_port)))
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=pipe, args=(a, b), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--brokers", type=int, default=3)
    parser.add_argument("--port", type=int, help="also accept clients on this fixed port")
    parser.add_argument("--stdin", action="store_true",
                        help="stop when standard input closes (the parent process ended)")
    args = parser.parse_args(argv)
    holder = serve(args.brokers)
    if args.port:
        meta = holder.list_topics(timeout=10)
        first = min(meta.brokers.values(), key=lambda b: b.id)
        forward(args.port, f"{first.host}:{first.port}")
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
