"""Checkpoints and exactly-once: aligned barrier snapshots written as Parquet with a manifest
per epoch (the commit point), two-phase-commit sinks, recovery and rescaling by key group.
The coordinator talks to subtasks through the messages of ``checkpoint.messages``; the
restart loop that runs a job under it is ``runtime.supervisor``."""

#: the time between checkpoints when none is given (CLI, Python API, job server)
DEFAULT_INTERVAL = "10s"
