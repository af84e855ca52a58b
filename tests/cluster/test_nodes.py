"""Real tasks on a real Ray cluster (a head and a node on loopback): the daemon's own runners
on the nodes, its limits, cancel and loss of a node's worker."""

from __future__ import annotations

import os
import signal
from typing import TYPE_CHECKING

import pytest

import outrider
from outrider._daemon._config import Config
from outrider._daemon._runners import executors, runners
from outrider._types._events import TaskRetrying
from outrider.runners import _procs
from outrider.testing import task_processes, wait_until

if TYPE_CHECKING:
    from collections.abc import AsyncIterator
    from pathlib import Path

    from tests.cluster.conftest import Cluster

pytestmark = [pytest.mark.cluster, pytest.mark.slow, pytest.mark.timeout(300)]
S = "nodes"


@pytest.fixture
async def orch(
    cluster: Cluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[outrider.Orchestrator]:
    monkeypatch.setenv("OUTRIDER_HOME", str(cluster.folder))  # where the cluster's token is
    config = Config(cluster=cluster.head.address, limits={"shell": 2}, db=tmp_path / "o.db")
    made = runners(config, {})
    async with outrider.Orchestrator(
        tmp_path / "o.db", config, runners=made, executors=executors(config, {}, made)
    ) as opened:
        yield opened


async def test_limits_hold_across_the_nodes(orch: outrider.Orchestrator) -> None:
    session = orch.session(S)
    spec = outrider.shell("echo $OUTRIDER_OWNER; sleep 0.3")
    tasks = [await session.submit(spec) for _ in range(8)]
    done = await session.wait([t.id for t in tasks], timeout=120)
    assert all(t.state is outrider.TaskState.SUCCEEDED for t in done), [t.error for t in done]
    running, peak = 0, 0
    async for event in session.events(after=0):
        if event.type == "task.started":
            running += 1
        elif event.type == "task.succeeded":
            running -= 1
        peak = max(peak, running)
        if event.type == "task.succeeded" and running == 0 and peak:
            break
    assert peak == 2
    workers = {(await session.tail(t.id)).split()[0] for t in done}
    assert len(workers) == 2  # both nodes ran some (each node's worker is one process)
    assert _procs.OWNER not in workers  # none ran in this process


async def test_cancel_returns_once_the_remote_tree_is_gone(orch: outrider.Orchestrator) -> None:
    session = orch.session(S)
    task = await session.submit(outrider.shell("sleep 60 & sleep 60 & wait"))
    await wait_until(lambda: len(task_processes([task.id])) >= 3, timeout=60)
    await session.cancel(task.id)
    assert task_processes([task.id]) == []
    (done,) = await session.wait([task.id], timeout=30)
    assert done.state is outrider.TaskState.CANCELLED


async def test_a_lost_node_worker_ends_the_attempt_as_node_lost_and_it_is_retried(
    orch: outrider.Orchestrator, tmp_path: Path
) -> None:
    session = orch.session(S)
    marker = tmp_path / "first-attempt"
    task = await session.submit(
        outrider.shell(f"if [ ! -e {marker} ]; then touch {marker}; sleep 60; fi; echo again"),
        max_attempts=2,
    )  # fmt: skip
    await wait_until(lambda: len(task_processes([task.id])) >= 2, timeout=60)
    marked = task_processes([task.id])
    (worker,) = {p.ppid() for p in marked} - {p.pid for p in marked}  # the node's worker
    os.kill(worker, signal.SIGKILL)  # dies (the actor's process)
    (done,) = await session.wait([task.id], timeout=120)
    assert done.state is outrider.TaskState.SUCCEEDED, done.error
    assert done.attempt == 2
    (retrying,) = [e async for e in session.events(follow=False, task_id=task.id,
                                                   types=["task.retrying"])]  # fmt: skip
    assert isinstance(retrying.data, TaskRetrying)
    assert retrying.data.error.type == "node_lost"
    await wait_until(lambda: not task_processes([task.id]), timeout=30)  # `sleep 60` went too


async def test_a_timeout_stops_the_remote_work(orch: outrider.Orchestrator) -> None:
    session = orch.session(S)
    task = await session.submit(outrider.shell("sleep 60 & sleep 60 & wait"), timeout=3)
    (done,) = await session.wait([task.id], timeout=60)
    assert done.state is outrider.TaskState.TIMED_OUT
    assert task_processes([task.id]) == []
