"""Window state stays bounded: over a long run of a tumbling query, the state held by the
window operator (and Arrow memory) does not grow with the number of windows closed."""

from __future__ import annotations

import time

import pyarrow as pa

from caudal.job import compile_sql
from caudal.operators.window_aggregate import WindowAggregate
from caudal.runtime.local import LocalRuntime

SCRIPT = """
CREATE TABLE bids WITH (connector = 'nexmark', table = 'bid', events = '{events}',
  event_rate = '20000', pace = 'false', event_time_field = 'date_time', watermark_delay = '200ms');
CREATE TABLE out WITH (connector = 'blackhole');
INSERT INTO out SELECT auction, count(*) AS n, max(price) AS top,
  tumble(INTERVAL '1' SECOND) AS w FROM bids GROUP BY auction, w;
"""


def _state_rows(ops: list[WindowAggregate]) -> int | None:
    try:  # read from another thread while the operator runs: retry on a torn read
        return sum(op.state_rows() for op in ops)
    except RuntimeError:
        return None


def test_tumbling_window_state_is_flat_over_a_long_run():
    events = 1_500_000  # 75 s of event time: 75 windows
    compiled = compile_sql(SCRIPT.format(events=events), parallelism=2)
    runtime = LocalRuntime(batch_rows=8192, channel_capacity=4)
    runtime.deploy(compiled.graph)
    ops = [op for r in runtime.runners for op in r.operators if isinstance(op, WindowAggregate)]
    assert len(ops) == 2
    sources = [s for s, r in zip(runtime.stats(), runtime.runners) if r.source is not None]
    samples: list[tuple[int, int, int]] = []
    started = time.monotonic()
    runtime.start()
    while not runtime.wait(0.02):
        rows = _state_rows(ops)
        if rows is not None:
            samples.append((sum(s.rows_in for s in sources), rows, pa.total_allocated_bytes()))
    result = runtime.result(time.monotonic() - started)
    assert result.rows_in > 0.9 * events
    assert result.late_rows == 0
    assert _state_rows(ops) == 0  # everything fired and freed at the end
    # over 75 windows the state never holds more entries than two windows have input rows:
    # it holds partial aggregates per key of the open windows only (a few, as sources may
    # run a few batches apart); if closed windows were kept it would pass this bound
    # after about 15 windows
    bids_per_window = 0.92 * 20000
    assert len(samples) >= 10, samples
    assert max(s[1] for s in samples) <= 2 * bids_per_window, samples
    # Arrow memory (state and batches in flight) stays small: the input is ~40 MB
    assert max(s[2] for s in samples) <= 24 << 20, samples
