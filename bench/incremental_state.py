"""What a checkpoint of large keyed state costs when little of it changes, and how long a
restore of it takes: incremental (deltas, compacted in tiers in the background) against
whole snapshots.

    .venv/bin/python -m bench.incremental_state [--keys 12000000] [--change 0.01]
                                                [--intervals 12]

An updating aggregate (``GROUP BY k`` with seven aggregates: count, sum/min/max of a BIGINT
and of a DOUBLE) is built by the planner and run in this process, driven directly: first
``--keys`` distinct keys (about 1 GB of state as Arrow), then ``--intervals`` rounds that each
update ``--change`` of the keys (chosen at random) followed by a checkpoint through the real
coordinator onto a local directory. Each round reports the operator's snapshot time (what
the pipeline pays), the time until the checkpoint completed, and the bytes the checkpoint
wrote; background compaction is counted apart. The same rounds then run with every snapshot
whole (what every checkpoint wrote before). ``--window``: the same with a one-hour tumbling
window per key (all rows in the one open window). ``--sparse``: keys spread over a range a
million times their count (the KeyIndex's hash table instead of its direct addressing of
dense keys). Recovery: the newest checkpoint's files read (``load_state``) and a fresh
operator restored from them, timed, with the CPU seconds of this process (all threads) and
the load average beside every figure. Transparent huge pages are off, as in ``caudal run``.
``--recover DIR --cold``: the recovery alone, from a checkpoint a ``--keep`` run left, its
files evicted from the page cache first (bench/README.md: how to give the reads a disk's
speed on a VM whose host caches them).
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from caudal.checkpoint.coordinator import CheckpointCoordinator
from caudal.checkpoint.manifest import completed_epochs, epoch_dir, read_manifest
from caudal.checkpoint.recovery import identify, load_state
from caudal.checkpoint.storage import CheckpointStorage
from caudal.job import compile_sql
from caudal.operators.base import OperatorContext
from caudal.operators.registry import create

QUERY = ("SELECT k, count(*) AS n, sum(v) AS s, min(v) AS lo, max(v) AS hi, sum(w) AS sw, "
         "max(w) AS mw, min(w) AS lw FROM t GROUP BY k")
#: ``--window``: a one-hour tumbling window per key (all rows fall in one open window)
WINDOW_QUERY = ("SELECT k, window_start, count(*) AS n, sum(v) AS s, max(v) AS hi FROM "
                "TABLE(TUMBLE(TABLE t, DESCRIPTOR(ts), INTERVAL '1' HOUR)) "
                "GROUP BY k, window_start, window_end")


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def _load() -> str:
    return "/".join(f"{x:.1f}" for x in os.getloadavg())


def _window_batch(keys: np.ndarray, rng: np.random.Generator) -> pa.RecordBatch:
    v = rng.integers(0, 1_000_000, len(keys))
    ts = pa.array(np.full(len(keys), 1_000_000, dtype=np.int64), pa.timestamp("us", "UTC"))
    return pa.RecordBatch.from_arrays([ts, pa.array(keys), pa.array(v), pa.array(v)],
                                      names=["__time", "k", "__arg1_0", "__arg2_0"])


def _batch(keys: np.ndarray, rng: np.random.Generator) -> pa.RecordBatch:
    v = rng.integers(0, 1_000_000, len(keys))
    w = rng.random(len(keys))
    return pa.RecordBatch.from_arrays(
        [pa.array(keys), pa.array(v), pa.array(v), pa.array(v), pa.array(w), pa.array(w),
         pa.array(w)], names=["k", "__arg1_0", "__arg2_0", "__arg3_0", "__arg4_0",
                              "__arg5_0", "__arg6_0"])


class Rig:
    """The planned job, its aggregate operator and a checkpoint coordinator on ``root``."""

    def __init__(self, root: Path, window: bool = False):
        self.plan(root, window)
        self.op = self.fresh()
        self.storage = CheckpointStorage(str(root / "ck"))
        ident = identify(self.graph)
        self.coord = CheckpointCoordinator(self.storage, self.graph, ident.fingerprint,
                                           ident.vertices, interval_s=3600, first_epoch=1,
                                           keep=2)

    def plan(self, root: Path, window: bool) -> None:
        pq.write_table(pa.table({"k": pa.array([1], pa.int64()), "v": pa.array([1], pa.int64()),
                                 "w": pa.array([1.0]), "ts": pa.array([0], pa.timestamp("us"))}),
                       root / "in.parquet")
        sql = (f"SET updating_flush = '0';\n"
               f"CREATE TABLE t (k BIGINT, v BIGINT, w DOUBLE, ts TIMESTAMP, WATERMARK FOR ts "
               f"AS ts - INTERVAL '1' SECOND) WITH (connector = "
               f"'filesystem', path = '{root / 'in.parquet'}');\n"
               f"CREATE TABLE out WITH (connector = 'filesystem', path = '{root / 'out'}', "
               f"format = 'debezium_json');\n"
               f"INSERT INTO out {WINDOW_QUERY if window else QUERY};")
        self.graph = compile_sql(sql, 1).graph
        kind = "window_aggregate" if window else "updating_aggregate"
        self.vertex, self.index, spec = next(
            (v.id, i, op) for v in self.graph.vertices for i, op in enumerate(v.operators)
            if op.kind == kind)
        self.spec = spec

    def fresh(self):
        op = create(self.spec)
        op.open(OperatorContext(vertex=self.vertex))
        return op

    def checkpoint(self) -> tuple[int, float, float]:
        """A checkpoint of every vertex (the aggregate's state, nothing elsewhere): its epoch,
        the operator's snapshot seconds and the seconds until it completed."""
        started = time.perf_counter()
        epoch = self.coord.trigger()
        assert epoch is not None
        for v in self.graph.vertices:
            if v.source is not None:
                self.coord.barrier_due(v.id, 0)
        snapshot_s = 0.0
        for v in self.graph.vertices:
            ops: list[dict] = [{} for _ in v.operators]
            if v.id == self.vertex:
                t = time.perf_counter()
                ops[self.index] = self.op.snapshot(epoch)
                snapshot_s = time.perf_counter() - t
            self.coord.acknowledge(v.id, 0, epoch, {"operators": ops, "offsets": None})
        assert self.coord.wait_completed(epoch, threading.Event())
        return epoch, snapshot_s, time.perf_counter() - started

    def written(self, epoch: int) -> int:
        """Bytes of the state files the checkpoint of ``epoch`` wrote itself."""
        manifest = read_manifest(self.storage, epoch)
        mine = f"{epoch_dir(epoch)}/"
        return sum(f.file.bytes for f in manifest.files()
                   if f.file.path.startswith(mine) and ".c" not in f.file.path[len(mine):])

    def compacted_bytes(self) -> int:
        root = Path(self.storage.root)
        return sum(p.stat().st_size for p in root.rglob("*.parquet") if ".c" in p.stem)


def _state_bytes(op) -> int:
    if hasattr(op, "panes"):
        return sum(t.nbytes for tables in op.panes.values() for t in tables)
    return op.state.store.table().nbytes


def _state_rows(op) -> int:
    return op.state_rows() if hasattr(op, "panes") else op.state.rows()


def _reset_baseline(op) -> None:
    (op.changes if hasattr(op, "panes") else op.state.changes).baseline = False


#: ``--sparse``: key i is i times this (a range 1 M times the count: the KeyIndex's hash
#: table, not its direct addressing of dense keys)
SPREAD = 1_000_003


def run(keys: int, change: float, intervals: int, whole: bool, root: Path,
        window: bool = False, sparse: bool = False) -> dict:
    rng = np.random.default_rng(7)
    rig = Rig(root, window)
    batch_of = _window_batch if window else _batch
    t, c = time.perf_counter(), _cpu()
    for start in range(0, keys, 1 << 20):
        rig.op.process(batch_of(np.arange(start, min(keys, start + (1 << 20)),
                                          dtype=np.int64) * (SPREAD if sparse else 1), rng))
    load_s, load_cpu = time.perf_counter() - t, _cpu() - c
    state_bytes = _state_bytes(rig.op)
    epoch, snap, total = rig.checkpoint()
    first = rig.written(epoch)
    print(f"  state {state_bytes / 1e9:.2f} GB as Arrow ({keys:,} keys, built in {load_s:.1f}s, "
          f"{load_cpu:.1f} CPU s); first checkpoint (whole) wrote {first / 1e6:.0f} MB in "
          f"{total:.2f}s (snapshot {snap:.2f}s); load {_load()}")
    rows = []
    changed = max(1, int(keys * change))
    for _ in range(intervals):
        batch = batch_of(np.sort(rng.choice(keys, changed, replace=False)).astype(np.int64)
                         * (SPREAD if sparse else 1),
                         rng)
        rig.op.process(batch)
        if whole:
            _reset_baseline(rig.op)   # what every snapshot was before
        c = _cpu()
        epoch, snap, total = rig.checkpoint()
        rows.append((epoch, rig.written(epoch), snap, total, _cpu() - c))
    for epoch, written, snap, total, cpu in rows:
        print(f"  checkpoint {epoch}: wrote {written / 1e6:8.1f} MB "
              f"({100 * written / max(first, 1):5.1f}% of the whole), snapshot {snap:5.2f}s, "
              f"complete after {total:5.2f}s, {cpu:5.2f} CPU s")
    rig.coord.chains.wait()
    compacted = rig.compacted_bytes()
    files = read_manifest(rig.storage, epoch).files()
    print(f"  background compaction: {rig.coord.chains.compactions} merges, "
          f"{compacted / 1e6:.0f} MB of merged files now on disk; the newest checkpoint "
          f"names {len(files)} files; load {_load()}")
    rig.coord.close()
    total_s = recover(rig, epoch, keys, state_bytes)
    return {"first": first, "rows": rows, "recovery_s": total_s}


def recover(rig: Rig, epoch: int, keys: int | None = None,
            state_bytes: int | None = None) -> float:
    """Read the checkpoint of ``epoch`` (``load_state``) and restore a fresh operator from
    it, timed: the whole recovery, wall and CPU seconds (all threads), and per GB."""
    files = read_manifest(rig.storage, epoch).files()
    t, c = time.perf_counter(), _cpu()
    restored = load_state(rig.storage, read_manifest(rig.storage, epoch), rig.graph)
    read_s = time.perf_counter() - t
    op = rig.fresh()
    op.restore(restored.payloads[(rig.vertex, 0)]["operators"][rig.index])
    total_s, cpu = time.perf_counter() - t, _cpu() - c
    if keys is not None:
        assert _state_rows(op) == keys
    gb = (state_bytes if state_bytes is not None else _state_bytes(op)) / 1e9
    print(f"  recovery: {total_s:.2f}s ({read_s:.2f}s reading "
          f"{len(files)} files and merging deltas, {total_s - read_s:.2f}s restoring the "
          f"operator), {cpu:.2f} CPU s; {gb:.2f} GB of state as Arrow, {_state_rows(op):,} "
          f"rows: {total_s / gb:.2f} s and {cpu / gb:.2f} CPU s per GB; load {_load()}")
    return total_s


def evict(storage: CheckpointStorage, epoch: int) -> int:
    """The files of checkpoint ``epoch`` out of this machine's page cache (fsync, then
    ``posix_fadvise(DONTNEED)``: only these files, not everyone's cache); their bytes. On a
    VM the host may still cache them: throttle the reads too for a disk's speed."""
    total = 0
    for f in read_manifest(storage, epoch).files():
        fd = os.open(storage.full(f.file.path), os.O_RDONLY)
        try:
            os.fsync(fd)
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            total += os.fstat(fd).st_size
        finally:
            os.close(fd)
    return total


def recover_only(root: Path, window: bool, cold: bool = False) -> None:
    """``--recover DIR``: the recovery step alone, in this (fresh) process, from the newest
    checkpoint a ``--keep`` run left in DIR (its planned job is compiled again); ``cold``:
    its files evicted from the page cache first."""
    storage = CheckpointStorage(str(root / "ck"))
    epoch = max(completed_epochs(storage))
    if cold:
        print(f"  evicted {evict(storage, epoch) / 1e6:.0f} MB of checkpoint files from the "
              f"page cache")
    rig = Rig.__new__(Rig)
    Rig.plan(rig, root, window)
    rig.storage = storage
    recover(rig, epoch)


def main() -> None:
    from caudal.runtime.huge_pages import disable_huge_pages

    # as ``caudal run`` does (a restore's fresh pages cost 4-5x as huge pages here)
    disable_huge_pages()
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--keys", type=int, default=12_000_000)
    ap.add_argument("--change", type=float, default=0.01)
    ap.add_argument("--intervals", type=int, default=12)
    ap.add_argument("--dir", default=None, help="where checkpoints go (default: a temp dir)")
    ap.add_argument("--sparse", action="store_true",
                    help="keys spread over a range a million times their count")
    ap.add_argument("--only", choices=["incremental", "whole"], default=None,
                    help="run one of the two series")
    ap.add_argument("--window", action="store_true",
                    help="a tumbling window aggregate instead of the updating one")
    ap.add_argument("--keep", action="store_true",
                    help="leave the checkpoint directories (printed) for --recover")
    ap.add_argument("--recover", default=None, metavar="DIR",
                    help="only recover from the newest checkpoint a --keep run left in DIR")
    ap.add_argument("--cold", action="store_true",
                    help="with --recover: evict the checkpoint's files from the page cache "
                         "first")
    args = ap.parse_args()
    if args.recover:
        recover_only(Path(args.recover), args.window, args.cold)
        return
    print(f"query: {WINDOW_QUERY if args.window else QUERY}\n{args.keys:,} keys, {args.change:.1%} of them updated per "
          f"interval, {args.intervals} intervals; load {_load()}, {os.cpu_count()} CPUs")
    for whole in (False, True):
        if args.only is not None and whole != (args.only == "whole"):
            continue
        root = Path(tempfile.mkdtemp(prefix="caudal-bench-", dir=args.dir))
        try:
            print("whole snapshots (before):" if whole else "incremental snapshots:")
            run(args.keys, args.change, args.intervals, whole, root, args.window, args.sparse)
        finally:
            if args.keep:
                print(f"  kept: {root} (--recover {root}{' --window' if args.window else ''})")
            else:
                shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
