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


async def test_events_are_gap_free_and_in_order_after_the_store_is_reopened(
    cluster: Cluster, tmp_path: Path
) -> None:
    db = tmp_path / "reopened.db"
    ray = RayCluster(cluster.head.address, str(cluster.folder / "cluster.token"))
    nodes = NodePool("tests.executors.probe:runners", nodes=ray)
    async with outrider.Orchestrator(
        db, runners=[Probe(LocalHost({}))], executors={"shell": nodes}
    ) as orch:
        session = orch.session(S)
        tasks = [await session.submit(outrider.ShellSpec(command="report")) for _ in range(6)]
        done = await session.wait([t.id for t in tasks], timeout=120)
    assert {t.state for t in done} == {outrider.TaskState.SUCCEEDED}
    assert None not in {t.node for t in done}  # each ran on a node, recorded
    async with outrider.Orchestrator(db, runners=[Probe(LocalHost({}))]) as orch:
        events = [e async for e in orch.session(S).events(follow=False)]
    seqs = [e.seq for e in events]
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))  # no gap
    for task in tasks:
        kinds = [e.type for e in events if e.task_id == task.id]
        assert kinds[:2] == ["task.queued", "task.started"]
        assert kinds[-1] == "task.succeeded"
        assert "task.output" in kinds
