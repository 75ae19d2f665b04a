"""Executors of a physical dataflow graph: local (threads in one process) and ray (cluster)."""

from __future__ import annotations

from typing import Any

#: the runtimes a job can run on (``caudal run --runtime``, a frame's ``runtime=``)
RUNTIMES = ("local", "ray")


def make_runtime(runtime: str = "local", address: str | None = None, batch_rows: int = 65536,
                 linger: str = "5ms", cli: bool = False) -> Any:
    """The runtime asked for, not yet deployed: the CLI's ``--runtime``/``--address`` and the
    frame API's ``runtime=``/``address=`` (``cli`` says how the messages name them)."""
    from caudal.durations import parse_duration_s
    from caudal.errors import ConfigError

    def name(option: str, value: str = "") -> str:
        return f"--{option}{' ' + value if value else ''}" if cli else \
            f"{option}={repr(value) if value else ''}"

    if runtime not in RUNTIMES:
        raise ConfigError(f"unknown {name('runtime', runtime)}",
                          hint="accepted: " + ", ".join(RUNTIMES))
    linger_s = parse_duration_s(linger, name("linger"))
    if runtime == "ray":
        from caudal.runtime.ray.executor import RayRuntime

        return RayRuntime(batch_rows=batch_rows, linger_s=linger_s, address=address)
    if address:
        raise ConfigError(f"{name('address')} needs {name('runtime', 'ray')}")
    from caudal.runtime.local import LocalRuntime

    return LocalRuntime(batch_rows=batch_rows, linger_s=linger_s)
