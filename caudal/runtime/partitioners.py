"""How a subtask routes its output batches over one edge to the downstream subtasks."""

from __future__ import annotations

from collections.abc import Callable

import pyarrow as pa

from caudal.state.key_groups import IntKeyTargets, split_by_subtask

Route = Callable[[pa.RecordBatch], list[tuple[int, pa.RecordBatch]]]


def make_route(partitioning: str, keys: list[str], own_index: int, targets: int,
               max_key_groups: int = 128) -> Route:
    if partitioning == "forward" and targets > own_index:
        return lambda batch: [(own_index, batch)]
    if partitioning == "single":
        return lambda batch: [(0, batch)]
    if partitioning == "broadcast":
        return lambda batch: [(i, batch) for i in range(targets)]
    if partitioning == "hash":
        if targets == 1:
            return lambda batch: [(0, batch)]
        # one key column: its targets may come from a table of key -> subtask (integers)
        lookup = IntKeyTargets(targets, max_key_groups) \
            if len(keys) == 1 and targets <= 256 else None
        return lambda batch: split_by_subtask(batch, keys, targets, max_key_groups, lookup)
    # round_robin (and forward between different parallelisms)
    state = {"next": own_index % targets}

    def round_robin(batch: pa.RecordBatch) -> list[tuple[int, pa.RecordBatch]]:
        target = state["next"]
        state["next"] = (target + 1) % targets
        return [(target, batch)]

    return round_robin
