"""Changelog inputs as a Flink user with CDC data feeds them: debezium_json changes (inserts,
updates with before/after images, deletes, repeated updates of one key) through GROUP BY,
joins, top-N and DISTINCT. The folded output equals DuckDB's answer over the table the
changelog leaves (the changes applied to a DuckDB table first), at parallelism 1 and 2."""

from __future__ import annotations

import json
import random
from pathlib import Path

import duckdb
import pytest

from tests.changelog_helpers import fold, run_changelog
from tests.helpers import normalized_rows

COLUMNS = "id BIGINT, g TEXT, v BIGINT, s TEXT"


def changes(seed: int, n: int = 300, keys: int = 30) -> tuple[list[dict], list[dict]]:
    """A consistent Debezium changelog of ``n`` changes over ``keys`` ids, and the rows it
    leaves."""
    rnd = random.Random(seed)
    state: dict[int, dict] = {}
    out = []

    def row(k: int) -> dict:
        return {"id": k, "g": rnd.choice(["a", "b", "c", None]),
                "v": rnd.choice([None, *range(-5, 20)]), "s": rnd.choice(["x", "y", None])}

    for _ in range(n):
        k = rnd.randrange(keys)
        if k not in state:
            state[k] = row(k)
            out.append({"before": None, "after": state[k], "op": rnd.choice("cr")})
        elif rnd.random() < 0.6:
            new = row(k)
            out.append({"before": state[k], "after": new, "op": "u"})
            state[k] = new
        else:
            out.append({"before": state.pop(k), "after": None, "op": "d"})
    return out, list(state.values())


def write_lines(path: Path, lines: list[dict]) -> None:
    path.write_text("".join(json.dumps(x) + "\n" for x in lines))


def duck_answer(query: str, tables: dict[str, list[dict]]) -> list[tuple]:
    con = duckdb.connect()
    for name, rows in tables.items():
        con.execute(f"CREATE TABLE {name} ({COLUMNS})")
        if rows:
            con.executemany(f"INSERT INTO {name} VALUES (?, ?, ?, ?)",
                            [(r["id"], r["g"], r["v"], r["s"]) for r in rows])
    return normalized_rows(con.sql(query).to_arrow_table())


def source_ddl(name: str, path: Path) -> str:
    return (f"CREATE TABLE {name} ({COLUMNS}, PRIMARY KEY (id) NOT ENFORCED) WITH ("
            f"connector = 'filesystem', path = '{path}', format = 'debezium_json');")


QUERIES = [
    "SELECT g, count(*) AS n, sum(v) AS t, min(v) AS lo, max(v) AS hi, avg(v) AS a, "
    "count(DISTINCT s) AS ds FROM src GROUP BY g",
    "SELECT DISTINCT g, s FROM src",
    "SELECT g, id, v FROM (SELECT *, ROW_NUMBER() OVER (PARTITION BY g ORDER BY v DESC "
    "NULLS LAST, id) AS rn FROM src) WHERE rn <= 2",
]


@pytest.mark.parametrize("parallelism", [1, 2])
@pytest.mark.parametrize("query", QUERIES[:2])
def test_a_changelog_split_over_files_is_read_in_order(tmp_path, query, parallelism):
    """A directory of debezium_json files is one changelog: a row's update or delete may be
    in a later file than its insert. The files were dealt to the source subtasks like
    independent partitions, so at parallelism 2 a delete could reach the GROUP BY before its
    insert (ignored there), and the insert stayed: count 57 for 23 rows."""
    lines, final = changes(3, n=400)
    src = tmp_path / "src"
    src.mkdir()
    for i in range(4):
        write_lines(src / f"part-{i}.json", lines[i * 100:(i + 1) * 100])
    got = fold(run_changelog(source_ddl("src", src), query, tmp_path / "out",
                             parallelism=parallelism, batch_rows=17))
    assert normalized_rows(got) == duck_answer(query, {"src": final})
