"""Telling users at planning time which operators keep state that grows without bound.

An updating aggregate keeps a row per key it has ever seen, an updating join every row of
both inputs: over an unbounded input that state only grows, and a job that runs for months
runs out of memory. Flink answers with a state TTL; caudal has it too (``SET updating_ttl``
or Flink's name ``SET table.exec.state.ttl``), and it changes results (a key forgotten and
seen again starts over, so the answer may differ from the batch one). It is not turned on
silently: the planner names each such operator in a one-line notice, printed when the job
starts, so the choice is the user's.
"""

from __future__ import annotations

from caudal.plan.physical import PhysicalGraph

#: operator kinds whose state grows with what they have seen, unless a TTL forgets it
_GROWING = {
    "updating_aggregate": "keeps a row per key it has seen",
    "updating_join": "keeps every row of both inputs",
}


def state_growth_notices(graph: PhysicalGraph, unbounded: bool) -> list[str]:
    """One line per operator of ``graph`` whose state grows without bound (no TTL, an
    unbounded input), naming it and the setting that bounds it. ``unbounded``: whether some
    source of the graph never ends by itself (the connectors know; ``CompiledJob.notices``
    asks them), since only then does state grow without bound."""
    if not unbounded:
        return []
    out = []
    for v in graph.vertices:
        for op in v.operators:
            what = _GROWING.get(op.kind)
            if what is None or op.params.get("ttl_us") is not None:
                continue
            name = op.label.split(":")[0].strip()
            out.append(f"notice: [{v.id}] {name} {what}: its state grows without bound "
                       f"(SET table.exec.state.ttl = '1 h' forgets what is idle that long; "
                       f"results may then differ from the batch answer)")
    return out
