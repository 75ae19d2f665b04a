"""Python scalar UDFs: called once per batch with whole columns, from frames, ``cd.sql`` and
``caudal run --udf``; NumPy and Polars in and out; async UDFs; errors that name the UDF and
the batch."""

from __future__ import annotations

import asyncio
import textwrap

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

import caudal as cd
from caudal import col
from caudal.errors import CaudalError
from tests.conftest import run_cli

ROWS = [{"k": i % 3, "price": i * 10} for i in range(10)]


@cd.udf(returns="DOUBLE")
def euro(price):
    return pc.multiply(price.cast(pa.float64()), 0.9)


def test_issue_shapes():
    bids = cd.testing.from_records(ROWS)
    q = bids.with_columns(euro(col("price")).alias("e")).select("k", "e").collect()
    assert isinstance(q, pa.Table)
    assert q.column("e").to_pylist() == pytest.approx([r["price"] * 0.9 for r in ROWS])
    t = cd.sql("SELECT k, sum(euro(price)) AS s FROM b GROUP BY k", b=bids).collect()
    want = {k: sum(r["price"] * 0.9 for r in ROWS if r["k"] == k) for k in range(3)}
    assert {r["k"]: r["s"] for r in t.to_pylist()} == pytest.approx(want)


def test_called_once_per_batch():
    calls = []

    @cd.udf(returns="BIGINT", name="count_calls")
    def count_calls(x):
        calls.append(len(x))
        return x

    data = cd.testing.from_records({"x": np.arange(10_000)})
    out = data.select(count_calls(col("x")).alias("y")).collect(batch_rows=4096)
    assert out.column("y").to_pylist() == list(range(10_000))
    assert sum(calls) == 10_000 and len(calls) <= 4


def test_numpy_and_polars_inputs():
    @cd.udf(returns="DOUBLE", input="numpy")
    def np_sqrt(x):
        assert isinstance(x, np.ndarray)
        return np.sqrt(x)

    @cd.udf(returns="TEXT", input="polars")
    def pl_tag(x, k):
        import polars as pl

        assert isinstance(x, pl.Series)
        return x.cast(pl.Utf8) + "-" + k.cast(pl.Utf8)

    f = cd.testing.from_records(ROWS).select(np_sqrt(col("price")).alias("r"),
                                             pl_tag(col("price"), col("k")).alias("t"))
    out = f.collect()
    assert out.column("r").to_pylist() == pytest.approx([np.sqrt(r["price"]) for r in ROWS])
    assert out.column("t").to_pylist() == [f"{r['price']}-{r['k']}" for r in ROWS]


def test_udf_in_window_and_updating_aggregate():
    rows = [{"k": i % 2, "price": i, "ts": i * 1_000_000} for i in range(40)]
    table = pa.table({"k": [r["k"] for r in rows], "price": [r["price"] for r in rows],
                      "ts": pa.array([r["ts"] for r in rows], pa.timestamp("us", "UTC"))})
    f = cd.testing.from_records(table, event_time="ts")
    win = (f.group_by("k", cd.tumble("ts", "10s")).agg(euro(col("price")).sum().alias("s"))
           .collect())
    assert win.num_rows == 8
    got = {(r["k"], r["window_start"].timestamp()): r["s"] for r in win.to_pylist()}
    want = {}
    for r in rows:
        key = (r["k"], float(r["ts"] // 10_000_000 * 10))
        want[key] = want.get(key, 0) + r["price"] * 0.9
    assert got == pytest.approx(want)
    upd = f.group_by(euro(col("k")).alias("ek")).agg(cd.count().alias("n")).collect()
    assert sorted(upd.to_pylist(), key=lambda r: r["ek"]) == [{"ek": 0.0, "n": 20},
                                                               {"ek": 0.9, "n": 20}]


def test_async_udf():
    seen = []

    @cd.udf(returns="BIGINT", is_async=True, max_concurrency=8, ordered=False, timeout="5s")
    async def slow_double(x):
        seen.append(x)
        await asyncio.sleep(0.001 * (x % 5))
        return None if x is None else x * 2

    f = cd.testing.from_records({"x": list(range(100))})
    out = f.select(slow_double(col("x")).alias("y")).collect(batch_rows=30)
    assert out.column("y").to_pylist() == [x * 2 for x in range(100)]
    assert sorted(seen) == list(range(100))


def test_async_timeout_fails_naming_the_udf():
    @cd.udf(returns="BIGINT", is_async=True, timeout="50ms")
    async def hangs(x):
        await asyncio.sleep(5)
        return x

    f = cd.testing.from_records({"x": [1, 2]})
    with pytest.raises(CaudalError, match=r"UDF hangs\(\) on input batch 1 .*timeout"):
        f.select(hangs(col("x"))).collect()


def test_raising_udf_names_udf_batch_and_exception():
    @cd.udf(returns="BIGINT")
    def explodes(x):
        if pc.max(x).as_py() >= 50:
            raise ValueError("too big")
        return x

    f = cd.testing.from_records({"x": list(range(100))})
    with pytest.raises(CaudalError) as info:
        f.select(explodes(col("x"))).collect(batch_rows=25)
    text = str(info.value)
    assert "UDF explodes() on input batch 3 (rows 50–74" in text
    assert "ValueError: too big" in text


def test_wrong_length_and_type_fail_at_first_batch():
    @cd.udf(returns="BIGINT")
    def short(x):
        return x.slice(1)

    @cd.udf(returns="BIGINT")
    def texty(x):
        return pa.array(["a"] * len(x))

    f = cd.testing.from_records({"x": [1, 2, 3]})
    with pytest.raises(CaudalError, match=r"short\(\) on input batch 1 .* returned 2 values "
                                          r"for 3 rows"):
        f.select(short(col("x"))).collect()
    with pytest.raises(CaudalError, match=r"returned TEXT values, but it is declared to "
                                          r"return BIGINT"):
        f.select(texty(col("x"))).collect()


def test_builtin_name_refused():
    with pytest.raises(CaudalError, match="upper.. is already a built-in"):
        cd.register_udf(lambda x: x, returns="TEXT", name="upper")


def test_cli_udf_file(tmp_path):
    (tmp_path / "my_udfs.py").write_text(textwrap.dedent("""
        import pyarrow.compute as pc
        import caudal as cd

        @cd.udf(returns="BIGINT")
        def plus_one(x):
            return pc.add(x, 1)
    """))
    (tmp_path / "job.sql").write_text(
        "CREATE TABLE g WITH (connector = 'impulse', events = '5');\n"
        "CREATE TABLE out WITH (connector = 'filesystem', path = 'out', format = 'json');\n"
        "INSERT INTO out SELECT plus_one(counter) AS c FROM g;\n")
    done = run_cli("run", "job.sql", "--udf", "my_udfs.py", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    lines = "".join(p.read_text() for p in (tmp_path / "out").glob("*.json"))
    assert sorted(int(v.split(":")[1].rstrip("}")) for v in lines.split()) == [1, 2, 3, 4, 5]
    missing = run_cli("run", "job.sql", cwd=tmp_path)
    assert missing.returncode == 2 and "unknown function plus_one()" in missing.stderr


def test_async_udf_under_checkpoints(tmp_path):
    """Checkpoints every 20 ms while async calls run: each batch's calls finish before its
    rows move on, so the checkpointed output equals a plain run's."""
    import pyarrow.parquet as pq

    @cd.udf(returns="BIGINT", is_async=True, max_concurrency=16)
    async def later(x):
        await asyncio.sleep(0.0005)
        return x + 1

    f = cd.testing.from_records({"x": list(range(3000))})
    q = f.select(later(col("x")).alias("y"))
    q.write_parquet(str(tmp_path / "out"), checkpoint_dir=str(tmp_path / "ck"),
                    checkpoint_interval="20ms", batch_rows=100)
    got = sorted(pq.read_table(tmp_path / "out").column("y").to_pylist())
    assert got == list(range(1, 3001))


def test_on_error_drop_drops_the_batch_and_counts_it():
    @cd.udf(returns="BIGINT", on_error="drop")
    def picky(x):
        if pc.any(pc.equal(x, 13)).as_py():
            raise ValueError("13")
        return x

    f = cd.testing.from_records({"x": list(range(100))})
    with pytest.warns(UserWarning, match="10 input rows dropped"):
        out = f.select(picky(col("x")).alias("y")).collect(batch_rows=10)
    assert sorted(out.column("y").to_pylist()) == [x for x in range(100) if not 10 <= x < 20]
    with pytest.raises(CaudalError, match="on_error = 'skip'"):
        cd.register_udf(lambda x: x, returns="BIGINT", name="bad_policy", on_error="skip")
