"""Hundreds of built-in agents at once in a pool of two workers, followed live.

Real worker processes, the fake provider over real HTTP, a real store. What must hold at this
scale as for one agent: each task ends once, with its own answer (no report of one run lands
on another), and its `task.output` events carry exactly what its log holds, in order: no
batch, flush or hand-off between the worker, the daemon and the store loses or repeats output.
A worker killed in the middle fails only the attempts it ran; they run again on its
replacement, and cancels land on whichever worker runs the task.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
from collections import Counter, defaultdict
from pathlib import Path
from typing import TYPE_CHECKING

import anyio
import pytest

import outrider
from outrider._agents._definitions import AgentDefinition
from outrider._agents._providers import ProviderConfig
from outrider._agents._recipe import AgentRecipe, agent_pool
from outrider.testing import wait_until
from tests.fakellm import Call, FakeLLM, Reply

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Iterator

    from outrider._executors._pool import WorkerPool

S = "scale-tests"
AGENTS = 200
_ENDS = {"task.succeeded", "task.failed", "task.cancelled", "task.timed_out"}
_JOB = re.compile(r"job (\d+)")


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeLLM]:
    with FakeLLM() as server:
        yield server


def _answer(n: int) -> str:
    return f"answer {n}: " + " ".join(f"w{n}.{i}" for i in range(12))


def _respond(call: Call) -> Reply:
    """Job n lists its files, then answers `_answer(n)`, each reply streamed in small chunks."""
    found = _JOB.search(json.dumps(call.body.get("messages", [])))
    assert found is not None, call.body
    n = int(found.group(1))
    if not call.tool_results:
        return Reply(text=f"looking {n} ", tool_calls=(("list_files", {}),), chunk_delay=0.002)
    return Reply(text=_answer(n), chunk_delay=0.002)


def _pool(fake: FakeLLM) -> tuple[outrider.AgentRunner, WorkerPool]:
    fake.responder = _respond
    fake.calls.clear()
    fake.max_in_flight = 0
    definition = AgentDefinition(
        name="many", model="fake/many", prompt="Work.", limit=AGENTS, source=Path("many.md"),
        format="outrider",
    )  # fmt: skip
    recipe = AgentRecipe(
        agents={"many": definition},
        providers={"fake": ProviderConfig(base_url=fake.base_url, api_key="k")},
        sandbox="off",
    )
    runner = recipe.build()
    return runner, agent_pool(recipe, runner, size=2)


class _Follower:
    """A live subscriber of the session: each task's event types and output, as they come."""

    def __init__(self) -> None:
        self.types: dict[str, list[str]] = defaultdict(list)
        self.output: dict[str, list[str]] = defaultdict(list)
        self._ended = 0
        self._all_ended = anyio.Event()

    async def follow(self, session: outrider.Session) -> None:
        async for event in session.events():
            self.types[event.task_id or ""].append(event.type)
            if event.type == "task.output":
                self.output[event.task_id or ""].append(str(getattr(event.data, "text", "")))
            elif event.type in _ENDS:
                self._ended += 1
                if self._ended == AGENTS:
                    self._all_ended.set()

    async def until_all_ended(self) -> None:
        """Once it saw every task's end (its last events may come after `wait` returned)."""
        with anyio.fail_after(30):
            await self._all_ended.wait()


@contextlib.asynccontextmanager
async def _followed(
    fake: FakeLLM, db: Path, settings: outrider.Settings
) -> AsyncIterator[tuple[outrider.Session, WorkerPool, _Follower]]:
    """An orchestrator with a pool of two workers, and a subscriber following its session."""
    runner, pool = _pool(fake)
    async with (
        outrider.Orchestrator(db, settings, runners=[runner], executors={"agent": pool}) as orch,
        anyio.create_task_group() as tg,
    ):
        session = orch.session(S)
        follower = _Follower()
        tg.start_soon(follower.follow, session)
        yield session, pool, follower
        tg.cancel_scope.cancel()


async def _run_all(
    session: outrider.Session, workspace: Path, *, max_attempts: int = 1
) -> list[outrider.Task]:
    items = [
        outrider.SubmitItem(
            spec=outrider.agent("many", f"job {n}", workspace=str(workspace)),
            max_attempts=max_attempts,
        )
        for n in range(AGENTS)
    ]
    tasks = await session.submit_many(items)
    assert all(isinstance(t, outrider.Task) for t in tasks), tasks
    return [t for t in tasks if isinstance(t, outrider.Task)]


async def _check_output(
    session: outrider.Session, follower: _Follower, task: outrider.Task
) -> None:
    """Its events carried exactly what its log holds, and it ended once, last."""
    log = await session.tail(task.id, lines=10_000)
    assert "".join(follower.output[task.id]) == log
    types = follower.types[task.id]
    assert sum(t in _ENDS for t in types) == 1, types
    assert types[-1] in _ENDS, types


async def test_two_hundred_watched_agents_end_once_with_all_their_output(
    fake: FakeLLM, tmp_path: Path, workspace: Path
) -> None:
    settings = outrider.Settings(max_running=AGENTS)
    async with _followed(fake, tmp_path / "scale.db", settings) as (session, _, follower):
        tasks = await _run_all(session, workspace)
        done = await session.wait([t.id for t in tasks], timeout=120)
        await follower.until_all_ended()
        by_id = {t.id: t for t in done}
        for n, submitted in enumerate(tasks):
            task = by_id[submitted.id]
            assert task.state is outrider.TaskState.SUCCEEDED, task.error
            assert task.result == _answer(n)
            await _check_output(session, follower, task)
            assert f"looking {n} " in "".join(follower.output[task.id])
        assert fake.max_in_flight > 2  # the agents really ran at once, not one per worker


async def test_a_worker_killed_and_cancels_among_two_hundred_agents(
    fake: FakeLLM, tmp_path: Path, workspace: Path
) -> None:
    """A worker's death retries only its own attempts; cancels land wherever tasks run."""
    settings = outrider.Settings(max_running=AGENTS, retry_backoff=0.05)
    async with _followed(fake, tmp_path / "kill.db", settings) as (session, pool, follower):
        tasks = await _run_all(session, workspace, max_attempts=2)
        await wait_until(lambda: len(pool.pids) == 2, timeout=30)
        victim = pool.pids[0]
        await wait_until(lambda: len(fake.calls) >= AGENTS // 2, timeout=60)
        os.kill(victim, signal.SIGKILL)
        cancelled = [t.id for t in tasks[::10]]
        async with anyio.create_task_group() as cancels:
            for task_id in cancelled:
                cancels.start_soon(session.cancel, task_id)
        done = await session.wait([t.id for t in tasks], timeout=120)
        await follower.until_all_ended()
        states = Counter(t.state for t in done)
        assert set(states) <= {outrider.TaskState.SUCCEEDED, outrider.TaskState.CANCELLED}, [
            t.error for t in done if t.state.name not in ("SUCCEEDED", "CANCELLED")
        ]
        by_id = {t.id: t for t in done}
        for n, submitted in enumerate(tasks):
            task = by_id[submitted.id]
            if task.state is outrider.TaskState.SUCCEEDED:
                assert task.result == _answer(n)
            else:
                assert task.id in cancelled, task
            await _check_output(session, follower, task)
        retried = [t for t in done if t.attempt == 2]
        assert retried  # the victim's runs went to its replacement
        assert all("task.retrying" in follower.types[t.id] for t in retried)
        assert victim not in pool.pids
