"""docs/connectors.md's examples as written: the partitioned filesystem sink, Kafka (librdkafka's
mock cluster for localhost:9092), Redis, NATS, PostgreSQL (sink, bounded source, lookup joins,
CDC), RabbitMQ (queue and stream) and MQTT run against the machine's servers (stream, queue,
table and key names made unique, skipped without a server); the sources of services a test
cannot stand up here (HTTP, webhooks, WebSocket) are planned."""

from __future__ import annotations

import json
import re
import uuid

import pyarrow.parquet as pq
import pytest

from caudal.errors import CaudalError
from caudal.job import compile_sql, run_sql
from tests.conftest import REPO
from tests.connectors.test_rabbitmq import rabbit  # noqa: F401 - fixture
from tests.connectors.test_rabbitmq_stream import streams  # noqa: F401 - fixture

BLOCKS = re.findall(r"```sql\n(.*?)```", (REPO / "docs" / "connectors.md").read_text(), re.S)
GEN = "CREATE TABLE gen WITH (connector = 'nexmark', table = 'bid', events = '20000');\n"


def _block(start: str) -> str:
    """The one example that starts with ``start``."""
    found = [b for b in BLOCKS if b.startswith(start)]
    assert len(found) == 1, f"{len(found)} examples of docs/connectors.md start {start!r}"
    return found[0]


def test_partitioned_filesystem_sink_writes_hive_directories(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    block = _block("CREATE TABLE bids_by_minute")
    run_sql(GEN + block + "INSERT INTO bids_by_minute SELECT auction, price, "
            "DATE_FORMAT(date_time, 'yyyy-MM-dd'), DATE_FORMAT(date_time, 'HH:mm') FROM gen;")
    files = sorted(p.relative_to(tmp_path / "out" / "bids").as_posix()
                   for p in (tmp_path / "out" / "bids").rglob("*.csv"))
    assert files and all(f.startswith("dt=2026-01-01/hm=00%3A0") for f in files), files
    header = (tmp_path / "out" / "bids" / files[0]).read_text().splitlines()[0]
    assert header.replace('"', "") == "auction,price"  # the partition columns are dirs


@pytest.fixture(scope="module")
def kafka():
    from caudal.connectors.kafka_mock import cluster

    with cluster() as bootstrap:
        run_sql(GEN + f"CREATE TABLE t WITH (connector = 'kafka', bootstrap_servers = "
                f"'{bootstrap}', topic = 'bids', format = 'json');\n"
                "INSERT INTO t SELECT auction, bidder, price, date_time FROM gen;")
        yield bootstrap


def _kafka_source(bootstrap: str) -> str:
    """The Kafka example's `bids` table, bounded by the offsets at start."""
    block = _block("CREATE TABLE bids (\n    auction BIGINT")
    return block.replace("localhost:9092", bootstrap).replace(
        "'source.offset' = 'earliest'",
        "'source.offset' = 'earliest', 'scan.bounded.mode' = 'latest-offset'")


def test_kafka_examples_run(kafka, capsys):
    result = run_sql(_kafka_source(kafka))
    assert result.rows_in == 18_400 and result.rows_out > 0
    bids = _kafka_source(kafka).split("CREATE TABLE counts")[0]
    upsert = _block("CREATE TABLE totals (auction BIGINT, bids BIGINT, PRIMARY")
    result = run_sql(bids + upsert.replace("localhost:9092", kafka))
    assert result.rows_in == 18_400 and result.rows_out > 0
    read = _block("CREATE TABLE latest_totals").replace("localhost:9092", kafka).replace(
        "'earliest'", "'earliest', 'scan.bounded.mode' = 'latest-offset'")
    result = run_sql(read)   # the upsert-kafka topic read back as a changelog
    assert result.rows_in > 0 and result.rows_out > 0


def test_redis_example_runs(tmp_path):
    redis = pytest.importorskip("redis")
    client = redis.Redis()
    try:
        client.ping()
    except redis.RedisError as e:
        pytest.skip(f"no Redis on 127.0.0.1:6379: {e}")
    stream = f"caudal-doc-test:{uuid.uuid4().hex[:8]}"
    try:
        for i in range(50):
            client.xadd(stream, {"value": json.dumps(
                {"auction": i % 5, "price": i, "date_time": f"2026-01-01T00:00:{i:02d}"})})
        block = _block("CREATE TABLE bids (auction BIGINT, price BIGINT, date_time TIMESTAMP,\n"
                       "  WATERMARK FOR date_time AS date_time - INTERVAL '1' SECOND) WITH (\n"
                       "  connector = 'redis'")
        block = block.replace("stream = 'bids'", f"stream = '{stream}'").replace(
            "'bid:{auction}'", f"'{stream}:bid:{{auction}}'")
        run_sql(block + "INSERT INTO last_bid SELECT auction, price FROM bids;")
        assert json.loads(client.get(f"{stream}:bid:3")) == {"auction": 3, "price": 48}
    finally:
        keys = list(client.scan_iter(match=f"{stream}*"))
        client.delete(*keys)


def test_nats_example_runs(capsys):
    nats = pytest.importorskip("nats")
    import asyncio

    name = f"DOC{uuid.uuid4().hex[:8].upper()}"

    async def stream(create: bool) -> None:
        nc = await nats.connect("nats://127.0.0.1:4222", connect_timeout=2,
                                max_reconnect_attempts=0)
        js = nc.jetstream()
        if create:
            await js.add_stream(name=name, subjects=[name.lower()])
            for i in range(30):
                await js.publish(name.lower(), json.dumps(
                    {"auction": i % 3, "price": i,
                     "date_time": f"2026-01-01T00:00:{i:02d}"}).encode())
        else:
            await js.delete_stream(name)
        await nc.close()

    try:
        asyncio.run(stream(True))
    except Exception as e:  # noqa: BLE001 - any failure to reach the server
        pytest.skip(f"no NATS JetStream on 127.0.0.1:4222: {e}")
    try:
        block = _block("CREATE TABLE bids (auction BIGINT, price BIGINT, date_time TIMESTAMP,\n"
                       "  WATERMARK FOR date_time AS date_time - INTERVAL '1' SECOND) WITH (\n"
                       "  connector = 'nats'")
        block = block.replace("stream = 'BIDS'", f"stream = '{name}'").replace(
            "subject = 'bids'", f"subject = '{name.lower()}'")
        result = run_sql(block + "SELECT window_start, count(*) AS n FROM TABLE(TUMBLE(TABLE "
                         "bids, DESCRIPTOR(date_time), INTERVAL '10' SECOND)) "
                         "GROUP BY window_start, window_end;")
        assert result.rows_in == 30 and result.rows_out == 3
    finally:
        asyncio.run(stream(False))


@pytest.mark.parametrize("start", [
    "CREATE TABLE hook WITH (connector = 'webhook'",
    "CREATE TABLE events (id BIGINT, name TEXT, at TIMESTAMP) WITH (\n  connector = 'http'",
    "CREATE TABLE price (symbol TEXT",
    "CREATE TABLE trades (symbol TEXT",
])
def test_examples_of_services_plan(start):
    block = _block(start)
    if "webhook" in block:
        block = GEN + block + "INSERT INTO hook SELECT auction, price FROM gen;"
    else:
        block += "".join(f"SELECT * FROM {name};\n"
                         for name in re.findall(r"CREATE TABLE (\w+)", block))
    assert compile_sql(block).graph.vertices


def test_parquet_files_the_doc_describes_are_written_so(tmp_path, monkeypatch, capsys):
    """'parquet.integer_encoding' = 'delta' writes DELTA_BINARY_PACKED integer columns."""
    monkeypatch.chdir(tmp_path)
    run_sql(GEN + "CREATE TABLE out WITH (connector = 'filesystem', path = 'out', "
            "'parquet.integer_encoding' = 'delta');\nINSERT INTO out SELECT auction, url "
            "FROM gen;")
    meta = pq.ParquetFile(next((tmp_path / "out").glob("*.parquet"))).metadata
    column = meta.row_group(0).column(0)
    assert "DELTA_BINARY_PACKED" in column.encodings


# PostgreSQL: the doc's placeholders (user `app`, database `shop`, `connection = '…'`) become
# the machine's server (user postgres, trust auth, database `test`); table and slot names are
# made unique; the Kafka `orders` of the lookup example is the mock cluster's, read bounded.
PG_CONNINFO = "host=127.0.0.1 user=postgres dbname=test"


@pytest.fixture
def pg():
    """An autocommit connection and a unique table name; the tables, slots and publications
    named after it are dropped afterwards."""
    psycopg = pytest.importorskip("psycopg")
    try:
        conn = psycopg.connect(PG_CONNINFO, connect_timeout=3, autocommit=True)
    except psycopg.Error as e:
        pytest.skip(f"no PostgreSQL at {PG_CONNINFO}: {e}")
    name = f"doc_{uuid.uuid4().hex[:8]}"
    yield conn, name
    like = f"%{name}%"
    for (slot,) in conn.execute("SELECT slot_name FROM pg_replication_slots WHERE slot_name "
                                "LIKE %s", (like,)).fetchall():
        conn.execute("SELECT pg_drop_replication_slot(%s)", (slot,))
    for (pub,) in conn.execute("SELECT pubname FROM pg_publication WHERE pubname LIKE %s",
                               (like,)).fetchall():
        conn.execute(f'DROP PUBLICATION "{pub}"')
    for (table,) in conn.execute("SELECT tablename FROM pg_tables WHERE tablename LIKE %s",
                                 (like,)).fetchall():
        conn.execute(f'DROP TABLE "{table}"')
    conn.close()


def _pg(block: str) -> str:
    return (block.replace("jdbc:postgresql://localhost:5432/shop",
                          "jdbc:postgresql://localhost:5432/test")
            .replace("'username' = 'app'", "'username' = 'postgres'")
            .replace("username = 'app'", "username = 'postgres'")
            .replace("'database-name' = 'shop'", "'database-name' = 'test'")
            .replace("connection = '…'", f"connection = '{PG_CONNINFO}'"))


def test_postgres_sink_example_upserts_the_totals(pg, capsys):
    conn, name = pg
    block = _pg(_block("CREATE TABLE totals (auction BIGINT, bids BIGINT, top BIGINT"))
    run_sql(GEN.replace("gen", "bids") + block.replace("'auction_totals'", f"'{name}'"))
    assert conn.execute(f"SELECT count(*), sum(bids) FROM {name}").fetchone() == (1195, 18400)
    kinds = conn.execute("SELECT column_name, data_type FROM information_schema.columns "
                         "WHERE table_name = %s ORDER BY ordinal_position", (name,)).fetchall()
    assert kinds == [("auction", "bigint"), ("bids", "bigint"), ("top", "bigint")]
    key = conn.execute("SELECT count(*) FROM pg_indexes WHERE tablename = %s AND indexdef "
                       "LIKE '%%UNIQUE%%(auction)'", (name,)).fetchone()
    assert key == (1,)


def test_postgres_bounded_source_example_reads_the_table(pg, capsys):
    conn, name = pg
    conn.execute(f"CREATE TABLE {name} (id bigint PRIMARY KEY, name text)")
    conn.execute(f"INSERT INTO {name} VALUES (2, 'bob'), (1, 'ann')")
    text = (REPO / "docs" / "connectors.md").read_text()
    table = re.search(r"`(CREATE TABLE customers WITH \(connector = 'postgres'.*?\))`", text,
                      re.S).group(1).replace("\n", " ")
    run_sql(_pg(table).replace("'customers'", f"'{name}'") + ";\nSELECT * FROM customers;")
    out = capsys.readouterr().out.split()
    assert out[-6:] == ["id", "name", "1", "ann", "2", "bob"]   # in key order


def test_postgres_lookup_example_joins_by_key(pg, capsys):
    from caudal.connectors.kafka_mock import cluster

    conn, name = pg
    conn.execute(f"CREATE TABLE {name} (id bigint PRIMARY KEY, name text)")
    conn.execute(f"INSERT INTO {name} VALUES (1, 'ann'), (2, 'bob')")
    with cluster() as bootstrap:
        run_sql(f"CREATE TABLE o WITH (connector = 'kafka', bootstrap_servers = '{bootstrap}', "
                "topic = 'orders');\nINSERT INTO o SELECT * FROM (VALUES (10, 1, 5), "
                "(11, 2, 7), (12, 3, 9)) AS t(id, customer, amount);")
        capsys.readouterr()
        block = _pg(_block("-- Flink: FOR SYSTEM_TIME AS OF")).replace(
            "localhost:9092", bootstrap).replace(
            "topic = 'orders'", "topic = 'orders', 'source.offset' = 'earliest', "
            "'scan.bounded.mode' = 'latest-offset'").replace(
            "table = 'customers'", f"table = '{name}'")
        run_sql(block)
    rows = sorted(tuple(line.split()) for line in capsys.readouterr().out.splitlines()
                  if line[:1].isdigit())
    # LEFT JOIN: order 12's customer 3 has no row (NULL); the inner JOIN drops it
    assert rows == [("10", "5", "ann"), ("10", "ann"), ("11", "7", "bob"), ("11", "bob"),
                    ("12", "9", "NULL")]


def test_postgres_cdc_example_feeds_the_per_customer_totals(pg, tmp_path, capsys):
    """The snapshot, then (the job resumed from its checkpoint) an update that moves an order,
    a delete and an insert, retracted and applied in the upserted totals."""
    from caudal import cli

    conn, name = pg
    conn.execute(f"CREATE TABLE {name} (id bigint PRIMARY KEY, customer bigint, "
                 "amount numeric(10, 2))")
    conn.execute(f"ALTER TABLE {name} REPLICA IDENTITY FULL")
    conn.execute(f"INSERT INTO {name} VALUES (1, 7, 1.50), (2, 7, 2.25), (3, 8, 4.00)")
    block = _pg(_block("CREATE TABLE orders (id BIGINT, customer BIGINT, amount DECIMAL"))
    block = block.replace("'table-name' = 'orders'", f"'table-name' = '{name}'").replace(
        "'caudal_orders'", f"'caudal_{name}'").replace(
        "'pgoutput'", "'pgoutput', 'scan.bounded.mode' = 'latest-offset'").replace(
        "table = 'per_customer'", f"table = '{name}_per_customer'")
    (tmp_path / "job.sql").write_text(block)
    run = ["run", str(tmp_path / "job.sql"), "--checkpoint-dir", str(tmp_path / "ck")]
    totals = (f"SELECT customer, orders, total::text FROM {name}_per_customer "
              "ORDER BY customer")
    assert cli.main(run) == 0
    assert conn.execute(totals).fetchall() == [(7, 2, "3.75"), (8, 1, "4.00")]
    conn.execute(f"UPDATE {name} SET customer = 8 WHERE id = 1")
    conn.execute(f"DELETE FROM {name} WHERE id = 2")
    conn.execute(f"INSERT INTO {name} VALUES (4, 9, 1.00)")
    assert cli.main(run) == 0
    assert "resuming from checkpoint" in capsys.readouterr().err
    assert conn.execute(totals).fetchall() == [(8, 2, "5.50"), (9, 1, "1.00")]
    # the slot the doc says stays, and its publication
    assert conn.execute("SELECT count(*) FROM pg_replication_slots WHERE slot_name = %s",
                        (f"caudal_{name}",)).fetchone() == (1,)


# RabbitMQ and MQTT: queue, stream, topic and client names are made unique (the fixtures and
# publisher of their own tests); the queue source is read bounded ('scan.bounded.mode' =
# 'latest-offset') so that the job ends.


def _bid(i: int) -> bytes:
    return json.dumps({"auction": i % 4, "price": i,
                       "date_time": f"2026-01-01T00:00:{i:02d}"}).encode()


def test_rabbitmq_queue_example_reads_and_publishes(rabbit):  # noqa: F811
    channel, declare = rabbit
    bids, results = declare("bids", [_bid(i) for i in range(20)]), declare("results")
    block = _block("CREATE TABLE bids (auction BIGINT, price BIGINT, date_time TIMESTAMP) "
                   "WITH (\n  connector = 'rabbitmq', url = 'amqp://guest:guest@127.0.0.1:5672"
                   "/%2F', queue")
    block = block.replace("queue = 'bids'", f"queue = '{bids}', 'scan.bounded.mode' = "
                          "'latest-offset'").replace("queue = 'results'", f"queue = '{results}'")
    result = run_sql(block + "INSERT INTO out SELECT auction, price FROM bids WHERE price >= 15;")
    assert result.rows_in == 20
    got = []
    while (message := channel.basic_get(results, auto_ack=True))[0] is not None:
        got.append(json.loads(message[2]))
    assert got == [{"auction": i % 4, "price": i} for i in range(15, 20)]
    assert channel.queue_declare(bids, passive=True).method.message_count == 0   # acked


def test_rabbitmq_stream_example_reads_the_stream(streams, capsys):  # noqa: F811
    _, declare = streams
    stream = declare("stream", [_bid(i) for i in range(20)])
    block = _block("CREATE TABLE bids (auction BIGINT, price BIGINT, date_time TIMESTAMP) "
                   "WITH (\n  connector = 'rabbitmq', url = 'amqp://guest:guest@127.0.0.1:5672"
                   "/%2F', stream")
    result = run_sql(block.replace("stream = 'bids'", f"stream = '{stream}'") +
                     "SELECT count(*) AS n, sum(price) AS total FROM bids;")
    assert result.rows_in == 20
    assert capsys.readouterr().out.split()[-2:] == ["20", "190"]


def test_mqtt_example_subscribes_to_the_wildcard(capsys):
    import time

    from caudal.runtime.local import LocalRuntime
    from tests.connectors.test_mqtt import publisher

    tag = uuid.uuid4().hex[:8]
    client = publisher()
    block = _block("CREATE TABLE readings (sensor TEXT").replace(
        "'plant/+/readings'", f"'plant-{tag}/+/readings', client_id = 'caudal-doc-{tag}'")
    runtime = LocalRuntime()
    runtime.deploy(compile_sql(block + "SELECT sensor, value FROM readings;").graph)
    runtime.start()
    seen = ""
    try:   # the source is unbounded: publish until rows are out, then stop the job
        deadline = time.monotonic() + 15
        while seen.count("\n") < 4 and time.monotonic() < deadline:
            for topic in ("a/readings", "b/readings", "c/other"):
                client.publish(f"plant-{tag}/{topic}", json.dumps(
                    {"sensor": topic[0], "value": 1.5, "at": "2026-01-01T00:00:00"}), qos=1)
            time.sleep(0.2)
            seen += capsys.readouterr().out
    finally:
        runtime.stop()
        runtime.wait(10)
        client.loop_stop()
        client.disconnect()
    rows = {tuple(line.split()) for line in seen.splitlines()[1:] if line.strip()}
    assert rows == {("a", "1.5"), ("b", "1.5")}   # c/other does not match the filter


def test_postgres_sink_misfit_error_is_the_one_shown(pg):
    """The sink section's error for a table (auction integer, price text) written (auction
    BIGINT, price BIGINT) is what caudal says, after its position."""
    conn, name = pg
    conn.execute(f"CREATE TABLE {name} (auction integer, price text)")
    text = " ".join((REPO / "docs" / "connectors.md").read_text().split())
    shown = re.search(r"and shows both schemas: `(PostgreSQL table public\.t .*?)`",
                      text).group(1)
    with pytest.raises(CaudalError) as e:
        run_sql(GEN + f"CREATE TABLE out WITH (connector = 'postgres', connection = "
                f"'{PG_CONNINFO}', table = '{name}');\nINSERT INTO out SELECT auction, price "
                "FROM gen;")
    assert str(e.value) == "line 3, column 13: " + shown.replace("public.t ", f"public.{name} ")
