"""The manifest of a checkpoint: the one small JSON file, written last, whose presence makes the
checkpoint complete. Everything a restore needs is found from it.

Layout of a checkpoint directory::

    _job.json                         which job writes here (fingerprint, SQL, created)
    _triggered.json                   the highest epoch ever started (to abort its leftovers)
    epoch-00000042/
        v1-s0-o0-windows.parquet      state of operator 0 of vertex 1, subtask 0, epoch 42
        _manifest.json                the commit point, written after every state file

The manifest names every state file it needs, with size and CRC-32. A state may be a chain:
a full table written at some epoch followed by deltas written at later ones (incremental
checkpoints), so a manifest can point into the directories of older epochs; retention keeps
a file as long as any kept manifest names it.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from caudal.checkpoint.errors import DamagedCheckpoint
from caudal.checkpoint.written_file import WrittenFile

if TYPE_CHECKING:  # the storage (pyarrow.fs, Parquet) is imported where a checkpoint is
    # written or read: the runtime's messages need this module, a job without checkpoints
    # needs no storage
    from caudal.checkpoint.storage import CheckpointStorage

FORMAT = "caudal-checkpoint/1"
JOB_FILE = "_job.json"
TRIGGERED_FILE = "_triggered.json"
MANIFEST_NAME = "_manifest.json"
_EPOCH_DIR = re.compile(r"^epoch-(\d{8,})$")


def epoch_dir(epoch: int) -> str:
    return f"epoch-{epoch:08d}"


def manifest_path(epoch: int) -> str:
    return f"{epoch_dir(epoch)}/{MANIFEST_NAME}"


def state_file_path(epoch: int, vertex: int, subtask: int, op: int, name: str,
                    part: str = "") -> str:
    """Where a state file goes; ``part`` tells apart several files of one state in one epoch
    (carried deltas, compactions)."""
    safe = re.sub(r"[^A-Za-z0-9_.-]", "_", name)[:60]
    return f"{epoch_dir(epoch)}/v{vertex}-s{subtask}-o{op}-{safe}{part}.parquet"


def epoch_of_dir(name: str) -> int | None:
    m = _EPOCH_DIR.match(name)
    return int(m.group(1)) if m else None


@dataclass(frozen=True)
class StateFile:
    """One Parquet file of a state: a whole table (``full``) or the changes of one epoch or,
    once compacted, of several (``delta``: upserts and deletions by ``key``; older rows with
    ``column < value`` dropped, per ``expire``: one ``(column, value)`` or a list of them)."""

    file: WrittenFile
    kind: str = "full"
    key: tuple[str, ...] = ()
    expire: Any = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = asdict(self.file)
        out["kind"] = self.kind
        if self.key:
            out["key"] = list(self.key)
        if self.expire is not None:
            out["expire"] = list(self.expire)
        return out

    @staticmethod
    def from_json(d: dict[str, Any]) -> StateFile:
        return StateFile(WrittenFile(str(d["path"]), int(d["bytes"]), int(d["crc32"]),
                                     int(d.get("rows", 0))),
                         str(d.get("kind", "full")), tuple(d.get("key", ())),
                         tuple(d["expire"]) if d.get("expire") is not None else None)


@dataclass
class StateRef:
    """One named state of an operator: a chain of files (a table) or an inline JSON value."""

    files: list[StateFile] | None = None
    value: Any = None

    @property
    def is_table(self) -> bool:
        return self.files is not None

    @property
    def bytes(self) -> int:
        return sum(f.file.bytes for f in self.files or ())

    def to_json(self) -> dict[str, Any]:
        if self.files is not None:
            return {"files": [f.to_json() for f in self.files]}
        return {"value": self.value}

    @staticmethod
    def from_json(d: dict[str, Any]) -> StateRef:
        if "files" in d:
            return StateRef(files=[StateFile.from_json(f) for f in d["files"]])
        return StateRef(value=d.get("value"))


@dataclass
class SubtaskState:
    """What one subtask contributed to a checkpoint."""

    #: per operator of the chain: state name -> reference
    operators: list[dict[str, StateRef]] = field(default_factory=list)
    #: source offsets per partition (source subtasks only)
    offsets: dict[str, Any] | None = None
    #: the subtask had reached the end of its input (its state is final)
    finished: bool = False
    #: a source subtask's watermark (µs), so a resumed source does not go back in time
    watermark: int | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "operators": [{k: v.to_json() for k, v in op.items()} for op in self.operators],
            "offsets": self.offsets, "finished": self.finished}
        if self.watermark is not None:
            out["watermark"] = self.watermark
        return out

    @staticmethod
    def from_json(d: dict[str, Any]) -> SubtaskState:
        mark = d.get("watermark")
        return SubtaskState([{k: StateRef.from_json(v) for k, v in op.items()}
                             for op in d["operators"]], d.get("offsets"),
                            bool(d.get("finished", False)), int(mark) if mark is not None
                            else None)

    def files(self) -> list[StateFile]:
        return [f for op in self.operators for ref in op.values() for f in ref.files or ()]


@dataclass
class VertexState:
    id: int
    name: str
    parallelism: int
    fingerprint: str
    #: operator labels, for listings
    operators: list[str]
    subtasks: list[SubtaskState]

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name, "parallelism": self.parallelism,
                "fingerprint": self.fingerprint, "operators": self.operators,
                "subtasks": [s.to_json() for s in self.subtasks]}

    @staticmethod
    def from_json(d: dict[str, Any]) -> VertexState:
        return VertexState(int(d["id"]), str(d["name"]), int(d["parallelism"]),
                           str(d["fingerprint"]), list(d.get("operators", [])),
                           [SubtaskState.from_json(s) for s in d["subtasks"]])


@dataclass
class Manifest:
    job: str
    epoch: int
    vertices: list[VertexState]
    max_key_groups: int
    time: float = field(default_factory=time.time)
    #: taken when stopping the job (Ctrl-C, SIGTERM): resuming continues where it stopped
    savepoint: bool = False
    #: taken at the end of bounded input: every subtask had finished
    final: bool = False

    def to_json(self) -> dict[str, Any]:
        return {"format": FORMAT, "job": self.job, "epoch": self.epoch, "time": self.time,
                "savepoint": self.savepoint, "final": self.final,
                "max_key_groups": self.max_key_groups,
                "vertices": [v.to_json() for v in self.vertices]}

    def encode(self) -> bytes:
        return json.dumps(self.to_json(), separators=(",", ":")).encode()

    @staticmethod
    def decode(data: bytes, where: str) -> Manifest:
        try:
            d = json.loads(data)
            if d.get("format") != FORMAT:
                raise DamagedCheckpoint(f"{where} is not a caudal checkpoint manifest (format "
                                        f"{d.get('format')!r}, expected {FORMAT!r})")
            return Manifest(str(d["job"]), int(d["epoch"]),
                            [VertexState.from_json(v) for v in d["vertices"]],
                            int(d["max_key_groups"]), float(d["time"]),
                            bool(d.get("savepoint")), bool(d.get("final")))
        except DamagedCheckpoint:
            raise
        except (ValueError, KeyError, TypeError, AttributeError) as e:
            raise DamagedCheckpoint(f"checkpoint manifest {where} is corrupt or truncated "
                                    f"({type(e).__name__}: {e})") from None

    def files(self) -> list[StateFile]:
        return [f for v in self.vertices for s in v.subtasks for f in s.files()]

    @property
    def bytes(self) -> int:
        """Size of all the state this checkpoint needs (including files of older epochs
        that incremental chains point to)."""
        return sum(f.file.bytes for f in self.files())

    def vertex(self, vid: int) -> VertexState | None:
        for v in self.vertices:
            if v.id == vid:
                return v
        return None


def write_manifest(storage: CheckpointStorage, manifest: Manifest) -> None:
    """The commit point of a checkpoint: after this returns, the checkpoint is complete."""
    storage.write_bytes(manifest_path(manifest.epoch), manifest.encode())


def read_manifest(storage: CheckpointStorage, epoch: int) -> Manifest:
    where = storage.full(manifest_path(epoch))
    manifest = Manifest.decode(storage.read_bytes(manifest_path(epoch)), where)
    if manifest.epoch != epoch:
        raise DamagedCheckpoint(f"checkpoint manifest {where} names epoch {manifest.epoch}, "
                                f"not {epoch}")
    return manifest


def epochs_on_disk(storage: CheckpointStorage) -> list[int]:
    """Every epoch that has a directory, complete or not, ascending."""
    out = []
    for name in storage.list_dir(""):
        e = epoch_of_dir(name)
        if e is not None:
            out.append(e)
    return sorted(out)


def completed_epochs(storage: CheckpointStorage) -> list[int]:
    """Epochs whose manifest was written (complete checkpoints), ascending."""
    return [e for e in epochs_on_disk(storage) if storage.exists(manifest_path(e))]


def verify_files(storage: CheckpointStorage, manifest: Manifest) -> None:
    """Cheap check that every file the manifest needs is there with its recorded size
    (checksums are checked when the files are read)."""
    for f in manifest.files():
        size = storage.size(f.file.path)
        if size is None:
            raise DamagedCheckpoint(f"checkpoint {manifest.epoch} needs "
                                    f"{storage.full(f.file.path)}, which is missing")
        if size != f.file.bytes:
            raise DamagedCheckpoint(f"checkpoint {manifest.epoch} needs "
                                    f"{storage.full(f.file.path)} of {f.file.bytes} bytes; it "
                                    f"has {size} (truncated or overwritten)")


# ---- the job file and the trigger marker ---------------------------------------------------

def write_job_file(storage: CheckpointStorage, info: dict[str, Any]) -> None:
    storage.write_bytes(JOB_FILE, json.dumps(info, indent=1).encode())


def read_job_file(storage: CheckpointStorage) -> dict[str, Any] | None:
    if not storage.exists(JOB_FILE):
        return None
    try:
        return json.loads(storage.read_bytes(JOB_FILE))
    except (ValueError, DamagedCheckpoint):
        return None


def write_triggered(storage: CheckpointStorage, epoch: int) -> None:
    storage.write_bytes(TRIGGERED_FILE, json.dumps({"epoch": epoch}).encode())


def read_triggered(storage: CheckpointStorage) -> int:
    if not storage.exists(TRIGGERED_FILE):
        return 0
    try:
        return int(json.loads(storage.read_bytes(TRIGGERED_FILE))["epoch"])
    except (ValueError, KeyError, TypeError, DamagedCheckpoint):
        return 0
