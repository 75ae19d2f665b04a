"""The README's SQL examples run as written (blocks that query `bids` without defining it get
a small Nexmark `bids` table in front; blocks naming a Kafka broker at localhost:9092 run
against librdkafka's mock cluster, after the Kafka blocks before them, which fill topics)."""

from __future__ import annotations

import re

import pytest

from caudal.job import run_sql
from tests.conftest import REPO

BLOCKS = re.findall(r"```sql\n(.*?)```", (REPO / "README.md").read_text(), re.S)
BIDS = "CREATE TABLE bids WITH (connector = 'nexmark', table = 'bid', events = '50000');\n"


KAFKA = "localhost:9092"


@pytest.fixture(scope="module")
def kafka_brokers():
    """A mock Kafka cluster for the blocks that name localhost:9092 (its bootstrap list)."""
    from caudal.connectors.kafka_mock import cluster

    with cluster() as bootstrap:
        yield bootstrap


def _prepared(sql: str) -> str:
    if "CREATE TABLE bids" not in sql:
        sql = BIDS + sql
    return re.sub(r"events = '\d+'", "events = '50000'", sql)


@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_readme_sql_block_runs(index, tmp_path, monkeypatch, capsys, request):
    monkeypatch.chdir(tmp_path)
    sql = BLOCKS[index]
    if KAFKA in sql:
        brokers = request.getfixturevalue("kafka_brokers")
        for earlier in BLOCKS[:index]:
            if KAFKA in earlier:
                run_sql(_prepared(earlier).replace(KAFKA, brokers))
        sql = sql.replace(KAFKA, brokers)
    if "connector = 'postgres'" in sql:
        _need_postgres(sql)
    result = run_sql(_prepared(sql))
    assert result.rows_in > 0


def _need_postgres(sql: str) -> None:
    """Blocks writing to PostgreSQL run against the machine's server; skipped without one."""
    psycopg = pytest.importorskip("psycopg")
    where = re.search(r"connection = '([^']+)'", sql).group(1)
    try:
        psycopg.connect(where, connect_timeout=3).close()
    except psycopg.Error as e:
        pytest.skip(f"no PostgreSQL at {where}: {e}")


def test_readme_has_examples():
    assert len(BLOCKS) >= 2


def test_readme_links_only_pages_of_the_repository():
    text = (REPO / "README.md").read_text()
    targets = re.findall(r"\]\(([^)#\s]+)", text)
    assert targets
    for target in targets:
        assert not target.startswith(("..", "/", "http:", "https:")), target
        assert (REPO / target).exists(), f"README links a missing file {target}"


def test_readme_python_example_runs(tmp_path, monkeypatch):
    """The README's Python block, over a `bids/` directory of Parquet bids it reads."""
    monkeypatch.chdir(tmp_path)
    run_sql(BIDS + "CREATE TABLE out WITH (connector = 'filesystem', path = 'bids', "
            "format = 'parquet');\nINSERT INTO out SELECT * FROM bids;")
    blocks = re.findall(r"```python\n(.*?)```", (REPO / "README.md").read_text(), re.S)
    assert len(blocks) == 1
    namespace: dict = {}
    exec(compile(blocks[0], "README.md python block", "exec"), namespace)
    table = namespace["table"]
    assert table.num_rows > 0
    assert table.column_names == ["auction", "window_start", "window_end", "bids", "top"]
