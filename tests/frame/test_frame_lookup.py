"""A frame joined with a table declared ``lookup = 'true'`` (PostgreSQL on loopback) is a
lookup join, as the same SQL is; its rows equal the SQL's and DuckDB's."""

from __future__ import annotations

import uuid

import pyarrow as pa
import pyarrow.compute as pc
import pytest

import caudal as cd
from caudal import col
from tests.conftest import make_bids
from tests.helpers import normalized_rows

psycopg = pytest.importorskip("psycopg")
CONNINFO = "host=127.0.0.1 user=postgres dbname=test"


@pytest.fixture
def dim_table():
    try:
        conn = psycopg.connect(CONNINFO, autocommit=True, connect_timeout=3)
    except psycopg.Error as e:
        pytest.skip(f"no PostgreSQL at {CONNINFO}: {e}")
    name = f"t_{uuid.uuid4().hex[:8]}_dim"
    ids = list(range(1000, 1080))  # the bids' auctions go to 1099: some have no row
    conn.execute(f"CREATE TABLE {name} (id bigint PRIMARY KEY, seller text)")
    with conn.cursor() as cur:
        cur.executemany(f"INSERT INTO {name} VALUES (%s, %s)", [(i, f"s{i % 9}") for i in ids])
    yield name, pa.table({"id": ids, "seller": [f"s{i % 9}" for i in ids]})
    conn.execute(f"DROP TABLE IF EXISTS {name}")
    conn.close()


@pytest.mark.parametrize("how", ["inner", "left"])
def test_lookup_join_of_frames(dim_table, how):
    import duckdb

    name, dim = dim_table
    rows = make_bids(3000, seed=3).select(["auction", "price"])
    bids = cd.from_arrow(rows)
    d = cd.read_table("postgres", connection=CONNINFO, table=name, lookup="true")
    f = bids.join(d, left_on="auction", right_on="id", how=how)
    assert "LookupJoin" in f.explain() and "UpdatingJoin" not in f.explain()
    got = f.collect(parallelism=2)
    assert got.column_names == ["auction", "price", "seller"]
    kind = how.upper()
    sql = cd.sql(f"SELECT b.auction, b.price, d.seller FROM b {kind} JOIN d "
                 f"ON b.auction = d.id", b=bids, d=d).collect()
    want = duckdb.sql(f"SELECT b.auction, b.price, d.seller FROM rows b {kind} JOIN dim d "
                      f"ON b.auction = d.id").to_arrow_table()
    assert normalized_rows(got) == normalized_rows(sql) == normalized_rows(want)
    assert got.num_rows > 1000
    if how == "left":
        assert any(s is None for s in got.column("seller").to_pylist())
    assert normalized_rows(f.filter(col("seller").is_not_null()).collect()) == \
        normalized_rows(want.filter(pc.is_valid(want["seller"])))
