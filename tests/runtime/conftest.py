"""Fixtures of the runtime tests. One Ray cluster for the whole test session: three nodes of this machine (a
``ray.cluster_utils.Cluster``: separate raylets and object stores, so channels between actors
on different nodes really cross object stores), small, started on first use."""

from __future__ import annotations

import logging
import os

import pytest

#: object store per node (bytes): channels hold few batches, the tests' data is small
OBJECT_STORE = 100 * 2**20
NODES = 3


@pytest.fixture(scope="session")
def ray_cluster():
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
    yield cluster
    ray.shutdown()
    cluster.shutdown()
