"""The frame API against Polars from outside (review, 2026-12-07): arguments a Polars user
passes as Polars takes them."""

from __future__ import annotations

import polars as pl
import pytest

import caudal as cd
from caudal.errors import PlanError

DATA = {"k": [1, None, 2, 1, 2, None, 1, 3],
        "v": [5, 3, None, -2, 8, 0, None, 1]}


@pytest.mark.parametrize("parallelism", [1, 2])
@pytest.mark.parametrize("descending,nulls_last", [([False, True], True), ([True, False], False),
                                                   (False, [True, False])])
def test_sort_takes_a_direction_per_column_as_polars(parallelism, descending, nulls_last):
    """``descending=[False, True]`` is truthy: every column was sorted descending."""
    got = cd.testing.from_records(DATA).sort(["k", "v"], descending=descending,
                                             nulls_last=nulls_last) \
        .to_polars(parallelism=parallelism)
    want = pl.DataFrame(DATA).sort(["k", "v"], descending=descending, nulls_last=nulls_last)
    assert got.rows() == want.rows()


def test_sort_refuses_directions_that_do_not_match_the_columns():
    src = cd.testing.from_records(DATA)
    with pytest.raises(PlanError, match=r"sort\(\): descending has 3 values for 2 columns"):
        src.sort(["k", "v"], descending=[True, False, True])


@pytest.mark.parametrize("parallelism", [1, 2])
def test_top_k_takes_a_direction_per_column(parallelism):
    got = cd.testing.from_records(DATA).top_k(3, by=["k", "v"], descending=[True, False]) \
        .to_polars(parallelism=parallelism)
    # k descending, then v ascending, NULLs after every value (Polars' top_k)
    assert sorted(got.rows(), key=str) == sorted([(3, 1), (2, 8), (2, None)], key=str)
