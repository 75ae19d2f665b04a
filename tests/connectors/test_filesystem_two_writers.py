"""Two ``INSERT INTO`` the same filesystem table in one job (issue 10, bug 3): each INSERT is a
sink of its own with the same subtask numbers, and both commit the same epochs. Final file
names used to be chosen per (subtask, epoch) by checking which names existed, before either
sink had renamed its files into place: both chose the same name, and the second rename
replaced the first file (one run in eight lost every row of one INSERT at parallelism 2).
A name now carries its writer (the sink's vertex), so two writers never pick the same one."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from caudal.connectors.filesystem import FileSystemSink
from caudal.plan.tables import TableSpec
from tests.conftest import run_cli
from tests.helpers import read_committed


def _sink(path: Path, writer: int, subtask: int = 0) -> FileSystemSink:
    spec = TableSpec("out", "filesystem", {"path": str(path), "format": "parquet"})
    sink = FileSystemSink(spec, subtask, 2)
    sink.writer = writer
    sink.open(pa.schema([("id", pa.int64())]))
    return sink


@pytest.mark.parametrize("checkpointed", [True, False])
def test_two_writers_of_one_directory_keep_every_file(tmp_path: Path, checkpointed: bool):
    """Both writers pre-commit before either commits: the interleaving that lost rows."""
    first, second = _sink(tmp_path, writer=3), _sink(tmp_path, writer=5)
    first.write(pa.record_batch({"id": [1, 2, 3]}))
    second.write(pa.record_batch({"id": [10, 20]}))
    for epoch in (1, 2) if checkpointed else (1,):
        first.pre_commit(epoch)
        second.pre_commit(epoch)
        first.commit(epoch)
        second.commit(epoch)
        first.write(pa.record_batch({"id": [100 + epoch]}))
    first.pre_commit(9)
    first.commit(9)
    ids = sorted(read_committed(tmp_path).column("id").to_pylist())
    assert ids == sorted([1, 2, 3, 10, 20] + [100 + e for e in ((1, 2) if checkpointed else (1,))])
    names = sorted(p.name for p in tmp_path.iterdir())
    assert not [n for n in names if n.startswith(".")], names


def test_commit_refuses_to_replace_a_file_it_did_not_write(tmp_path: Path):
    """Defence in depth: a rename onto an existing file would silently drop its rows."""
    sink = _sink(tmp_path, writer=1)
    sink.write(pa.record_batch({"id": [1]}))
    state = sink.pre_commit(1)
    final = state["pending"][0][1]
    pq.write_table(pa.table({"id": [7]}), tmp_path / final)
    with pytest.raises(Exception, match="already exists"):
        sink.commit(1)
    assert pq.read_table(tmp_path / final).column("id").to_pylist() == [7]


SCRIPT = """
CREATE TABLE src (id BIGINT, v BIGINT) WITH (connector = 'filesystem', path = '{src}');
CREATE TABLE out WITH (connector = 'filesystem', path = '{out}', format = 'parquet');
INSERT INTO out SELECT id, v FROM src WHERE v % 2 = 0;
INSERT INTO out SELECT id, v FROM src WHERE v % 2 = 1;
"""
ROWS = 4000


def _run_two_inserts(tmp_path: Path, runs: int) -> list[int]:
    """Run the two-INSERT job ``runs`` times as a real process; the run numbers that did not
    commit every row."""
    src = tmp_path / "src"
    src.mkdir()
    for i in range(4):  # four files: two partitions per source subtask
        ids = pa.array(range(i * ROWS // 4, (i + 1) * ROWS // 4), pa.int64())
        pq.write_table(pa.table({"id": ids, "v": pc.multiply(ids, 7)}), src / f"p{i}.parquet")
    script = tmp_path / "job.sql"
    bad = []
    for run in range(runs):
        out = tmp_path / f"out{run}"
        script.write_text(SCRIPT.format(src=src, out=out))
        done = run_cli("run", str(script), "--parallelism", "2")
        assert done.returncode == 0, done.stderr
        got = read_committed(out)
        if got is None or sorted(got.column("id").to_pylist()) != list(range(ROWS)):
            bad.append(run)
    return bad


def test_two_inserts_into_one_table_keep_every_row(tmp_path: Path):
    assert _run_two_inserts(tmp_path, 10) == []


@pytest.mark.slow
@pytest.mark.timeout(3600)
def test_two_inserts_into_one_table_keep_every_row_200_runs(tmp_path: Path):
    assert _run_two_inserts(tmp_path, 200) == []
