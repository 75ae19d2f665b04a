"""The frame API's surface: lazy import, streaming a changelog, writing files exactly once
with checkpoints, notebook repr and preview, Polars output, controlled processing time, and
one-line errors for misuse."""

from __future__ import annotations

import re
import subprocess
import sys

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import caudal as cd
from caudal import col
from caudal.errors import CaudalError
from caudal.plan.changelog import OP
from tests.conftest import make_bids
from tests.helpers import normalized_rows


@pytest.fixture(scope="module")
def bids():
    return cd.testing.from_records(make_bids(2000, seed=5), event_time="date_time",
                                   watermark_delay="1s")


def test_import_caudal_stays_lazy():
    code = ("import sys, caudal; assert 'caudal.frame' not in sys.modules; "
            "assert 'pyarrow' not in sys.modules; caudal.col; "
            "assert 'caudal.frame' in sys.modules; print('ok')")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0 and "ok" in done.stdout, done.stderr


def test_same_logical_plan_as_sql(tmp_path, bids):
    path = tmp_path / "b.parquet"
    pq.write_table(make_bids(100), path)
    frame = (cd.read_parquet(path, event_time="date_time", watermark_delay="1s")
             .filter(col("price") > 10).group_by("auction", cd.tumble("date_time", "10s"))
             .agg(cd.count().alias("n")))
    from caudal.job import explain_sql

    sql = explain_sql(
        f"CREATE TABLE b WITH (connector = 'filesystem', path = '{path}', format = "
        f"'parquet', event_time_field = 'date_time', watermark_delay = '1s');\n"
        "SELECT auction, window_start, window_end, count(*) AS n FROM TABLE(TUMBLE(TABLE b, "
        "DESCRIPTOR(date_time), INTERVAL '10' SECOND)) WHERE price > 10 "
        "GROUP BY auction, window_start, window_end;")

    def nodes(text):  # the plan's nodes, identity projections and table names aside
        lines = text.split("Physical dataflow")[0].splitlines()
        return [re.sub(r"\b_f\d+\b", "b", line.strip()) for line in lines
                if line.startswith("  ") and not line.strip().startswith(("Project", "Sink"))]

    ours = nodes(frame.explain())
    assert any(n.startswith("WindowAggregate tumble(10s)") for n in ours)
    assert ours == nodes(sql.split("\n", 1)[1])


def test_stream_yields_changelog_batches(bids):
    batches = list(bids.group_by("channel").agg(cd.count().alias("n")).stream())
    assert batches and all(OP in b.schema.names for b in batches)
    folded = cd.testing.fold(pa.Table.from_batches(batches))
    want = bids.group_by("channel").agg(cd.count().alias("n")).collect()
    assert normalized_rows(folded) == normalized_rows(want)
    windowed = list(bids.group_by(cd.tumble("date_time", "10s")).agg(cd.count()).stream())
    assert sum(b.num_rows for b in windowed) == 6
    assert all(OP not in b.schema.names for b in windowed)


def test_write_parquet_with_checkpoints_and_rerun(tmp_path, bids):
    out, ck = tmp_path / "out", tmp_path / "ck"
    q = bids.filter(col("price") > 5000).select("auction", "price")
    q.write_parquet(str(out), checkpoint_dir=str(ck), checkpoint_interval="50ms",
                    batch_rows=100)
    written = pq.read_table(out)
    assert normalized_rows(written) == normalized_rows(q.collect())
    q.write_parquet(str(out), checkpoint_dir=str(ck))  # a finished job stays finished
    assert pq.read_table(out).num_rows == written.num_rows


def test_repr_preview_polars(bids):
    q = bids.filter(col("price") > 0).select("auction", "price")
    text = repr(q)
    assert text.startswith("<caudal Frame [auction: BIGINT, price: BIGINT]")
    assert "select <- filter <- from_arrow" in text
    assert "<pre>" in q._repr_html_()
    assert q.preview(3).num_rows == 3
    assert q.to_polars().shape[1] == 2
    assert q.columns == ["auction", "price"]


def test_processing_time_windows_under_a_manual_clock():
    with cd.testing.manual_clock("2026-03-01 10:00:00") as clock:
        f = cd.testing.from_records({"x": [1, 2, 3]})
        q = f.with_columns(cd.call("proctime").alias("p")).group_by(
            cd.tumble("p", "1m")).agg(cd.count().alias("n"))
        got = q.collect().to_pylist()
        clock.advance("90s")
        later = f.select(cd.call("now").alias("t")).collect().column("t")[0].as_py()
    assert [(str(r["window_start"]), r["n"]) for r in got] == [
        ("2026-03-01 10:00:00+00:00", 3)]
    assert str(later) == "2026-03-01 10:01:30+00:00"


@pytest.mark.parametrize("build, message", [
    (lambda f: f.filter(col("nope") > 1), r"^filter\(\): unknown column 'nope'"),
    (lambda f: f.select(col("price").sum()), r"^select\(\): aggregate SUM"),
    (lambda f: f.with_columns(cd.count()), r"^with_columns\(\): aggregate COUNT"),
    (lambda f: f.group_by("auction").agg(col("price")), r"^agg\(\): \"price\" is not an "),
    (lambda f: f.group_by(col("price").max()), r"^group_by\(\): aggregate"),
    (lambda f: f.select(col("price").upper()), r"^select\(\): function upper\(BIGINT\)"),
    (lambda f: f.join(f, on="zz"), r"^join\(\): unknown left column 'zz'"),
    (lambda f: f.join(f, on="auction", how="cross"), r"^join\(\): how = 'cross'"),
    (lambda f: f.top_k(0, by="price"), r"^top_k\(\): k must be a positive"),
    (lambda f: cd.sql("SELECT nope FROM t", t=f), r"^sql\(\): unknown column 'nope'"),
    (lambda f: f.collect(paralelism=2), r"^unknown run option 'paralelism'"),
    (lambda f: cd.read_parquet("/no/such/file"), r"^read_parquet\(\): path '/no/such/file'"),
])
def test_misuse_is_one_line(bids, build, message):
    with pytest.raises(CaudalError, match=message) as info:
        build(bids)
    assert "\n" not in str(info.value) and "_f" not in str(info.value).replace("_from", "")


def test_when_then_otherwise_is_sql_case(bids):
    ours = bids.select("auction", cd.when(col("price") > 5000).then(cd.lit("high"))
                       .when(col("price") > 0).then(cd.lit("low")).otherwise(cd.lit("none"))
                       .alias("band"))
    sql = cd.sql("SELECT auction, CASE WHEN price > 5000 THEN 'high' WHEN price > 0 THEN 'low' "
                 "ELSE 'none' END AS band FROM t", t=bids)
    assert normalized_rows(ours.collect()) == normalized_rows(sql.collect())


def test_json_and_csv_round_trip(tmp_path, bids):
    q = bids.filter(col("price") > 9000).select("auction", "channel", "price", "date_time")
    q.write_json(str(tmp_path / "j"))
    q.write_csv(str(tmp_path / "c"))
    want = normalized_rows(q.collect())
    back_json = cd.read_json(str(tmp_path / "j"), schema={
        "auction": "BIGINT", "channel": "TEXT", "price": "BIGINT", "date_time": "TIMESTAMP"},
        event_time="date_time", watermark_delay="1s")
    assert normalized_rows(back_json.collect()) == want
    back_csv = cd.read_csv(str(tmp_path / "c"), schema=pa.schema([
        ("auction", pa.int64()), ("channel", pa.string()), ("price", pa.int64()),
        ("date_time", pa.timestamp("us", "UTC"))]))
    assert normalized_rows(back_csv.collect()) == want


def test_preview_of_an_unbounded_source_stops():
    unbounded = cd.read_table("impulse", event_rate=2000)  # no event count: never ends
    rows = unbounded.select("counter").preview(4)
    assert rows.column("counter").to_pylist() == [0, 1, 2, 3]


@pytest.mark.parametrize("options,message", [
    ({"runtime": "spark"}, "unknown runtime='spark'"),
    ({"address": "auto"}, "address= needs runtime='ray'"),
    ({"runtme": "ray"}, "unknown run option 'runtme'"),
    # about checkpoints, without a directory: ignored silently before, as the CLI's flags were
    ({"checkpoint_interval": "1s"}, "checkpoint_interval needs checkpoint_dir"),
    ({"fresh": True}, "fresh needs checkpoint_dir"),
    ({"from_epoch": 2}, "from_epoch needs checkpoint_dir"),
])
def test_runtime_options_are_checked_before_running(bids, options, message):
    with pytest.raises(CaudalError, match=re.escape(message)):
        bids.collect(**options)


def test_cd_sql_is_a_function_beside_the_sql_package():
    """``cd.sql`` stays the frame API's function after the SQL package and its modules are
    imported (planning imports them), and the package's modules import as before."""
    code = ("import types, caudal as cd; assert isinstance(cd.sql, types.FunctionType); "
            "import caudal.sql.reference; from caudal.sql.planner import Planner; "
            "f = cd.testing.from_records([{'k': 'a', 'v': 2}, {'k': 'a', 'v': 3}]); "
            "rows = cd.sql('SELECT k, sum(v) AS s FROM t GROUP BY k', t=f).collect(); "
            "from caudal import sql; assert sql is cd.sql and not hasattr(sql, 'planner'); "
            "print(rows.to_pylist())")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0 and "[{'k': 'a', 's': 5}]" in done.stdout, done.stderr


def test_no_module_imports_the_sql_package_as_an_attribute():
    """``import caudal.sql.x as y`` reads the attribute ``caudal.sql``, which is the function
    (caudal/__init__.py): the tree uses ``from caudal.sql.x import …``."""
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    pattern = re.compile(r"^\s*import caudal\.sql\.\S+ as ", re.M)
    offenders = [str(p.relative_to(root)) for folder in ("caudal", "tests", "bench")
                 for p in (root / folder).rglob("*.py") if pattern.search(p.read_text())]
    assert offenders == []


def test_collect_folds_an_updating_list_column(bids):
    """An updating result with a list column folds (rows compared whole, lists included):
    the fold grouped by every column with Arrow, which has no hash of lists."""
    small = bids.filter(col("auction") < 1005)
    got = (small.group_by("auction").agg(col("price").implode().alias("prices"))
           .collect(batch_rows=7))
    records = small.collect().to_pylist()
    want = {}
    for r in records:
        want.setdefault(r["auction"], []).append(r["price"])
    def order(values):
        return sorted(values, key=lambda v: (v is None, v or 0))
    assert {r["auction"]: order(r["prices"]) for r in got.to_pylist()} == \
        {k: order(v) for k, v in want.items()}
