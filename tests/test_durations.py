"""Durations in options and settings: caudal's short units, plain seconds, and Flink's unit
names (docs/connectors.md's lookup example writes 'lookup.cache.ttl' = '1 min', which was
refused)."""

from __future__ import annotations

import pytest

from caudal.durations import parse_duration_s
from caudal.errors import ConfigError


@pytest.mark.parametrize("text, seconds", [
    ("500ms", 0.5), ("10s", 10), ("1m", 60), ("2h", 7200), ("1d", 86400), ("30", 30),
    ("1 min", 60), ("5 mins", 300), ("30 sec", 30), ("10 seconds", 10), ("1 minute", 60),
    ("2 hours", 7200), ("3 days", 259200), ("7 millis", 0.007), ("250 milliseconds", 0.25)])
def test_spellings(text, seconds):
    assert parse_duration_s(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["x", "5 mo", "1 fortnight", "m", ""])
def test_refused(text):
    with pytest.raises(ConfigError, match="bad duration"):
        parse_duration_s(text)


# -- Flink's names: a bare number is milliseconds there and seconds here, so it is refused ---

BIDS = "CREATE TABLE bids WITH (connector = 'nexmark', table = 'bid', events = '50');\n"


def _refusal(sql: str) -> str:
    from caudal.errors import CaudalError
    from caudal.job import compile_sql

    with pytest.raises(CaudalError) as e:
        compile_sql(sql)
    return str(e.value)


def test_a_flink_setting_without_unit_is_refused():
    # Flink's '3600000' is an hour; caudal read it as 3600000 s (41 days), silently
    message = _refusal(BIDS + "SET 'table.exec.state.ttl' = '3600000';\n"
                       "SELECT auction, count(*) FROM bids GROUP BY auction;")
    assert message == ("line 2, column 1: SET table.exec.state.ttl = '3600000' has no unit: "
                       "Flink reads a bare number as milliseconds, caudal as seconds (write "
                       "the unit, e.g. '3600000 ms' or '3600000 s')")


def test_flink_settings_and_caudal_names_with_units_are_accepted():
    from caudal.job import compile_sql

    compile_sql(BIDS + "SET 'table.exec.state.ttl' = '3600000 ms';\nSET updating_ttl = "
                "'3600';\nSELECT auction, count(*) FROM bids GROUP BY auction;")


@pytest.mark.parametrize("option", ["lookup.cache.ttl", "lookup.partial-cache.expire-after-write"])
def test_a_flink_lookup_ttl_without_unit_is_refused(option):
    from caudal.connectors.base import lookup_cache_settings
    from caudal.plan.tables import TableSpec

    table = TableSpec(name="dim", connector="postgres", options={option: "60000"}, schema=None,
                      line=4)
    with pytest.raises(ConfigError, match=rf"^line 4: {option} = '60000' has no unit: Flink reads a "
                                          "bare number as milliseconds, caudal as seconds"):
        lookup_cache_settings(table)
    table.options[option] = "60000 ms"
    assert lookup_cache_settings(table) == (0, 60.0)


def test_a_flink_kafka_discovery_interval_without_unit_is_refused():
    from caudal.connectors.kafka_options import options
    from caudal.plan.tables import TableSpec

    table = TableSpec(name="k", connector="kafka", schema=None, line=2, options={
        "scan.topic-partition-discovery.interval": "10000"})
    with pytest.raises(ConfigError, match="^line 2: scan.topic-partition-discovery.interval = '10000' "
                                          "has no unit"):
        options(table)
    table.options["scan.topic-partition-discovery.interval"] = "10 s"
    assert options(table)["partition_discovery"] == "10 s"
