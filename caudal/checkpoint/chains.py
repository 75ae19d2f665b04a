"""The files a checkpointed state table consists of, written as the state changes, and their
compaction in tiers in the background.

A state table is a chain ``full, delta, delta, ...`` (state.incremental): the first
snapshot after ``open``/``restore`` is the whole table, the later ones only what changed.
This is the one place that writes state files: the coordinator gives it every table or
delta an operator snapshotted, and records in the manifest the chain it returns.

Compaction keeps a chain short without ever rewriting the whole state on the checkpoint's
path. Like a size-tiered LSM tree: when ``TIER_FANOUT`` deltas of similar size have piled up
at the end of the chain they are merged into one delta (so a row is rewritten O(log n)
times, not at every checkpoint); when the deltas together outweigh the full file, or there
are more than ``MAX_DELTAS``, the chain is folded into a new full file. A compaction runs
on its own thread; its result replaces the files it merged in the chain only if those are
still there (a full table written meanwhile supersedes it), and the next checkpoint's
manifest names it. Files a compaction replaced stay protected from retention until a
checkpoint taken after the swap completed (an in-flight one may still name them).
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

from caudal.checkpoint.manifest import StateFile, epoch_of_dir, state_file_path
from caudal.checkpoint.storage import CheckpointStorage
from caudal.state.incremental import (
    LazyPart,
    StateDelta,
    fold_chain,
    fold_chain_pieces,
    merge_plan,
    merged_pieces,
)

ChainKey = tuple[int, int, int, str]

#: merge this many deltas of similar size at the end of a chain into one
TIER_FANOUT = 4
#: fold a chain into one full file once it has more deltas than this ...
MAX_DELTAS = 12
#: ... or once its deltas together outweigh the full file they apply to
MAX_DELTA_RATIO = 1.0
#: a full file smaller than this counts as this large (tiny states are not rewritten for
#: every delta)
MIN_BASE_BYTES = 1 << 16


@dataclass
class _Chain:
    """The files a state table currently consists of, and what could not be written yet."""

    files: list[StateFile] = field(default_factory=list)
    #: tables of earlier snapshots not written yet (a failed write, an abandoned checkpoint):
    #: written before the next one, in order
    unwritten: list[tuple[str, pa.Table, tuple[str, ...], Any]] = field(default_factory=list)
    #: the epoch of the newest snapshot written
    epoch: int = 0
    compacting: bool = False


def plan_compaction(files: list[StateFile]) -> tuple[int, int] | None:
    """The run ``files[start:end]`` to compact now, or None. A run starting at 0 (it holds
    the full file) folds the chain into a new full file; any other run merges deltas."""
    deltas = [i for i, f in enumerate(files) if f.kind == "delta"]
    if not deltas:
        return None
    base = sum(f.file.bytes for f in files if f.kind == "full")
    heavy = sum(files[i].file.bytes for i in deltas) > MAX_DELTA_RATIO * max(base,
                                                                             MIN_BASE_BYTES)
    if len(deltas) > MAX_DELTAS or heavy:
        return 0, len(files)
    if len(deltas) < TIER_FANOUT:
        return None
    # the newest deltas, extended to older ones while each is no larger than the run so far
    # (a tier: files of similar size)
    end = len(files)
    start = end - 2
    size = files[-1].file.bytes + files[-2].file.bytes
    while start > deltas[0] and files[start - 1].file.bytes <= size:
        start -= 1
        size += files[start].file.bytes
    if end - start < TIER_FANOUT:
        return None
    return start, end


class StateChains:
    """Every state chain of a run of a job (one per operator state table and subtask)."""

    def __init__(self, storage: CheckpointStorage,
                 chains: dict[ChainKey, list[StateFile]] | None = None,
                 log: Callable[[str], None] = print, background: bool = True):
        self.storage = storage
        self.log = log
        self._lock = threading.Lock()
        self._chains: dict[ChainKey, _Chain] = {
            k: _Chain(list(files)) for k, files in (chains or {}).items()}
        #: outputs of compactions being written (protected from retention)
        self._writing: set[str] = set()
        #: files compactions replaced: (epoch of the chain's newest snapshot then, paths)
        self._retired: list[tuple[int, list[str]]] = []
        self._background = background
        self._compactor = ThreadPoolExecutor(1, thread_name_prefix="caudal-ckpt-compact")
        self._running: list[Future] = []
        self.compactions = 0

    # ---- writing ----------------------------------------------------------------------------

    def write(self, epoch: int, ckey: ChainKey, value: pa.Table | StateDelta,
              missing: Callable[[], str]) -> list[StateFile]:
        """Write a snapshot of one state table (its whole table or a delta) for ``epoch``;
        returns the files the state now consists of. ``missing`` says what went wrong when a
        delta has no chain to extend."""
        with self._lock:
            chain = self._add(ckey, value, missing)
        files = self._flush(epoch, ckey, chain)
        self._maybe_compact(ckey, chain)
        return files

    def defer(self, ckey: ChainKey, value: pa.Table | StateDelta,
              missing: Callable[[], str]) -> None:
        """Keep a snapshot that will not be written now (its checkpoint was abandoned) for
        the next write of the chain: a delta must never be lost from it."""
        with self._lock:
            self._add(ckey, value, missing)

    def _add(self, ckey: ChainKey, value: pa.Table | StateDelta,
             missing: Callable[[], str]) -> _Chain:
        if isinstance(value, StateDelta):
            chain = self._chains.get(ckey)
            if chain is None:
                from caudal.checkpoint.errors import CheckpointError

                raise CheckpointError(missing())
            chain.unwritten.append(("delta", value.encode(), tuple(value.key), value.expire))
            return chain
        chain = self._chains.setdefault(ckey, _Chain())
        chain.unwritten = [("full", value, (), None)]   # a full table replaces history
        return chain

    def _flush(self, epoch: int, ckey: ChainKey, chain: _Chain) -> list[StateFile]:
        """Write the chain's unwritten tables; on failure they stay queued for next time."""
        vertex, subtask, index, name = ckey
        while True:
            with self._lock:
                if not chain.unwritten:
                    chain.epoch = max(chain.epoch, epoch)
                    return list(chain.files)
                kind, table, key, expire = chain.unwritten[0]
                count = len(chain.unwritten)
            part = "" if count == 1 else f".{count}"
            path = state_file_path(epoch, vertex, subtask, index, name, part)
            written = self.storage.write_table(path, table)
            with self._lock:
                if kind == "full":
                    chain.files = []
                chain.files = [*chain.files, StateFile(written, kind, key, expire)]
                chain.unwritten.pop(0)

    # ---- compaction -------------------------------------------------------------------------

    def _maybe_compact(self, ckey: ChainKey, chain: _Chain) -> None:
        with self._lock:
            if chain.compacting:
                return
            run = plan_compaction(chain.files)
            if run is None:
                return
            chain.compacting = True
            files = chain.files[run[0]:run[1]]
            newest = epoch_of_dir(files[-1].file.path.partition("/")[0]) or chain.epoch
            vertex, subtask, index, name = ckey
            path = state_file_path(newest, vertex, subtask, index, name,
                                   f".c{uuid.uuid4().hex[:8]}")
            self._writing.add(path)
        if not self._background:
            self._compact(ckey, chain, run[0], files, path)
            return
        fut = self._compactor.submit(self._compact, ckey, chain, run[0], files, path)
        with self._lock:
            self._running = [f for f in self._running if not f.done()] + [fut]

    def _compact(self, ckey: ChainKey, chain: _Chain, start: int, files: list[StateFile],
                 path: str) -> None:
        try:
            # a row group of a file at a time, never the chain decoded whole
            # (state.incremental.fold_chain_pieces, merged_pieces)
            lazy = [LazyPart(self.storage.open_table(f.file), f.kind, f.key, f.expire)
                    for f in files]
            if start == 0 and files[0].kind == "full":
                schema = lazy[0].schema
                merged = StateFile(self.storage.write_tables(
                    path, schema, fold_chain_pieces(schema, lazy[0].groups(), lazy[1:])))
            elif start == 0:   # (no full file: the chain of a state that began empty)
                parts = [(self.storage.read_table(f.file), f.kind, f.key, f.expire)
                         for f in files]
                merged = StateFile(self.storage.write_table(path, fold_chain(parts)))
            else:
                plan, expire = merge_plan(lazy)
                schema = pa.unify_schemas([p.schema for p in lazy])
                merged = StateFile(self.storage.write_tables(
                    path, schema, merged_pieces(lazy, plan, schema)), "delta",
                    files[0].key, [list(e) for e in expire] or None)
        except Exception as e:  # noqa: BLE001 - compaction is an optimization
            self.log(f"could not compact checkpoint state {ckey[3]!r} ({e}); its chain of "
                     f"files stays as it is")
            with self._lock:
                chain.compacting = False
                self._writing.discard(path)
            self.storage.delete_file(path)
            return
        with self._lock:
            chain.compacting = False
            self._writing.discard(path)
            now = chain.files[start:start + len(files)]
            swapped = len(now) == len(files) and all(a is b for a, b in zip(now, files))
            if swapped:
                chain.files = [*chain.files[:start], merged, *chain.files[start + len(files):]]
                self._retired.append((chain.epoch, [f.file.path for f in files]))
                self.compactions += 1
        if not swapped:
            self.storage.delete_file(path)   # the chain moved on (a full table replaced it)
            return
        self._maybe_compact(ckey, chain)     # the merged delta may complete a higher tier

    def wait(self) -> None:
        """Until every compaction started so far (and those they started) is done."""
        while True:
            with self._lock:
                running = [f for f in self._running if not f.done()]
            if not running:
                return
            for f in running:
                f.exception()

    def close(self, wait: bool = True) -> None:
        self._compactor.shutdown(wait=wait, cancel_futures=not wait)

    # ---- retention --------------------------------------------------------------------------

    def needed(self, completed: int) -> set[str]:
        """Files of the live chains, of compactions being written, and those compactions
        replaced while a checkpoint that may name them was in flight (up to ``completed``,
        the newest complete checkpoint, takes the files its manifest names)."""
        with self._lock:
            self._retired = [(e, paths) for e, paths in self._retired if e >= completed]
            names = set(self._writing)
            for chain in self._chains.values():
                names.update(f.file.path for f in chain.files)
            for _, paths in self._retired:
                names.update(paths)
        return names

    def of_subtasks(self, keys: list[tuple[int, int]]) -> dict[ChainKey, list[StateFile]]:
        """The chains of these subtasks (for another process's writer to extend)."""
        wanted = set(keys)
        with self._lock:
            return {k: list(c.files) for k, c in self._chains.items() if k[:2] in wanted}

    def forget(self, key: tuple[int, int]) -> None:
        """Drop the chains of subtask ``key``: another process writes its state now (a Ray
        worker extends the chains it was restored with)."""
        with self._lock:
            for ckey in [k for k in self._chains if k[:2] == key]:
                del self._chains[ckey]

    def files(self, ckey: ChainKey) -> list[StateFile]:
        with self._lock:
            chain = self._chains.get(ckey)
            return list(chain.files) if chain is not None else []
