"""Checkpoints and exactly-once: aligned barrier snapshots written as Parquet with a manifest
per epoch (the commit point), two-phase-commit sinks, recovery, rescaling by key group and
restarts. ``attach`` is how the CLI turns a runtime into a checkpointed one."""

from __future__ import annotations

from typing import Any

from caudal.checkpoint.supervisor import CheckpointedRuntime, CheckpointSettings
from caudal.durations import parse_duration_s
from caudal.errors import ConfigError

__all__ = ["CheckpointSettings", "CheckpointedRuntime", "attach"]


def attach(runtime: Any, compiled: Any, args: Any) -> CheckpointedRuntime:
    """Wrap ``runtime`` (not yet deployed) so that ``deploy`` restores from
    ``args.checkpoint_dir`` and ``run`` checkpoints every ``args.checkpoint_interval``."""
    interval = parse_duration_s(args.checkpoint_interval, "--checkpoint-interval")
    if interval <= 0:
        raise ConfigError("--checkpoint-interval must be positive", hint="e.g. 10s or 500ms")
    if getattr(args, "max_restarts", 0) < 0:
        raise ConfigError("--max-restarts must be 0 or more")
    sql = "\n".join(o.statement.text for o in compiled.job.outputs)
    settings = CheckpointSettings(
        uri=args.checkpoint_dir, interval_s=interval, fresh=bool(getattr(args, "fresh", False)),
        max_restarts=int(getattr(args, "max_restarts", 3)),
        from_epoch=getattr(args, "from_epoch", None), sql=sql)

    def factory() -> Any:
        return type(runtime)(batch_rows=runtime.job.batch_rows, linger_s=runtime.job.linger_s,
                             channel_capacity=runtime.channel_capacity)

    return CheckpointedRuntime(runtime, factory, settings)
