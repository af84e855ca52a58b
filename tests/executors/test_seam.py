"""The executor seam: one runner behaves the same in-process, in a worker process and on a node.

Every `RunContext` method and every message crosses the boundary here (the probe runner of
`probe.py`), and each test runs over every executor (nodes: in memory, `FakeNodes`).
"""

from __future__ import annotations

import gc
import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import anyio
import pytest

import outrider
from outrider._executors._nodes import NodePool
from outrider._executors._pool import WorkerPool
from outrider._executors._protocol import InProcess
from outrider.testing import FakeNodes, wait_until
from tests.executors.probe import LocalHost, Probe
from tests.gitrepo import new_repo

if TYPE_CHECKING:
    from collections.abc import AsyncIterator
    from pathlib import Path

    from outrider._executors._protocol import Executor

S = "seam"


@dataclass
class Limiter:
    """A model limiter that records what it is told; `acquire` blocks while `closed`."""

    events: list[str] = field(default_factory=list)
    held: int = 0
    closed: bool = False

    async def acquire(self, tokens: int = 0) -> None:
        self.events.append(f"acquire {tokens}")
        try:
            if self.closed:
                await anyio.sleep_forever()
        except BaseException:
            self.events.append("gave up")
            raise
        self.held += 1

    async def release(self) -> None:
        self.held -= 1
        self.events.append("release")

    def succeeded(self) -> None:
        self.events.append("succeeded")

    def throttled(self, retry_after: float | None) -> None:
        self.events.append(f"throttled {retry_after}")

    def stated(self, rpm: float | None, tpm: float | None) -> None:
        self.events.append(f"stated {rpm} {tpm}")


@dataclass
class Rig:
    orch: outrider.Orchestrator
    limiters: dict[str, Limiter]
    pooled: bool

    async def run(self, command: str, cwd: str | None = None) -> outrider.Task:
        spec = outrider.ShellSpec(command=command, cwd=cwd)
        task = await self.orch.session(S).submit(spec)
        (done,) = await self.orch.session(S).wait([task.id], timeout=30)
        return done


@pytest.fixture(params=["in-process", "pool", "nodes"])
async def rig(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Rig]:
    limiters = {"fake/open": Limiter(), "fake/closed": Limiter(closed=True)}
    pooled = request.param == "pool"
    executor: Executor = InProcess()
    if pooled:
        executor = WorkerPool("tests.executors.probe:runners", size=1, limiter=limiters.__getitem__)
    elif request.param == "nodes":  # in-memory nodes: workers in this process, frames delayed
        nodes = FakeNodes(delay=lambda: 0.001)
        nodes.add("a")
        nodes.add("b")
        executor = NodePool(
            "tests.executors.probe:runners", nodes=nodes, limiter=limiters.__getitem__
        )
    runner = Probe(LocalHost(dict(limiters)))
    async with outrider.Orchestrator(
        tmp_path / "o.db", runners=[runner], executors={"shell": executor}
    ) as orch:
        yield Rig(orch, limiters, pooled)


async def test_reports_and_the_transcript_arrive_as_made(rig: Rig) -> None:
    done = await rig.run("report")
    assert done.state == outrider.TaskState.SUCCEEDED, done.error
    assert isinstance(done.result, dict)
    assert done.result["transcript"] == {"turns": 1}
    assert done.result["attempt"] == 1
    assert done.result["resuming"] is False
    assert done.result["session"].endswith(S)
    assert done.result["cancel_requested"] is False
    assert (done.result["worker"] != os.getpid()) is rig.pooled
    assert done.progress is not None
    assert (done.progress.completed, done.progress.total, done.progress.message) == (1, 2, "half")
    assert done.usage == outrider.Usage(input_tokens=3, output_tokens=4, requests=1, cost=0.5)
    log = await rig.orch.session(S).tail(done.id)
    assert log == "hello from a thread \ufffd\n"
    assert await rig.orch.session(S).transcript(done.id) == {"turns": 1}


async def test_a_worker_process_settles_its_garbage_collector_once_ready(rig: Rig) -> None:
    """Its runners built, a worker process freezes what it holds out of later collections and
    collects young garbage less often, as the daemon does; runs in the daemon's process (or a
    program's) leave the collector as it is."""
    before = {"threshold": list(gc.get_threshold()), "frozen": gc.get_freeze_count()}
    done = await rig.run("collector")
    assert isinstance(done.result, dict)
    if rig.pooled:
        assert done.result["threshold"] == [5000, 20, 20]
        assert done.result["frozen"] > 0
    else:  # in this process (in-memory nodes serve here too): as the test found it
        assert done.result == before


async def test_a_child_runs_in_the_daemon_and_its_log_is_read_back(rig: Rig) -> None:
    done = await rig.run("spawn")
    assert done.state == outrider.TaskState.SUCCEEDED, done.error
    assert isinstance(done.result, dict)
    assert done.result["state"] == "succeeded"
    assert done.result["tail"].startswith("hello from a thread")
    child = await rig.orch.session(S).get(str(done.result["child"]))
    assert child.parent == done.id


async def test_a_refused_child_is_a_user_error_naming_the_field(rig: Rig) -> None:
    done = await rig.run("refused")
    assert isinstance(done.result, dict)
    assert "timeout" in str(done.result["refused"])


async def test_failures_keep_their_kind_and_detail(rig: Rig) -> None:
    failed = await rig.run("fail")
    assert failed.error is not None
    assert (failed.error.type, failed.error.message, failed.error.detail) == (
        "probe", "it failed as asked", "more",
    )  # fmt: skip
    assert failed.exit_code == 3
    crashed = await rig.run("crash")
    assert crashed.error is not None
    assert (crashed.error.type, crashed.error.message) == ("ValueError", "boom")
    assert crashed.error.detail is not None
    assert "ValueError: boom" in crashed.error.detail


async def test_a_task_writing_in_place_claims_its_files_from_the_daemon(
    rig: Rig, tmp_path: Path
) -> None:
    alone = await rig.run("claim /tmp/x")
    assert alone.result == "unguarded"
    path = tmp_path / "a.txt"
    done = await rig.run(f"claim {path}", cwd=str(tmp_path))
    assert done.state == outrider.TaskState.SUCCEEDED, done.error
    assert done.result is None  # granted


async def test_a_task_in_a_worktree_is_moved_there_where_it_runs(rig: Rig, tmp_path: Path) -> None:
    """The runner that runs it notes what the worktree stands for (agents are found there)."""
    repo = new_repo(tmp_path)
    done = await rig.run("origin", cwd=str(repo))
    assert done.state == outrider.TaskState.SUCCEEDED, done.error
    assert isinstance(done.result, list)
    where, origin, worktree = done.result
    assert origin == str(repo)
    assert worktree is not None
    assert str(where).startswith(str(worktree))


async def test_a_limit_set_by_the_runner_is_the_daemons(rig: Rig) -> None:
    await rig.run("limit 2")
    assert rig.orch.status().keys["probe"].limit == 2


async def test_cancelling_a_parent_cancels_the_child_it_waits_for(rig: Rig) -> None:
    session = rig.orch.session(S)
    parent = await session.submit(outrider.ShellSpec(command="spawn wait"))
    await wait_until(lambda: bool(_children(rig, parent.id)), timeout=30)
    (child_id,) = _children(rig, parent.id)
    await wait_until(lambda: _running(rig, child_id), timeout=30)
    ended = await session.cancel(parent.id)
    assert ended.state == outrider.TaskState.CANCELLED
    child = await session.get(child_id)
    assert child.state == outrider.TaskState.CANCELLED


def _children(rig: Rig, parent: str) -> list[str]:
    return [t.task_id for t in rig.orch._engine.live.values() if t.task.parent == parent]


def _running(rig: Rig, task_id: str) -> bool:
    live = rig.orch._engine.live.get(task_id)
    return live is not None and live.task.state == outrider.TaskState.RUNNING


async def test_model_calls_go_through_the_daemons_limiter(rig: Rig) -> None:
    done = await rig.run("model fake/open")
    assert done.result == "called"
    limiter = rig.limiters["fake/open"]
    await wait_until(lambda: limiter.events[-1:] == ["release"], timeout=10)
    assert limiter.events == [
        "acquire 10", "stated 60.0 None", "throttled 0.0", "succeeded", "release",
    ]  # fmt: skip
    assert limiter.held == 0


async def test_a_stopped_wait_for_a_model_slot_is_given_up(rig: Rig) -> None:
    session = rig.orch.session(S)
    task = await session.submit(outrider.ShellSpec(command="hold fake/closed"))
    limiter = rig.limiters["fake/closed"]
    await wait_until(lambda: limiter.events == ["acquire 0"], timeout=30)
    await session.cancel(task.id)
    await wait_until(lambda: limiter.events == ["acquire 0", "gave up"], timeout=10)
    assert limiter.held == 0


async def test_a_kind_the_worker_lacks_or_a_worker_that_cannot_start_fails_the_task(
    tmp_path: Path,
) -> None:
    lacking = WorkerPool("tests.executors.probe:runners", size=1)
    broken = WorkerPool("tests.executors.probe:no_such_factory", size=1)
    async with outrider.Orchestrator(
        tmp_path / "o.db", executors={"shell": broken, "cli_agent": lacking}
    ) as orch:
        session = orch.session(S)
        tasks = [
            await session.submit(outrider.ShellSpec(command="true"), max_attempts=2),
            await session.submit(outrider.CliAgentSpec(cli="claude", prompt="hi")),
        ]
        shell, cli = await session.wait([t.id for t in tasks], timeout=60)
    assert shell.error is not None
    assert (shell.error.type, shell.attempt) == ("worker_lost", 2)
    assert "exited (1)" in shell.error.message
    assert cli.error is not None
    assert cli.error.type == "config"
    assert "This worker runs no 'cli_agent' tasks (it runs: shell)" in cli.error.message
