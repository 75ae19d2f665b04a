"""``caudal checkpoints DIR``: the complete checkpoints of a directory, newest last, with
their epoch, time, size and the size of each operator's state -- what a user needs to see
before choosing ``--from-epoch`` or deleting a directory."""

from __future__ import annotations

import time

from caudal.checkpoint.errors import CheckpointError
from caudal.checkpoint.manifest import (
    Manifest,
    completed_epochs,
    epochs_on_disk,
    read_job_file,
    read_manifest,
)
from caudal.checkpoint.storage import CheckpointStorage


def human_bytes(n: float) -> str:
    for unit, size in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{n:.0f} B"


def _kind(m: Manifest) -> str:
    return "final" if m.final else "savepoint" if m.savepoint else "checkpoint"


def operator_sizes(m: Manifest) -> list[tuple[str, int, int]]:
    """(label, bytes, subtasks) per operator with table state, in graph order."""
    out = []
    for v in m.vertices:
        count = max((len(s.operators) for s in v.subtasks), default=0)
        for o in range(count):
            size = sum(ref.bytes for s in v.subtasks if o < len(s.operators)
                       for ref in s.operators[o].values())
            if size:
                label = v.operators[o] if o < len(v.operators) else f"operator {o}"
                out.append((f"[{v.id}] {label}", size, v.parallelism))
    return out


def describe_checkpoints(uri: str) -> list[dict]:
    """The complete checkpoints of a directory as JSON values (the job server's API)."""
    storage = CheckpointStorage(uri)
    out = []
    for epoch in completed_epochs(storage):
        try:
            m = read_manifest(storage, epoch)
        except CheckpointError as e:
            out.append({"epoch": epoch, "damaged": str(e)})
            continue
        out.append({"epoch": epoch, "time": m.time, "bytes": m.bytes, "kind": _kind(m),
                    "parallelism": max((v.parallelism for v in m.vertices), default=1),
                    "operators": [{"operator": label, "bytes": size, "subtasks": n}
                                  for label, size, n in operator_sizes(m)]})
    return out


def list_checkpoints(uri: str) -> str:
    storage = CheckpointStorage(uri)
    job = read_job_file(storage)
    epochs = completed_epochs(storage)
    if job is None and not epochs:
        raise CheckpointError(f"{storage.root} holds no caudal checkpoints",
                              hint="give the --checkpoint-dir of a job")
    lines = [f"{storage.root}: job {job['job'][:12] if job else '?'}"]
    if not epochs:
        lines.append("no complete checkpoint yet")
    for epoch in epochs:
        try:
            m = read_manifest(storage, epoch)
        except CheckpointError as e:
            lines.append(f"epoch {epoch:>6}  damaged: {e}")
            continue
        stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(m.time))
        parallelism = max((v.parallelism for v in m.vertices), default=1)
        lines.append(f"epoch {epoch:>6}  {stamp} UTC  {human_bytes(m.bytes):>9}  {_kind(m)}"
                     f"  parallelism {parallelism}")
        for label, size, subtasks in operator_sizes(m):
            lines.append(f"    {human_bytes(size):>9}  {label} ({subtasks} subtasks)")
    partial = [e for e in epochs_on_disk(storage) if e not in epochs]
    if partial:
        lines.append(f"incomplete (not restorable): {', '.join(map(str, partial[-5:]))}")
    return "\n".join(lines)
