"""The nexmark generator: the model's shape, determinism across batch sizes and parallelism,
offsets, projection, bounds and pacing."""

from __future__ import annotations

import time

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from caudal.connectors.nexmark import NexmarkSource
from caudal.connectors.nexmark_model import (
    AUCTION_SCHEMA,
    BID_SCHEMA,
    EVENTS_SCHEMA,
    PERSON_SCHEMA,
    Layout,
    kind_count,
)
from caudal.connectors.registry import check_options, source_class
from caudal.errors import ConfigError
from caudal.plan.tables import TableSpec
from caudal.types import TIMESTAMP


def spec(schema: pa.Schema | None = None, projection=None, **options) -> TableSpec:
    # these tests read the sequence, not the clock: flat out unless a test paces
    options.setdefault("pace", "false")
    table = TableSpec("t", "nexmark", {k: str(v) for k, v in options.items()}, schema=schema,
                      projection=projection)
    check_options(table, NexmarkSource)
    if table.schema is None:
        table.schema = NexmarkSource.infer_schema(table)
    NexmarkSource.validate(table)
    return table


def read(table: TableSpec, parallelism: int = 1, max_rows: int = 1000,
         offsets: dict | None = None, limit: int | None = None) -> dict[str, pa.Table]:
    """Every subtask's rows (partitions dealt round-robin, as the runtime does), as one
    table per subtask."""
    out = {}
    parts = NexmarkSource(table).partitions(parallelism)
    for index in range(parallelism):
        name = f"subtask-{index}"
        source = NexmarkSource(table)
        source.open(parts[index::parallelism], offsets)
        batches = []
        while not source.finished():
            batch = source.poll(max_rows, 0.1)
            if batch is not None:
                assert batch.schema.equals(source.schema)
                assert batch.num_rows <= max_rows
                batch.validate(full=True)
                batches.append(batch)
            if limit is not None and sum(b.num_rows for b in batches) >= limit:
                break
        out[name] = pa.Table.from_batches(batches, schema=source.schema)
    return out


def read_all(table: TableSpec, **kwargs) -> pa.Table:
    return pa.concat_tables(read(table, **kwargs).values())


def test_registered_and_infers_schemas():
    assert source_class(TableSpec("t", "nexmark")) is NexmarkSource
    assert NexmarkSource.infer_schema(spec(table="bid")).equals(BID_SCHEMA)
    assert NexmarkSource.infer_schema(spec(table="auction")).equals(AUCTION_SCHEMA)
    assert NexmarkSource.infer_schema(spec(table="person")).equals(PERSON_SCHEMA)
    assert NexmarkSource.infer_schema(spec()).equals(EVENTS_SCHEMA)
    assert BID_SCHEMA.field("date_time").type == TIMESTAMP


def test_mix_of_kinds_and_ids():
    events = 5000
    bids = read_all(spec(table="bid", events=events))
    auctions = read_all(spec(table="auction", events=events))
    people = read_all(spec(table="person", events=events))
    assert (people.num_rows, auctions.num_rows, bids.num_rows) == (100, 300, 4600)
    assert people["id"].to_pylist() == list(range(1000, 1100))
    assert auctions["id"].to_pylist() == list(range(1000, 1300))
    # bids reference auctions that exist, or are among the next few (the model's lead)
    auction_ids = set(auctions["id"].to_pylist()) | set(range(1300, 1311))
    assert set(bids["auction"].to_pylist()) <= auction_ids
    people_ids = set(range(1000, 1100 + 11))
    assert set(bids["bidder"].to_pylist()) <= people_ids
    assert set(auctions["seller"].to_pylist()) <= people_ids
    # hot auctions: about half of the bids go to one auction of each batch of 100
    hot = pc.equal(pc.subtract(bids["auction"], 1000), pc.multiply(
        pc.divide(pc.subtract(bids["auction"], 1000), 100), 100))
    assert 0.45 < pc.mean(hot.cast(pa.float64())).as_py() < 0.65
    assert set(auctions["category"].to_pylist()) == set(range(10, 15))


def test_value_shapes():
    bids = read_all(spec(table="bid", events=20000))
    price = bids["price"].to_numpy()
    assert price.min() >= 100 and price.max() < 100_000_000
    # log-uniform: each decade holds about a sixth of the prices
    decades = np.bincount(np.floor(np.log10(price / 100)).astype(int), minlength=6)
    assert (np.abs(decades / len(price) - 1 / 6) < 0.03).all()
    channels = pc.value_counts(bids["channel"]).to_pylist()
    top = {c["values"] for c in sorted(channels, key=lambda c: -c["counts"])[:4]}
    assert top == {"Google", "Facebook", "Baidu", "Apple"}
    assert pc.all(pc.starts_with(bids["url"], "https://www.nexmark.com/")).as_py()
    extra_len = pc.utf8_length(bids["extra"]).to_numpy()
    assert extra_len.min() >= 54 and extra_len.max() < 82
    auctions = read_all(spec(table="auction", events=20000))
    assert pc.all(pc.greater_equal(auctions["reserve"], auctions["initial_bid"])).as_py()
    assert pc.all(pc.greater(auctions["expires"], auctions["date_time"])).as_py()
    people = read_all(spec(table="person", events=20000))
    assert pc.all(pc.match_substring_regex(
        people["credit_card"], r"^\d{4} \d{4} \d{4} \d{4}$")).as_py()
    assert set(people["state"].to_pylist()) <= {"AZ", "CA", "ID", "OR", "WA", "WY"}
    assert pc.all(pc.match_substring(people["email_address"], "@")).as_py()
    # extra pads each kind to its average size, roughly
    size = pc.add(pc.utf8_length(people["extra"]), 60)
    assert 170 < pc.mean(size).as_py() < 230


def test_timestamps_follow_event_numbers():
    table = spec(table="bid", events=1000, event_rate=1000,
                 base_time="2030-05-06T07:08:09Z")
    bids = read_all(table)
    times = bids["date_time"].cast(pa.int64()).to_numpy()
    base = 1904281689 * 1_000_000   # 2030-05-06T07:08:09Z
    first = 4  # the first bid is event 4: 4 ms after base_time at 1000 events/s
    assert times[0] == base + first * 1000
    assert (np.diff(times) >= 1000).all()


@pytest.mark.parametrize("kind", ["bid", "auction", "person", None])
def test_same_events_for_any_parallelism_and_batch_size(kind):
    options = {"events": 23_456, "event_rate": 20_000, "seed": 7}
    if kind:
        options["table"] = kind
    one = read_all(spec(**options), max_rows=100_000)
    key = "date_time"
    for parallelism, max_rows in ((3, 777), (4, 4096), (2, 1)) if kind == "person" else \
            ((3, 777), (4, 4096)):
        parts = read(spec(**options), parallelism=parallelism, max_rows=max_rows)
        for part in parts.values():   # each partition is in event-time order
            times = part[key].cast(pa.int64()).to_numpy()
            assert (np.diff(times) >= 0).all()
        union = pa.concat_tables(parts.values()).sort_by(key)
        assert union.equals(one.sort_by(key))


def test_seeds_differ_and_repeat():
    a = read_all(spec(table="bid", events=500, seed=1))
    assert a.equals(read_all(spec(table="bid", events=500, seed=1)))
    b = read_all(spec(table="bid", events=500, seed=2))
    assert a["price"] != b["price"]


def test_fixed_values_catch_model_changes():
    bids = read_all(spec(table="bid", events=100_000, schema=BID_SCHEMA,
                         projection=["auction", "bidder", "price", "channel"]))
    assert [bids.slice(i, 1).to_pylist()[0] for i in (0, 3, 91234)] == [
        {"auction": 1000, "bidder": 1001, "price": 5790404, "channel": "Apple"},
        {"auction": 1000, "bidder": 1003, "price": 68908655, "channel": "channel-948"},
        {"auction": 6887, "bidder": 2901, "price": 3766, "channel": "Apple"},
    ]
    people = read_all(spec(table="person", events=100_000, schema=PERSON_SCHEMA,
                           projection=["id", "name", "email_address", "credit_card", "city"]))
    assert people.slice(1234, 1).to_pylist() == [
        {"id": 2234, "name": "Kate Walton", "email_address": "nmcrra@gtw.com",
         "credit_card": "1891 7539 4631 5507", "city": "San Francisco"}]


def test_projection_generates_only_projected_columns():
    full = read_all(spec(table="bid", events=2000))
    table = spec(table="bid", events=2000, schema=BID_SCHEMA,
                 projection=["price", "date_time", "auction"])
    narrow = read_all(table)
    assert narrow.schema.names == ["price", "date_time", "auction"]
    assert narrow.equals(full.select(["price", "date_time", "auction"]))


def test_declared_columns_subset_any_case_and_castable():
    schema = pa.schema([("Price", pa.int64()), ("auction", pa.float64())])
    table = spec(schema, table="bid", events=200)
    out = read_all(table)
    full = read_all(spec(table="bid", events=200))
    assert out.schema.names == ["Price", "auction"]
    assert out["auction"].to_pylist() == [float(x) for x in full["auction"].to_pylist()]
    with pytest.raises(ConfigError, match="'seller'.*available: auction, bidder"):
        spec(pa.schema([("seller", pa.int64())]), table="bid")
    with pytest.raises(ConfigError, match="declared TIMESTAMP"):
        spec(pa.schema([("price", TIMESTAMP)]), table="bid")
    with pytest.raises(ConfigError, match="'channel'.*declared BIGINT.*declare it TEXT"):
        spec(pa.schema([("channel", pa.int64())]), table="bid")



@pytest.mark.parametrize("seed", ["x", str(2 ** 63), str(-(2 ** 63) - 1)])
def test_a_bad_seed_says_a_64_bit_integer(seed):
    """It said 'is not an integer >= -9223372036854775808', and took a seed past 2^63."""
    with pytest.raises(ConfigError) as e:
        spec(table="bid", seed=seed)
    assert e.value.message == (f"option seed = '{seed}' of table 't' is not a 64-bit "
                               "integer"), e.value.message

def test_bad_options():
    with pytest.raises(ConfigError, match="accepted: bid, auction, person"):
        spec(table="bids")
    with pytest.raises(ConfigError, match="events"):
        spec(events="many")
    with pytest.raises(ConfigError, match="event_rate"):
        spec(event_rate="-3")
    with pytest.raises(ConfigError, match="base_time"):
        spec(base_time="yesterday")
    with pytest.raises(ConfigError, match="pace"):
        spec(pace="sometimes")
    with pytest.raises(ConfigError, match="unknown option 'rate'"):
        spec(rate="10")


def test_all_events_table_has_one_struct_per_row():
    table = read_all(spec(events=1000))
    kinds = table["event_type"].to_numpy()
    assert np.bincount(kinds).tolist() == [20, 60, 920]
    for code, name in enumerate(["person", "auction", "bid"]):
        valid = table[name].is_valid().to_numpy(zero_copy_only=False)
        assert (valid == (kinds == code)).all()
    bids = pc.struct_field(table["bid"].combine_chunks().filter(
        pc.equal(table["event_type"], 2).combine_chunks()), "price")
    flat = read_all(spec(table="bid", events=1000))
    assert bids.to_pylist() == flat["price"].to_pylist()
    people = table.filter(pc.equal(table["event_type"], 0))["person"].combine_chunks()
    assert people.flatten()[3].to_pylist() == \
        read_all(spec(table="person", events=1000))["credit_card"].to_pylist()
    assert (np.diff(table["date_time"].cast(pa.int64()).to_numpy()) > 0).all()
    # a batch without any person (events 1 .. 40) still has a person column, all null
    source = NexmarkSource(spec(events=1000))
    parts = source.partitions(1)
    source.open(parts, {n: 1 for n in parts})
    batch = source.poll(40, 0)
    batch.validate(full=True)
    assert batch["person"].null_count == 40 and batch["bid"].null_count == 3


def test_offsets_resume_exactly():
    table = spec(table="auction", events=100_000, event_rate=10_000)
    whole = read(table, parallelism=2, max_rows=500)
    resumed = {}
    parts = NexmarkSource(table).partitions(2)
    for index, name in enumerate(whole):
        mine = parts[index::2]
        source = NexmarkSource(table)
        source.open(mine)
        first = pa.Table.from_batches([source.poll(333, 0) for _ in range(3)])
        offsets = source.offsets()
        assert sorted(offsets) == sorted(mine)
        assert all(isinstance(v, int) for v in offsets.values())
        again = NexmarkSource(table)
        again.open(mine, offsets)
        rest = []
        while not again.finished():
            rest.append(again.poll(1000, 0))
        resumed[name] = pa.concat_tables([first, pa.Table.from_batches(rest)])
        assert resumed[name].equals(whole[name])
    source = NexmarkSource(table)
    with pytest.raises(ConfigError, match="fresh"):
        source.open(["nexmark-0-of-240"], {"nexmark-0-of-2": 100})


def test_several_partitions_in_one_subtask():
    table = spec(table="bid", events=20_000, event_rate=5000)
    source = NexmarkSource(table)
    source.open(source.partitions(3))
    batches = []
    while not source.finished():
        batches.append(source.poll(10_000, 0))
    got = pa.Table.from_batches(batches)
    assert got.sort_by("date_time").equals(read_all(table).sort_by("date_time"))
    # partitions are kept in step: at most a block apart in event time
    times = got["date_time"].cast(pa.int64()).to_numpy()
    assert (np.maximum.accumulate(times) - times).max() <= 3 * 0.1 * 1e6


def test_layout_positions_round_trip():
    for kind in ("bid", "auction", "person", None):
        layout = Layout(kind, 500, 1, 3)
        events = layout.events(0, 3000)
        assert (np.diff(events) > 0).all()
        assert ((events // 500) % 3 == 1).all()
        for position in (0, 1, 17, 999, 2999):
            assert layout.position_of(int(events[position])) == position
            assert layout.event_at(position) == events[position]
        assert kind_count(kind, 0) == 0


def test_unbounded_keeps_going():
    table = spec(table="bid")
    source = NexmarkSource(table)
    assert not source.bounded
    source.open(source.partitions(1))
    for _ in range(3):
        assert source.poll(50_000, 0).num_rows == 50_000
    assert not source.finished()


def test_batch_size_option_caps_rows():
    table = spec(table="bid", events=1000, batch_size=64)
    source = NexmarkSource(table)
    source.open(source.partitions(1))
    assert source.poll(1000, 0).num_rows == 64


def test_pace_holds_back_future_events():
    table = spec(table="bid", event_rate=2000, pace="true", base_time="now")
    assert table.options["base_time"].startswith("now@")   # pinned at planning
    source = NexmarkSource(table)
    source.open(source.partitions(1))
    started = time.monotonic()
    rows = 0
    while time.monotonic() - started < 0.3:
        batch = source.poll(100_000, 0.05)
        if batch is not None:
            rows += batch.num_rows
            stamps = batch["date_time"].cast(pa.int64()).to_numpy()
            assert stamps.max() <= time.time_ns() // 1000
    elapsed = time.monotonic() - started
    assert 0.5 * 2000 * 0.92 * elapsed <= rows <= 2000 * 0.92 * (elapsed + 0.1)


def test_pace_relative_to_start_with_a_fixed_base_time():
    table = spec(table="bid", event_rate=1000, pace="true")
    source = NexmarkSource(table)
    source.open(source.partitions(1), {n: 5_000_000 for n in source.partitions(1)})
    started = time.monotonic()
    rows = 0
    while time.monotonic() - started < 0.2:
        batch = source.poll(100_000, 0.05)
        rows += 0 if batch is None else batch.num_rows
    assert 0 < rows <= 1000 * 0.92 * 0.3    # no backlog since base_time, no burst at resume


def test_restore_at_another_parallelism_loses_and_repeats_nothing():
    table = spec(table="bid", events=50_000, event_rate=10_000)
    whole = read_all(table, parallelism=1, max_rows=4096)
    parts = NexmarkSource(table).partitions(2)
    seen, offsets = [], {}
    for index in range(2):
        source = NexmarkSource(table)
        source.open(parts[index::2])
        for _ in range(5 + index):
            seen.append(pa.Table.from_batches([source.poll(1000, 0)]))
        offsets.update(source.offsets())
    for index in range(3):   # resume at parallelism 3: per-partition layouts
        source = NexmarkSource(table)
        mine = parts[index::3]
        source.open(mine, {n: offsets[n] for n in mine})
        while not source.finished():
            batch = source.poll(3000, 0)
            if batch is not None:
                seen.append(pa.Table.from_batches([batch]))
    got = pa.concat_tables(seen).sort_by([("date_time", "ascending"), ("bidder", "ascending")])
    assert got.num_rows == whole.num_rows
    assert got.equals(whole.sort_by([("date_time", "ascending"), ("bidder", "ascending")]))


def _drain_seconds(table: TableSpec) -> tuple[float, int]:
    source = NexmarkSource(table)
    source.open(source.partitions(1))
    started = time.monotonic()
    rows = 0
    while not source.finished():
        batch = source.poll(100_000, 0.01)
        rows += 0 if batch is None else batch.num_rows
    return time.monotonic() - started, rows


@pytest.mark.parametrize("options", [
    {"event_rate": "5000", "events": "2500"},
    {"first-event.rate": "5000", "next-event.rate": "5000", "events.num": "2500"},
], ids=["event_rate", "flink"])
def test_a_rate_paces_by_default_as_arroyo(options):
    """Given a rate, the source hands events out at it (2500 events at 5000/s: 0.5 s)."""
    table = TableSpec("t", "nexmark", {"table": "bid", **options})
    check_options(table, NexmarkSource)
    table.schema = NexmarkSource.infer_schema(table)
    NexmarkSource.validate(table)
    seconds, rows = _drain_seconds(table)
    assert rows == 2500 * 46 // 50
    assert 0.45 <= seconds <= 2.5, seconds   # generous: the machine is shared


def test_pace_false_runs_flat_out():
    seconds, rows = _drain_seconds(spec(table="bid", event_rate=5000, events=50_000,
                                        pace="false"))
    assert rows == 46_000 and seconds < 5     # 10 s paced


def test_flink_options_are_aliases():
    flink = spec(**{"first-event.rate": "2000", "next-event.rate": "2000", "events.num": "300",
                    "person.proportion": "1", "auction.proportion": "3",
                    "bid.proportion": "46"})
    assert {k: flink.options[k] for k in ("event_rate", "events")} == \
        {"event_rate": "2000", "events": "300"}
    assert read_all(flink).equals(read_all(spec(event_rate=2000, events=300)))
    assert "events" not in spec(**{"events.num": "0"}).options   # Flink's 0: unbounded
    with pytest.raises(ConfigError, match="next-event.rate"):
        spec(**{"first-event.rate": "2000", "next-event.rate": "1000"})
    with pytest.raises(ConfigError, match="bid.proportion"):
        spec(**{"bid.proportion": "92"})


def test_flink_datagen_shape():
    """Flink's ddl_gen.sql columns: event_type INT, ROWs with camelCase field names (any
    subset, any order), filled from the generator's fields of the same name."""
    person = pa.struct([("id", pa.int64()), ("emailAddress", pa.string()),
                        ("dateTime", TIMESTAMP)])
    auction = pa.struct([("itemName", pa.string()), ("initialBid", pa.int64()),
                         ("expires", TIMESTAMP)])
    schema = pa.schema([("event_type", pa.int32()), ("person", person),
                        ("auction", auction)])
    got = read_all(spec(schema, events=500, seed=3))
    ours = read_all(spec(events=500, seed=3))
    assert got.schema == schema
    assert got["event_type"].to_pylist() == ours["event_type"].to_pylist()
    for column, fields in (("person", ("id", "email_address", "date_time")),
                           ("auction", ("item_name", "initial_bid", "expires"))):
        mine = got[column].combine_chunks()
        theirs = ours[column].combine_chunks()
        assert mine.is_null().equals(theirs.is_null())
        for name, source in zip(mine.type.names, fields):
            assert mine.field(name).filter(mine.is_valid()).equals(
                theirs.field(source).filter(theirs.is_valid()))
    wrong = pa.schema([("person", pa.struct([("nickname", pa.string())]))])
    with pytest.raises(ConfigError, match="nickname"):
        spec(wrong)
