"""The Ray runtime beside the local one, on this machine.

    .venv/bin/python -m bench.ray [--events 1000000] [--repeat 1] [--only nexmark,channel,checkpoint]

1. Nexmark q0, q1, q5, q8 at parallelism 2: whole ``caudal run`` processes on the local
   runtime and on Ray (``--address`` of a ``ray.cluster_utils.Cluster`` this script starts,
   2 nodes unless ``--nodes`` says otherwise, so the cluster's own start is paid once, not
   per run), ``--repeat`` pairs, the
   order alternating. Per run: the job's own time from ``caudal run``'s summary line (from
   the deployed job's start, its first event read, to its end: planning, Ray's start, the
   workers' creation and wiring excluded), the whole process's wall time, the CPU seconds of
   the ``caudal run`` process (for Ray the driver's) and, for Ray, of the cluster's worker
   processes and daemons while it ran (``RayCpu``: psutil samples), and the load average.
   Reported as min/median/max; the Ray/local ratio per pair. ``--query-events q8=…`` sizes
   a query on its own (q8 reads 8% of the events: its job is short at the others' size).
2. Channel throughput between two actors: the same Arrow record batches (8 MB each) pushed
   through caudal's remote channel (sequence numbers, credits, the receiving subtask's gate),
   once as RecordBatch objects (Ray's pickle-5 out-of-band buffers: the object store) and
   once as Arrow IPC stream bytes; beside it a raw Ray transfer of the same bytes (an actor
   method taking a pyarrow Buffer, awaited one by one and with 8 in flight).
3. Checkpoint time: the same checkpointed job (a tumbling-window count per auction) with its
   checkpoints on local disk and on an S3 server on loopback (moto_server), on the local
   runtime and on Ray (whose workers write their own state), the coordinator's average
   checkpoint duration from the summary line.
"""

from __future__ import annotations

import argparse
import logging
import os
import re
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pyarrow as pa

REPO = Path(__file__).resolve().parents[1]
QUERIES = ["q0", "q1", "q5", "q8"]
SUMMARY = re.compile(r"rows in, [\d,]+ rows out in ([\d.]+)s")
AVERAGE = re.compile(r"checkpoints .*?\), ([\d.]+)s each on average")


def _run(args: list[str], env: dict | None = None, timeout: float = 900) -> tuple[float, str]:
    wall, _, err = _run_timed(args, env, timeout)
    return wall, err


def _run_timed(args: list[str], env: dict | None = None, timeout: float = 900,
               cluster_cpu: RayCpu | None = None) -> tuple[float, float, str]:
    """A whole ``caudal run`` process: (wall seconds, its user+sys CPU seconds, stderr).
    The CPU is the driver process's; with ``cluster_cpu``, the Ray cluster's processes are
    sampled while it runs (a Ray job's workers are processes of the cluster)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.monotonic()
    with subprocess.Popen([sys.executable, "-m", "caudal.cli", "run", *args],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                          env={**os.environ, **(env or {})}, cwd=REPO) as proc:
        if cluster_cpu is not None:
            cluster_cpu.start(exclude=proc.pid)
        try:
            _, stderr = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise
        finally:
            if cluster_cpu is not None:
                cluster_cpu.stop()
    wall = time.monotonic() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise SystemExit(f"caudal run {' '.join(args)} failed: {stderr[-2000:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu, stderr


class RayCpu:
    """CPU seconds (user+sys) that the processes of the Ray cluster this script started
    spend while one ``caudal run`` runs, sampled with psutil every ``SAMPLE_S``: the
    *workers* (every process under a raylet but its agents: the job's worker actors, and
    any idle worker Ray starts for the driver) and Ray's *daemons* (GCS, raylets, their
    dashboard and runtime-env agents, the log and autoscaler monitors). The raylet does not
    account its exited children, so a worker's CPU is its last sample before it exits:
    at most ``SAMPLE_S`` of it is missed (the job's workers are killed right after the run)."""

    SAMPLE_S = 0.05
    AGENTS = ("DashboardAgent", "RuntimeEnvAgent", "dashboard", "agent")

    def __init__(self, root: int | None = None) -> None:
        """``root``: the process that started the cluster (default: this one)."""
        import threading

        self.root = root
        self._threading = threading
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.workers = 0.0
        self.daemons = 0.0
        self.worker_processes = 0
        self._first: dict[int, float] = {}

    def _sample(self, exclude: int) -> dict[int, tuple[str, float, float]]:
        """pid -> (kind, CPU seconds so far, creation time) of the cluster's processes."""
        import psutil

        seen: dict[int, tuple[str, float, float]] = {}

        def take(p: psutil.Process, kind: str) -> None:
            try:
                t = p.cpu_times()
                seen[p.pid] = (kind, t.user + t.system, p.create_time())
                self._first.setdefault(p.pid, t.user + t.system)
            except psutil.Error:
                pass   # gone since it was listed

        try:
            children = psutil.Process(self.root).children()
        except psutil.Error:
            return seen
        for child in children:
            try:
                if child.pid == exclude or "moto" in " ".join(child.cmdline()[:2]):
                    continue
                take(child, "daemon")
                if child.name() != "raylet":
                    continue
                for sub in child.children(recursive=True):
                    title = " ".join(sub.cmdline()[:1])
                    take(sub, "daemon" if any(a in title for a in self.AGENTS) else "worker")
            except psutil.Error:
                continue
        return seen

    def start(self, exclude: int) -> None:
        self._stop.clear()
        self._first = {}
        started = time.time()
        base = {pid: cpu for pid, (_, cpu, _) in self._sample(exclude).items()}
        last: dict[int, tuple[str, float, float]] = {}

        def loop() -> None:
            while not self._stop.wait(self.SAMPLE_S):
                last.update(self._sample(exclude))
            last.update(self._sample(exclude))
            spent = {"worker": 0.0, "daemon": 0.0}
            self.worker_processes = 0
            for pid, (kind, cpu, created) in last.items():
                # a process older than the run that the first sample missed counts from
                # its first sample (sampling errors must not add a daemon's lifetime)
                origin = base.get(pid, 0.0 if created >= started - 1 else self._first[pid])
                spent[kind] += cpu - origin
                if kind == "worker" and cpu - origin > 0.05:
                    self.worker_processes += 1  # (Ray may hand the job idle workers)
            self.workers, self.daemons = spent["worker"], spent["daemon"]

        self._thread = self._threading.Thread(target=loop, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()


def _job_seconds(stderr: str) -> float:
    m = SUMMARY.search(stderr)
    assert m, stderr
    return float(m.group(1))


def _query_file(name: str, events: int, tmp: Path) -> Path:
    text = (REPO / "bench" / "nexmark" / f"{name}.sql").read_text()
    text = text.replace("events = '10000000'", f"events = '{events}'")
    path = tmp / f"{name}.sql"
    path.write_text(text)
    return path


def _spread(values: list[float]) -> dict[str, float]:
    return {"min": min(values), "median": statistics.median(values), "max": max(values)}


def nexmark(address: str, events: dict[str, int], repeat: int, tmp: Path,
            queries: list[str] = QUERIES) -> list[dict]:
    """Each query on the local runtime and on Ray, ``repeat`` pairs, alternating which runs
    first: per run the job's own time (the summary line: from the deployed job's start, the
    first event read, to its end; Ray's start, the workers' creation and wiring excluded),
    the whole process's wall time and CPU seconds, for Ray also the CPU of the cluster's
    worker processes and daemons during the run, and the load average before it."""
    rows = []
    cluster_cpu = RayCpu()
    for name in queries:
        n = events[name]
        path = _query_file(name, n, tmp)
        runs: dict[str, list[dict]] = {"local": [], "ray": []}
        for i in range(repeat):
            order = ["local", "ray"] if i % 2 == 0 else ["ray", "local"]
            for runtime in order:
                load = os.getloadavg()[0]
                if runtime == "local":
                    wall, cpu, err = _run_timed([str(path), "-p", "2"])
                    runs[runtime].append({"job_s": _job_seconds(err), "wall_s": wall,
                                          "cpu_s": cpu, "load": load})
                else:
                    wall, cpu, err = _run_timed([str(path), "-p", "2", "--runtime", "ray",
                                                 "--address", address],
                                                cluster_cpu=cluster_cpu)
                    runs[runtime].append({
                        "job_s": _job_seconds(err), "wall_s": wall, "cpu_s": cpu,
                        "workers_cpu_s": cluster_cpu.workers,
                        "daemons_cpu_s": cluster_cpu.daemons,
                        "worker_processes": cluster_cpu.worker_processes, "load": load})
                r = runs[runtime][-1]
                extra = "" if runtime == "local" else (
                    f", workers {r['workers_cpu_s']:.1f}s CPU ({r['worker_processes']} "
                    f"processes), Ray daemons {r['daemons_cpu_s']:.1f}s CPU")
                print(f"  {name} {runtime}: job {r['job_s']:.2f}s, process {wall:.1f}s wall, "
                      f"{cpu:.1f}s CPU{extra}, load {load:.1f}", flush=True)
        loc, ray = runs["local"], runs["ray"]
        job_ratio = [a["job_s"] / b["job_s"] for a, b in zip(loc, ray)]
        wall_ratio = [a["wall_s"] / b["wall_s"] for a, b in zip(loc, ray)]
        ray_cpu = [r["cpu_s"] + r["workers_cpu_s"] + r["daemons_cpu_s"] for r in ray]
        row = {"query": name, "events": n, "pairs": repeat,
               "local_job_s": _spread([r["job_s"] for r in loc]),
               "ray_job_s": _spread([r["job_s"] for r in ray]),
               "local_events_per_s": n / statistics.median(r["job_s"] for r in loc),
               "ray_events_per_s": n / statistics.median(r["job_s"] for r in ray),
               "ray_vs_local_job": _spread(job_ratio),
               "local_wall_s": _spread([r["wall_s"] for r in loc]),
               "ray_wall_s": _spread([r["wall_s"] for r in ray]),
               "ray_vs_local_whole_process": _spread(wall_ratio),
               "local_cpu_s": _spread([r["cpu_s"] for r in loc]),
               "ray_driver_cpu_s": _spread([r["cpu_s"] for r in ray]),
               "ray_workers_cpu_s": _spread([r["workers_cpu_s"] for r in ray]),
               "ray_daemons_cpu_s": _spread([r["daemons_cpu_s"] for r in ray]),
               "ray_total_cpu_s": _spread(ray_cpu),
               "load_average": _spread([r["load"] for r in loc + ray]),
               "runs": runs}
        rows.append(row)
        med = {k: v["median"] for k, v in row.items() if isinstance(v, dict) and "median" in v}
        print(f"{name} ({n:,} events, {repeat} pairs): local {n / med['local_job_s'] / 1e6:.2f} M "
              f"ev/s ({med['local_job_s']:.2f}s), ray {n / med['ray_job_s'] / 1e6:.2f} M ev/s "
              f"({med['ray_job_s']:.2f}s): ray = {100 * med['ray_vs_local_job']:.0f}% of local "
              f"(pairs {100 * row['ray_vs_local_job']['min']:.0f}-"
              f"{100 * row['ray_vs_local_job']['max']:.0f}%; whole processes "
              f"{100 * med['ray_vs_local_whole_process']:.0f}%); CPU local "
              f"{med['local_cpu_s']:.1f}s, ray {med['ray_total_cpu_s']:.1f}s (driver "
              f"{med['ray_driver_cpu_s']:.1f}, workers {med['ray_workers_cpu_s']:.1f}, daemons "
              f"{med['ray_daemons_cpu_s']:.1f}); load {row['load_average']['min']:.1f}-"
              f"{row['load_average']['max']:.1f}", flush=True)
    return rows


def _batch(mb: int) -> pa.RecordBatch:
    import numpy as np

    n = mb * 2**20 // 16
    rng = np.random.default_rng(0)
    return pa.record_batch({"a": rng.integers(0, 1 << 40, n), "b": rng.random(n)})


def channel(batches: int = 64, mb: int = 8) -> list[dict]:
    import ray

    from caudal.runtime.ray.channels import CREDITS, CountingGate, RemotePort

    class Receiver:
        """One input gate, consumed by a thread as a subtask would."""

        def __init__(self, ipc: bool):
            import threading

            self.cancel = threading.Event()
            self.gate = CountingGate(1, CREDITS, self.cancel)
            self.ipc = ipc
            self.bytes = 0

        def push(self, key, items):
            for channel, seq, item in items:
                self.gate.push(channel, seq, item)

        def credit(self, key, channel, until):
            return self.gate.wait_consumed(channel, until)

        def drain(self, n: int) -> int:
            got = 0
            while got < n:
                item = self.gate.get(1.0)
                if item is None:
                    continue
                value = item[1]
                if self.ipc:
                    value = pa.ipc.open_stream(value).read_next_batch()
                self.bytes += value.nbytes
                got += 1
            return self.bytes

        def take(self, buf) -> int:
            return buf.size

    class Sender:
        def __init__(self, receiver, ipc: bool, mb: int):
            import threading

            self.port = RemotePort(receiver, (0, 0), threading.Event())
            self.ipc = ipc
            self.batch = _batch(mb)

        def send(self, n: int) -> None:
            item = self.batch
            for _ in range(n):
                if self.ipc:
                    sink = pa.BufferOutputStream()
                    with pa.ipc.new_stream(sink, item.schema) as w:
                        w.write_batch(item)
                    self.port.put(0, sink.getvalue())
                else:
                    self.port.put(0, item)
            self.port.flush()

        def raw(self, receiver, n: int, inflight: int) -> None:
            import pyarrow as pa

            sink = pa.BufferOutputStream()
            with pa.ipc.new_stream(sink, self.batch.schema) as w:
                w.write_batch(self.batch)
            buf = sink.getvalue()
            pending = []
            for _ in range(n):
                pending.append(receiver.take.remote(buf))
                if len(pending) >= inflight:
                    ray.get(pending.pop(0))
            ray.get(pending)

    nodes = sorted((n for n in ray.nodes() if n["Alive"]), key=lambda n: n["NodeID"])
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    def placed(cls, node):
        return ray.remote(cls).options(
            num_cpus=0, max_concurrency=16,
            scheduling_strategy=NodeAffinitySchedulingStrategy(node["NodeID"], soft=True))

    rows = []
    size = _batch(mb).nbytes
    total = batches * size / 2**20
    for ipc in (False, True):
        receiver = placed(Receiver, nodes[-1]).remote(ipc)
        sender = placed(Sender, nodes[0]).remote(receiver, ipc, mb)
        ray.get(sender.send.remote(2))
        ray.get(receiver.drain.remote(2))
        started = time.monotonic()
        done = receiver.drain.remote(batches)
        ray.get(sender.send.remote(batches))
        ray.get(done)
        seconds = time.monotonic() - started
        rows.append({"path": "caudal channel, " + ("Arrow IPC bytes" if ipc else
                                                   "RecordBatch (object store)"),
                     "mb_per_s": total / seconds})
        if not ipc:
            for inflight in (1, CREDITS):
                started = time.monotonic()
                ray.get(sender.raw.remote(receiver, batches, inflight))
                seconds = time.monotonic() - started
                rows.append({"path": f"raw Ray actor call with a pyarrow Buffer, {inflight} "
                                     f"in flight", "mb_per_s": total / seconds})
        for a in (sender, receiver):
            ray.kill(a)
    for r in rows:
        print(f"channel: {r['path']}: {r['mb_per_s']:,.0f} MB/s ({mb} MB batches, "
              f"{len(nodes)} node(s))", flush=True)
    return rows


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


CHECKPOINT_JOB = """
CREATE TABLE bid WITH (connector = 'nexmark', table = 'bid', events = '{events}',
                       event_rate = '{rate}', event_time_field = 'date_time');
CREATE TABLE out WITH (connector = 'blackhole');
INSERT INTO out SELECT auction, count(*) AS n, sum(price) AS s, window_start
FROM TABLE(TUMBLE(TABLE bid, DESCRIPTOR(date_time), INTERVAL '1' HOUR))
GROUP BY auction, window_start, window_end;
"""


def checkpoints(tmp: Path, address: str | None = None) -> list[dict]:
    """The checkpointed job on each storage, on the local runtime and (with ``address``) on
    Ray, whose workers write their own state."""
    import pyarrow.fs as pafs

    moto = shutil.which("moto_server") or str(Path(sys.executable).parent / "moto_server")
    port = _free_port()
    server = subprocess.Popen([moto, "-H", "127.0.0.1", "-p", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    env = {"AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench",
           "AWS_DEFAULT_REGION": "us-east-1"}
    os.environ.update(env)
    try:
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", port), 0.2).close()
                break
            except OSError:
                time.sleep(0.1)
        fs = pafs.S3FileSystem(endpoint_override=f"127.0.0.1:{port}", scheme="http",
                               access_key="bench", secret_key="bench", region="us-east-1",
                               allow_bucket_creation=True)
        fs.create_dir("caudal-ck")
        job = tmp / "ck.sql"
        job.write_text(CHECKPOINT_JOB.format(events=400_000, rate=100_000))
        rows = []
        runtimes = [("local", [])] + ([("ray", ["--runtime", "ray", "--address", address])]
                                      if address else [])
        for runtime, extra in runtimes:
            for where, uri in (("local disk", str(tmp / f"ck-local-{runtime}")),
                               ("S3 (moto_server on loopback)",
                                f"s3://caudal-ck/job-{runtime}?endpoint_override=127.0.0.1:"
                                f"{port}&scheme=http&region=us-east-1&allow_delayed_open=true")):
                _, err = _run([str(job), "-p", "2", "--checkpoint-dir", uri,
                               "--checkpoint-interval", "500ms", *extra], env=env)
                m = AVERAGE.search(err)
                rows.append({"runtime": runtime, "storage": where,
                             "checkpoint_s": float(m.group(1)) if m else None,
                             "summary": err.strip().splitlines()[-2] if m else err[-300:],
                             "load_average": os.getloadavg()[0]})
                print(f"checkpoint on {where}, {runtime} runtime: {rows[-1]['checkpoint_s']}s "
                      f"each on average ({rows[-1]['summary']})", flush=True)
        return rows
    finally:
        server.terminate()
        server.wait(10)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--events", type=int, default=1_000_000, help="events of each query")
    p.add_argument("--query-events", default="",
                   help="per-query sizes overriding --events, e.g. q8=300000000,q5=20000000")
    p.add_argument("--repeat", type=int, default=1)
    p.add_argument("--only", default="nexmark,channel,checkpoint")
    p.add_argument("--queries", default=",".join(QUERIES), help="Nexmark queries to run")
    p.add_argument("--nodes", type=int, default=2,
                   help="Ray nodes of the cluster on this machine (1: as `caudal run "
                        "--runtime ray` starts one; 2+: objects cross raylets as between "
                        "machines)")
    args = p.parse_args()
    parts = set(args.only.split(","))
    tmp = Path(tempfile.mkdtemp(prefix="caudal-bench-ray-"))
    results: dict = {}
    try:
        if parts & {"nexmark", "channel", "checkpoint"}:
            import ray
            from ray.cluster_utils import Cluster

            os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
            cluster = Cluster(initialize_head=True, head_node_args={
                "num_cpus": 2, "object_store_memory": 512 * 2**20,
                "include_dashboard": False})
            for _ in range(args.nodes - 1):
                cluster.add_node(num_cpus=2, object_store_memory=512 * 2**20)
            cluster.wait_for_nodes()
            ray.init(address=cluster.address, log_to_driver=False,
                     logging_level=logging.ERROR)
            try:
                if "channel" in parts:
                    results["channel"] = channel()
                if "nexmark" in parts:
                    queries = args.queries.split(",")
                    events = {q: args.events for q in queries}
                    for part in filter(None, args.query_events.split(",")):
                        q, _, n = part.partition("=")
                        events[q] = int(n)
                    key = "nexmark" if args.queries == ",".join(QUERIES) else \
                        f"nexmark {args.queries} {args.events}"
                    if args.nodes != 2:
                        key += f" on {args.nodes} node(s)"
                    results[key] = nexmark(cluster.address, events, args.repeat, tmp, queries)
                if "checkpoint" in parts:
                    results["checkpoint"] = checkpoints(tmp, cluster.address)
            finally:
                ray.shutdown()
                cluster.shutdown()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    import json

    out = REPO / "bench" / "results" / "ray.json"
    kept = json.loads(out.read_text()) if out.exists() else {}
    kept.update(results)   # a run of some parts keeps the others' last figures
    out.write_text(json.dumps(kept, indent=1) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
