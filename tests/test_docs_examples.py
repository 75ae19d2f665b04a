"""The SQL examples of docs/sql-queries.md, docs/sql-ddl.md and docs/nexmark.md run as written
(README.md and docs/sql-windows.md have their own tests): over small Nexmark tables of the
names they use, with the files their tables name, and with a SELECT after a block that only
declares tables. A block's `WITH (…)` (options left to the reader) reads a small JSON file."""

from __future__ import annotations

import re

import pytest

from caudal.errors import CaudalError
from caudal.job import run_sql
from tests.conftest import REPO

DOCS = REPO / "docs"
NEXMARK = ("CREATE TABLE {0} WITH (connector = 'nexmark', table = '{0}', events = '20000', "
           "event_rate = '2000', pace = 'false');")


def _blocks(page: str) -> list[str]:
    return re.findall(r"```sql\n(.*?)```", (DOCS / page).read_text(), re.S)


def _cases(page: str) -> list:
    return [pytest.param(page, i, id=f"{page}-{i}") for i in range(len(_blocks(page)))]


RATES = """\
{"currency": "EUR", "conversion_rate": 1.10, "update_time": "2026-01-01 00:00:00"}
{"currency": "EUR", "conversion_rate": 1.20, "update_time": "2026-01-01 00:00:10"}
{"currency": "YEN", "conversion_rate": 0.01, "update_time": "2026-01-01 00:00:05"}
"""
ORDERS = """\
{"order_id": 1, "price": 5, "currency": "EUR", "order_time": "2026-01-01 00:00:03"}
{"order_id": 2, "price": 7, "currency": "EUR", "order_time": "2026-01-01 00:00:12"}
{"order_id": 3, "price": 9, "currency": "YEN", "order_time": "2026-01-01 00:00:01"}
"""
ORDER_ROWS = ('{"orderId": 1, "customer": {"id": 5, "name": "ann"}, '
              '"items": [{"sku": "a", "qty": 2}], "ms": 1767225600000}\n')


def _prepared(page: str, sql: str, tmp_path) -> str:
    """The block with what it needs in front of (or after) it."""
    if page == "sql-queries.md":
        prelude = [NEXMARK.format("bid"), NEXMARK.format("auction")]
        if "currency_rates" in sql:
            (tmp_path / "rates.json").write_text(RATES)
            (tmp_path / "orders.json").write_text(ORDERS)
            prelude.append(
                "CREATE TABLE orders (order_id BIGINT, price BIGINT, currency STRING, "
                "order_time TIMESTAMP(3), WATERMARK FOR order_time AS order_time) WITH "
                "(connector = 'filesystem', path = 'orders.json');")
            sql = sql.replace("WITH (…)", "WITH (connector = 'filesystem', path = 'rates.json')")
        return "\n".join(prelude) + "\n" + sql
    if page == "sql-ddl.md" and "data/orders" in sql:
        (tmp_path / "data" / "orders").mkdir(parents=True)
        (tmp_path / "data" / "orders" / "part-0.json").write_text(ORDER_ROWS)
        return sql + "\nSELECT orderId, customer.name, items[1].qty, ts, file FROM orders;"
    if page == "nexmark.md":
        names = re.findall(r"CREATE TABLE (\w+)", sql)
        return sql + "".join(f"\nSELECT * FROM {n} LIMIT 3;" for n in names)
    return sql


@pytest.mark.parametrize(("page", "index"),
                         _cases("sql-queries.md") + _cases("sql-ddl.md") + _cases("nexmark.md"))
def test_doc_example_runs(page, index, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    result = run_sql(_prepared(page, _blocks(page)[index], tmp_path))
    assert result.rows_in > 0
    assert result.rows_out > 0


def test_temporal_join_example_gives_the_version_current_at_each_row(tmp_path, monkeypatch,
                                                                        capsys):
    monkeypatch.chdir(tmp_path)
    block = next(b for b in _blocks("sql-queries.md") if "currency_rates" in b)
    run_sql(_prepared("sql-queries.md", block, tmp_path))
    out = capsys.readouterr().out
    rows = {line.split()[0]: line.split()[3] for line in out.splitlines()[1:] if line.strip()}
    # order 3 (00:00:01) is before the first YEN rate (00:00:05): padded with NULL
    assert rows == {"1": "1.10", "2": "1.20", "3": "NULL"}


def test_ddl_page_errors_are_the_ones_shown(tmp_path, monkeypatch):
    """docs/sql-ddl.md's "Errors" section shows what caudal says, word for word."""
    monkeypatch.chdir(tmp_path)
    text = (DOCS / "sql-ddl.md").read_text()
    shown = re.search(r"## Errors\n.*?```\n(.*?)```", text, re.S).group(1).splitlines()
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "a.json").write_text('{"ts": "2026-01-01 00:00:00"}\n')
    scripts = [
        "CREATE TABLE t (ts TIMESTAMP,\n  x INT,\n  WATERMARK FOR ts AS ts + INTERVAL '1' SECOND"
        ") WITH (connector = 'filesystem', path = 'd');\nSELECT * FROM t;",
        "CREATE TABLE k (x INT,\n  `offset` BIGINT METADATA VIRTUAL) WITH (connector = "
        "'filesystem', path = 'd');\nSELECT * FROM k;",
    ]
    assert len(shown) == len(scripts)
    for script, line in zip(scripts, shown):
        with pytest.raises(CaudalError) as e:
            run_sql(script)
        assert str(e.value) == line


def _shell_blocks(page: str) -> list[str]:
    """The page's blocks of commands (```sh, or ``` without a language)."""
    return re.findall(r"```(?:sh)?\n(.*?)```", (DOCS / page).read_text(), re.S)


def test_operations_compile_example_runs_the_plan(tmp_path, monkeypatch, capsys):
    """docs/operations.md's `caudal compile` block, command by command (in-process), over a
    job.sql of our own: the plan prints what the .sql prints, and explain shows its graph."""
    from caudal import cli

    monkeypatch.chdir(tmp_path)
    (tmp_path / "job.sql").write_text(
        NEXMARK.format("bid") + "\nSELECT auction, count(*) AS n FROM bid GROUP BY auction "
        "ORDER BY n DESC, auction LIMIT 3;\n")
    block = next(b for b in _shell_blocks("operations.md") if "caudal compile" in b)
    commands = [line.split("#")[0].split() for line in block.splitlines()]
    assert [c[:2] for c in commands] == [["caudal", "compile"], ["caudal", "run"],
                                         ["caudal", "explain"]]
    assert cli.main(["run", "job.sql", "-p", "2", "--no-plan-cache"]) == 0
    from_sql = capsys.readouterr().out
    outs = []
    for command in commands:
        assert cli.main(command[1:]) == 0, command
        outs.append(capsys.readouterr().out)
    assert outs[1] == from_sql and from_sql.count("\n") >= 4
    assert "nexmark" in outs[2].lower() and "[" in outs[2]


def _data_lines(command: str, count: int) -> list[str]:
    """The first ``count`` `data:` lines (after everything before them) of a streaming curl
    command, which is then ended (within 60 s: fewer lines fail the test)."""
    import subprocess
    import threading

    proc = subprocess.Popen(["bash", "-c", f"exec {command}"], stdout=subprocess.PIPE,
                            text=True)
    timer = threading.Timer(60, proc.kill)
    timer.start()
    lines: list[str] = []
    try:
        for line in proc.stdout:
            lines.append(line.rstrip("\n"))
            if sum(x.startswith("data:") for x in lines) >= count:
                break
    finally:
        timer.cancel()
        proc.kill()
        proc.wait()
    return lines


@pytest.mark.slow   # two processes (server, pipeline): 7-20 s at load 10-11
def test_operations_rest_example_starts_previews_and_stops(tmp_path):
    """docs/operations.md's curl block against a real `caudal serve` (its port instead of
    5115, the id it answered for <id>, and the previews' streams cut after a few events)."""
    import json
    import shutil
    import subprocess

    from tests.server.conftest import Server

    if shutil.which("curl") is None:
        pytest.skip("no curl")
    (tmp_path / "state").mkdir()
    server = Server(tmp_path / "state").start()
    try:
        block = next(b for b in _shell_blocks("operations.md") if "curl -s localhost" in b)
        block = block.replace("localhost:5115", f"localhost:{server.port}")
        create, preview, stop = re.split(r"\n(?=curl)", block.strip())
        created = subprocess.run(["bash", "-c", create], capture_output=True, text=True,
                                 timeout=60, check=True).stdout
        pid = json.loads(created)["id"]
        server.wait_state(pid, {"running"})
        events = _data_lines(preview.replace("<id>", pid), 4)
        rows = [line.split()[1:] for line in events if line.startswith("data:")]
        assert rows[0] == ["auction", "price"], events
        assert all(int(price) > 10_000_000 for _, price in rows[1:]), events
        # the node preview's block, against the same pipeline
        node = next(line for b in _shell_blocks("operations.md") for line in b.splitlines()
                    if "preview?node=" in line)
        node = node.replace("localhost:5115", f"localhost:{server.port}").replace("<id>", pid)
        events = _data_lines(node, 3)
        assert events[0] == "event: node", events
        sent = [json.loads(line[5:]) for line in events if line.startswith("data:")]
        shown = [row for data in sent[1:] for row in data.get("rows", [])]
        assert shown and all(row["price"] > 10_000_000 for row in shown), events
        stopped = subprocess.run(["bash", "-c", stop.replace("<id>", pid)],
                                 capture_output=True, text=True, timeout=60, check=True)
        assert stopped.returncode == 0
        assert server.wait_state(pid, {"stopped", "failed"})["state"] == "stopped"
        # "Bad input", as the page words it
        post = server.client.post
        refused = post("/api/v1/pipelines", json={"query": "SELECT 1 AS a;"})
        assert (refused.status_code, refused.json()["error"]) == (
            422, "field 'name': Field required")
        refused = post("/api/v1/pipelines", content=b"{", headers={
            "content-type": "application/json"})
        assert refused.status_code == 422
        assert refused.json()["error"].startswith("the body is not valid JSON")
        refused = post("/api/v1/pipelines", json={"name": "n", "query": "SELECT x FROM t;"})
        assert refused.status_code == 400
        assert re.fullmatch(r"line 1, column \d+: [^\n]+", refused.json()["error"])
    finally:
        server.stop()


@pytest.mark.slow
def test_ray_page_first_command_starts_a_quiet_local_ray(tmp_path):
    """docs/ray.md's `caudal run job.sql --runtime ray` (no address, no RAY_ADDRESS: a local
    Ray of the job's own, ~25 s here): a SELECT's rows are printed by the driver as the local
    runtime prints them, nothing of Ray reaches the terminal, and a subtask's error comes back
    as one line."""
    from tests.conftest import run_cli

    block = next(b for b in _shell_blocks("ray.md") if "caudal run job.sql" in b)
    first = block.splitlines()[0].split("#")[0].split()
    assert first == ["caudal", "run", "job.sql", "--runtime", "ray"]
    (tmp_path / "job.sql").write_text(
        NEXMARK.format("bid") + "\nSELECT auction, count(*) AS n FROM bid GROUP BY auction "
        "ORDER BY n DESC, auction LIMIT 3;\n")
    local = run_cli("run", "job.sql", cwd=tmp_path)
    on_ray = run_cli(*first[1:], cwd=tmp_path, timeout=240, env={"RAY_ADDRESS": ""})
    assert on_ray.returncode == 0, on_ray.stderr
    assert on_ray.stdout == local.stdout and local.stdout.count("\n") == 4
    assert on_ray.stderr.count("\n") == 1 and on_ray.stderr.startswith("caudal: "), on_ray.stderr
    (tmp_path / "job.sql").write_text(
        NEXMARK.format("bid") + "\nSELECT auction, 10 / (auction - 1000) AS x FROM bid;\n")
    failed = run_cli(*first[1:], cwd=tmp_path, timeout=240, env={"RAY_ADDRESS": ""})
    assert failed.returncode == 1
    assert failed.stderr == ("caudal: error: line 2, column 17: division by zero in "
                             "(10 / (auction - 1000))\n")
