"""The same queries give DuckDB's answer on Ray as on the local runtime: stateless, windowed,
joined and updating, at parallelism 1, 2 and 4, on a 3-node cluster (one per session). The
query texts and reference answers are those of the local runtime's tests."""

from __future__ import annotations

import pyarrow.parquet as pq
import pytest

from tests.changelog_helpers import fold, run_changelog
from tests.conftest import make_bids
from tests.helpers import normalized_rows, run_to_table
from tests.sql import test_updating_aggregate_sql as updating
from tests.sql.test_joins_sql import DDL as NEXMARK_DDL
from tests.sql.test_joins_sql import (
    _bench_query,
    _duck,
    nexmark,  # noqa: F401 - the tables DuckDB reads
)
from tests.test_stateless_vs_duckdb import DDL_PARQUET
from tests.test_stateless_vs_duckdb import QUERIES as STATELESS
from tests.test_windows_vs_duckdb import check as check_window
from tests.windows_reference import make_events

PARALLELISM = [1, 2, 4]
#: parallelism 4 of most queries runs with `make test-all` only (the suite's time budget)
SHORT = [1, 2, pytest.param(4, marks=pytest.mark.slow)]
RAY = {"runtime": "ray"}


@pytest.fixture(scope="module")
def bids(tmp_path_factory):
    path = tmp_path_factory.mktemp("bids") / "bids.parquet"
    table = make_bids(6000, seed=11)
    pq.write_table(table, path, row_group_size=500)
    return path, table


@pytest.mark.parametrize("parallelism", SHORT)
@pytest.mark.parametrize("query,duck_query", STATELESS[:2])
def test_stateless_on_ray(ray_cluster, tmp_path, duck, bids, parallelism, query,
                          duck_query):
    path, table = bids
    got = run_to_table(DDL_PARQUET.format(path=path), query, tmp_path / "out", parallelism,
                       **RAY)
    bids = table  # noqa: F841 - DuckDB reads the local variable by name
    expected = duck.sql(duck_query or query).to_arrow_table()
    assert normalized_rows(got) == normalized_rows(expected)


@pytest.mark.parametrize("parallelism", SHORT)
@pytest.mark.parametrize("kind,style", [("tumble", "arroyo"), ("session", "flink")])
def test_windows_on_ray(ray_cluster, tmp_path, kind, style, parallelism):
    events = make_events(1500, seed=len(kind) + parallelism, disorder_ms=1900)
    check_window(tmp_path, events, kind, style, "parquet", parallelism, **RAY)


@pytest.mark.parametrize("parallelism", SHORT)
def test_updating_aggregate_on_ray(ray_cluster, tmp_path, duck, bids, parallelism):
    path, table = bids
    query = updating.QUERIES[0]
    changes = run_changelog(updating.DDL.format(path=path), query, tmp_path / "out",
                            parallelism=parallelism, settings="SET updating_flush = '0';",
                            batch_rows=700, **RAY)
    bids = table  # noqa: F841
    assert normalized_rows(fold(changes)) == normalized_rows(duck.sql(query).to_arrow_table())


@pytest.mark.parametrize("parallelism", PARALLELISM)
def test_window_join_on_ray(ray_cluster, tmp_path, duck, nexmark, parallelism):  # noqa: F811
    """Nexmark q8: two windowed aggregates joined on key and window."""
    query, duck_query = _bench_query("q8")
    changes = run_changelog(NEXMARK_DDL, query, tmp_path / "out", parallelism=parallelism,
                            settings="SET updating_flush = '0';", batch_rows=2000, **RAY)
    expected = _duck(duck, nexmark, duck_query)
    assert expected.num_rows > 0
    assert normalized_rows(fold(changes)) == normalized_rows(expected)


@pytest.mark.parametrize("parallelism", [2])
def test_q7_with_late_columns_on_ray(ray_cluster, tmp_path, duck, parallelism):
    """q7 over Parquet reads ``extra`` and the other carried columns late (plan.late_columns):
    the row locators cross Ray's channels and the window max join's worker reads the
    columns back from the files."""
    from tests.sql import test_late_columns as late

    table = late._bids(3000, seed=3)
    late._write(tmp_path / "in", table, 2, 170)
    got = run_to_table(late._ddl(tmp_path / "in"), late._q7(), tmp_path / "out", parallelism,
                       **RAY)
    duck.register("bids", table)
    expected = duck.sql(late._duck()).to_arrow_table()
    assert expected.num_rows > 10
    assert normalized_rows(got) == normalized_rows(expected)


#: tables of the driver's memory (connectors.python), which Ray ships to the workers by
#: TableSpec.connector: a literal SELECT's row, VALUES joined with a Parquet table
IN_MEMORY = [
    "SELECT 1 AS a, 'x' AS b, 2.5 AS c",
    "SELECT b.auction, b.price, v.label FROM bids AS b JOIN (VALUES (1, 'one'), (3, 'three'), "
    "(5, 'five')) AS v(id, label) ON b.auction % 7 = v.id WHERE b.price > 100",
]


@pytest.mark.parametrize("parallelism", [1, 2])
@pytest.mark.parametrize("query", IN_MEMORY)
def test_literal_rows_and_values_on_ray(ray_cluster, tmp_path, duck, bids, parallelism,
                                        query):
    path, table = bids
    ddl = DDL_PARQUET.format(path=path)
    got = run_to_table(ddl, query, tmp_path / "ray", parallelism, **RAY)
    bids = table  # noqa: F841 - DuckDB reads the local variable by name
    expected = duck.sql(query).to_arrow_table()
    assert expected.num_rows > 0
    assert normalized_rows(got) == normalized_rows(expected)
    local = run_to_table(ddl, query, tmp_path / "local", parallelism)
    assert normalized_rows(got) == normalized_rows(local)


def test_workers_take_batches_up_to_inline_bytes_inside_the_call(ray_cluster):
    """A push of up to INLINE_BYTES travels inside the actor call (no object-store object for
    the raylets to create, move and free): the workers' processes start with Ray's limit on
    what a call carries inline raised to it (Ray's default is 100 kB)."""
    import ray

    from caudal.runtime.ray.channels import INLINE_BYTES
    from caudal.runtime.ray.executor import RayRuntime

    runtime = RayRuntime()
    runtime.prestart(2)
    try:
        limits = ray.get([actor.__ray_call__.remote(
            lambda self: __import__("os").environ.get("RAY_max_direct_call_object_size"))
            for _, _, actor in runtime._warm])
    finally:
        runtime._kill_all()
    assert limits == [str(INLINE_BYTES)] * 2
