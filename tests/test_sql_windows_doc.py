"""docs/sql-windows.md: every SQL example runs as written, over small tables of the names
it uses (Nexmark ``bids`` / ``auctions``, Flink's ``Bid``, ``LeftTable``, ``RightTable``)."""

from __future__ import annotations

import re

import pyarrow.parquet as pq
import pytest

from caudal.job import run_sql
from tests.conftest import REPO
from tests.sql.test_window_join_syntax import ROWS, TABLE, _table
from tests.sql.test_window_syntax import write_bid

DOC = REPO / "docs" / "sql-windows.md"
BLOCKS = re.findall(r"```sql\n(.*?)```", DOC.read_text(), re.S)
NEXMARK = ("CREATE TABLE {0}s WITH (connector = 'nexmark', table = '{0}', events = '20000', "
           "event_rate = '2000', pace = 'false');")


@pytest.fixture(scope="module")
def tables(tmp_path_factory) -> str:
    ddl = [NEXMARK.format("bid"), NEXMARK.format("auction"),
           write_bid(tmp_path_factory.mktemp("Bid"))]
    for name, rows in ROWS.items():
        path = tmp_path_factory.mktemp(name)
        pq.write_table(_table(rows), path / "part.parquet")
        ddl.append(TABLE.format(name=name, path=path))
    return "\n".join(ddl)


@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_doc_example_runs(index, tables, capsys):
    result = run_sql(f"{tables}\n{BLOCKS[index]}")
    assert result.rows_in > 0


def test_doc_has_examples():
    assert len(BLOCKS) >= 5
