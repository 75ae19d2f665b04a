"""The lookup join's warm path against models: UniquePositions (a direct-address table for
compact integer keys, Arrow's hash lookup otherwise) gives each value its position or -1, and
LookupCache.warm_positions answers only when it is exact (every key cached, none past its
TTL, rows unique by key), with -1 for a key cached as having no row."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
from hypothesis import given, settings
from hypothesis import strategies as st

from caudal.connectors.base import LookupSource
from caudal.operators.lookup_cache import LookupCache, UniquePositions

_values = st.lists(st.integers(-2**40, 2**40), unique=True, max_size=300)
_probe = st.lists(st.one_of(st.none(), st.integers(-2**40, 2**40)), max_size=300)


def _model(values: list, probe: list) -> list[int]:
    where = {v: i for i, v in enumerate(values)}
    return [-1 if p is None else where.get(p, -1) for p in probe]


@settings(max_examples=60, deadline=None)
@given(_values, _probe, st.integers(0, 2), st.sampled_from(["int64", "int32", "uint8"]))
def test_positions_equal_a_dict(values, probe, spread, probe_type):
    # spread 0: a compact range (direct-address table); 1, 2: sparse (hash lookup)
    if spread == 0:
        values = sorted({v % 1000 - 300 for v in values})
        probe = [None if p is None else p % 1300 - 400 for p in probe]
        np.random.default_rng(len(values)).shuffle(values)
    t = getattr(pa, probe_type)()
    lo, hi = (-2**31, 2**31 - 1) if probe_type == "int32" else (0, 255) \
        if probe_type == "uint8" else (-2**63, 2**63 - 1)
    probe = [p for p in probe if p is None or lo <= p <= hi]
    positions = UniquePositions(pa.array(values, pa.int64()))
    got = positions.positions(pa.array(probe, t))
    if got is None:  # the values do not fit the probe's type: the caller joins instead
        assert any(not lo <= v <= hi for v in values)
        return
    assert got.tolist() == _model(values, probe)


def test_text_and_out_of_range_values():
    positions = UniquePositions(pa.array(["b", "a", "c"]))
    assert positions.positions(pa.array(["a", None, "z", "c"])).tolist() == [1, -1, -1, 2]
    big = UniquePositions(pa.array([0, 5, 9], pa.uint64()))
    assert big.positions(pa.array([2**64 - 1, 9], pa.uint64())).tolist() == [-1, 2]


class _Table(LookupSource):
    """A LookupSource over an Arrow table (key ``id``), counting the keys it is asked."""

    def __init__(self, rows: pa.Table):
        self.keys = ["id"]
        self.schema = rows.schema
        self.rows = rows
        self.asked: list[int] = []

    def lookup(self, keys: pa.Table) -> pa.Table:
        wanted = keys.column("id").to_pylist()
        self.asked += wanted
        return self.rows.filter(pa.compute.is_in(self.rows.column("id"),
                                                 value_set=pa.array(wanted, pa.int64())))


def _rows() -> pa.Table:
    return pa.table({"id": pa.array([10, 11, 12, 13], pa.int64()),
                     "v": ["a", "b", "c", "d"]})


def _keys(*ks: int) -> pa.Table:
    return pa.table({"id": pa.array(ks, pa.int64())})


def test_warm_positions_after_the_rows_are_cached():
    source = _Table(_rows())
    cache = LookupCache(source, max_rows=100, ttl_s=None)
    batch = pa.array([12, 10, None, 99, 12], pa.int64())
    assert cache.warm_positions(batch) is None              # nothing cached yet
    rows = cache.rows_for(_keys(10, 12, 99))                # 99 has no row
    assert rows is cache.rows
    at = cache.warm_positions(batch)
    got = [None if i < 0 else rows.column("v")[i].as_py() for i in at]
    assert got == ["c", "a", None, None, "c"]
    assert cache.warm_positions(pa.array([11], pa.int64())) is None   # 11 not cached
    assert sorted(source.asked) == [10, 12, 99]
    assert cache.hits == 3   # the distinct keys of the warm batch (99 cached as absent)


def test_eviction_and_ttl_make_the_warm_path_step_aside():
    source = _Table(_rows())
    cache = LookupCache(source, max_rows=3, ttl_s=None)
    cache.rows_for(_keys(10, 11))
    cache.warm_positions(pa.array([10], pa.int64()))        # 10 used more recently than 11
    cache.rows_for(_keys(12, 13))                           # 4 > 3 keys: keeps the 2 newest
    assert cache.cached_keys.num_rows == 2
    assert cache.warm_positions(pa.array([11], pa.int64())) is None
    assert cache.warm_positions(pa.array([10], pa.int64())) is None   # evicted as well
    assert cache.warm_positions(pa.array([12, 13], pa.int64())) is not None
    stale = LookupCache(_Table(_rows()), max_rows=10, ttl_s=0.0)
    stale.rows_for(_keys(10))
    assert stale.warm_positions(pa.array([10], pa.int64())) is None


def test_rows_that_are_not_unique_by_key_go_through_the_join():
    rows = pa.table({"id": pa.array([10, 10, 11], pa.int64()), "v": ["a", "b", "c"]})
    cache = LookupCache(_Table(rows), max_rows=10, ttl_s=None)
    cache.rows_for(_keys(10, 11))
    assert cache.warm_positions(pa.array([11], pa.int64())) is None
