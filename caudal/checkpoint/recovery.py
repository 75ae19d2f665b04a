"""Resuming a job from its checkpoint directory.

At start the directory is claimed (a lock), checked to belong to this job (the fingerprint of
the dataflow), and the newest complete checkpoint is chosen. Then, before any subtask runs:

1. sinks finish the two-phase commit of that checkpoint: every pre-commit its manifest lists
   is committed (idempotent: it may have been committed before the crash), and every epoch
   started after it is aborted -- those rows will be produced again by the replay;
2. every subtask gets its state: the same subtask's when the parallelism is unchanged; when
   it changed, the concatenation of all old subtasks' tables restricted to the key groups the
   new subtask owns; source offsets of all old subtasks are merged, and each source reopens
   its partitions at their offsets.

A damaged checkpoint (unreadable manifest, missing, truncated or corrupt state file) is never
silently skipped when its output may already be visible: resuming from an older checkpoint
would then write rows twice. The error says how to choose (``--from-epoch``, ``--fresh``).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

from caudal.checkpoint.errors import (
    CheckpointError,
    DamagedCheckpoint,
    IncompatibleCheckpoint,
    OtherJobCheckpoint,
)
from caudal.checkpoint.fingerprint import (
    describe_differences,
    job_fingerprint,
    vertex_fingerprint,
)
from caudal.checkpoint.manifest import (
    JOB_FILE,
    MANIFEST_NAME,
    TRIGGERED_FILE,
    Manifest,
    StateFile,
    completed_epochs,
    epoch_dir,
    epoch_of_dir,
    epochs_on_disk,
    read_job_file,
    read_manifest,
    read_triggered,
    verify_files,
    write_job_file,
)
from caudal.checkpoint.storage import TEMP_MARK, CheckpointStorage
from caudal.operators.registry import own_key_group_states, unfolded_states
from caudal.operators.sink import SINK_TABLE
from caudal.plan.physical import PhysicalGraph
from caudal.state.incremental import fold_chain, unfold_chain
from caudal.state.rescale import (
    KEY_GROUP,
    concat_states,
    keep_key_groups,
    key_groups_of,
    old_subtasks_for,
)

Key = tuple[int, int]
ChainKey = tuple[int, int, int, str]


@dataclass
class JobIdentity:
    fingerprint: str
    vertices: dict[int, str]


@dataclass
class Restored:
    """What a run starts from: the checkpoint, each new subtask's payload, and the state
    chains that stay valid (same parallelism) for incremental snapshots to extend."""

    manifest: Manifest
    payloads: dict[Key, dict[str, Any]]
    chains: dict[ChainKey, list[StateFile]] = field(default_factory=dict)
    seconds: float = 0.0
    #: the checksums of the whole tables left to the operators, still running when
    #: ``load_state`` returns (each operator's ``Unfolded`` waits for its own)
    checks: list[Future[None]] = field(default_factory=list)

    def checked(self) -> None:
        """Wait until every file read has passed its checksum (raises DamagedCheckpoint
        otherwise)."""
        for check in self.checks:
            check.result()


def identify(graph: PhysicalGraph) -> JobIdentity:
    return JobIdentity(job_fingerprint(graph),
                       {v.id: vertex_fingerprint(v, graph) for v in graph.vertices})


def _ours(name: str) -> bool:
    return name in (JOB_FILE, TRIGGERED_FILE, "_lock") or epoch_of_dir(name) is not None \
        or _killed_write(name)


def _killed_write(name: str) -> bool:
    """A top-level file of ours that a killed process was writing (never renamed)."""
    return name.partition(TEMP_MARK)[0] in (JOB_FILE, TRIGGERED_FILE) and TEMP_MARK in name


def prepare_directory(storage: CheckpointStorage, graph: PhysicalGraph, ident: JobIdentity,
                      sql: str, fresh: bool,
                      before_fresh: Callable[[], None] | None = None) -> int:
    """Claim the directory for this job; with ``fresh``, delete its checkpoints, after
    ``before_fresh`` (the sinks' checks for a run from scratch: a run they refuse keeps its
    checkpoints). Returns the highest epoch ever started there (new epochs are numbered
    above it)."""
    storage.lock()
    entries = storage.list_dir("")
    foreign = [n for n in entries if not _ours(n) and not n.startswith(".")]
    if foreign and JOB_FILE not in entries:
        raise CheckpointError(
            f"--checkpoint-dir {storage.root} is not empty and holds no caudal checkpoints "
            f"(found {', '.join(foreign[:3])}); give a new or empty directory")
    for name in entries:
        if _killed_write(name):
            storage.delete_file(name)
    triggered = max([read_triggered(storage)] + epochs_on_disk(storage))
    info = read_job_file(storage)
    if fresh:
        if before_fresh is not None:
            before_fresh()
        for e in epochs_on_disk(storage):
            storage.delete_file(f"{epoch_dir(e)}/{MANIFEST_NAME}")
        for e in epochs_on_disk(storage):
            storage.delete_dir(epoch_dir(e))
        info = None
    if info is not None and info.get("job") != ident.fingerprint:
        changes = describe_differences(graph, info)
        raise IncompatibleCheckpoint(
            f"--checkpoint-dir {storage.root} holds checkpoints of a different job"
            + (f" ({changes})" if changes else "")
            + "; its state cannot be restored into this one: run with --fresh to discard "
              "them, or give another --checkpoint-dir")
    if info is None:
        write_job_file(storage, {
            "job": ident.fingerprint, "created": time.time(), "sql": sql,
            "vertices": [{"id": v.id, "name": v.name, "fingerprint": ident.vertices[v.id]}
                         for v in graph.vertices]})
    return triggered


def _nothing_to_commit(manifest: Manifest, graph: PhysicalGraph) -> bool:
    """True when no sink of the checkpoint had pre-committed rows awaiting commit, so output
    of that epoch cannot be visible and falling back past it is safe."""
    for v in graph.vertices:
        if v.sink is None:
            continue
        old = manifest.vertex(v.id)
        if old is None:
            return False
        for st in old.subtasks:
            for op in st.operators:
                ref = op.get("sink")
                if ref is not None and ref.value and ref.value.get("pending"):
                    return False
    return True


def choose_checkpoint(storage: CheckpointStorage, graph: PhysicalGraph, ident: JobIdentity,
                      from_epoch: int | None = None) -> Manifest | None:
    """The checkpoint to resume from: the newest complete one (or ``from_epoch``), after
    checking it belongs to this job and every file it needs is there."""
    epochs = completed_epochs(storage)
    if from_epoch is not None:
        if from_epoch not in epochs:
            raise CheckpointError(
                f"--from-epoch {from_epoch}: no complete checkpoint with that epoch in "
                f"{storage.root}", hint="list them with: caudal checkpoints "
                                        f"{storage.uri}")
        epochs = [from_epoch]
    for epoch in reversed(epochs):
        damage: DamagedCheckpoint | None = None
        manifest: Manifest | None = None
        try:
            manifest = read_manifest(storage, epoch)
            if manifest.job != ident.fingerprint:
                raise OtherJobCheckpoint(
                    f"checkpoint {epoch} in {storage.root} was written by a different job; "
                    f"run with --fresh to discard it, or give another --checkpoint-dir")
            verify_files(storage, manifest)
            return manifest
        except DamagedCheckpoint as e:
            damage = e
        older = [e for e in epochs if e < epoch]
        if manifest is not None and older and _nothing_to_commit(manifest, graph):
            continue  # nothing of it can be visible: the previous checkpoint is exact
        hint = (f"to resume from checkpoint {older[-1]} anyway (rows after it may be written "
                f"twice) run with --from-epoch {older[-1]}; " if older else "") + \
            "--fresh starts over"
        raise DamagedCheckpoint(
            f"{damage.message}; its output may already be committed, so caudal will not "
            f"silently resume from an older checkpoint", hint=hint)
    return None


# ---- sinks ---------------------------------------------------------------------------------

def sink_index(graph: PhysicalGraph, vid: int) -> int | None:
    for i, op in enumerate(graph.vertex(vid).operators):
        if op.kind == "sink":
            return i
    return None


def recover_sinks(manifest: Manifest | None, graph: PhysicalGraph, triggered: int,
                  storage: CheckpointStorage | None = None) -> None:
    """Finish the two-phase commit of the checkpoint resumed from: commit what its manifest
    lists, abort every epoch started after it. Runs before any subtask starts. A sink's
    pre-commit tables (``sink.<name>`` files, e.g. staged Kafka messages) are read from
    ``storage`` back into its state."""
    from caudal.connectors.registry import sink_class, sink_tables

    restored_epoch = manifest.epoch if manifest is not None else 0
    for v in graph.vertices:
        index = sink_index(graph, v.id)
        if v.sink is None or index is None:
            continue
        cls = sink_class(v.sink)
        old = manifest.vertex(v.id) if manifest is not None else None
        parallelism = old.parallelism if old is not None else v.parallelism
        for j in range(parallelism):
            state = None
            if old is not None:
                named = old.subtasks[j].operators[index]
                ref = named.get("sink")
                state = ref.value if ref is not None else None
                for name, table_ref in named.items():
                    if name.startswith(SINK_TABLE) and table_ref.files and \
                            state is not None and storage is not None:
                        state = {**state, name[len(SINK_TABLE):]: fold_chain(
                            [(storage.read_table(f.file), f.kind, f.key, f.expire)
                             for f in table_ref.files])}
            sink = cls(v.sink, j, parallelism)
            sink.writer = v.id
            sink.open(v.sink.schema, state)
            try:
                if state is not None:
                    sink.commit(restored_epoch)
                for epoch in range(restored_epoch + 1, triggered + 2):
                    sink.abort(epoch)
            finally:
                sink.close()
    # what the checkpoint pre-committed is committed now; anything else a killed run left
    # half-written is an orphan that no replay will commit
    for table in sink_tables(graph):
        sink_class(table).discard_orphans(table)


# ---- operator state ------------------------------------------------------------------------

def load_state(storage: CheckpointStorage, manifest: Manifest, graph: PhysicalGraph,
               threads: int = 4) -> Restored:
    """Read a checkpoint's files (in parallel) and give every subtask of ``graph`` its state,
    redistributing keyed state by key group where the parallelism changed.

    Every file is asked into the page cache at once (``CheckpointStorage.prefetch``). The
    whole table of a chain an operator restores unfolded is checksummed on a thread of its
    own while the deltas are merged and while the operator decodes it: its ``Unfolded``
    holds the check, and hands out nothing decoded from the file before it has passed (see
    ``Unfolded``); ``Restored.checked`` waits for all of them. From a cold page cache the
    reading from disk then overlaps the decoding instead of coming before it."""
    started = time.monotonic()
    refs = {f.file.path: f.file for f in manifest.files()}
    # the whole table of a chain an operator restores unfolded is decoded by the operator
    lazy = _unfolded_bases(manifest, graph)
    # the key columns of the whole tables left to the operators first (their indexes are
    # built while the rest is read), then the deltas (read and merged first), then the rest
    order = sorted(refs.values(), key=lambda r: r.path in lazy)
    threading.Thread(target=storage.prefetch, args=(order, _keys_of(manifest, lazy)),
                     name="caudal-prefetch", daemon=True).start()
    checks: dict[str, Future[None]] = {}

    def read(ref: Any) -> Any:
        if ref.path in lazy:
            data = storage.read_sized(ref)
            checks[ref.path] = _checking(storage, ref, data)
            return pa.py_buffer(data) if isinstance(data, bytes) else data
        return storage.read_table(ref)

    with ThreadPoolExecutor(threads, thread_name_prefix="caudal-restore") as pool:
        tables = dict(zip(refs, pool.map(read, refs.values())))
    try:
        restored = _payloads(manifest, graph, tables, checks)
    except BaseException:
        for check in checks.values():   # a damaged file is what to report
            check.result()
        raise
    restored.checks = list(checks.values())
    restored.seconds = time.monotonic() - started
    return restored


def _keys_of(manifest: Manifest, paths: set[str]) -> dict[str, tuple[str, ...]]:
    """The key columns of the chains whose whole tables are ``paths`` (as their deltas name
    them; a chain without deltas: none)."""
    keys: dict[str, tuple[str, ...]] = {}
    for v in manifest.vertices:
        for st in v.subtasks:
            for named in st.operators:
                for ref in named.values():
                    files = ref.files or []
                    key = next((tuple(f.key) for f in files if f.key), ())
                    for f in files:
                        if f.file.path in paths and key:
                            keys[f.file.path] = key
    return keys


def _checking(storage: CheckpointStorage, ref: Any, data: Any) -> Future[None]:
    """The checksum of ``data`` against the manifest, computed on a thread of its own (it
    outlives ``load_state``: the operator decodes meanwhile)."""
    done: Future[None] = Future()

    def run() -> None:
        try:
            storage.verify(ref, data)
            done.set_result(None)
        except BaseException as e:  # noqa: BLE001 - handed to whoever waits
            done.set_exception(e)

    threading.Thread(target=run, name="caudal-restore-check", daemon=True).start()
    return done


def _payloads(manifest: Manifest, graph: PhysicalGraph, tables: dict[str, Any],
              checks: dict[str, Future[None]] | None = None) -> Restored:
    """Every subtask's state from the files read (``tables``: by path); ``checks``: the
    pending checksums of whole tables left to the operators, by path."""
    restored = Restored(manifest, {})
    for v in graph.vertices:
        old = manifest.vertex(v.id)
        if old is None:
            continue
        offsets: dict[str, Any] | None = None
        for st in old.subtasks:
            if st.offsets is not None:
                offsets = {**(offsets or {}), **st.offsets}
        marks = [st.watermark for st in old.subtasks if st.watermark is not None]
        old_ops: list[list[dict[str, Any]]] = []
        same = old.parallelism == v.parallelism
        for s, st in enumerate(old.subtasks):
            ops = []
            for o, named in enumerate(st.operators):
                # an operator that applies the deltas in place gets its chains unfolded
                unfolded = unfolded_states(v.operators[o].kind) \
                    if same and o < len(v.operators) else frozenset()
                values: dict[str, Any] = {}
                for name, ref in named.items():
                    if name.startswith(SINK_TABLE):
                        continue   # a sink's pre-commit: recover_sinks finished it
                    if ref.files is None:
                        values[name] = ref.value
                        continue
                    parts = [(tables[f.file.path], f.kind, f.key, f.expire) for f in ref.files]
                    # (the chain's last whole table: the one unfold_chain keeps)
                    base = next((f.file.path for f in reversed(ref.files)
                                 if f.kind == "full"), None)
                    values[name] = unfold_chain(parts, (checks or {}).get(base)) \
                        if name in unfolded else fold_chain(parts)
                    if same:
                        restored.chains[(v.id, s, o, name)] = list(ref.files)
                ops.append(values)
            old_ops.append(ops)
        for i in range(v.parallelism):
            if same:
                ops = old_ops[i]
            else:
                ops = _rescaled(old_ops, i, v.parallelism, manifest.max_key_groups,
                                [own_key_group_states(op.kind) for op in v.operators])
            payload: dict[str, Any] = {"operators": ops, "epoch": manifest.epoch}
            if offsets is not None:
                payload["offsets"] = dict(offsets)
            if old.parallelism == v.parallelism and old.subtasks[i].watermark is not None:
                payload["watermark"] = old.subtasks[i].watermark
            elif marks and len(marks) == len(old.subtasks):
                payload["watermark"] = min(marks)   # no subtask may go back behind it
            restored.payloads[(v.id, i)] = payload
    return restored


def _unfolded_bases(manifest: Manifest, graph: PhysicalGraph) -> set[str]:
    """The files that are the whole table of a chain restored unfolded (same parallelism,
    an operator taking that state unfolded), and of no other chain."""
    lazy: set[str] = set()
    folded: set[str] = set()
    for v in graph.vertices:
        old = manifest.vertex(v.id)
        if old is None:
            continue
        for st in old.subtasks:
            for o, named in enumerate(st.operators):
                takes = unfolded_states(v.operators[o].kind) \
                    if old.parallelism == v.parallelism and o < len(v.operators) else ()
                for name, ref in named.items():
                    files = ref.files or []
                    base = max((i for i, f in enumerate(files) if f.kind == "full"),
                               default=-1)
                    for i, f in enumerate(files):
                        (lazy if name in takes and i == base else folded).add(f.file.path)
    return lazy - folded


def _rescaled(old_ops: list[list[dict[str, Any]]], subtask: int, parallelism: int,
              max_key_groups: int, own: Sequence[frozenset[str]] = ()
              ) -> list[dict[str, Any]]:
    """One new subtask's operator states from all old subtasks': tables concatenated and cut
    to its key groups (those operator ``o`` cuts itself, ``own[o]``, only concatenated);
    other values as the list of the old subtasks' values."""
    groups = key_groups_of(subtask, parallelism, max_key_groups)
    # keyed tables are read from the old subtasks whose key groups overlap this one's only
    overlap = set(old_subtasks_for(subtask, parallelism, len(old_ops), max_key_groups))
    count = max((len(ops) for ops in old_ops), default=0)
    out: list[dict[str, Any]] = []
    for o in range(count):
        names: list[str] = []
        for ops in old_ops:
            for name in (ops[o] if o < len(ops) else {}):
                if name not in names:
                    names.append(name)
        merged: dict[str, Any] = {}
        for name in names:
            values = [ops[o][name] for ops in old_ops if o < len(ops) and name in ops[o]]
            if values and all(isinstance(x, pa.Table) for x in values):
                if all(KEY_GROUP in t.column_names for t in values):
                    # none of the overlapping old subtasks may have written this table (an
                    # operator state only some subtasks had): then this subtask's is empty
                    values = [ops[o][name] for s, ops in enumerate(old_ops)
                              if s in overlap and o < len(ops) and name in ops[o]] or \
                        [values[0].slice(0, 0)]
                itself = o < len(own) and name in own[o] and \
                    all(KEY_GROUP in t.column_names for t in values)
                merged[name] = concat_states(
                    values if itself else [keep_key_groups(t, groups) for t in values])
            else:
                merged[name] = values
        out.append(merged)
    return out


def check_partitions(table_name: str, partitions: list[str], offsets: dict[str, Any] | None,
                     old_parallelism: int, parallelism: int) -> None:
    """Refuse to resume a source whose checkpointed partitions no longer exist (the
    input changed, or the connector's partitions depend on the parallelism)."""
    if not offsets:
        return
    missing = sorted(set(offsets) - set(partitions))
    if missing:
        hint = (f"resume with --parallelism {old_parallelism}, the parallelism the checkpoint "
                f"was taken with" if old_parallelism != parallelism
                else "the input changed since the checkpoint; run with --fresh to start over")
        raise IncompatibleCheckpoint(
            f"cannot resume table {table_name!r}: the checkpoint has positions in partitions "
            f"{', '.join(missing[:3])}{' ...' if len(missing) > 3 else ''} that it no longer "
            f"has", hint=hint)
