"""`NodePool` on in-memory nodes (`FakeNodes`): placement, loss, fencing and records, no Ray.

The nodes run the same worker a Ray node runs, in this process, so what the probe runner
(`probe.py`) counts spans every node.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import subprocess
from typing import TYPE_CHECKING

import psutil
import pytest

import outrider
from outrider._daemon._runners import placement
from outrider._executors._nodes import NodePool
from outrider._store._sqlite import SQLiteBackend, UpdateTask
from outrider.runners._procs import MARKER_ENV, marker
from outrider.testing import FakeNodes, wait_until
from tests.executors import probe
from tests.executors.probe import LocalHost, Probe

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable, Mapping
    from pathlib import Path

    Placement = Callable[[object, tuple[str, ...]], Mapping[str, str]]

S = "nodes"
FACTORY = "tests.executors.probe:runners"


def _zone(spec: object, keys: tuple[str, ...]) -> Mapping[str, str]:
    """A task asks for the zone its `ZONE` variable names, if any."""
    assert isinstance(spec, outrider.ShellSpec)
    return {"zone": spec.env["ZONE"]} if "ZONE" in spec.env else {}


@contextlib.asynccontextmanager
async def _orch(
    db: Path, nodes: FakeNodes, placement: Placement = _zone
) -> AsyncIterator[outrider.Orchestrator]:
    pool = NodePool(FACTORY, nodes=nodes, placement=placement)
    async with outrider.Orchestrator(
        db, outrider.Settings(shutdown_grace=0.1), runners=[Probe(LocalHost({}))],
        executors={"shell": pool},
    ) as orch:  # fmt: skip
        yield orch


def _shell(command: str, zone: str | None = None) -> outrider.ShellSpec:
    return outrider.ShellSpec(command=command, env={"ZONE": zone} if zone else {})


async def _node_of(session: outrider.Tasks, task_id: str) -> str | None:
    async def placed() -> bool:
        return (await session.get(task_id)).node is not None

    await wait_until(placed, timeout=30)
    return (await session.get(task_id)).node


async def test_tasks_run_on_the_nodes_that_carry_the_labels_they_ask_for(tmp_path: Path) -> None:
    nodes = FakeNodes()
    nodes.add("a", labels={"zone": "a"})
    nodes.add("b", labels={"zone": "b"})
    async with _orch(tmp_path / "o.db", nodes) as orch:
        session = orch.session(S)
        asked = [await session.submit(_shell("report", "b")) for _ in range(4)]
        waiting = await session.submit(_shell("report", "c"))
        done = await session.wait([t.id for t in asked], timeout=30)
        assert {t.node for t in done} == {"b"}
        assert (await session.get(waiting.id)).state is outrider.TaskState.RUNNING
        nodes.add("c", labels={"zone": "c"})  # it waited for a node that carries zone=c
        (ran,) = await session.wait([waiting.id], timeout=30)
    assert (ran.state, ran.node) == (outrider.TaskState.SUCCEEDED, "c")


async def test_the_daemons_placement_asks_for_the_labels_of_every_key_a_task_holds(
    tmp_path: Path,
) -> None:
    nodes = FakeNodes()
    nodes.add("cpu", labels={"gpu": "no"})
    nodes.add("gpu", labels={"gpu": "yes"})
    rules = placement({"train": {"gpu": "yes"}, "small": {"gpu": "no"}})
    async with _orch(tmp_path / "o.db", nodes, rules) as orch:
        session = orch.session(S)
        tasks = [await session.submit(_shell("report"), keys=keys)
                 for keys in (["train"], ["small"], ["train", "small"])]  # fmt: skip
        train, small, both = await session.wait([t.id for t in tasks], timeout=30)
    assert (train.node, small.node) == ("gpu", "cpu")
    assert both.state is outrider.TaskState.FAILED
    assert both.error is not None
    assert both.error.type == "config"
    assert "key 'train' asks for gpu=yes and its key 'small' for gpu=no" in both.error.message


async def test_a_cancel_returns_only_once_the_node_says_the_run_is_over(tmp_path: Path) -> None:
    nodes = FakeNodes(delay=lambda: 0.05)  # every frame, the cancel's and its answer's, is late
    nodes.add("a")
    async with _orch(tmp_path / "o.db", nodes) as orch:
        session = orch.session(S)
        task = await session.submit(_shell("count 100000 100"))  # a stop lingers 100 ms
        await wait_until(lambda: probe.RUNNING == 1, timeout=30)
        ended = await session.cancel(task.id)
        assert probe.RUNNING == 0, "cancel returned while the node still ran the task"
    assert ended.state is outrider.TaskState.CANCELLED
    assert ended.node == "a"


async def test_a_lost_nodes_attempt_ends_as_node_lost_and_its_retry_runs_elsewhere(
    tmp_path: Path,
) -> None:
    nodes = FakeNodes()
    nodes.add("a")
    async with _orch(tmp_path / "o.db", nodes) as orch:
        session = orch.session(S)
        task = await session.submit(_shell("once"), max_attempts=2)
        assert await _node_of(session, task.id) == "a"
        nodes.add("b")
        nodes.lose("a")
        (done,) = await session.wait([task.id], timeout=30)
        events = [e async for e in session.events(task_id=task.id, follow=False)]
    assert (done.state, done.result, done.node) == (outrider.TaskState.SUCCEEDED, 2, "b")
    (retrying,) = [e for e in events if e.type == "task.retrying"]
    assert retrying.data.error.type == "node_lost"
    assert "node a (memory:a) was lost" in retrying.data.error.message
    with contextlib.closing(sqlite3.connect(tmp_path / "o.db")) as db:
        rows = db.execute("SELECT attempt, node, state FROM attempts WHERE task_id = ?",
                          (task.id,)).fetchall()  # fmt: skip
    assert sorted(rows) == [(1, "a", "retrying"), (2, "b", "succeeded")]


async def test_a_retry_passes_over_a_node_still_listed_alive_whose_worker_was_lost(
    tmp_path: Path,
) -> None:
    """A frozen machine is listed alive until the health checks give up: retry elsewhere."""
    nodes = FakeNodes()
    nodes.add("a", slots=3)
    nodes.add("b", slots=2)
    async with _orch(tmp_path / "o.db", nodes) as orch:
        session = orch.session(S)
        task = await session.submit(_shell("once"), max_attempts=2)
        assert await _node_of(session, task.id) == "a"  # the most free slots
        nodes.lose("a")
        nodes.revive("a")  # its link broke, but it is still listed alive, with the most room
        (done,) = await session.wait([task.id], timeout=30)
    assert (done.state, done.attempt, done.node) == (outrider.TaskState.SUCCEEDED, 2, "b")


async def test_a_node_that_comes_back_gets_a_new_worker_and_nothing_of_the_old(
    tmp_path: Path,
) -> None:
    nodes = FakeNodes()
    nodes.add("a", slots=1)
    async with _orch(tmp_path / "o.db", nodes) as orch:
        session = orch.session(S)
        first = await session.submit(_shell("once"), max_attempts=2)
        await _node_of(session, first.id)
        nodes.lose("a")
        nodes.revive("a")
        (done,) = await session.wait([first.id], timeout=30)
    assert (done.state, done.attempt, done.node) == (outrider.TaskState.SUCCEEDED, 2, "a")
    assert nodes.opened == ["a", "a"]


@pytest.mark.parametrize("node", ["a", None])
async def test_a_pid_recorded_on_a_node_is_never_taken_for_a_local_process(
    tmp_path: Path, node: str | None
) -> None:
    """A recovery stops a crashed attempt's recorded process only if it ran on this machine."""
    db = tmp_path / "o.db"
    local = subprocess.Popen(["sleep", "60"])  # noqa: ASYNC220 - a bystander, killed below
    try:
        nodes = FakeNodes()
        nodes.add("a")
        async with _orch(db, nodes) as orch:
            session = orch.session(S)
            task = await session.submit(_shell(f"track {local.pid}"))
            await wait_until(lambda: _pid_of(db, task.id) is not None, timeout=30)
            assert _pid_of(db, task.id) == (local.pid, "a")
            await session.cancel(task.id)
        # As if the daemon had died while the attempt ran, its process recorded there.
        backend = SQLiteBackend(str(db))
        created = psutil.Process(local.pid).create_time()
        fields = {"state": "running", "pid": local.pid, "pid_created": created, "node": node}
        assert backend.apply([[UpdateTask(task.id, fields)]]) == [[]]
        backend.close()
        async with _orch(db, FakeNodes()) as orch:
            (ended,) = await orch.session(S).wait([task.id], timeout=30)
        assert ended.error is not None
        assert ended.error.type == "interrupted"
        if node is None:  # the control: a pid of this machine is stopped as a leftover
            await wait_until(lambda: local.poll() is not None, timeout=10)
        else:  # the recovery is over before the task ends
            assert local.poll() is None, "a node's pid was taken for a local process"
    finally:
        local.kill()
        local.wait()


@pytest.mark.parametrize("reached", [True, False])
async def test_a_recovery_asks_the_node_an_attempt_ran_on_to_stop_what_it_left_there(
    tmp_path: Path, reached: bool
) -> None:
    db = tmp_path / "o.db"
    nodes = FakeNodes()
    nodes.add("a")
    async with _orch(db, nodes) as orch:
        session = orch.session(S)
        task = await session.submit(_shell("once"))
        assert await _node_of(session, task.id) == "a"
        await session.cancel(task.id)
    # As if the daemon had died while the attempt ran on node `a`, leaving a process there
    # (the in-memory node is this machine): found only by the attempt's marker.
    marked = {**os.environ, MARKER_ENV: marker(task.id, 1)}
    left = subprocess.Popen(["sleep", "60"], env=marked)  # noqa: ASYNC220 - killed below
    try:
        backend = SQLiteBackend(str(db))
        assert backend.apply([[UpdateTask(task.id, {"state": "running", "node": "a"})]]) == [[]]
        backend.close()
        again = FakeNodes()
        if reached:
            again.add("a")
        async with _orch(db, again) as orch:
            (ended,) = await orch.session(S).wait([task.id], timeout=30)
        assert ended.error is not None
        assert ended.error.type == "interrupted"
        if reached:  # the node found it by its marker and stopped it
            await wait_until(lambda: left.poll() is not None, timeout=10)
        else:  # this machine does not search for a node's processes: its node is not reached
            assert left.poll() is None
    finally:
        left.kill()
        left.wait()


def _pid_of(db: Path, task_id: str) -> tuple[int, str] | None:
    with contextlib.closing(sqlite3.connect(db)) as conn:
        row = conn.execute("SELECT pid, node FROM tasks WHERE task_id = ?", (task_id,)).fetchone()
    return None if row is None or row[0] is None else (row[0], row[1])
