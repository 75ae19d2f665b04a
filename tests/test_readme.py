"""The README's SQL examples run as written (blocks that query `bids` without defining it get
a small Nexmark `bids` table in front)."""

from __future__ import annotations

import re

import pytest

from caudal.job import run_sql
from tests.conftest import REPO

BLOCKS = re.findall(r"```sql\n(.*?)```", (REPO / "README.md").read_text(), re.S)
BIDS = "CREATE TABLE bids WITH (connector = 'nexmark', table = 'bid', events = '50000');\n"


@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_readme_sql_block_runs(index, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    sql = BLOCKS[index]
    if "CREATE TABLE bids" not in sql:
        sql = BIDS + sql
    sql = re.sub(r"events = '\d+'", "events = '50000'", sql)
    result = run_sql(sql)
    assert result.rows_in > 0


def test_readme_has_examples():
    assert len(BLOCKS) >= 2
