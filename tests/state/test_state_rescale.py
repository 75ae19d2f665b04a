"""Key-group ranges: every key group is owned by exactly one subtask, the owner agrees with
the hash partitioner (so restored state meets its rows), and state cut by range and
concatenated back is the whole state."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from caudal.operators.base import OperatorContext
from caudal.state.key_groups import hash_columns, key_group, split_by_subtask
from caudal.state.rescale import (
    KEY_GROUP,
    concat_states,
    keep_key_groups,
    key_group_range,
    key_groups_of,
    old_subtasks_for,
    subtask_of,
)


@pytest.mark.parametrize("parallelism", [1, 2, 3, 5, 7, 128])
def test_ranges_partition_the_key_groups(parallelism):
    owned = []
    for i in range(parallelism):
        r = key_groups_of(i, parallelism, 128)
        owned.extend(r)
        assert all(subtask_of(g, parallelism, 128) == i for g in r)
    assert owned == list(range(128))


@pytest.mark.parametrize("parallelism", [2, 3, 4])
def test_ranges_agree_with_the_partitioner(parallelism):
    rng = np.random.default_rng(1)
    batch = pa.record_batch({"a": rng.integers(0, 10_000, 5000), "b": rng.integers(0, 9, 5000)})
    for subtask, piece in split_by_subtask(batch, ["a", "b"], parallelism, 128):
        groups = key_group(hash_columns(piece, ["a", "b"]), 128)
        ctx = OperatorContext(subtask=subtask, parallelism=parallelism)
        r = key_group_range(ctx)
        assert groups.min() >= r.start and groups.max() < r.stop


def test_rescale_keeps_every_row_once():
    table = pa.table({"x": range(1000), KEY_GROUP: pa.array([i % 128 for i in range(1000)],
                                                            pa.int32())})
    old = [keep_key_groups(table, key_groups_of(i, 3, 128)) for i in range(3)]
    new = [keep_key_groups(concat_states(old), key_groups_of(i, 2, 128)) for i in range(2)]
    assert sorted(concat_states(new).column("x").to_pylist()) == list(range(1000))
    assert old_subtasks_for(0, 2, 3, 128) == [0, 1]
    unkeyed = pa.table({"x": [1, 2]})
    assert keep_key_groups(unkeyed, range(0, 1)) is unkeyed


def test_a_state_table_no_overlapping_old_subtask_wrote_restores_empty():
    """Found by a kill test: at a new parallelism, a subtask whose overlapping old subtasks
    never wrote a keyed table (they had nothing in it; others did) failed with Arrow's "Must
    pass at least one table"; its part of that table is empty."""
    from caudal.checkpoint.recovery import _rescaled

    groups = key_groups_of(0, 2, 128)
    rows = pa.table({"k": [1, 2], KEY_GROUP: pa.array([groups.start, groups.start],
                                                      pa.int32())})
    old_ops = [[{"panes": rows}], [{}]]  # old subtask 0 wrote it, old subtask 1 did not
    restored = _rescaled(old_ops, 1, 2, 128)  # new subtask 1 overlaps old subtask 1 only
    assert restored[0]["panes"].num_rows == 0
    assert restored[0]["panes"].schema.equals(rows.schema)
    assert _rescaled(old_ops, 0, 2, 128)[0]["panes"].num_rows == 2
