"""Side outputs: batches an operator emits *beside* its main output (late rows for a
``late_data = 'side:<table>'`` table), marked by a tag in the batch's schema metadata.

A tagged batch skips the rest of its chain (runtime.chain) and goes only to the output edges
with the same tag (physical ``Edge.tag``; runtime.subtask); untagged batches go only to the
untagged edges. So side data never mixes with the main stream, and an operator needs nothing
but ``tag(batch, name)`` to use it.
"""

from __future__ import annotations

import pyarrow as pa

#: the schema metadata key that names a batch's side output
SIDE_KEY = b"caudal.side"
#: the tag of late rows
LATE = "late"


def tag(batch: pa.RecordBatch, name: str) -> pa.RecordBatch:
    """The same rows, marked for the side output ``name``."""
    meta = dict(batch.schema.metadata or {})
    meta[SIDE_KEY] = name.encode()
    return batch.replace_schema_metadata(meta)


def tag_of(batch: pa.RecordBatch) -> str | None:
    """The side output a batch belongs to, or None for the main output."""
    meta = batch.schema.metadata
    if not meta:
        return None
    value = meta.get(SIDE_KEY)
    return value.decode() if value is not None else None


def untag(batch: pa.RecordBatch) -> pa.RecordBatch:
    """The batch without its side-output mark (for the sink that receives it)."""
    meta = dict(batch.schema.metadata or {})
    meta.pop(SIDE_KEY, None)
    return batch.replace_schema_metadata(meta or None)
