"""The engine comparison (``python -m bench.engines``) runs caudal and DuckDB as whole
processes on its CSV input and folds both answers the same way: on a small input they must
be equal for every query (Bytewax, Pathway and PyFlink are left to ``make bench``)."""

from __future__ import annotations

import pytest

from bench.engines.__main__ import main


@pytest.mark.slow  # two whole engine processes per query (~8 CPU s): make test-all
def test_engine_bench_caudal_equals_duckdb(capsys):
    assert main(["--events", "20k", "--engines", "caudal,duckdb"]) == 0
    table = capsys.readouterr().out
    assert table.count("= DuckDB") == 6 and "differs" not in table
