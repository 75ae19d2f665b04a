"""Fixtures of the runtime tests. One Ray cluster for the Ray tests: three nodes of this
machine (a ``ray.cluster_utils.Cluster``: separate raylets and object stores, so channels
between actors on different nodes really cross object stores), small, started by the first
of them and stopped after the last."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest

#: object store per node (bytes): channels hold few batches, the tests' data is small
OBJECT_STORE = 100 * 2**20
NODES = 3


#: the cluster the Ray tests share, started by the first test that asks for it
_CLUSTER: list = []


def _start_cluster():
    ray = pytest.importorskip("ray")
    from ray.cluster_utils import Cluster

    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    os.environ.setdefault("RAY_DEDUP_LOGS", "0")
    node = {"num_cpus": 1, "object_store_memory": OBJECT_STORE}
    cluster = Cluster(initialize_head=True,
                      head_node_args={**node, "include_dashboard": False})
    for _ in range(NODES - 1):
        cluster.add_node(**node)
    ray.init(address=cluster.address, log_to_driver=False, logging_level=logging.ERROR)
    cluster.wait_for_nodes()
    return cluster


def _stop_cluster() -> None:
    import ray

    cluster = _CLUSTER.pop()
    ray.shutdown()
    cluster.shutdown()


@pytest.fixture
def ray_cluster():
    if not _CLUSTER:
        _CLUSTER.append(_start_cluster())
    yield _CLUSTER[0]


def _uses_the_cluster(item) -> bool:
    return Path(str(item.path)).name.startswith("test_ray_") and \
        Path(str(item.path)).parent == Path(__file__).parent


def pytest_runtest_teardown(item, nextitem):
    """Stop the cluster once its tests are done, not at the end of the session: its dozen
    processes (raylets, GCS, workers) take ~0.1 of a core while idle, for the rest of a
    suite that does not use them. The Ray test files run one after another (on one worker
    under xdist, see tests/conftest.py), so it starts once."""
    if _CLUSTER and (nextitem is None or not _uses_the_cluster(nextitem)):
        _stop_cluster()
