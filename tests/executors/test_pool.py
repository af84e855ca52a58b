"""Built-in agents in a pool of worker processes: what works in the daemon works across it.

Real worker processes, the fake provider over real HTTP; each test compares with (or relies
on) what the in-process runner does.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio
import pytest

import outrider
from outrider._agents._definitions import AgentDefinition
from outrider._agents._providers import Price, ProviderConfig
from outrider._agents._recipe import AgentRecipe, agent_pool
from outrider._executors._pool import DEFAULT_NICE, WorkerPool
from outrider.testing import wait_until
from tests.fakellm import FakeLLM, Reply

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Iterator

S = "pool-tests"


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeLLM]:
    with FakeLLM() as server:
        yield server


def _agent(name: str, **kw: Any) -> AgentDefinition:
    return AgentDefinition(
        name=name, model=f"fake/{name}", prompt=f"You are {name}.", source=Path(f"{name}.md"),
        format="outrider", **kw,
    )  # fmt: skip


def _recipe(fake: FakeLLM, **kw: Any) -> AgentRecipe:
    agents = {
        "worker": _agent("worker"),
        "boss": _agent("boss", budget_tokens=3000),
        "helper": _agent("helper"),
        "talker": _agent("talker"),
        "looper": _agent("looper", max_turns=3),
    }
    return AgentRecipe(
        agents=agents,
        providers={"fake": ProviderConfig(base_url=fake.base_url, api_key="k")},
        prices={"fake/worker": Price(input=1.0, output=2.0)},
        sandbox="off",
        **kw,
    )


class _Pooled:
    def __init__(self, orch: outrider.Orchestrator, pool: WorkerPool) -> None:
        self.orch = orch
        self.pool = pool

    async def run(self, spec: outrider.AgentSpec, **kw: Any) -> outrider.Task:
        task = await self.orch.session(S).submit(spec, **kw)
        (done,) = await self.orch.session(S).wait([task.id], timeout=60)
        assert done.state.terminal, done
        return done


@pytest.fixture
async def pooled(tmp_path: Path, fake: FakeLLM) -> AsyncIterator[_Pooled]:
    recipe = _recipe(fake)
    runner = recipe.build()
    pool = agent_pool(recipe, runner, size=2)
    fake.scripts.clear()
    async with outrider.Orchestrator(
        db=tmp_path / "o.db", runners=[runner], executors={"agent": pool}
    ) as orch:
        yield _Pooled(orch, pool)


async def test_tools_output_usage_and_transcript_across_the_boundary(
    pooled: _Pooled, fake: FakeLLM, workspace: Path
) -> None:
    fake.script("worker", [
        Reply.tool("read_file", path="notes.txt"),
        Reply.tool("edit_file", path="notes.txt", old="beta", new="BETA"),
        Reply.say("All done: notes edited.", input_tokens=1000, output_tokens=500),
    ])  # fmt: skip
    done = await pooled.run(outrider.agent("worker", "Edit the notes", workspace=str(workspace)))
    assert done.state == outrider.TaskState.SUCCEEDED, done.error
    assert done.result == "All done: notes edited."
    assert (workspace / "notes.txt").read_text() == "alpha\nBETA\n"
    assert "alpha\nbeta" in fake.calls_for("worker")[1].tool_results[0]
    assert done.usage is not None
    assert done.usage.requests == 3
    assert done.usage.input_tokens >= 1000
    expected = (done.usage.input_tokens * 1.0 + done.usage.output_tokens * 2.0) / 1e6
    assert done.usage.cost == pytest.approx(expected)
    assert done.progress is not None
    assert done.progress.message == "turn 3"
    log = await pooled.orch.session(S).tail(done.id, lines=100)
    assert "→ edit_file" in log
    assert "All done" in log
    transcript = await pooled.orch.session(S).transcript(done.id)
    assert isinstance(transcript, dict)
    assert [m["kind"] for m in transcript["messages"]].count("response") == 3
    assert pooled.pool.pids
    assert os.getpid() not in pooled.pool.pids


async def test_workers_run_below_the_daemons_cpu_priority(
    pooled: _Pooled, fake: FakeLLM, workspace: Path
) -> None:
    fake.script("worker", [Reply.say("done")])
    done = await pooled.run(outrider.agent("worker", "Go", workspace=str(workspace)))
    assert done.state == outrider.TaskState.SUCCEEDED, done.error
    (pid,) = pooled.pool.pids
    mine = os.getpriority(os.PRIO_PROCESS, 0)
    assert os.getpriority(os.PRIO_PROCESS, pid) == min(mine + DEFAULT_NICE, 19)
    group = anyio.Path(f"/proc/{pid}/autogroup")
    if await group.exists():  # CPU time shared by session: the worker's session weighs less too
        assert (await group.read_text()).split()[-1] == str(DEFAULT_NICE)


def test_a_pool_refuses_a_priority_unix_has_not() -> None:
    for nice in (-1, 20):
        with pytest.raises(ValueError, match=f"nice must be from 0 to 19, not {nice}"):
            WorkerPool("x:y", nice=nice)


async def test_the_loop_detector_and_max_turns_stop_a_run_in_its_worker(
    pooled: _Pooled, fake: FakeLLM, workspace: Path
) -> None:
    fake.script("looper", [Reply.tool("grep", pattern="x")] * 3)
    spec = outrider.agent("looper", "Loop", workspace=str(workspace))
    turns = await pooled.run(spec)
    assert turns.error is not None
    assert turns.error.type == "max_turns"
    assert "maximum of 3 turns" in turns.error.message
    transcript = await pooled.orch.session(S).transcript(turns.id)
    assert isinstance(transcript, dict)
    assert transcript["messages"]  # kept, as in the daemon
    fake.script("worker", [Reply.tool("grep", pattern="x")] * 6)
    looped = await pooled.run(outrider.agent("worker", "Loop", workspace=str(workspace)))
    assert looped.error is not None
    assert looped.error.type == "loop"


async def test_cancel_aborts_the_provider_request_and_returns_once_the_worker_is_done(
    pooled: _Pooled, fake: FakeLLM, workspace: Path
) -> None:
    fake.script("talker", [Reply.say("word " * 400, chunk_delay=0.05)])
    aborted, calls = fake.aborted, len(fake.calls_for("talker"))
    session = pooled.orch.session(S)
    task = await session.submit(outrider.agent("talker", "Talk", workspace=str(workspace)))
    await wait_until(lambda: len(fake.calls_for("talker")) == calls + 1, timeout=30)
    ended = await session.cancel(task.id)
    assert ended.state == outrider.TaskState.CANCELLED
    assert pooled.pool.running == 0
    await wait_until(lambda: fake.aborted > aborted, timeout=10)  # the server's own thread


async def test_a_timeout_stops_the_run_in_its_worker(
    pooled: _Pooled, fake: FakeLLM, workspace: Path
) -> None:
    fake.script("helper", [Reply.say("warm")])
    await pooled.run(outrider.agent("helper", "Start a worker", workspace=str(workspace)))
    fake.script("talker", [Reply.say("word " * 400, chunk_delay=0.05)])
    aborted, calls = fake.aborted, len(fake.calls_for("talker"))
    spec = outrider.agent("talker", "Talk", workspace=str(workspace))
    done = await pooled.run(spec, timeout=2.0)
    assert done.state == outrider.TaskState.TIMED_OUT
    assert len(fake.calls_for("talker")) == calls + 1
    await wait_until(lambda: fake.aborted > aborted, timeout=10)


async def test_run_command_is_a_shell_task_of_the_daemon_and_delegate_a_child_agent(
    pooled: _Pooled, fake: FakeLLM, workspace: Path
) -> None:
    fake.script("worker", [Reply.tool("run_command", command="echo hello-from-shell"),
                           Reply.tool("delegate", agent="helper", prompt="help"),
                           Reply.say("ran and delegated")])  # fmt: skip
    fake.script("helper", [Reply.say("helped")])
    done = await pooled.run(outrider.agent("worker", "Run", workspace=str(workspace)))
    assert done.state == outrider.TaskState.SUCCEEDED, done.error
    ran, delegated = (c.tool_results[-1] for c in fake.calls_for("worker")[-2:])
    assert ran.startswith("[exit code 0]")
    assert "hello-from-shell" in ran
    assert delegated == "helped"
    children = [t for t in await pooled.orch.session(S).list() if t.parent == done.id]
    assert sorted((c.kind, c.state) for c in children) == [
        ("agent", outrider.TaskState.SUCCEEDED), ("shell", outrider.TaskState.SUCCEEDED),
    ]  # fmt: skip


async def test_a_delegation_tree_spends_one_budget_across_its_tasks(
    pooled: _Pooled, fake: FakeLLM, workspace: Path
) -> None:
    """The child runs on its root's worker, so what it spends leaves the root nothing."""
    calls = len(fake.calls_for("boss"))
    fake.script("boss", [Reply.tool("delegate", agent="helper", prompt="spend"),
                         Reply.say("never sent")])  # fmt: skip
    fake.script("helper", [Reply.say("spent", output_tokens=2950)])
    done = await pooled.run(outrider.agent("boss", "Delegate", workspace=str(workspace)))
    assert done.error is not None
    assert done.error.type == "budget", done.error
    assert "it was not sent" in done.error.message  # what the child spent is the tree's
    assert len(fake.calls_for("boss")) == calls + 1
    (child,) = [t for t in await pooled.orch.session(S).list() if t.parent == done.id]
    assert child.state == outrider.TaskState.FAILED


async def test_a_model_limit_holds_across_every_worker(
    pooled: _Pooled, fake: FakeLLM, workspace: Path, tmp_path: Path
) -> None:
    recipe = _recipe(fake).model_copy(
        update={"providers": {"fake": ProviderConfig(base_url=fake.base_url, api_key="k",
                                                     max_concurrency=1)}}
    )  # fmt: skip
    runner = recipe.build()
    pool = agent_pool(recipe, runner, size=2)
    fake.script("helper", [Reply(text="one at a time", latency=0.3) for _ in range(3)])
    # The operator lets 3 tasks of the model run at once: calls still go one at a time.
    settings = outrider.Settings(limits={"model:fake/helper": 3})
    async with outrider.Orchestrator(
        db=tmp_path / "limits.db", settings=settings, runners=[runner], executors={"agent": pool}
    ) as orch:
        fake.max_in_flight = 0
        session = orch.session(S)
        spec = outrider.agent("helper", "Go", workspace=str(workspace))
        tasks = [await session.submit(spec) for _ in range(3)]
        done = await session.wait([t.id for t in tasks], timeout=60)
        assert len(pool.pids) == 2
    assert [t.result for t in done] == ["one at a time"] * 3
    assert fake.max_in_flight == 1


async def test_a_killed_worker_fails_only_its_attempts_retryably_and_is_replaced(
    fake: FakeLLM, workspace: Path, tmp_path: Path
) -> None:
    recipe = _recipe(fake)
    runner = recipe.build()
    pool = agent_pool(recipe, runner, size=1)
    fake.script("talker", [Reply(text="never", latency=60), Reply.say("back")])
    calls = len(fake.calls_for("talker"))
    async with outrider.Orchestrator(
        tmp_path / "kill.db", outrider.Settings(retry_backoff=0.05), runners=[runner],
        executors={"agent": pool},
    ) as orch:  # fmt: skip
        session = orch.session(S)
        spec = outrider.agent("talker", "Wait", workspace=str(workspace))
        task = await session.submit(spec, max_attempts=2)
        await wait_until(lambda: len(fake.calls_for("talker")) == calls + 1, timeout=30)
        (victim,) = pool.pids
        os.kill(victim, signal.SIGKILL)
        (done,) = await session.wait([task.id], timeout=60)
        assert done.state == outrider.TaskState.SUCCEEDED, done.error
        assert done.result == "back"
        assert done.attempt == 2
        assert pool.pids
        assert victim not in pool.pids


async def test_an_agent_interrupted_by_a_shutdown_resumes_in_a_new_worker(
    fake: FakeLLM, workspace: Path, tmp_path: Path
) -> None:
    """Its worker saved the conversation as it stopped; the next attempt continues it."""
    fake.script("resumer", [
        Reply.tool("write_file", path="out.txt", content="one"),
        Reply(text="never sent", latency=60),  # the orchestrator stops while it waits for this
        Reply.say("done"),
    ])  # fmt: skip
    recipe = _recipe(fake).model_copy(update={"agents": {"resumer": _agent("resumer")}})
    db = tmp_path / "resume.db"
    runner = recipe.build()
    async with outrider.Orchestrator(
        db, outrider.Settings(shutdown_grace=0.1), runners=[runner],
        executors={"agent": agent_pool(recipe, runner, size=1)},
    ) as first:  # fmt: skip
        spec = outrider.agent("resumer", "Write it.", workspace=str(workspace))
        task = await first.session(S).submit(spec, max_attempts=2)
        await wait_until(lambda: len(fake.calls_for("resumer")) == 2, timeout=30)
    runner = recipe.build()
    async with outrider.Orchestrator(
        db, runners=[runner], executors={"agent": agent_pool(recipe, runner, size=1)}
    ) as second:
        (done,) = await second.session(S).wait([task.id], timeout=60)
        output = await second.session(S).tail(task.id, lines=100)
    assert done.state is outrider.TaskState.SUCCEEDED, done.error
    assert done.result == "done"
    calls = fake.calls_for("resumer")
    assert len(calls) == 3
    assert calls[2].tool_results == calls[1].tool_results != []
    assert "[resumed from the stored transcript:" in output


async def test_a_run_streams_its_model_calls_only_while_someone_watches(
    pooled: _Pooled, fake: FakeLLM, workspace: Path
) -> None:
    """Whole answers while nobody follows the task; streamed ones while someone does.

    The worker learns it from `Watch` messages, in the middle of the run.
    """
    listing = (("list_files", {}),)
    fake.calls.clear()
    fake.script("worker", [Reply(text="first", tool_calls=listing, latency=1.5),
                           Reply(text="second", tool_calls=listing, latency=1.5),
                           Reply.say("third")])  # fmt: skip
    session = pooled.orch.session(S)
    task = await session.submit(outrider.agent("worker", "Watch me", workspace=str(workspace)))
    await wait_until(lambda: len(fake.calls_for("worker")) == 1, timeout=30)
    follower = session.events(task_id=task.id)
    await anext(aiter(follower))  # subscribed: the next call streams
    await wait_until(lambda: len(fake.calls_for("worker")) == 2, timeout=30)
    await follower.aclose()  # gone: the one after is whole again
    (done,) = await session.wait([task.id], timeout=60)
    assert done.state == outrider.TaskState.SUCCEEDED, done.error
    assert [bool(c.body.get("stream")) for c in fake.calls_for("worker")] == [False, True, False]
    assert "first" in await session.tail(task.id)  # a whole answer's text is still shown
