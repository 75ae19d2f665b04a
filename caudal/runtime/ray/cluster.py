"""Connecting to Ray: an existing cluster (``--address auto``, ``HOST:PORT``, ``ray://…``) or,
without an address, a local Ray started quietly for this job (no dashboard, no worker log
lines on the user's terminal: a failing subtask's error comes back through the driver)."""

from __future__ import annotations

import logging
import os

from caudal.errors import ConfigError, RuntimeFailure

#: object store of a local Ray started for one job (bytes)
LOCAL_OBJECT_STORE = 512 * 2**20
#: attempts at starting a local Ray (its raylet may miss the 30 s registration on a busy host)
STARTS = 3


def ray_module():
    try:
        import ray
    except ImportError:
        raise ConfigError("--runtime ray needs Ray: pip install 'caudal[ray]' (or 'ray')") \
            from None
    return ray


def connect(address: str | None) -> None:
    """Initialize Ray in this process once (tests may have done it: then nothing happens)."""
    ray = ray_module()
    if ray.is_initialized():
        return
    os.environ.setdefault("RAY_DEDUP_LOGS", "0")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    os.environ.setdefault("RAY_ENABLE_UV_RUN_RUNTIME_ENV", "0")
    options: dict = {"include_dashboard": False, "log_to_driver": False,
                     "logging_level": logging.ERROR, "configure_logging": True}
    # without an address Ray's own default would join whichever cluster was started last on
    # this machine (/tmp/ray/ray_current_cluster), maybe another user's or a dead one: the
    # job gets a Ray of its own, unless RAY_ADDRESS names a cluster (as in a KubeRay pod)
    address = address or os.environ.get("RAY_ADDRESS") or None
    if not address:  # a Ray of our own: a modest object store (channels hold few batches)
        options["object_store_memory"] = LOCAL_OBJECT_STORE
    for attempt in range(STARTS):
        try:
            ray.init(address=address or "local", **options)
            return
        except ConnectionError as e:
            raise ConfigError(f"--address {address}: cannot reach a Ray cluster ({e})",
                              hint="use auto, HOST:PORT of the head node, or "
                                   "ray://HOST:10001") from None
        except Exception as e:  # noqa: BLE001 - Ray's fixed 30 s startup wait, on a busy host
            ray.shutdown()
            if attempt == STARTS - 1 or "timed out during startup" not in str(e):
                raise RuntimeFailure(f"Ray did not start: {e}") from None
