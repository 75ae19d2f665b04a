"""Updating joins and top-N keep their rows compactly (operators.compact_rows: integer
columns narrowed, text with few distinct values as dictionary codes, text with many plain);
their results stay DuckDB's: q20's, q18's and q19's shapes over random inputs (hypothesis:
NULLs, text of few and of many distinct values, ids far apart) at parallelism 1 and 2, and
through a SIGKILL and a resume at another parallelism."""

from __future__ import annotations

import tempfile
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from caudal.job import compile_sql, run_sql
from tests.changelog_helpers import fold, read_changes
from tests.helpers import kill_after_checkpoints, normalized_rows

pytestmark = pytest.mark.timeout(300)

DDL = ("CREATE TABLE bid WITH (connector = 'filesystem', path = '{bid}');\n"
       "CREATE TABLE auction WITH (connector = 'filesystem', path = '{auction}');")

QUERIES = {
    # q20's shape: every bid with its auction's columns, auctions filtered
    "join": "SELECT B.auction, B.bidder, B.price, B.channel, B.extra, A.item, A.seller, "
            "A.category FROM bid AS B JOIN auction AS A ON B.auction = A.id "
            "WHERE A.category = 1",
    "left_join": "SELECT B.auction, B.channel, B.extra, A.item FROM bid AS B LEFT JOIN "
                 "auction AS A ON B.auction = A.id",
    # q18's shape: the last bid per (bidder, auction)
    "dedup": "SELECT auction, bidder, price, channel, extra FROM (SELECT *, ROW_NUMBER() OVER "
             "(PARTITION BY bidder, auction ORDER BY seq DESC) AS rn FROM bid) WHERE rn <= 1",
    # q19's shape: the top 2 bids per auction, with their rank
    "top": "SELECT auction, bidder, price, channel, extra, rn FROM (SELECT *, ROW_NUMBER() "
           "OVER (PARTITION BY auction ORDER BY price DESC NULLS LAST, seq) AS rn FROM bid) "
           "WHERE rn <= 2",
}

_TEXT = st.one_of(st.none(), st.sampled_from(["web", "app", "", "mail", "ünï"]))


def _bids(rows: list[tuple], far: bool) -> pa.Table:
    n = len(rows)
    offset = 1 << 40 if far else 0
    return pa.table({
        "auction": pa.array([offset + r[0] for r in rows], pa.int64()),
        "bidder": pa.array([r[1] for r in rows], pa.int64()),
        "price": pa.array([r[2] for r in rows], pa.int64()),
        "channel": pa.array([r[3] for r in rows], pa.string()),
        "extra": pa.array([None if r[4] else f"extra-{i}" for i, r in enumerate(rows)],
                          pa.string()),
        "seq": pa.array(np.arange(n, dtype=np.int64)),
    })


def _auctions(ids: list[int], far: bool) -> pa.Table:
    offset = 1 << 40 if far else 0
    return pa.table({
        "id": pa.array([offset + i for i in ids], pa.int64()),
        "item": pa.array([f"item {i % 3}" if i % 4 else None for i in ids], pa.string()),
        "seller": pa.array([i * 7 for i in ids], pa.int64()),
        "category": pa.array([i % 2 for i in ids], pa.int64()),
    })


@settings(max_examples=30, deadline=None)
@given(rows=st.lists(st.tuples(st.integers(0, 12), st.integers(0, 5),
                               st.one_of(st.none(), st.integers(0, 10**9)), _TEXT,
                               st.booleans()), min_size=1, max_size=150),
       ids=st.lists(st.integers(0, 14), unique=True, max_size=12),
       far=st.booleans(), parallelism=st.sampled_from([1, 2]))
def test_random_inputs_equal_duckdb(rows, ids, far, parallelism):
    bid, auction = _bids(rows, far), _auctions(ids, far)
    con = duckdb.connect()
    con.register("bid", bid)
    con.register("auction", auction)
    with tempfile.TemporaryDirectory() as tmp:
        paths = {"bid": Path(tmp) / "bid.parquet", "auction": Path(tmp) / "auction.parquet"}
        pq.write_table(bid, paths["bid"], row_group_size=13)
        pq.write_table(auction, paths["auction"], row_group_size=5)
        out = Path(tmp) / "out"
        script = _script(paths, out, list(QUERIES), flush="0")
        run_sql(script, parallelism=parallelism, batch_rows=11)
        got = _folded(out, script, list(QUERIES))
    for name, query in QUERIES.items():
        expected = con.sql(query).to_arrow_table()
        assert got[name] == normalized_rows(expected), name


def _inputs(tmp: Path) -> dict[str, Path]:
    """200 k bids (channels and urls from small pools, extras all distinct) and 20 k
    auctions, in row groups of a few thousand."""
    rng = np.random.default_rng(11)
    n, m = 200_000, 20_000
    rows = _bids([(int(a), int(b), int(p), None, False) for a, b, p in zip(
        rng.integers(0, m + 500, n), rng.integers(0, 3000, n), rng.permutation(n))], far=False)
    rows = rows.set_column(3, "channel", pa.array(
        np.array([f"channel-{i}" for i in range(40)])[rng.integers(0, 40, n)]))
    paths = {"bid": tmp / "bid.parquet", "auction": tmp / "auction.parquet"}
    pq.write_table(rows, paths["bid"], row_group_size=5000)
    pq.write_table(_auctions(list(rng.permutation(m)), far=False), paths["auction"],
                   row_group_size=2000)
    return paths


def _script(paths: dict[str, Path], out: Path, names: list[str], flush: str = "20ms") -> str:
    script = f"SET updating_flush = '{flush}';\n" + DDL.format(**paths) + "\n"
    for name in names:
        script += (f"CREATE TABLE out_{name} WITH (connector = 'filesystem', path = "
                   f"'{out / name}', format = 'debezium_json');\n"
                   f"INSERT INTO out_{name} {QUERIES[name]};\n")
    return script


def _folded(out: Path, script: str, names: list[str]) -> dict[str, list[tuple]]:
    outputs = compile_sql(script).job.outputs
    return {name: normalized_rows(fold(read_changes(out / name, o.plan.table.schema)))
            for name, o in zip(names, outputs)}


@pytest.mark.slow
@pytest.mark.parametrize("first,then", [(2, 1), (1, 2)])
def test_killed_job_resumes_at_another_parallelism(tmp_path, first, then):
    """The join's and the top-N's compact state (codes, narrowed ids) is checkpointed and
    restored by key group: after a SIGKILL the resumed run's changelog folds to the answer
    of a run never killed."""
    paths = _inputs(tmp_path)
    reference = tmp_path / "reference"
    names = ["join", "top"]
    run_sql(_script(paths, reference, names), parallelism=1)
    expected = _folded(reference, _script(paths, reference, names), names)
    assert len(expected["join"]) > 50_000

    out, ck = tmp_path / "out", tmp_path / "ck"
    script = tmp_path / "job.sql"
    script.write_text(_script(paths, out, names))
    kill_after_checkpoints(script, ck, batch_rows=2048, first=first, then=then)
    got = _folded(out, script.read_text(), names)
    for name in names:
        assert got[name] == expected[name], name


def _duckdb_answer(paths: dict[str, Path], name: str) -> list[tuple]:
    con = duckdb.connect()
    con.register("bid", pq.read_table(paths["bid"]))
    con.register("auction", pq.read_table(paths["auction"]))
    return normalized_rows(con.sql(QUERIES[name]).to_arrow_table())


def _delta_files(ck: Path) -> list[str]:
    """The delta files the newest complete checkpoint in ``ck`` names."""
    from caudal.checkpoint.manifest import completed_epochs, read_manifest
    from caudal.checkpoint.storage import CheckpointStorage

    storage = CheckpointStorage(str(ck))
    manifest = read_manifest(storage, completed_epochs(storage)[-1])
    return [f.file.path for f in manifest.files() if f.kind == "delta"]


@pytest.mark.slow
@pytest.mark.parametrize("first,then", [(2, 2), (2, 1)])
def test_killed_q20_resumes_from_deltas_equal_duckdb(tmp_path, first, then):
    """q20's join, a LEFT join and a top-N checkpointed incrementally (a whole table, then
    deltas) and SIGKILLed after several checkpoints: the resumed run (same or another
    parallelism) folds to DuckDB's answer."""
    paths = _inputs(tmp_path)
    names = ["join", "left_join", "top"]
    out, ck = tmp_path / "out", tmp_path / "ck"
    script = tmp_path / "job.sql"
    script.write_text(_script(paths, out, names))
    seen: list[str] = []

    def deltas_named() -> None:
        seen.extend(_delta_files(ck))

    kill_after_checkpoints(script, ck, batch_rows=1024, first=first, then=then,
                           checkpoints=3, before_resume=deltas_named)
    assert seen, "the checkpoint resumed from names no delta"
    got = _folded(out, script.read_text(), names)
    for name in names:
        assert got[name] == _duckdb_answer(paths, name), name


def _visible(out: Path) -> list[tuple[Path, int]]:
    """The committed files of a filesystem sink's output and their sizes (not the hidden
    in-progress ones)."""
    return sorted((p.relative_to(out), p.stat().st_size) for p in out.rglob("*")
                  if p.is_file() and not p.name.startswith("."))


@pytest.mark.slow
def test_damaged_delta_refuses_to_resume(tmp_path):
    """A delta file of the join's chain damaged after a SIGKILL: the resume fails in one
    line naming the file, before any output, and nothing of the state is restored."""
    import subprocess
    import sys

    paths = _inputs(tmp_path)
    out, ck = tmp_path / "out", tmp_path / "ck"
    script = tmp_path / "job.sql"
    script.write_text(_script(paths, out, ["join"]))
    damaged: list[Path] = []
    before: list[Path] = []

    def damage() -> None:
        before.extend(_visible(out))
        delta = ck / _delta_files(ck)[-1]
        data = bytearray(delta.read_bytes())
        data[len(data) // 2] ^= 0xFF
        delta.write_bytes(bytes(data))
        damaged.append(delta)

    with pytest.raises(AssertionError) as failed:
        kill_after_checkpoints(script, ck, batch_rows=1024, first=2, then=2,
                               checkpoints=3, before_resume=damage)
    message = str(failed.value).strip().splitlines()
    assert damaged and damaged[0].name in message[0] and len(message) == 1, message
    assert "Traceback" not in message[0]
    # the output is as the killed run left it (the resume committed nothing)
    assert _visible(out) == before
    final = subprocess.run([sys.executable, "-m", "caudal.cli", "run", str(script),
                            "--checkpoint-dir", str(ck)], cwd=tmp_path, capture_output=True,
                           text=True, timeout=100)
    assert final.returncode != 0 and final.stderr.strip().count("\n") == 0, final.stderr
