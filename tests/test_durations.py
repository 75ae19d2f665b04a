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
