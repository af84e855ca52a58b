"""A Ray cluster on loopback for the `cluster` tests: a head and one more node, started once.

The head checks its nodes' health every second and declares a node dead after 5 missed checks
(`HEALTH_CHECKS`, Ray's defaults take about a minute), so a frozen node is noticed in seconds,
and a node of a busy machine that misses a few is not.
Skipped, saying why, where Ray is not installed (outrider without the `cluster` extra).
"""

from __future__ import annotations

import socket
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from collections.abc import Iterator

    from outrider._daemon._cluster import Head, Node


HEALTH_CHECKS = {
    "RAY_health_check_period_ms": "1000",
    "RAY_health_check_timeout_ms": "1500",
    "RAY_health_check_failure_threshold": "5",
}
"""Ray's health checks of the nodes, read by the head from its environment."""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@dataclass
class Cluster:
    head: Head
    node: Node
    folder: Path


@pytest.fixture(scope="session")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    from outrider._daemon._cluster import Head, Node, ray_available

    if (missing := ray_available()) is not None:
        pytest.skip(missing)
    folder = tmp_path_factory.mktemp("cluster")
    with pytest.MonkeyPatch.context() as env:  # the nodes' workers import the tests' runners
        env.setenv("PYTHONPATH", str(Path(__file__).resolve().parents[2]))
        for name, value in HEALTH_CHECKS.items():
            env.setenv(name, value)
        head = Head.start(folder, bind="127.0.0.1", port=free_port(), slots=2)
        try:
            node = Node.join(head.address, head.token, folder=folder, slots=2,
                             labels={"zone": "b"})  # fmt: skip
        except BaseException:
            head.stop()
            raise
    try:
        try:
            yield Cluster(head, node, folder)
        finally:
            node.stop()
    finally:
        head.stop()
