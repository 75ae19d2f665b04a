"""Key-group hashing: fixed values (the hash is part of the checkpoint format), equal values of
different physical types, sliced arrays, nulls, several columns, evenness and the split (and
its table of integer key -> subtask, which must route exactly as the hash does)."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from caudal.errors import PlanError
from caudal.state.key_groups import (
    NULL_HASH,
    IntKeyTargets,
    hash_array,
    hash_columns,
    key_group,
    split_by_subtask,
    subtask_for_key_group,
)
from caudal.state.rescale import key_groups_of


def test_fixed_values():
    """If this fails, the hash changed: checkpoints of earlier versions would restore keyed
    state into the wrong subtasks. Don't update the numbers without a migration."""
    assert hash_array(pa.array([0, 1, -1, 2**62, None])).tolist() == [
        16294208416658607535, 10451216379200822465, 16490336266968443936, 47939714376772075,
        7640891576956012809]
    assert hash_array(pa.array(["", "a", "hello", "nexmark", None])).tolist() == [
        16294208416658607535, 9718737886443069447, 6228663008410849570, 8398189019047694145,
        7640891576956012809]
    assert hash_array(pa.array([1.5, -0.0, None])).tolist() == [
        15481881892811333770, 16294208416658607535, 7640891576956012809]
    stamp = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    assert hash_array(pa.array([stamp], pa.timestamp("us", tz="UTC"))).tolist() == [
        7785602733310692296]
    assert hash_columns([pa.array([1, 2]), pa.array(["x", "y"])]).tolist() == [
        4101441529464495094, 6254374116570096062]
    assert key_group(hash_array(pa.array(range(8))), 128).tolist() == [
        47, 65, 78, 109, 74, 90, 0, 87]
    assert int(NULL_HASH) == 7640891576956012809


def test_equal_values_of_other_physical_types_hash_equally():
    ints = hash_array(pa.array([-5, 0, 7, None], pa.int64()))
    for t in (pa.int8(), pa.int16(), pa.int32()):
        assert (hash_array(pa.array([-5, 0, 7, None], t)) == ints).all()
    assert (hash_array(pa.array([0, 7], pa.uint8())) == ints[1:3]).all()
    words = ["", "caudal", "ñandú", None]
    text = hash_array(pa.array(words))
    for t in (pa.large_string(), pa.string_view()):
        assert (hash_array(pa.array(words, t)) == text).all()
    assert (hash_array(pa.array(words).dictionary_encode()) == text).all()
    assert (hash_array(pa.chunked_array([words[:1], words[1:]])) == text).all()
    floats = hash_array(pa.array([1.5, -0.0, float("nan")], pa.float64()))
    assert (hash_array(pa.array([1.5, 0.0, float("nan")], pa.float32())) == floats).all()
    us = pa.array([1_700_000_000_000_000], pa.timestamp("us", tz="UTC"))
    for unit, scale in (("s", 10**-6), ("ms", 10**-3), ("ns", 10**3)):
        other = pa.array([int(1_700_000_000_000_000 * scale)], pa.timestamp(unit))
        assert (hash_array(other) == hash_array(us)).all()


def test_sliced_arrays_hash_like_fresh_ones():
    words = pa.array(["a", "", None, "bb", "", "ccc", "dddd", None, ""])
    for start in range(len(words)):
        for length in range(len(words) - start + 1):
            piece = words.slice(start, length)
            fresh = pa.array(piece.to_pylist(), pa.string())
            assert (hash_array(piece) == hash_array(fresh)).all()
    ints = pa.array([1, None, 3, 4])
    assert (hash_array(ints.slice(1)) == hash_array(pa.array([None, 3, 4]))).all()
    struct = pa.StructArray.from_arrays([pa.array([1, 2, 3]), pa.array(["x", "y", "z"])],
                                        names=["a", "b"])
    assert (hash_array(struct.slice(1)) == hash_array(struct)[1:]).all()
    decimals = pa.array([1, 2, None], pa.decimal128(10, 2))
    assert (hash_array(decimals.slice(1)) == hash_array(decimals)[1:]).all()


def test_long_strings_and_byte_order():
    long = "x" * 5000 + "y"
    a, b = hash_array(pa.array([long, "x" * 4999 + "yx", "ab", "ba", "a\x00", "a"]))[[0, 1]], \
        hash_array(pa.array(["ab", "ba", "a\x00", "a"]))
    assert a[0] != a[1]
    assert len(set(b.tolist())) == 4
    assert hash_array(pa.array([long]))[0] == hash_array(pa.array(["q", long]).slice(1))[0]


def test_nulls_hash_to_the_constant():
    for array in (pa.array([None, 1]), pa.array([None, "a"]), pa.nulls(2),
                  pa.array([None, 1.0]), pa.array([None, True])):
        assert hash_array(array)[0] == NULL_HASH


def test_several_columns_are_order_sensitive():
    a, b = pa.array([1, 2, 3]), pa.array(["x", "y", "z"])
    assert (hash_columns([a, b]) != hash_columns([b, a])).all()
    batch = pa.record_batch({"a": a, "b": b, "c": pa.array([0.5, 1.5, 2.5])})
    assert (hash_columns(batch, ["a", "b"]) == hash_columns([a, b])).all()
    assert (hash_columns(batch, ["a"]) == hash_array(a)).all()
    with pytest.raises(PlanError, match="type"):
        hash_array(pa.array([[1, 2]]))


def test_key_groups_spread_evenly():
    hashes = hash_array(pa.array(np.arange(128_000)))
    counts = np.bincount(key_group(hashes, 128), minlength=128)
    assert counts.min() > 850 and counts.max() < 1150
    words = pa.array(np.char.add("user-", np.arange(64_000).astype(str)))
    counts = np.bincount(key_group(hash_array(words), 64), minlength=64)
    assert counts.min() > 850 and counts.max() < 1150


def test_subtasks_own_contiguous_key_groups():
    groups = np.arange(128)
    for parallelism in (1, 3, 5, 128):
        owners = subtask_for_key_group(groups, 128, parallelism)
        assert (np.diff(owners) >= 0).all() and owners.max() == parallelism - 1
        for subtask in range(parallelism):
            assert list(np.flatnonzero(owners == subtask)) == \
                list(key_groups_of(subtask, parallelism, 128))
    assert subtask_for_key_group(127, 128, 4) == 3


def test_split_by_subtask_routes_every_row_once_in_order():
    n = 10_000
    batch = pa.record_batch({"k": pa.array(np.arange(n) % 997), "row": pa.array(np.arange(n))})
    parts = split_by_subtask(batch, ["k"], 4)
    assert sorted(s for s, _ in parts) == [0, 1, 2, 3]
    seen = []
    for subtask, part in parts:
        expected = subtask_for_key_group(key_group(hash_columns(part, ["k"]), 128), 128, 4)
        assert (expected == subtask).all()
        rows = part["row"].to_numpy()
        assert (np.diff(rows) > 0).all()
        seen.append(rows)
    assert sorted(np.concatenate(seen).tolist()) == list(range(n))
    assert split_by_subtask(batch, ["k"], 1) == [(0, batch)]
    assert split_by_subtask(batch.slice(0, 0), ["k"], 4) == []
    one_key = pa.record_batch({"k": pa.array([5] * 10)})
    [(subtask, part)] = split_by_subtask(one_key, ["k"], 4)
    assert part.num_rows == 10


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.one_of(st.none(), st.integers(-2**63, 2**63 - 1)),
                          st.one_of(st.none(), st.text(max_size=8))), min_size=1, max_size=60),
       st.integers(1, 9))
def test_equal_keys_always_land_in_the_same_subtask(rows, parallelism):
    batch = pa.record_batch({"i": pa.array([r[0] for r in rows], pa.int64()),
                             "s": pa.array([r[1] for r in rows], pa.string())})
    owner: dict = {}
    for subtask, part in split_by_subtask(batch, ["i", "s"], parallelism):
        for key in zip(part["i"].to_pylist(), part["s"].to_pylist()):
            assert owner.setdefault(key, subtask) == subtask
    # and the same when the rows arrive one by one, in other batches
    for start in range(len(rows)):
        [(subtask, _)] = split_by_subtask(batch.slice(start, 1), ["i", "s"], parallelism)
        assert owner[tuple(rows[start])] == subtask


@pytest.mark.parametrize("parallelism,max_key_groups", [(2, 128), (3, 128), (4, 100), (7, 128)])
def test_int_key_table_routes_exactly_as_the_hash(parallelism, max_key_groups):
    """Batches of growing ids, scattered keys, keys near both ends of int64, sliced and
    narrower columns, NULLs: every row goes where its hash sends it, table or not."""
    rng = np.random.default_rng(parallelism)
    lookup = IntKeyTargets(parallelism, max_key_groups)
    used = 0
    for i in range(150):
        n = int(rng.integers(1, 3000))
        kind = i % 6
        if kind == 0:
            v = rng.integers(i * 1000, i * 1000 + 3000, n)    # ids growing with time
        elif kind == 1:
            v = rng.integers(-2**63, 2**63 - 1, n, dtype=np.int64)
        elif kind == 2:
            v = rng.integers(2**63 - 5000, 2**63 - 1, n, dtype=np.int64, endpoint=True)
        elif kind == 3:
            v = rng.integers(-2**63, -2**63 + 5000, n, dtype=np.int64)
        elif kind == 4:
            v = rng.integers(-10**5, 10**5, n)
        else:
            v = rng.integers(0, IntKeyTargets.MAX_SPAN + 10, n)
        arrays = [pa.array(v), pa.array(np.concatenate([[0], v]))[1:]]
        if np.abs(v).max() < 2**31:
            arrays.append(pa.array(v, pa.int32()))
        if kind == 4:
            arrays.append(pa.array([None, *v.tolist()], pa.int64()))
        for array in arrays:
            expected = subtask_for_key_group(key_group(hash_array(array), max_key_groups),
                                             max_key_groups, parallelism)
            got = lookup.subtasks(array)
            if got is not None:
                used += 1
                assert got.tolist() == expected.tolist()
            batch = pa.record_batch({"k": array, "row": pa.array(np.arange(len(array)))})
            with_table = split_by_subtask(batch, ["k"], parallelism, max_key_groups, lookup)
            assert [(s, b.to_pydict()) for s, b in with_table] == [
                (s, b.to_pydict())
                for s, b in split_by_subtask(batch, ["k"], parallelism, max_key_groups)]
    assert used > 100 and len(lookup.table) <= IntKeyTargets.MAX_SPAN
