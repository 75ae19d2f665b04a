"""Arroyo's ``relation._timestamp`` after a join: each side's event time, under the name its
column has in the joined output (the right side's clashing ``date_time`` is renamed). Before,
``b._timestamp`` was an unknown column once a JOIN followed the FROM."""

from __future__ import annotations

import pytest

from caudal.job import run_sql
from tests.helpers import read_committed

SCRIPT = """
CREATE TABLE bid WITH (connector = 'nexmark', table = 'bid', events = '3000',
                       event_time_field = 'date_time', pace = 'false');
CREATE TABLE auction WITH (connector = 'nexmark', table = 'auction', events = '3000',
                           event_time_field = 'date_time', pace = 'false');
CREATE TABLE out WITH (connector = 'filesystem', path = '{out}', format = 'parquet');
INSERT INTO out
SELECT b.auction, b._timestamp AS bt, b.date_time AS bd, a._timestamp AS at, a.date_time AS ad
FROM bid b JOIN auction a ON b.auction = a.id;
"""


@pytest.mark.parametrize("parallelism", [1, 2])
def test_each_sides_timestamp_is_its_event_time(tmp_path, parallelism):
    run_sql(SCRIPT.format(out=tmp_path / "out"), parallelism=parallelism)
    rows = read_committed(tmp_path / "out").to_pylist()
    assert rows and all(r["bt"] == r["bd"] and r["at"] == r["ad"] for r in rows)
