"""Keyed and time-bucketed state of operators, its Parquet snapshots and restore, and the key
groups that decide which subtask owns a key (so state can be redistributed on rescaling)."""
