"""The impulse counter source: partitions, bounds, offsets, timestamps and pacing."""

from __future__ import annotations

import time

import numpy as np
import pyarrow as pa
import pytest

from caudal.connectors.impulse import SCHEMA, ImpulseSource
from caudal.connectors.registry import check_options, source_class
from caudal.errors import ConfigError
from caudal.plan.tables import TableSpec
from caudal.types import TIMESTAMP


def spec(schema: pa.Schema | None = None, projection=None, **options) -> TableSpec:
    table = TableSpec("ticks", "impulse", {k: str(v) for k, v in options.items()},
                      schema=schema, projection=projection)
    check_options(table, ImpulseSource)
    if table.schema is None:
        table.schema = ImpulseSource.infer_schema(table)
    ImpulseSource.validate(table)
    return table


def drain(source: ImpulseSource, max_rows: int = 1000) -> pa.Table:
    batches = []
    while not source.finished():
        batch = source.poll(max_rows, 0.05)
        if batch is not None:
            assert batch.schema.equals(source.schema)
            batch.validate(full=True)
            batches.append(batch)
    return pa.Table.from_batches(batches, schema=source.schema)


def read(table: TableSpec, parallelism: int, max_rows: int = 1000) -> list[pa.Table]:
    out = []
    for name in ImpulseSource(table).partitions(parallelism):
        source = ImpulseSource(table)
        source.open([name])
        out.append(drain(source, max_rows))
    return out


def test_schema_and_registry():
    assert source_class(TableSpec("t", "impulse")) is ImpulseSource
    assert ImpulseSource.infer_schema(spec()).equals(SCHEMA)
    assert SCHEMA.field("timestamp").type == TIMESTAMP


def test_bounded_counter_split_over_partitions():
    one = read(spec(events=1000), 1)[0]
    assert one["counter"].to_pylist() == list(range(1000))
    assert set(one["subtask_index"].to_pylist()) == {0}
    parts = read(spec(message_count=1000), 3, max_rows=77)
    for index, part in enumerate(parts):
        counters = part["counter"].to_numpy()
        assert (counters % 3 == index).all()
        assert (part["subtask_index"].to_numpy() == index).all()
    union = pa.concat_tables(parts).sort_by("counter")
    assert union.select(["counter", "timestamp"]).equals(one.select(["counter", "timestamp"]))


def test_unpaced_timestamps_are_deterministic():
    table = read(spec(events=5, base_time="2030-01-01T00:00:00Z"), 1)[0]
    base = 1893456000 * 1_000_000                       # 2030-01-01T00:00:00Z
    assert table["timestamp"].cast(pa.int64()).to_pylist() == [base + i for i in range(5)]
    table = read(spec(events=5, event_rate=4, pace="false"), 1)[0]
    stamps = table["timestamp"].cast(pa.int64()).to_numpy()
    assert np.diff(stamps).tolist() == [250_000] * 4


def test_offsets_resume():
    table = spec(events=500)
    source = ImpulseSource(table)
    source.open(["impulse-1-of-2"])
    first = source.poll(100, 0)
    offsets = source.offsets()
    assert offsets == {"impulse-1-of-2": 201}
    again = ImpulseSource(table)
    again.open(["impulse-1-of-2"], offsets)
    rest = drain(again)
    got = first["counter"].to_pylist() + rest["counter"].to_pylist()
    assert got == list(range(1, 500, 2))
    with pytest.raises(ConfigError, match="parallelism"):
        ImpulseSource(table).open(["impulse-0-of-3"], {"impulse-0-of-2": 10})


def test_projection_and_unbounded():
    table = spec(projection=["counter"])
    source = ImpulseSource(table)
    assert not source.bounded
    source.open(source.partitions(1))
    batch = source.poll(10, 0)
    assert batch.schema.names == ["counter"] and batch.num_rows == 10
    assert not source.finished()


def test_paced_at_event_rate_with_wall_clock_timestamps():
    table = spec(event_rate=1000)
    source = ImpulseSource(table)
    opened = time.time_ns() // 1000
    source.open(source.partitions(1))
    started = time.monotonic()
    rows = []
    while time.monotonic() - started < 0.25:
        batch = source.poll(100_000, 0.02)
        if batch is not None:
            rows.append(batch)
            now = time.time_ns() // 1000
            stamps = batch["timestamp"].cast(pa.int64()).to_numpy()
            # stamped when each row falls due (a poll that runs late, on a busy machine, gets
            # the rows due meanwhile with their own times), never ahead of the clock
            assert ((stamps >= opened) & (stamps <= now)).all()
    elapsed = time.monotonic() - started
    count = sum(b.num_rows for b in rows)
    stamps = np.concatenate([b["timestamp"].cast(pa.int64()).to_numpy() for b in rows])
    assert (np.diff(stamps) >= 0).all() and stamps[-1] - stamps[0] >= 150_000  # over the run
    assert 0.5 * 1000 * elapsed <= count <= 1000 * (elapsed + 0.05)


def test_bad_options():
    with pytest.raises(ConfigError, match="both events and message_count"):
        spec(events=1, message_count=2)
    with pytest.raises(ConfigError, match="event_rate"):
        spec(event_rate="fast")
    with pytest.raises(ConfigError, match="without event_rate"):
        spec(pace="true")
    with pytest.raises(ConfigError, match="'tick'.*available: counter, subtask_index"):
        spec(pa.schema([("tick", pa.int64())]))
