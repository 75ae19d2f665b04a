"""The optimizer tells a scan which fields of its struct columns a query reads, so the
nexmark generator makes only those (Flink's datagen: three ROW columns per event); a struct
read whole (passed on, compared) keeps every field. The result is the same either way."""

from __future__ import annotations

from caudal.job import compile_sql
from caudal.plan.logical import Scan
from tests.changelog_helpers import fold, run_changelog

EVENTS = ("CREATE TABLE events (event_type INT, bid ROW<auction BIGINT, price BIGINT, "
          "extra VARCHAR, `dateTime` TIMESTAMP(3)>, person ROW<id BIGINT, name VARCHAR>) "
          "WITH ('connector' = 'nexmark', 'events.num' = '3000', 'pace' = 'false');")


def _struct_fields(select: str) -> dict:
    job = compile_sql(EVENTS + select + ";").job
    found = []

    def walk(node):
        if isinstance(node, Scan):
            found.append(node.table.struct_fields)
        for child in node.children():
            walk(child)
    walk(job.outputs[0].plan)
    return found[0]


def test_fields_read_through_a_view_and_filter():
    assert _struct_fields("SELECT bid.auction, bid.price * 2 AS p FROM events "
                          "WHERE event_type = 2 AND bid.price > 10") == \
        {"bid": ["auction", "price"]}


def test_a_struct_read_whole_keeps_every_field():
    assert _struct_fields("SELECT bid FROM events WHERE event_type = 2") == {}
    assert "bid" not in _struct_fields("SELECT bid.auction FROM (SELECT bid FROM events) x")


def test_pruned_fields_give_the_same_rows(tmp_path):
    select = "SELECT bid.auction, person.name FROM events WHERE event_type <> 1"
    pruned = fold(run_changelog(EVENTS, select, tmp_path / "a", parallelism=2))
    whole = fold(run_changelog(EVENTS, "SELECT b.auction, p.name FROM (SELECT bid AS b, "
                               "person AS p, event_type FROM events) WHERE event_type <> 1",
                               tmp_path / "b"))
    assert pruned.num_rows == 3000 - 3000 * 3 // 50   # all but the auctions
    assert sorted(pruned.to_pylist(), key=repr) == sorted(whole.to_pylist(), key=repr)
