"""Checkpoint storage on real files: atomic writes, checksums that catch truncation and
corruption, the manifest round trip, and the directory lock (released even by SIGKILL)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pyarrow as pa
import pytest

from caudal.checkpoint.errors import CheckpointError, DamagedCheckpoint
from caudal.checkpoint.manifest import (
    Manifest,
    StateFile,
    StateRef,
    SubtaskState,
    VertexState,
    completed_epochs,
    manifest_path,
    read_manifest,
    verify_files,
    write_manifest,
)
from caudal.checkpoint.storage import CheckpointStorage, resolve


def _table(n: int = 1000) -> pa.Table:
    return pa.table({
        "k": pa.array(range(n), pa.int64()),
        "s": pa.array([f"v{i % 7}" if i % 11 else None for i in range(n)]),
        "t": pa.array(range(n), pa.timestamp("us", tz="UTC")),
        "_key_group": pa.array([i % 128 for i in range(n)], pa.int32()),
    })


def test_table_round_trip_keeps_types(tmp_path):
    storage = CheckpointStorage(str(tmp_path))
    table = _table()
    ref = storage.write_table("epoch-00000001/v0-s0-o0-x.parquet", table)
    assert ref.rows == 1000 and ref.bytes == os.path.getsize(tmp_path / ref.path)
    back = storage.read_table(ref)
    assert back.equals(table) and back.schema.equals(table.schema)
    assert not [p for p in (tmp_path / "epoch-00000001").iterdir() if ".tmp-" in p.name]


def test_url_and_path_resolve_to_the_same_place(tmp_path):
    fs1, root1 = resolve(str(tmp_path))
    fs2, root2 = resolve(f"file://{tmp_path}")
    assert root1 == root2 == str(tmp_path)


def test_truncated_and_corrupt_files_are_refused(tmp_path):
    storage = CheckpointStorage(str(tmp_path))
    ref = storage.write_table("epoch-00000001/a.parquet", _table())
    path = tmp_path / ref.path
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(DamagedCheckpoint, match="truncated"):
        storage.read_table(ref)
    corrupt = bytearray(data)
    corrupt[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(corrupt))
    with pytest.raises(DamagedCheckpoint, match="checksum"):
        storage.read_table(ref)
    path.unlink()
    with pytest.raises(DamagedCheckpoint, match="missing"):
        storage.read_table(ref)


def _manifest(storage: CheckpointStorage, epoch: int) -> Manifest:
    ref = storage.write_table(f"epoch-{epoch:08d}/v0-s0-o0-x.parquet", _table(10))
    sub = SubtaskState([{"x": StateRef(files=[StateFile(ref)]), "n": StateRef(value=[1, 2])}],
                       {"p0": 5}, False, 123)
    return Manifest("job", epoch, [VertexState(0, "v", 1, "fp", ["op"], [sub])], 128)


def test_manifest_round_trip_and_listing(tmp_path):
    storage = CheckpointStorage(str(tmp_path))
    m = _manifest(storage, 3)
    assert completed_epochs(storage) == []        # state files alone are not a checkpoint
    write_manifest(storage, m)
    assert completed_epochs(storage) == [3]
    back = read_manifest(storage, 3)
    assert back.to_json() == m.to_json()
    assert back.vertices[0].subtasks[0].watermark == 123
    verify_files(storage, back)


def test_damaged_manifest_is_reported(tmp_path):
    storage = CheckpointStorage(str(tmp_path))
    m = _manifest(storage, 4)
    write_manifest(storage, m)
    path = tmp_path / manifest_path(4)
    path.write_bytes(path.read_bytes()[:40])
    with pytest.raises(DamagedCheckpoint, match="corrupt or truncated"):
        read_manifest(storage, 4)
    write_manifest(storage, m)
    (tmp_path / m.files()[0].file.path).unlink()
    with pytest.raises(DamagedCheckpoint, match="missing"):
        verify_files(storage, read_manifest(storage, 4))


def test_write_error_says_what_to_do(tmp_path):
    storage = CheckpointStorage(str(tmp_path))
    (tmp_path / "epoch-00000001").write_text("a file where a directory should be")
    with pytest.raises(CheckpointError, match="cannot write checkpoint file"):
        storage.write_table("epoch-00000001/x.parquet", _table(3))


def test_lock_is_exclusive_and_released_by_sigkill(tmp_path):
    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import sys, time\nfrom caudal.checkpoint.storage import CheckpointStorage\n"
         f"CheckpointStorage({str(tmp_path)!r}).lock()\nprint('locked', flush=True)\n"
         "time.sleep(60)"], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(CheckpointError, match="in use by another caudal process"):
            CheckpointStorage(str(tmp_path)).lock()
    finally:
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait()
    deadline = time.monotonic() + 5
    storage = CheckpointStorage(str(tmp_path))
    while True:
        try:
            storage.lock()
            break
        except CheckpointError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)
    storage.unlock()


def test_the_object_store_path_through_the_pyarrow_filesystem_api(tmp_path):
    """Remote filesystems (s3://, gs://, fsspec) go through pyarrow.fs calls instead of
    local renames; the same directory read through that path behaves the same."""
    storage = CheckpointStorage(str(tmp_path))
    storage.local = False
    table = _table(50)
    ref = storage.write_table("epoch-00000002/v0-s0-o0-y.parquet", table)
    assert storage.read_table(ref).equals(table) and storage.size(ref.path) == ref.bytes
    manifest = _manifest(storage, 2)
    write_manifest(storage, manifest)
    assert completed_epochs(storage) == [2]
    verify_files(storage, read_manifest(storage, 2))
    storage.delete_file(manifest_path(2))
    assert completed_epochs(storage) == []
    for name in storage.list_dir("epoch-00000002"):
        storage.delete_file(f"epoch-00000002/{name}")
    storage.remove_empty_dir("epoch-00000002")
    assert storage.list_dir("") == []
