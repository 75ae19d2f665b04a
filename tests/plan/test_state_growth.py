"""Operators whose state grows without bound are named at planning time, and Flink's
``table.exec.state.ttl`` sets the TTL that bounds them."""

from __future__ import annotations

from caudal.job import compile_sql, explain_sql

DDL = """
CREATE TABLE bids WITH (connector = 'nexmark', table = 'bid'{events});
CREATE TABLE out WITH (connector = 'blackhole');
"""
AGG = "INSERT INTO out SELECT auction, count(*) AS n FROM bids GROUP BY auction;"
JOIN = ("INSERT INTO out SELECT a.auction, b.price FROM bids a JOIN bids b "
        "ON a.auction = b.auction AND a.bidder = b.bidder;")


def _notices(sql: str, events: str = "") -> list[str]:
    return compile_sql(DDL.format(events=events) + sql).notices()


def test_unbounded_updating_operators_are_named():
    (agg,) = _notices(AGG)
    assert agg.startswith("notice: [") and "updating aggregate by [auction]" in agg
    assert "grows without bound" in agg and "table.exec.state.ttl" in agg
    assert "\n" not in agg and "differ from the batch answer" in agg
    (join,) = _notices(JOIN)
    assert "UpdatingJoin INNER" in join and "every row of both inputs" in join


def test_no_notice_with_a_ttl_or_a_bounded_input():
    assert _notices(AGG, ", events = '100'") == []
    assert _notices("SET table.exec.state.ttl = '1 h';\n" + AGG) == []
    assert _notices("SET 'table.exec.state.ttl' = '10 min';\n" + JOIN) == []
    assert _notices("SET updating_ttl = '1 h';\n" + AGG) == []


def test_flink_ttl_name_sets_the_ttl():
    plan = explain_sql("SET table.exec.state.ttl = '2 h';\n" + DDL.format(events="") + AGG)
    assert "ttl=2h" in plan
