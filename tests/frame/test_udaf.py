"""Python UDAFs (classes, and group UDAFs: functions of each group's values): in tumbling,
hopping and session windows (at parallelism 1 and 2, where states are pre-aggregated before
the shuffle), in updating aggregates over append-only and updating inputs, from SQL by name,
equal to the built-ins they mimic; errors that name the UDAF; a job killed after checkpoints
resumes to the same answer (tests/sql/test_group_udaf_sql.py compares group UDAFs with
DuckDB)."""

from __future__ import annotations

import pyarrow as pa
import pytest

import caudal as cd
from caudal import col
from caudal.errors import CaudalError
from tests.conftest import make_bids
from tests.frame.udafs import py_avg, py_max, py_max_product, py_median, py_median_each
from tests.helpers import normalized_rows


@pytest.fixture(scope="module")
def bids():
    return cd.testing.from_records(make_bids(4000, seed=3), event_time="date_time",
                                   watermark_delay="1s")


@pytest.mark.parametrize("parallelism", [1, 2])
@pytest.mark.parametrize("window", [cd.tumble("date_time", "10s"),
                                    cd.hop("date_time", size="10s", slide="5s"),
                                    cd.session("date_time", "2s")])
def test_udaf_in_windows_equals_builtin(bids, window, parallelism):
    ours = bids.group_by("channel", window).agg(
        py_avg(col("price")).alias("a"), py_max(col("price")).alias("m"),
        py_max_product(col("price"), col("bidder")).alias("p"))
    builtin = bids.group_by("channel", window).agg(
        col("price").mean().alias("a"), col("price").max().alias("m"),
        (col("price") * col("bidder")).max().alias("p"))
    got = ours.collect(parallelism=parallelism)
    assert got.num_rows > 0
    assert normalized_rows(got) == normalized_rows(builtin.collect(parallelism=parallelism))


def test_udaf_in_updating_aggregates(bids):
    ours = bids.group_by("auction").agg(py_avg(col("price")).alias("a"), cd.count(),
                                        py_max_product(col("price"), col("bidder")))
    builtin = bids.group_by("auction").agg(col("price").mean().alias("a"), cd.count(),
                                           (col("price") * col("bidder")).max())
    assert normalized_rows(ours.collect(parallelism=2)) == \
        normalized_rows(builtin.collect(parallelism=2))
    # over an updating input: each bidder's count changes, and the UDAF's groups follow
    counts = bids.group_by("bidder").agg(cd.count().alias("n"))
    ours = counts.group_by((col("bidder") % 5).alias("b")).agg(
        py_avg(col("n")).alias("a"), py_max_product(col("n"), col("bidder")).alias("p"))
    builtin = counts.group_by((col("bidder") % 5).alias("b")).agg(
        col("n").mean().alias("a"), (col("n") * col("bidder")).max().alias("p"))
    assert normalized_rows(ours.collect()) == normalized_rows(builtin.collect())


def test_udaf_from_sql_by_name(bids):
    got = cd.sql("SELECT channel, py_avg(price) AS a, py_avg(price) FILTER (WHERE price > "
                 "100) AS b FROM t GROUP BY channel", t=bids).collect()
    want = cd.sql("SELECT channel, avg(price) AS a, avg(price) FILTER (WHERE price > 100) "
                  "AS b FROM t GROUP BY channel", t=bids).collect()
    assert normalized_rows(got) == normalized_rows(want)


def test_udaf_misuse_and_failures(bids):
    with pytest.raises(CaudalError, match=r"select\(\): aggregate .* not allowed"):
        bids.select(py_avg(col("price")))

    @cd.udaf(returns="DOUBLE", state={"s": "DOUBLE"})
    class broken:
        def accumulate(self, groups, n_groups, x):
            raise ZeroDivisionError("boom")

        def merge(self, groups, n_groups, state):
            return state

        def finish(self, state):
            return state["s"]

    with pytest.raises(CaudalError, match=r"UDAF broken\(\)\.accumulate\(\) failed: "
                                          r"ZeroDivisionError: boom"):
        bids.group_by("channel").agg(broken(col("price"))).collect()

    @cd.udaf(returns="DOUBLE", state={"s": "DOUBLE"})
    class wrong_state:
        def accumulate(self, groups, n_groups, x):
            return {"t": [0.0] * n_groups}

        def merge(self, groups, n_groups, state):
            return state

        def finish(self, state):
            return state["s"]

    with pytest.raises(CaudalError, match=r"wrong_state\(\)\.accumulate\(\) returned \['t'\]"):
        bids.group_by("channel").agg(wrong_state(col("price"))).collect()
    with pytest.raises(CaudalError, match="has no merge"):
        cd.udaf(returns="DOUBLE", state={"s": "DOUBLE"})(type("nomerge", (), {
            "accumulate": lambda s, g, n, x: None, "finish": lambda s, st: None}))


def test_udaf_state_is_arrow_and_checkpointed(tmp_path, bids):
    """A checkpointed run (state snapshots every 50 ms) gives the uncheckpointed answer."""
    q = bids.group_by("auction", cd.tumble("date_time", "5s")).agg(
        py_avg(col("price")).alias("a"), py_median(col("price")).alias("md"),
        py_median_each(col("price")).alias("me"))
    plain = q.collect()
    ck = q.collect(checkpoint_dir=str(tmp_path / "ck"), checkpoint_interval="50ms",
                   batch_rows=200)
    assert normalized_rows(ck) == normalized_rows(plain)
    assert isinstance(ck, pa.Table)


KILL_QUERY = """
SELECT bidder % 7 AS b, py_avg(price) AS a, py_max(price) AS m, count(*) AS n,
       py_max_product(price, auction % 3) AS mp
FROM bid GROUP BY bidder % 7
"""


def _kill_script(out, pace: bool) -> str:
    return (f"SET updating_flush = '50ms';\nCREATE TABLE bid WITH (connector = 'nexmark', "
            f"table = 'bid', events = '400000', event_rate = '200000', "
            f"pace = '{str(pace).lower()}');\nCREATE TABLE out WITH (connector = "
            f"'filesystem', path = '{out}', format = 'debezium_json');\n"
            f"INSERT INTO out {KILL_QUERY};\n")


@pytest.mark.timeout(120)
def test_killed_job_with_udaf_resumes_exactly_once(tmp_path):
    """``caudal run --udf``: killed after three checkpoints, resumed, the changelog folds to
    the answer of the built-in aggregates on an uninterrupted run (a group UDAF's state, its
    groups' values as lists, among them)."""
    from pathlib import Path

    from caudal.job import run_sql
    from tests.changelog_helpers import fold, read_changes
    from tests.checkpoint.test_checkpoint_cli import _kill_after_checkpoints
    from tests.conftest import run_cli

    udafs = str(Path(__file__).parent / "udafs.py")
    ref = tmp_path / "ref"
    builtin = _kill_script(ref, pace=False).replace("py_avg", "avg").replace(
        "py_max_product(price, auction % 3)", "max(price * (auction % 3))").replace(
        "py_max", "max")
    run_sql(builtin, parallelism=2)
    expected = fold(read_changes(ref))
    out, ck = tmp_path / "out", tmp_path / "ck"
    job = tmp_path / "job.sql"
    job.write_text(_kill_script(out, pace=True))
    _kill_after_checkpoints(job, ck, 3, "--udf", udafs)
    done = run_cli("run", str(job), "-p", "2", "--checkpoint-dir", str(ck),
                   "--checkpoint-interval", "100ms", "--udf", udafs, cwd=tmp_path,
                   timeout=100)
    assert done.returncode == 0, done.stderr
    changes = read_changes(out)
    assert normalized_rows(fold(changes)) == normalized_rows(expected)
    assert (changes.column("_op").to_numpy() < 0).any()


def test_group_ids_by_encoding_match_the_hash_aggregation():
    """GroupIndex.encode (the UDAF-only path) groups rows as Acero's group_by does: several
    keys, NULL keys, text and integer keys."""
    import numpy as np

    from caudal.operators.aggregate_kernels import GroupIndex

    t = make_bids(3000, seed=11).select(["channel", "auction", "price"])
    groups, first = GroupIndex.encode(t, ["channel", "price"])
    rows = t.append_column("__row", pa.array(np.arange(t.num_rows)))
    acero = rows.group_by(["channel", "price"], use_threads=False).aggregate([("__row", "list")])
    reference = GroupIndex(acero["__row_list"], t.num_rows)
    assert groups.groups == reference.groups
    # the same partition of rows: each encoded group is exactly one Acero group
    pairs = set(zip(groups.gid.tolist(), reference.gid.tolist()))
    assert len(pairs) == groups.groups
    assert (groups.gid[first] == np.arange(groups.groups)).all()
    assert GroupIndex.encode(t, [])[0].groups == 1


WINDOW_KILL_QUERY = """
SELECT auction % 5 AS a, window_start, py_avg(py_double(price)) AS avg2,
       py_max(price) AS m, count(*) AS n, py_median(price) AS md
FROM TABLE(TUMBLE(TABLE bid, DESCRIPTOR(date_time), INTERVAL '100' MILLISECOND))
GROUP BY auction % 5, window_start, window_end
"""


@pytest.mark.slow  # a kill test of ~5-11 CPU s: make test-all
@pytest.mark.timeout(120)
def test_killed_window_job_with_udf_and_udaf_resumes_exactly_once(tmp_path):
    """A scalar UDF feeding a UDAF in a tumbling window, and a group UDAF (py_median), written
    to Parquet (exactly once): killed after three checkpoints and resumed, the files hold the
    rows of the built-in functions on an uninterrupted run."""
    from pathlib import Path

    from caudal.job import run_sql
    from tests.checkpoint.test_checkpoint_cli import _kill_after_checkpoints
    from tests.conftest import run_cli
    from tests.helpers import read_committed

    def script(out, pace: bool) -> str:
        return (f"CREATE TABLE bid WITH (connector = 'nexmark', table = 'bid', events = "
                f"'300000', event_rate = '100000', pace = '{str(pace).lower()}', "
                f"event_time_field = 'date_time');\nCREATE TABLE out WITH (connector = "
                f"'filesystem', path = '{out}', format = 'parquet');\n"
                f"INSERT INTO out {WINDOW_KILL_QUERY};\n")

    udfs = str(Path(__file__).parent / "udafs.py")
    ref = tmp_path / "ref"
    run_sql(script(ref, pace=False).replace("py_avg(py_double(price))", "avg(2 * price)")
            .replace("py_max", "max").replace("py_median", "median"), parallelism=2)
    out, ck = tmp_path / "out", tmp_path / "ck"
    job = tmp_path / "job.sql"
    job.write_text(script(out, pace=True))
    _kill_after_checkpoints(job, ck, 3, "--udf", udfs)
    done = run_cli("run", str(job), "-p", "2", "--checkpoint-dir", str(ck),
                   "--checkpoint-interval", "100ms", "--udf", udfs, cwd=tmp_path,
                   timeout=100)
    assert done.returncode == 0, done.stderr
    assert "resuming from checkpoint" in done.stderr
    expected = normalized_rows(read_committed(ref))
    assert expected and normalized_rows(read_committed(out)) == expected


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_udaf_state_of_an_arrow_type_parquet_cannot_keep_restores(tmp_path):
    """A class UDAF whose state column is declared ``pa.time32('s')``: a checkpoint's
    Parquet gave it back as time32[ms] and every restart failed ("Schema at index 1 was
    different"); declared Arrow types now take their SQL type's engine type (TIME:
    time64[us]), so the job killed after three checkpoints resumes to the built-in
    answer."""
    from pathlib import Path

    from caudal.job import run_sql
    from tests.changelog_helpers import fold, read_changes
    from tests.checkpoint.test_checkpoint_cli import _kill_after_checkpoints
    from tests.conftest import run_cli

    def script(out, pace: bool, call: str) -> str:
        return _kill_script(out, pace).replace(
            KILL_QUERY, f"SELECT bidder % 7 AS b, {call} AS m FROM bid GROUP BY bidder % 7")

    udafs = str(Path(__file__).parent / "udafs.py")
    ref = tmp_path / "ref"
    run_sql(script(ref, False, "max(price % 86400)"), parallelism=2)
    expected = fold(read_changes(ref))
    out, ck = tmp_path / "out", tmp_path / "ck"
    job = tmp_path / "job.sql"
    job.write_text(script(out, True, "py_max_time_of_day(price)"))
    _kill_after_checkpoints(job, ck, 3, "--udf", udafs)
    done = run_cli("run", str(job), "-p", "2", "--checkpoint-dir", str(ck),
                   "--checkpoint-interval", "100ms", "--udf", udafs, cwd=tmp_path,
                   timeout=100)
    assert done.returncode == 0, done.stderr
    assert normalized_rows(fold(read_changes(out))) == normalized_rows(expected)


def test_declared_arrow_types_take_their_sql_types_engine_type():
    from caudal.plan.functions.python_udf import parse_type

    assert parse_type(pa.time32("s"), "x") == pa.time64("us")
    assert parse_type(pa.timestamp("ns"), "x") == pa.timestamp("us", tz="UTC")
    assert parse_type(pa.large_string(), "x") == pa.string()
    assert parse_type(pa.int32(), "x") == pa.int32()
