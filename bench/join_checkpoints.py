"""Checkpoints of an updating join (Nexmark q20) in a whole ``caudal run``: what each
checkpoint writes, the CPU the checkpoints cost, and the recovery from the last one.

    python bench/join_checkpoints.py run DIR [-p P] [--events N] [--interval 3s]
    python bench/join_checkpoints.py recover DIR [-p P] [--events N]

``run``: ``caudal run`` of ``bench/nexmark/q20.sql`` (``--query q19``: another; its events
overridden by ``--events``)
with checkpoints every ``--interval`` into ``DIR/ck``, in this process, with the checkpoint
code timed where it runs (``time.thread_time`` of the thread): each operator snapshot of the
join or top-N, each state file written (its bytes, path and thread CPU: the writer's or the
compactor's), each compaction. Prints one JSON line: process CPU (user + sys) and wall,
peak RSS, bytes per checkpoint (the files of the epoch's own directory, compactions apart),
the CPU of snapshots, writes and compactions. ``recover``: in a fresh process, read the
newest checkpoint in ``DIR/ck`` and restore the join's (top-N's) subtasks from it (what a resume
does before it processes anything), timed; the state's bytes in memory afterwards.

Written for before/after pairs: run it by path with another tree first on PYTHONPATH; it
uses only APIs both sides have (``CheckpointStorage.write_table``, ``StateChains``,
``UpdatingJoin.snapshot``, ``load_state``).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent


def _cpu() -> float:
    t = os.times()
    return t.user + t.system


def _sql(events: int, query: str = "q20") -> str:
    sql = (ROOT / "nexmark" / f"{query}.sql").read_text()
    return sql.replace("events = '10000000'", f"events = '{events}'")


def run(root: Path, parallelism: int, events: int, interval: str, query: str = "q20"
        ) -> dict:
    from caudal.checkpoint import chains, storage
    from caudal.operators import updating_join, updating_rank

    lock = threading.Lock()
    log: dict[str, list] = {"writes": [], "snapshots": [], "compactions": []}

    def timed(cls, name: str, record) -> None:
        original = getattr(cls, name)

        def wrapper(self, *args, **kwargs):
            c, w = time.thread_time(), time.perf_counter()
            out = original(self, *args, **kwargs)
            cpu, wall = time.thread_time() - c, time.perf_counter() - w
            with lock:
                record(args, out, cpu, wall)
            return out

        setattr(cls, name, wrapper)

    # (compactions write through write_tables where the tree has it, write_table calls it)
    written = "write_tables" if hasattr(storage.CheckpointStorage, "write_tables") else \
        "write_table"
    timed(storage.CheckpointStorage, written,
          lambda a, out, cpu, wall: log["writes"].append((a[0], out.bytes, cpu, wall)))
    for cls in (updating_join.UpdatingJoin, updating_rank.UpdatingRank):
        timed(cls, "snapshot", lambda a, out, cpu, wall: log["snapshots"].append((cpu, wall)))
    timed(chains.StateChains, "_compact",
          lambda a, out, cpu, wall: log["compactions"].append((cpu, wall)))

    from caudal.cli import main as cli

    job = root / f"{query}.sql"
    job.write_text(_sql(events, query))
    sys.argv = ["caudal", "run", str(job), "-p", str(parallelism), "--checkpoint-dir",
                str(root / "ck"), "--checkpoint-interval", interval, "--fresh"]
    c, w = _cpu(), time.perf_counter()
    code = cli()
    assert code == 0, f"caudal run exited with {code}"
    cpu, wall = _cpu() - c, time.perf_counter() - w
    per_epoch: dict[str, int] = {}
    compacted = 0
    for path, size, _, _ in log["writes"]:
        if ".c" in path.split("/", 1)[1]:
            compacted += size
        else:
            per_epoch[path.split("/", 1)[0]] = per_epoch.get(path.split("/", 1)[0], 0) + size
    sizes = [per_epoch[k] for k in sorted(per_epoch)]
    return {
        "what": "run", "query": query, "parallelism": parallelism, "events": events, "interval": interval,
        "cpu_s": round(cpu, 2), "wall_s": round(wall, 2),
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024,
        "checkpoints": len(sizes), "mb_per_checkpoint": [round(s / 1e6, 1) for s in sizes],
        "mb_written": round(sum(sizes) / 1e6, 1), "mb_compacted": round(compacted / 1e6, 1),
        "snapshot_cpu_s": round(sum(s[0] for s in log["snapshots"]), 2),
        "snapshot_wall_s": round(sum(s[1] for s in log["snapshots"]), 2),
        "write_cpu_s": round(sum(x[2] for x in log["writes"] if ".c" not in x[0]), 2),
        "compaction_cpu_s": round(sum(x[0] for x in log["compactions"]), 2),
        "load": os.getloadavg()[0],
    }


def _state_bytes(op) -> int:
    """Bytes of a restored join's or top-N's state in memory (its stores and counters)."""
    if hasattr(op, "sides"):
        return sum(s.store.nbytes + sum(v.nbytes for v in s.values.values())
                   for s in op.sides)
    rows = op.state
    return rows.store.nbytes + sum(c.n * c.buf.itemsize
                                   for c in (rows.h, rows.seq, rows.alive, rows.emitted)
                                   if c is not None)   # (a top-1 keeps no hashes)


def recover(root: Path, parallelism: int, events: int, query: str = "q20") -> dict:
    from caudal.checkpoint.manifest import completed_epochs, read_manifest
    from caudal.checkpoint.recovery import load_state
    from caudal.checkpoint.storage import CheckpointStorage
    from caudal.job import compile_sql
    from caudal.operators.base import OperatorContext
    from caudal.operators.registry import create

    graph = compile_sql(_sql(events, query), parallelism).graph
    vertex, index, spec = next((v.id, i, op) for v in graph.vertices
                               for i, op in enumerate(v.operators)
                               if op.kind in ("updating_join", "updating_rank"))
    storage = CheckpointStorage(str(root / "ck"))
    epoch = max(completed_epochs(storage))
    manifest = read_manifest(storage, epoch)
    c, w = _cpu(), time.perf_counter()
    restored = load_state(storage, manifest, graph)
    read_s = time.perf_counter() - w
    ops = []
    for i in range(parallelism):
        op = create(spec)
        op.open(OperatorContext(vertex=vertex, subtask=i, parallelism=parallelism))
        op.restore(restored.payloads[(vertex, i)]["operators"][index])
        ops.append(op)
    cpu, wall = _cpu() - c, time.perf_counter() - w
    state = sum(_state_bytes(op) for op in ops)
    rows = sum(op.state_rows() for op in ops)
    return {"what": "recover", "query": query, "parallelism": parallelism, "epoch": epoch,
            "files": len(manifest.files()), "checkpoint_mb": round(manifest.bytes / 1e6, 1),
            "state_mb": round(state / 1e6, 1), "rows": rows, "wall_s": round(wall, 2),
            "read_s": round(read_s, 2), "cpu_s": round(cpu, 2),
            "s_per_gb": round(wall / (state / 1e9), 2),
            "cpu_s_per_gb": round(cpu / (state / 1e9), 2), "load": os.getloadavg()[0]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("what", choices=["run", "recover"])
    ap.add_argument("dir")
    ap.add_argument("-p", type=int, default=1)
    ap.add_argument("--events", type=int, default=10_000_000)
    ap.add_argument("--interval", default="3s")
    ap.add_argument("--query", default="q20",
                    help="q20 (default), q18 or q19 (top-N); recover: the query that was run")
    args = ap.parse_args()
    root = Path(args.dir)
    root.mkdir(parents=True, exist_ok=True)
    if args.what == "run":
        out = run(root, args.p, args.events, args.interval, args.query)
    else:
        out = recover(root, args.p, args.events, args.query)
    import caudal

    out["tree"] = str(Path(caudal.__file__).parent.parent)
    print(json.dumps(out), flush=True)
    os._exit(0)   # (as caudal's entry: no interpreter teardown in Arrow's and Polars' pools)


if __name__ == "__main__":
    main()
