"""The physical graph is plain data: every Nexmark query's graph (operators' parameters, source
and sink tables, expressions) survives pickling, so a cluster runtime can ship it to actors on
other machines, and the copy plans the same dataflow."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest

from caudal.job import compile_sql

NEXMARK = sorted((Path(__file__).resolve().parents[2] / "bench" / "nexmark").glob("*.sql"))


@pytest.mark.parametrize("path", NEXMARK, ids=[p.stem for p in NEXMARK])
@pytest.mark.parametrize("parallelism", [1, 3])
def test_physical_graph_pickles(path, parallelism):
    graph = compile_sql(path.read_text(), parallelism).graph
    copy = pickle.loads(pickle.dumps(graph))
    assert copy.explain() == graph.explain()
    assert [len(v.operators) for v in copy.vertices] == \
        [len(v.operators) for v in graph.vertices]
