"""docs/sql.md is generated from the registries where it lists functions, aggregates,
connectors and formats: it must be regenerated when they change, and it must list them all."""

from __future__ import annotations

import re

from caudal.connectors import registry as connectors
from caudal.plan.aggregates import SIGNATURES
from caudal.plan.functions.catalog import callable_names
from caudal.sql import reference

DOC = reference.DOC


def test_sql_reference_is_up_to_date():
    text = DOC.read_text()
    assert reference.render(text) == text, \
        "docs/sql.md is out of date: run `python -m caudal.sql.reference`"


def test_every_function_aggregate_and_connector_is_listed():
    text = DOC.read_text()
    listed = set(re.findall(r"`([a-z_0-9.-]+)`", text))
    assert set(callable_names()) <= listed
    assert set(SIGNATURES) <= listed
    assert set(connectors.public_connectors()) <= listed
    for internal in connectors.INTERNAL:
        assert f"#### `{internal}`" not in text


def test_links_point_inside_the_repository():
    text = DOC.read_text()
    for target in re.findall(r"\]\(([^)#]+)", text):
        assert not target.startswith(("..", "/", "http")), target
        assert (DOC.parent / target).exists(), f"docs/sql.md links a missing page {target}"


def test_check_mode_reports_a_stale_file(tmp_path):
    stale = tmp_path / "sql.md"
    stale.write_text("x\n<!-- generated: aggregates -->\nold\n<!-- end generated -->\n")
    assert reference.main(["--check", "--file", str(stale)]) == 1
    assert reference.main(["--file", str(stale)]) == 0
    assert "array_agg" in stale.read_text()
    assert reference.main(["--check", "--file", str(stale)]) == 0
