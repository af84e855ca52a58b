"""Real tasks on a real Ray cluster (a head and a node on loopback): the daemon's own runners
on the nodes, its limits, cancel and loss of a node's worker, a frozen node."""

from __future__ import annotations

import contextlib
import os
import re
import signal
from typing import TYPE_CHECKING

import anyio.to_thread
import psutil
import pytest

import outrider
from outrider._daemon._cluster import Node
from outrider._daemon._config import Config
from outrider._daemon._runners import executors, runners
from outrider._types._events import TaskQueued, TaskRetrying
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


async def _sleeps_on_its_first_attempt(session: outrider.Tasks, tmp_path: Path) -> outrider.Task:
    """A task (2 attempts) whose first attempt sleeps a minute, once it sleeps; the second ends."""
    marker = tmp_path / "first-attempt"
    task = await session.submit(
        outrider.shell(f"if [ ! -e {marker} ]; then touch {marker}; sleep 60; fi; echo again"),
        max_attempts=2,
    )  # fmt: skip
    await wait_until(lambda: len(task_processes([task.id])) >= 2, timeout=60)
    return task


async def _retried_as_node_lost(session: outrider.Tasks, task_id: str, *, timeout: float) -> str:
    """Wait for the task's second attempt to succeed after a `node_lost`; that error's message."""
    (done,) = await session.wait([task_id], timeout=timeout)
    assert done.state is outrider.TaskState.SUCCEEDED, done.error
    assert done.attempt == 2
    (retrying,) = [e async for e in session.events(follow=False, task_id=task_id,
                                                   types=["task.retrying"])]  # fmt: skip
    assert isinstance(retrying.data, TaskRetrying)
    assert retrying.data.error.type == "node_lost"
    return retrying.data.error.message


async def test_a_lost_node_worker_ends_the_attempt_as_node_lost_and_it_is_retried(
    orch: outrider.Orchestrator, tmp_path: Path
) -> None:
    session = orch.session(S)
    task = await _sleeps_on_its_first_attempt(session, tmp_path)
    marked = task_processes([task.id])
    (worker,) = {p.ppid() for p in marked} - {p.pid for p in marked}  # the node's worker
    os.kill(worker, signal.SIGKILL)  # dies (the actor's process)
    await _retried_as_node_lost(session, task.id, timeout=120)
    await wait_until(lambda: not task_processes([task.id]), timeout=30)  # `sleep 60` went too


async def test_a_timeout_stops_the_remote_work(orch: outrider.Orchestrator) -> None:
    session = orch.session(S)
    task = await session.submit(outrider.shell("sleep 60 & sleep 60 & wait"), timeout=3)
    (done,) = await session.wait([task.id], timeout=60)
    assert done.state is outrider.TaskState.TIMED_OUT
    assert task_processes([task.id]) == []


def _freeze(root: psutil.Process) -> list[psutil.Process]:
    """SIGSTOP `root` and every process under it (Ray's, its worker, the tasks'), new ones too."""
    frozen: dict[int, psutil.Process] = {}
    while new := [p for p in [root, *root.children(recursive=True)] if p.pid not in frozen]:
        for process in new:
            with contextlib.suppress(psutil.NoSuchProcess):
                process.suspend()
                frozen[process.pid] = process
    return list(frozen.values())


async def test_a_frozen_node_is_declared_lost_and_its_task_retried_on_another(
    orch: outrider.Orchestrator, cluster: Cluster, tmp_path: Path
) -> None:
    # A third node with the most free slots: the first attempt goes there.
    extra = await anyio.to_thread.run_sync(
        lambda: Node.join(cluster.head.address, cluster.head.token, folder=tmp_path, slots=3)
    )
    frozen: list[psutil.Process] = []
    try:
        session = orch.session(S)
        task = await _sleeps_on_its_first_attempt(session, tmp_path)
        frozen = _freeze(psutil.Process(extra.ray.process.pid))  # the machine fell silent
        assert {p.pid for p in task_processes([task.id])} <= {p.pid for p in frozen}
        # Done while the node stays frozen; with Ray's default health checks it takes ~1 min.
        error = await _retried_as_node_lost(session, task.id, timeout=30)
        lost = r"its node \w+ \(127\.0\.0\.1\) was lost \(\w+\) while it ran"
        assert re.search(lost, error), error
    finally:
        for process in frozen:
            with contextlib.suppress(psutil.Error):
                process.resume()
        await anyio.to_thread.run_sync(extra.stop)
    await wait_until(lambda: not task_processes([task.id]), timeout=30)  # `sleep 60` went too


async def test_priorities_hold_across_the_nodes_with_no_inversion(
    orch: outrider.Orchestrator, tmp_path: Path
) -> None:
    session = orch.session(S)
    gate = tmp_path / "gate"
    held = [await session.submit(outrider.shell(f"until [ -e {gate} ]; do sleep 0.05; done"))
            for _ in range(2)]  # fmt: skip
    await wait_until(lambda: all(task_processes([t.id]) for t in held), timeout=60)  # both run
    priorities = [3, 9, 1, 7, 5, 10, 0, 8, 2, 6, 4, 9, 1, 10]  # the limit of 2 is full meanwhile
    spec = outrider.shell("echo $OUTRIDER_OWNER")
    tasks = [await session.submit(spec, priority=p) for p in priorities]
    gate.touch()
    done = await session.wait([t.id for t in [*held, *tasks]], timeout=120)
    assert all(t.state is outrider.TaskState.SUCCEEDED for t in done), [t.error for t in done]
    queued: dict[str | None, int] = {}  # every queued task is eligible: one key, no deps
    inversions, order = 0, []
    async for event in session.events(follow=False):  # as stored, in order
        if isinstance(event.data, TaskQueued):
            queued[event.task_id] = event.data.priority
        elif event.type == "task.started":
            started = queued.pop(event.task_id)
            inversions += sum(1 for waiting in queued.values() if waiting > started)
            order.append(started)
    assert inversions == 0, order
    assert order[2:] == sorted(priorities, reverse=True)
    workers = {(await session.tail(t.id)).split()[0] for t in tasks}
    assert len(workers) == 2  # both nodes ran some
