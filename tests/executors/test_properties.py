"""Limits and report order hold across the worker boundary, whatever the timing (hypothesis).

One real worker (or two in-memory nodes) runs `count` probes (`probe.py`) that each record how
many of them ran at once in the worker; stopped runs linger in the worker before they are over.
However the tasks are stopped and however long a stop takes, no more run at once than their key
allows (a stop returns only once the worker's run is over), and each task's reports arrive in
the order it made them.
"""

from __future__ import annotations

import itertools
from typing import TYPE_CHECKING

import anyio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import outrider
from outrider._executors._nodes import NodePool
from outrider._executors._pool import WorkerPool
from outrider.testing import FakeNodes, wait_until
from tests.executors import probe
from tests.executors.probe import LocalHost, Probe

if TYPE_CHECKING:
    from pathlib import Path

    from outrider._executors._protocol import Executor

S = "props"
RUNS = st.lists(
    st.tuples(st.integers(1, 12), st.integers(0, 60), st.booleans()), min_size=2, max_size=7
)
"""Per task: how far it counts, how many ms a stop of it lingers, whether it is stopped."""


async def _check(
    db: Path, limit: int, runs: list[tuple[int, int, bool]], pool: Executor | None = None
) -> None:
    pool = pool or WorkerPool("tests.executors.probe:runners", size=1)
    async with outrider.Orchestrator(
        db, outrider.Settings(limits={"k": limit}), runners=[Probe(LocalHost({}))],
        executors={"shell": pool},
    ) as orch:  # fmt: skip
        session = orch.session(S)
        tasks = [
            await session.submit(outrider.ShellSpec(command=f"count {n} {linger}"), keys=["k"])
            for n, linger, _ in runs
        ]
        async with anyio.create_task_group() as tg:
            for task, (_, _, stop) in zip(tasks, runs, strict=True):
                if stop:
                    tg.start_soon(_stop_when_running, session, task.id)
        done = await session.wait([t.id for t in tasks], timeout=60)
        logs = [await session.tail(t.id, lines=100) for t in done]
    for task, log, (n, _, _) in zip(done, logs, runs, strict=True):
        if task.state is outrider.TaskState.SUCCEEDED:
            assert isinstance(task.result, int)
            assert task.result <= limit, (task.result, limit)
            assert log.splitlines() == [str(i) for i in range(n)]
            assert task.progress is not None
            assert task.progress.completed == n
        else:
            assert task.state is outrider.TaskState.CANCELLED, task.error
            lines = log.splitlines()
            assert lines == [str(i) for i in range(len(lines))]


async def _stop_when_running(session: outrider.Tasks, task_id: str) -> None:
    async def started() -> bool:
        return (await session.get(task_id)).state is not outrider.TaskState.QUEUED

    await wait_until(started, timeout=30)
    await session.cancel(task_id)


@settings(
    max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(limit=st.integers(1, 3), runs=RUNS)
def test_a_keys_limit_holds_in_the_worker_and_reports_keep_their_order(
    tmp_path: Path, limit: int, runs: list[tuple[int, int, bool]]
) -> None:
    db = tmp_path / f"{id(runs)}.db"
    anyio.run(_check, db, limit, runs)


@settings(
    max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(limit=st.integers(1, 3), runs=RUNS, delays=st.lists(st.integers(0, 20), min_size=1))
def test_a_keys_limit_holds_across_nodes_whatever_each_frame_waits(
    tmp_path: Path, limit: int, runs: list[tuple[int, int, bool]], delays: list[int]
) -> None:
    """Two in-memory nodes, every frame between them and the daemon delayed as drawn (ms).

    The nodes run in this process, so the probe's count of runs at once spans both nodes.
    """
    waits = itertools.cycle(delays)
    nodes = FakeNodes(delay=lambda: next(waits) / 1000)
    nodes.add("a", slots=3)
    nodes.add("b", slots=3)
    pool = NodePool("tests.executors.probe:runners", nodes=nodes)
    probe.MOST = 0  # counted in this process, across examples
    anyio.run(_check, tmp_path / f"{id(runs)}.db", limit, runs, pool)
