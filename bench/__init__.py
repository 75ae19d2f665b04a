"""Benchmarks: caudal and a batch engine (DuckDB) on the same data, in the same run."""
