"""HTTP ingest on loopback: caudal's ``http`` source taking NDJSON POSTs into a blackhole.

    .venv/bin/python -m bench.http_ingest --seconds 10

1. throughput: ``--clients`` keep-alive connections each POST a batch of 1 000 NDJSON events
   (~110 bytes each) and the next once the previous is answered 202 (rows in the pipeline);
   events/s = events acknowledged / wall seconds;
2. latency: single-event POSTs sent open loop at ``--rate`` requests/s over ``--conns``
   keep-alive connections; a request's latency is from its scheduled send time to its 202
   (a late send counts against the server: no coordinated omission).

The clients are an asyncio loop in this process, on the same 2 shared cores as the job: the
figures are what one machine does with both sides on it.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

REPO = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def event(i: int) -> bytes:
    return json.dumps({"auction": 1000 + i % 97, "bidder": i, "price": i * 7 % 10_000,
                       "channel": "apple", "date_time": "2024-01-01T00:00:00.123456"}).encode()


def start_job(port: int, ack: str) -> subprocess.Popen:
    sql = f"""CREATE TABLE bids (auction BIGINT, bidder BIGINT, price BIGINT, channel TEXT,
  date_time TIMESTAMP) WITH (connector = 'http', port = '{port}', ack = '{ack}');
CREATE TABLE sink WITH (connector = 'blackhole');
INSERT INTO sink SELECT * FROM bids;
"""
    with tempfile.NamedTemporaryFile("w", suffix=".sql", delete=False) as f:
        f.write(sql)
    return subprocess.Popen([sys.executable, "-m", "caudal.cli", "run", f.name], cwd=REPO,
                            env=dict(os.environ, PYTHONPATH=str(REPO)),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


async def request(reader, writer, body: bytes) -> int:
    writer.write(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-ndjson\r\n"
                 b"Content-Length: %d\r\n\r\n" % len(body) + body)
    head = await reader.readuntil(b"\r\n\r\n")
    length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
    await reader.readexactly(length)
    return int(head.split(b" ", 2)[1])


async def wait_up(port: int, proc: subprocess.Popen) -> None:
    for _ in range(600):
        if proc.poll() is not None:
            raise SystemExit(proc.stderr.read().decode())
        try:
            r, w = await asyncio.open_connection("127.0.0.1", port)
            w.close()
            return
        except OSError:
            await asyncio.sleep(0.05)
    raise SystemExit("the job did not listen")


async def throughput(port: int, clients: int, seconds: float, batch: int) -> dict:
    body = b"\n".join(event(i) for i in range(batch)) + b"\n"
    acked = 0
    stop = time.perf_counter() + seconds

    async def client() -> None:
        nonlocal acked
        r, w = await asyncio.open_connection("127.0.0.1", port)
        while time.perf_counter() < stop:
            if await request(r, w, body) == 202:
                acked += batch
        w.close()

    started = time.perf_counter()
    await asyncio.gather(*[client() for _ in range(clients)])
    wall = time.perf_counter() - started
    return {"events": acked, "seconds": round(wall, 2), "events_per_s": round(acked / wall),
            "batch": batch, "clients": clients, "body_bytes": len(body)}


async def latency(port: int, rate: float, seconds: float, conns: int) -> dict:
    """Open loop: request i is due at t0 + i/rate and goes out on an idle keep-alive
    connection (or waits for one); its latency runs from when it was due to its answer. The
    client is asyncio protocols (no stream objects) so that it keeps 5 000 requests/s on a
    share of one core; its own CPU seconds are reported."""
    loop = asyncio.get_running_loop()
    total = int(rate * seconds)
    requests = [b"POST / HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-ndjson\r\n"
                b"Content-Length: %d\r\n\r\n" % len(body) + body
                for body in (event(i) for i in range(1000))]
    lat: list[float] = []
    codes: dict[int, int] = {}
    backlog: collections.deque = collections.deque()
    idle: list[Client] = []
    done = loop.create_future()

    class Client(asyncio.Protocol):
        def connection_made(self, transport) -> None:
            self.transport, self.buf, self.due = transport, b"", 0.0

        def send(self, i: int, due: float) -> None:
            self.due = due
            self.transport.write(requests[i % 1000])

        def data_received(self, data: bytes) -> None:
            self.buf += data
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                return
            head = self.buf[:end]
            length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
            if len(self.buf) < end + 4 + length:
                return
            self.buf = self.buf[end + 4 + length:]
            lat.append(time.perf_counter() - self.due)
            code = int(head[9:12])
            codes[code] = codes.get(code, 0) + 1
            if backlog:
                self.send(*backlog.popleft())
            else:
                idle.append(self)
            if len(lat) == total and not done.done():
                done.set_result(None)

    for _ in range(conns):
        idle.append((await loop.create_connection(Client, "127.0.0.1", port))[1])
    cpu = os.times()
    t0 = time.perf_counter() + 0.05
    i = 0
    while i < total:
        now = time.perf_counter()
        while i < total and t0 + i / rate <= now:
            if idle:
                idle.pop().send(i, t0 + i / rate)
            else:
                backlog.append((i, t0 + i / rate))
            i += 1
        await asyncio.sleep(0.0005)
    await asyncio.wait_for(done, 60)
    sent_for = time.perf_counter() - t0
    cpu_end = os.times()
    lat.sort()

    def pct(p: float) -> float:
        return round(lat[min(len(lat) - 1, int(p * len(lat)))] * 1000, 3)

    return {"requests": len(lat), "rate": rate, "achieved_rate": round(len(lat) / sent_for),
            "conns": conns, "p50_ms": pct(0.50), "p90_ms": pct(0.90), "p99_ms": pct(0.99),
            "p999_ms": pct(0.999), "max_ms": round(lat[-1] * 1000, 3), "codes": codes,
            "client_cpu_s": round(cpu_end.user - cpu.user + cpu_end.system - cpu.system, 2)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--rate", type=float, default=5000)
    parser.add_argument("--conns", type=int, default=16)
    parser.add_argument("--ack", default="pipeline")
    parser.add_argument("--parts", default="throughput,latency",
                        help="which measures, comma-separated")
    args = parser.parse_args()
    out = {}
    for part in args.parts.split(","):
        port = free_port()
        proc = start_job(port, args.ack)
        try:
            asyncio.run(wait_up(port, proc))
            time.sleep(0.5)
            job = psutil.Process(proc.pid)
            before = job.cpu_times()
            if part == "throughput":
                out[part] = asyncio.run(throughput(port, args.clients, args.seconds,
                                                   args.batch))
            else:
                out[part] = asyncio.run(latency(port, args.rate, args.seconds, args.conns))
            after = job.cpu_times()
            out[part]["job_cpu_s"] = round(after.user - before.user + after.system -
                                           before.system, 2)
            out[part]["load_average"] = os.getloadavg()[0]
        finally:
            proc.kill()
            proc.wait()
        print(json.dumps({part: out[part]}), flush=True)
    results = REPO / "bench" / "results" / "http_ingest.json"
    results.write_text(json.dumps({"ack": args.ack, **out}, indent=1) + "\n")


if __name__ == "__main__":
    main()
