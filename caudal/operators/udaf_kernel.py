"""The aggregate kernels of Python UDAFs (plan.python_udaf): partial, merge and final steps
that hand whole columns and group ids to the user's class, so a UDAF runs wherever the
built-in aggregates run (windows, sessions, updating GROUP BY, two-phase pre-aggregation)
and its state is an Arrow table snapshotted like theirs. A group UDAF (a function of the
group's values) keeps array_agg's state, one list per argument, and calls the function in
the final step only."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from caudal import compute as pc
from caudal.operators.aggregate_kernels import PARTIAL, ArrayAgg, Kernel, _as_array, _pick


class UdafKernel(Kernel):
    needs_groups = (True, True)
    #: states merge whichever subtask built them (the UDAF's merge is required)
    two_phase = True

    def __init__(self, call, index, input_schema, time_column):
        super().__init__(call, index, input_schema, time_column)
        self.udaf = call.options["udaf"]
        self.obj = self.udaf.instance()

    def prepare(self, batch):
        cols = {f"{self.p}_x{j}": _as_array(batch.column(a))
                for j, a in enumerate(self.call.args)}
        mask = self._mask(batch)
        if mask is not None:
            cols[f"{self.p}_f"] = mask
        return cols

    def specs(self, phase):
        return []

    def finish(self, phase, result, source, groups):
        gid, n = groups.gid, groups.groups
        if phase == PARTIAL:
            args = [_as_array(source[f"{self.p}_x{j}"]) for j in range(len(self.call.args))]
            if self.call.filter is not None:  # FILTER (WHERE …): only the rows it keeps
                keep = _as_array(source[f"{self.p}_f"])
                args = [pc.filter(a, keep) for a in args]
                gid = gid[keep.to_numpy(zero_copy_only=False)]
            state = self.udaf.accumulate(self.obj, np.ascontiguousarray(gid), n, args)
        else:
            state = self.udaf.merge(self.obj, gid, n, {
                name: _as_array(source[f"{self.p}_{name}"]) for name in self.udaf.state})
        return {f"{self.p}_{name}": col for name, col in state.items()}

    def final(self, state: pa.Table) -> pa.Array:
        return self.udaf.finish(self.obj, {name: _as_array(state[f"{self.p}_{name}"])
                                           for name in self.udaf.state}, state.num_rows)


class GroupUdafKernel(ArrayAgg):
    """A group UDAF: array_agg's partial and merge over every argument at once (so the
    lists of a group stay aligned across arguments, NULLs in place), then the user's
    function on the lists of the groups that have rows. A group without a row (every row
    dropped by FILTER) is NULL without a call, as Arroyo's UDAFs are."""

    def __init__(self, call, index, input_schema, time_column):
        super().__init__(call, index, input_schema, time_column)
        self.udaf = call.options["udaf"]
        self.listed = len(call.args)

    def list_type(self, values: pa.Array) -> pa.DataType:
        return pa.list_(values.type)

    def final(self, state: pa.Table) -> pa.Array:
        lists = [_as_array(state[name]) for name in self._names("v")]
        n = state.num_rows
        if lists[0].null_count == 0:
            return self.udaf.call(lists)
        rows = np.flatnonzero(lists[0].is_valid().to_numpy(zero_copy_only=False))
        if not len(rows):
            return pa.nulls(n, self.udaf.returns)
        picked = pa.array(rows)
        values = self.udaf.call([a.take(picked) for a in lists])
        return _pick(values, np.arange(len(rows)), rows, n)
