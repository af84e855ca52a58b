"""Attempts on a real Ray cluster (a head and a node on loopback), through `RayCluster`."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

import pytest

import outrider
from outrider._executors._nodes import NodePool
from outrider._executors._ray import RayCluster
from tests.executors.probe import LocalHost, Probe

if TYPE_CHECKING:
    from collections.abc import AsyncIterator
    from pathlib import Path

    from tests.cluster.conftest import Cluster

pytestmark = [pytest.mark.cluster, pytest.mark.slow, pytest.mark.timeout(300)]
S = "ray"


@pytest.fixture
async def orch(cluster: Cluster, tmp_path: Path) -> AsyncIterator[outrider.Orchestrator]:
    ray = RayCluster(cluster.head.address, str(cluster.folder / "cluster.token"))
    nodes = NodePool("tests.executors.probe:runners", nodes=ray)
    async with outrider.Orchestrator(
        tmp_path / "o.db", runners=[Probe(LocalHost({}))], executors={"shell": nodes}
    ) as opened:
        yield opened


async def test_an_attempt_runs_on_a_node_and_reports_back(orch: outrider.Orchestrator) -> None:
    task = await orch.session(S).submit(outrider.ShellSpec(command="report"))
    (done,) = await orch.session(S).wait([task.id], timeout=60)
    assert done.state == outrider.TaskState.SUCCEEDED, done.error
    assert isinstance(done.result, dict)
    assert done.result["worker"] != os.getpid()
    assert done.result["transcript"] == {"turns": 1}
    assert await orch.session(S).tail(done.id) == "hello from a thread \ufffd\n"
