"""Event-time temporal joins (Flink's ``JOIN versions FOR SYSTEM_TIME AS OF o.event_time``,
its currency-rates example): each row with the version of its key current at the row's time,
equal to DuckDB's ASOF JOIN at parallelism 1 and 2, inner and LEFT; through a SIGKILL and a
resume at another parallelism; and Flink's conditions refused in one line. Before, every
event-time AS OF was refused."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from caudal.errors import PlanError
from caudal.job import compile_sql
from tests.conftest import make_bids
from tests.helpers import kill_after_checkpoints, normalized_rows, read_committed, run_to_table

DDL = """
CREATE TABLE orders (auction BIGINT, bidder BIGINT, price BIGINT, channel TEXT, url TEXT,
                     date_time TIMESTAMP, extra TEXT, WATERMARK FOR date_time AS date_time)
  WITH (connector = 'filesystem', path = '{orders}');
CREATE TABLE rates (auction BIGINT, rate DOUBLE, update_time TIMESTAMP,
                    WATERMARK FOR update_time AS update_time - INTERVAL '1' SECOND,
                    PRIMARY KEY (auction) NOT ENFORCED)
  WITH (connector = 'filesystem', path = '{rates}');
"""
QUERY = ("SELECT o.auction, o.price, o.date_time, r.rate, r.update_time FROM orders AS o "
         "{kind} JOIN rates FOR SYSTEM_TIME AS OF o.date_time AS r ON o.auction = r.auction")
DUCK = ("SELECT o.auction, o.price, o.date_time, r.rate, r.update_time FROM orders o "
        "ASOF {kind} JOIN rates r ON o.auction = r.auction AND o.date_time >= r.update_time")


def _rates(n: int, seed: int) -> pa.Table:
    """Versions of 100 auctions at distinct times over the orders' minute (some before it)."""
    rng = np.random.default_rng(seed)
    base = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    ms = np.sort(rng.choice(np.arange(-5_000, 60_000), n, replace=False))
    return pa.table({
        "auction": pa.array(rng.integers(1000, 1100, n), pa.int64()),
        "rate": pa.array(np.round(rng.random(n) * 2, 3)),
        "update_time": pa.array([base + dt.timedelta(milliseconds=int(x)) for x in ms],
                                pa.timestamp("us", tz="UTC")),
    })


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("temporal")
    orders, rates = make_bids(3000, seed=4), _rates(400, seed=5)
    pq.write_table(orders, root / "orders.parquet", row_group_size=500)
    pq.write_table(rates, root / "rates.parquet", row_group_size=100)
    return root, orders, rates


def _expected(duck, orders_table, rates_table, kind: str):
    orders, rates = orders_table, rates_table  # noqa: F841 - DuckDB reads them by name
    return duck.sql(DUCK.format(kind=kind)).to_arrow_table()


@pytest.mark.parametrize("parallelism", [1, 2])
@pytest.mark.parametrize("kind", ["", "LEFT"])
def test_temporal_join_equals_duckdb_asof_join(tmp_path, duck, files, kind, parallelism):
    root, orders, rates = files
    ddl = DDL.format(orders=root / "orders.parquet", rates=root / "rates.parquet")
    got = run_to_table(ddl, QUERY.format(kind=kind), tmp_path / "out", parallelism=parallelism)
    expected = _expected(duck, orders, rates, kind)
    assert expected.num_rows > 100 and (kind == "" or expected["rate"].null_count > 0)
    assert normalized_rows(got) == normalized_rows(expected)


@pytest.mark.slow  # a kill test of ~5-11 CPU s: make test-all
def test_temporal_join_resumes_exactly_after_sigkill(tmp_path, duck):
    # enough rows that the job is still running after two 50 ms checkpoints on an idle machine
    orders, rates = make_bids(120_000, seed=6), _rates(4_000, seed=7)
    pq.write_table(orders, tmp_path / "orders.parquet", row_group_size=5_000)
    pq.write_table(rates, tmp_path / "rates.parquet", row_group_size=500)
    out = tmp_path / "out"
    script = tmp_path / "job.sql"
    script.write_text(DDL.format(orders=tmp_path / "orders.parquet",
                                 rates=tmp_path / "rates.parquet")
                      + f"CREATE TABLE out WITH (connector = 'filesystem', path = '{out}', "
                        "format = 'parquet');\n"
                      f"INSERT INTO out {QUERY.format(kind='LEFT')};\n")
    kill_after_checkpoints(script, tmp_path / "ck", batch_rows=256, first=2, then=1)
    assert normalized_rows(read_committed(out)) == \
        normalized_rows(_expected(duck, orders, rates, "LEFT"))


@pytest.mark.parametrize("ddl_change,query,message", [
    ("", QUERY.format(kind="FULL"), "is an inner or LEFT join, not FULL"),
    ("PRIMARY KEY (auction) NOT ENFORCED", QUERY.format(kind=""), "declares none"),
    ("", QUERY.format(kind="").replace("ON o.auction = r.auction", "ON o.price = r.rate"),
     "needs the versioned table's PRIMARY KEY"),
    ("", QUERY.format(kind="").replace("AS OF o.date_time", "AS OF o.url"),
     "AS OF takes the streaming side's event time column"),
])
def test_temporal_join_conditions_are_refused_in_one_line(files, ddl_change, query, message):
    root, _, _ = files
    ddl = DDL.format(orders=root / "orders.parquet", rates=root / "rates.parquet")
    if ddl_change:
        ddl = ddl.replace(",\n                    " + ddl_change, "")
    with pytest.raises(PlanError) as raised:
        compile_sql(ddl + query + ";")
    assert message in str(raised.value) and "\n" not in str(raised.value)
