"""read_kafka and sink("kafka") against librdkafka's mock cluster: a frame writes a topic, a
second frame reads it back with event time and a bounded scan, and a window over it gives
the rows of the same window over the in-memory input."""

from __future__ import annotations

import uuid

import pytest

import caudal as cd
from caudal import col
from caudal.connectors.kafka_mock import cluster
from tests.conftest import make_bids
from tests.helpers import normalized_rows


@pytest.fixture(scope="module")
def kafka():
    with cluster() as bootstrap:
        assert bootstrap, "the mock cluster did not start"
        yield bootstrap


def test_write_then_read_kafka(kafka):
    topic = f"frame-bids-{uuid.uuid4().hex[:8]}"
    src = cd.testing.from_records(make_bids(1500, seed=2), event_time="date_time",
                                  watermark_delay="1s")
    src.select("auction", "price", "date_time").sink("kafka", bootstrap_servers=kafka,
                                                      topic=topic, format="json")
    back = cd.read_kafka(topic, bootstrap_servers=kafka,
                         schema={"auction": "BIGINT", "price": "BIGINT",
                                 "date_time": "TIMESTAMP"},
                         event_time="date_time", watermark_delay="1s",
                         **{"source.offset": "earliest", "scan.bounded.mode": "latest-offset"})
    got = back.group_by("auction", cd.tumble("date_time", "10s")).agg(
        col("price").sum().alias("s"), cd.count().alias("n")).collect()
    want = src.group_by("auction", cd.tumble("date_time", "10s")).agg(
        col("price").sum().alias("s"), cd.count().alias("n")).collect()
    assert got.num_rows > 0
    assert normalized_rows(got) == normalized_rows(want)
