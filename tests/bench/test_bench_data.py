"""bench.data with several processes asking for the same input at once: one generates it,
the others wait and reuse it; the directory holds the rows once, and nothing is left behind
(two unlocked generators used to write into one directory and double its rows)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq

from tests.conftest import REPO

EVENTS = 100_000
SCRIPT = ("import sys; from pathlib import Path; from bench.data import bids_parquet; "
          "print(bids_parquet(int(sys.argv[1]), directory=Path(sys.argv[2])))")


def _generators(directory: Path, count: int) -> list[subprocess.Popen]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return [subprocess.Popen([sys.executable, "-c", SCRIPT, str(EVENTS), str(directory)],
                             cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True) for _ in range(count)]


def test_concurrent_generators_write_the_input_once(tmp_path):
    procs = _generators(tmp_path, 3)
    outputs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0], [err[-500:] for _, err in outputs]
    paths = {out.strip().splitlines()[-1] for out, _ in outputs}
    assert paths == {str(tmp_path / f"bid-{EVENTS}-0-100000")}
    assert sum(out.count("generated ") for out, _ in outputs) == 1  # the others waited
    data = Path(paths.pop())
    assert data.stat().st_mode & 0o777 == 0o755
    rows = sum(pq.ParquetFile(f).metadata.num_rows for f in data.glob("*.parquet"))
    assert rows == EVENTS * 46 // 50  # 46 of every 50 Nexmark events are bids
    left = [p.name for p in tmp_path.iterdir() if p.name.startswith(".") and
            not p.name.endswith(".lock")]
    assert left == []


def test_an_incomplete_directory_is_generated_again(tmp_path):
    """A directory left by a killed run of the old, unlocked version (no Parquet file)
    or by a killed generation (a hidden temporary directory) does not count as the input."""
    name = f"bid-{EVENTS}-0-100000"
    (tmp_path / name).mkdir()
    (tmp_path / name / ".part-000.parquet.inprogress").write_bytes(b"x")
    (tmp_path / f".{name}.tmp-dead").mkdir()
    (proc,) = _generators(tmp_path, 1)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err[-500:]
    files = list((tmp_path / name).iterdir())
    assert files and all(f.suffix == ".parquet" for f in files)
    assert not (tmp_path / f".{name}.tmp-dead").exists()
