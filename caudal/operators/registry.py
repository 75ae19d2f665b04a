"""The registry that turns an OperatorSpec (plain data) into an Operator instance."""

from __future__ import annotations

import importlib
from collections.abc import Callable

from caudal.operators.base import Operator
from caudal.plan.physical import OperatorSpec

#: kind -> "module:factory"; the factory takes the spec's params and returns an Operator
OPERATORS: dict[str, str] = {
    "project_filter": "caudal.operators.stateless:ProjectFilter",
    "sink": "caudal.operators.sink:SinkOperator",
    "window_aggregate": "caudal.operators.window_aggregate:WindowAggregate",
    "local_window_partials": "caudal.operators.local_window_partials:LocalWindowPartials",
    "local_key_partials": "caudal.operators.local_window_partials:LocalKeyPartials",
    "session_aggregate": "caudal.operators.session_aggregate:SessionAggregate",
    "window_assign": "caudal.operators.window_assign:WindowAssign",
    "window_rank": "caudal.operators.window_rank:WindowRank",
    "updating_aggregate": "caudal.operators.updating_aggregate:UpdatingAggregate",
    "updating_join": "caudal.operators.updating_join:UpdatingJoin",
    "changelog_normalize": "caudal.operators.changelog_normalize:ChangelogNormalize",
    "interval_join": "caudal.operators.interval_join:IntervalJoin",
    "temporal_join": "caudal.operators.temporal_join:TemporalJoin",
    "window_join": "caudal.operators.window_join:WindowJoin",
    "window_max_join": "caudal.operators.window_max_join:WindowMaxJoin",
    "window_max_candidates": "caudal.operators.window_max_join:WindowMaxCandidates",
    "late_columns": "caudal.operators.late_columns:LateColumns",
    "updating_rank": "caudal.operators.updating_rank:UpdatingRank",
    "over_aggregate": "caudal.operators.over_aggregate:OverAggregate",
    "updating_over": "caudal.operators.updating_over:UpdatingOver",
    "union": "caudal.operators.union:UnionAll",
    "lookup_join": "caudal.operators.lookup_join:LookupJoin",
    "unnest": "caudal.operators.unnest:Unnest",
    "limit": "caudal.operators.limit:Limit",
    "sort_limit": "caudal.operators.limit:SortLimit",
    "time_sort": "caudal.operators.limit:TimeSort",
}


def _factory(kind: str) -> Callable[..., Operator]:
    target = OPERATORS.get(kind)
    if target is None:
        raise KeyError(f"no operator registered for kind {kind!r}")
    module, _, name = target.partition(":")
    return getattr(importlib.import_module(module), name)


def create(spec: OperatorSpec) -> Operator:
    return _factory(spec.kind)(**spec.params)


def unfolded_states(kind: str) -> frozenset[str]:
    """The state tables an operator of ``kind`` restores from an unfolded chain
    (``Operator.unfolded``)."""
    return getattr(_factory(kind), "unfolded", frozenset())


def own_key_group_states(kind: str) -> frozenset[str]:
    """The keyed state tables an operator of ``kind`` cuts to its key groups itself on a
    restore at another parallelism (``Operator.own_key_groups``)."""
    return getattr(_factory(kind), "own_key_groups", frozenset())
