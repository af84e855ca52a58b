"""The built-in agent runner end to end, against the fake provider over real HTTP."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio
import pytest

import outrider
from outrider._agents._definitions import AgentDefinition
from outrider._agents._providers import Price, ProviderConfig, Providers
from outrider._agents._runner import AgentRunner
from outrider._agents._workspace import Patterns, Policy
from outrider._types._events import Event, TaskOutput
from outrider.testing import wait_until
from tests.fakellm import FakeLLM, Reply

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Iterator

S = "agent-tests"


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeLLM]:
    with FakeLLM() as server:
        yield server


def _agent(name: str, model: str, **kw: Any) -> AgentDefinition:
    return AgentDefinition(
        name=name, model=model, prompt=f"You are {name}.", source=Path(f"{name}.md"),
        format="outrider", **kw,
    )  # fmt: skip


def _providers(fake: FakeLLM, **kw: Any) -> Providers:
    return Providers(
        {
            "fake": ProviderConfig(base_url=fake.base_url, api_key="k"),
            "fakea": ProviderConfig(api="anthropic", base_url=fake.anthropic_url, api_key="k"),
            **kw,
        },
        prices={"fake/worker": Price(input=1.0, output=2.0)},
    )


@pytest.fixture
async def workspace(tmp_path: Path) -> Path:
    root = tmp_path / "ws"
    root.mkdir()
    (root / "notes.txt").write_text("alpha\nbeta\n")
    (tmp_path / "secret.txt").write_text("do not read")
    return root


@pytest.fixture
async def orch(tmp_path: Path, fake: FakeLLM) -> AsyncIterator[outrider.Orchestrator]:
    agents = {
        "worker": _agent("worker", "fake/worker"),
        "reader": _agent("reader", "fake/reader", read_only=True),
        "boss": _agent("boss", "fake/boss"),
        "helper": _agent("helper", "fake/helper"),
        "looper": _agent("looper", "fake/looper"),
        "careful": _agent(
            "careful",
            "fake/careful",
            permission=Policy(
                commands=Patterns(allow=("echo *",)), paths=Patterns(deny=("private/*",))
            ),
        ),
        "anthro": _agent("anthro", "fakea/claude-test"),
        "shaky": _agent("shaky", "fake/shaky", fallback_models=("fake/backup",)),
        "budgeted": _agent("budgeted", "fake/budgeted", budget_tokens=5000),
        "short": _agent("short", "fake/short", max_turns=2),
    }
    runner = AgentRunner(agents, _providers(fake), max_depth=1)
    fake.scripts.clear()
    async with outrider.Orchestrator(db=tmp_path / "o.db", runners=[runner]) as o:
        yield o


async def _run(orch: outrider.Orchestrator, spec: outrider.AgentSpec) -> outrider.Task:
    task = await orch.session(S).submit(spec)
    (done,) = await orch.session(S).wait([task.id], timeout=30)
    assert done.state.terminal, done
    return done


async def test_tools_in_the_workspace_usage_cost_and_transcript(
    orch: outrider.Orchestrator, fake: FakeLLM, workspace: Path
) -> None:
    fake.script("worker", [
        Reply.tool("read_file", path="notes.txt"),
        Reply.tool("write_file", path="out/result.txt", content="gamma"),
        Reply.tool("edit_file", path="notes.txt", old="beta", new="BETA"),
        Reply.tools(("grep", {"pattern": "BETA"}), ("list_files", {"pattern": "**/*.txt"})),
        Reply.say("All done: notes edited.", input_tokens=1000, output_tokens=500),
    ])  # fmt: skip
    done = await _run(orch, outrider.agent("worker", "Edit the notes", workspace=str(workspace)))
    assert done.state == outrider.TaskState.SUCCEEDED, done.error
    assert done.result == "All done: notes edited."
    assert (workspace / "out/result.txt").read_text() == "gamma"
    assert (workspace / "notes.txt").read_text() == "alpha\nBETA\n"
    calls = fake.calls_for("worker")
    assert "alpha\nbeta" in calls[1].tool_results[0]
    assert calls[-1].tool_results[-2:] == ["notes.txt:2: BETA", "notes.txt\nout/result.txt"]
    assert done.usage is not None
    assert done.usage.requests == 5
    assert done.usage.input_tokens >= 1000
    assert done.usage.output_tokens >= 500
    expected = (done.usage.input_tokens * 1.0 + done.usage.output_tokens * 2.0) / 1e6
    assert done.usage.cost == pytest.approx(expected)
    log = await orch.session(S).tail(done.id, lines=100)
    assert "→ write_file" in log
    assert "All done" in log
    transcript = await orch.session(S).transcript(done.id)
    assert isinstance(transcript, dict)
    kinds = [m["kind"] for m in transcript["messages"]]
    assert kinds.count("response") == 5
    assert kinds[0] == "request"
    assert transcript["attempts"] == [{"model": "fake/worker", "error": None}]


async def test_runs_side_by_side_share_the_tools_but_each_sees_its_own_workspace(
    orch: outrider.Orchestrator, fake: FakeLLM, tmp_path: Path
) -> None:
    roots = {}
    for name in ("worker", "helper"):
        roots[name] = tmp_path / name
        roots[name].mkdir()
        (roots[name] / "notes.txt").write_text(f"the notes of {name}\n")
        fake.script(name, [Reply.tool("read_file", path="notes.txt"), Reply.say("read")])
    session = orch.session(S)
    tasks = [await session.submit(outrider.agent(n, "Read", workspace=str(r)))
             for n, r in roots.items()]  # fmt: skip
    done = await session.wait([t.id for t in tasks], timeout=30)
    assert [d.state for d in done] == [outrider.TaskState.SUCCEEDED] * 2
    for name in roots:
        assert fake.calls_for(name)[-1].tool_results == [f"the notes of {name}\n"]


async def test_a_file_tool_the_system_refuses_answers_the_model_and_the_run_goes_on(
    orch: outrider.Orchestrator, fake: FakeLLM, workspace: Path
) -> None:
    fake.script("worker", [
        Reply.tool("write_file", path="notes.txt/inner.txt", content="x"),  # under a file
        Reply.say("noted"),
    ])  # fmt: skip
    done = await _run(orch, outrider.agent("worker", "Write", workspace=str(workspace)))
    assert done.state == outrider.TaskState.SUCCEEDED, done.error
    assert fake.calls_for("worker")[-1].tool_results == ["error: File exists"]  # its folder


async def test_paths_outside_the_workspace_and_denied_by_policy_are_refused(
    orch: outrider.Orchestrator, fake: FakeLLM, workspace: Path
) -> None:
    (workspace / "private").mkdir()
    (workspace / "private/key").write_text("k")
    fake.script("careful", [
        Reply.tools(("read_file", {"path": "../secret.txt"}),
                    ("read_file", {"path": "/etc/hostname"}),
                    ("read_file", {"path": "private/key"}),
                    ("run_command", {"command": "rm -rf ."}),
                    ("write_file", {"path": "../escape.txt", "content": "x"})),
        Reply.say("could not"),
    ])  # fmt: skip
    done = await _run(orch, outrider.agent("careful", "Read secrets", workspace=str(workspace)))
    assert done.state == outrider.TaskState.SUCCEEDED
    results = fake.calls_for("careful")[-1].tool_results
    assert all(r.startswith("refused") for r in results), results
    assert "outside the workspace" in results[0]
    assert "outside the workspace" in results[1]
    assert "policy does not allow 'private/key'" in results[2]
    assert "`rm -rf .` matches no allow rule" in results[3]
    assert not (workspace.parent / "escape.txt").exists()


async def test_read_only_agent_cannot_write_or_run(
    orch: outrider.Orchestrator, fake: FakeLLM, workspace: Path
) -> None:
    fake.script("reader", [Reply.say("looked")])
    done = await _run(orch, outrider.agent("reader", "Look", workspace=str(workspace)))
    assert done.state == outrider.TaskState.SUCCEEDED
    offered = {t["function"]["name"] for t in fake.calls_for("reader")[0].body["tools"]}
    assert offered == {"read_file", "list_files", "grep", "delegate"}


async def test_run_command_is_a_child_shell_task(
    orch: outrider.Orchestrator, fake: FakeLLM, workspace: Path
) -> None:
    fake.script("careful", [Reply.tool("run_command", command="echo hello-from-shell"),
                            Reply.say("ran it")])  # fmt: skip
    done = await _run(orch, outrider.agent("careful", "Run echo", workspace=str(workspace)))
    assert done.state == outrider.TaskState.SUCCEEDED
    (answer,) = fake.calls_for("careful")[-1].tool_results
    assert answer.startswith("[exit code 0]")
    assert "hello-from-shell" in answer
    children = [t for t in await orch.session(S).list() if t.parent == done.id]
    assert len(children) == 1
    assert children[0].kind == "shell"
    assert children[0].state == outrider.TaskState.SUCCEEDED


async def test_delegation_runs_a_child_agent_and_depth_is_enforced(
    orch: outrider.Orchestrator, fake: FakeLLM, workspace: Path
) -> None:
    fake.script("boss", [Reply.tool("delegate", agent="helper", prompt="count the notes"),
                         Reply.say("boss: helper says 2")])  # fmt: skip
    fake.script("helper", [Reply.tool("delegate", agent="helper", prompt="deeper"),
                           Reply.say("2 notes")])  # fmt: skip
    done = await _run(orch, outrider.agent("boss", "Delegate", workspace=str(workspace)))
    assert done.state == outrider.TaskState.SUCCEEDED, done.error
    assert fake.calls_for("boss")[-1].tool_results == ["2 notes"]
    (refusal,) = fake.calls_for("helper")[-1].tool_results
    assert "delegation depth limit (1)" in refusal
    children = [t for t in await orch.session(S).list() if t.parent == done.id]
    assert [c.kind for c in children] == ["agent"]
    assert children[0].spec.depth == 1  # type: ignore[union-attr]


async def test_a_waiting_parent_lends_its_slot(tmp_path: Path, fake: FakeLLM) -> None:
    agents = {"boss2": _agent("boss2", "fake/boss2"), "helper": _agent("helper", "fake/helper2")}
    runner = AgentRunner(agents, _providers(fake))
    fake.script("boss2", [Reply.tool("delegate", agent="helper", prompt="x"), Reply.say("done")])
    fake.script("helper2", [Reply.say("helped")])
    async with outrider.Orchestrator(
        tmp_path / "o.db", outrider.Settings(max_running=1), runners=[runner]
    ) as o:
        done = await _run(o, outrider.agent("boss2", "go", workspace=str(tmp_path)))
    assert done.state == outrider.TaskState.SUCCEEDED, done.error
    assert done.result == "done"


async def test_named_keys_replace_the_agents_but_keep_the_model_and_provider_keys(
    tmp_path: Path, fake: FakeLLM
) -> None:
    providers = _providers(fake, metered=ProviderConfig(base_url=fake.base_url, api_key="k",
                                                        limit=1))  # fmt: skip
    agents = {"one": _agent("one", "metered/one"), "two": _agent("two", "metered/two")}
    fake.script("one", [Reply(text="first", latency=0.3)])
    fake.script("two", [Reply.say("second")])
    async with outrider.Orchestrator(
        tmp_path / "o.db", runners=[AgentRunner(agents, providers)]
    ) as o:
        me = o.session(S)
        first = await me.submit(outrider.agent("one", "go", workspace=str(tmp_path)), keys=["mine"])
        second = await me.submit(outrider.agent("two", "go", workspace=str(tmp_path)))
        assert first.keys == ("mine", "model:metered/one", "provider:metered")
        assert second.keys == ("agent:two", "model:metered/two", "provider:metered")
        assert o.status().keys["provider:metered"].limit == 1
        done = await me.wait([first.id, second.id], timeout=30)
    assert [t.result for t in done] == ["first", "second"]
    assert done[1].started_at is not None
    assert done[0].finished_at is not None
    assert done[1].started_at >= done[0].finished_at  # one at a time on the provider


async def test_a_models_key_holds_as_many_tasks_as_its_concurrency_and_follows_throttles(
    tmp_path: Path, fake: FakeLLM
) -> None:
    """`model:<name>` starts at its provider's `max_concurrency`, not the default of 3; a 429
    halves both."""
    providers = _providers(fake, wide=ProviderConfig(base_url=fake.base_url, api_key="k",
                                                     max_concurrency=6))  # fmt: skip
    agents = {"many": _agent("many", "wide/many", limit=10)}
    fake.script("many", [Reply(text="ok", latency=1.0) for _ in range(8)])
    async with outrider.Orchestrator(
        tmp_path / "o.db",
        outrider.Settings(max_running=20),
        runners=[AgentRunner(agents, providers)],
    ) as o:
        me = o.session(S)
        spec = outrider.agent("many", "go", workspace=str(tmp_path))
        tasks = [await me.submit(spec) for _ in range(8)]
        assert o.status().keys["model:wide/many"].limit == 6
        await wait_until(lambda: o.status().keys["model:wide/many"].running == 6, timeout=10)
        done = await me.wait([t.id for t in tasks], timeout=30)
        assert [t.result for t in done] == ["ok"] * 8
        fake.script("many", [Reply.error(429, retry_after=0.01), Reply.say("ok")])
        (throttled,) = await me.wait([(await me.submit(spec)).id], timeout=30)
        assert throttled.result == "ok"
        assert o.status().keys["model:wide/many"].limit == 3


async def test_tasks_queued_before_a_restart_get_their_keys_limits_back(
    tmp_path: Path, fake: FakeLLM
) -> None:
    """A restarted orchestrator's queued agents run under their model's concurrency and their
    agent's `limit` at once, not the default of 3 until the next submit."""
    providers = _providers(fake, wide=ProviderConfig(base_url=fake.base_url, api_key="k",
                                                     max_concurrency=6))  # fmt: skip
    agents = {"restarted": _agent("restarted", "wide/restarted", limit=10)}
    fake.script("restarted", [Reply(text="ok", latency=1.0) for _ in range(9)])
    spec = outrider.agent("restarted", "go", workspace=str(tmp_path))
    db = tmp_path / "o.db"
    held = outrider.Settings(limits={"agent:restarted": 1}, shutdown_grace=0.1)
    async with outrider.Orchestrator(db, held, runners=[AgentRunner(agents, providers)]) as o:
        tasks = [await o.session(S).submit(spec) for _ in range(8)]
        await wait_until(lambda: len(fake.calls_for("restarted")) == 1, timeout=10)
    async with outrider.Orchestrator(
        db, outrider.Settings(max_running=20), runners=[AgentRunner(agents, providers)]
    ) as o:
        keys = o.status().keys
        assert (keys["model:wide/restarted"].limit, keys["agent:restarted"].limit) == (6, 10)
        await wait_until(lambda: o.status().keys["model:wide/restarted"].running == 6, timeout=10)
        done = await o.session(S).wait([t.id for t in tasks[1:]], timeout=30)
        assert [t.result for t in done] == ["ok"] * 7


async def test_a_limit_the_operator_set_is_not_moved_by_the_runner(
    tmp_path: Path, fake: FakeLLM
) -> None:
    """Neither the model's concurrency nor a throttle moves a key `Settings.limits` names."""
    providers = _providers(fake, wide=ProviderConfig(base_url=fake.base_url, api_key="k",
                                                     max_concurrency=6))  # fmt: skip
    agents = {"many": _agent("many", "wide/many", limit=10)}
    fake.script("many", [Reply.error(429, retry_after=0.01), Reply.say("ok")])
    settings = outrider.Settings(limits={"model:wide/many": 2, "agent:many": 1})
    async with outrider.Orchestrator(
        tmp_path / "o.db", settings, runners=[AgentRunner(agents, providers)]
    ) as o:
        me = o.session(S)
        task = await me.submit(outrider.agent("many", "go", workspace=str(tmp_path)))
        (done,) = await me.wait([task.id], timeout=30)
        assert done.result == "ok"
        keys = o.status().keys
        assert (keys["model:wide/many"].limit, keys["agent:many"].limit) == (2, 1)
        o.set_limit("model:wide/many", 5)  # at run time, too
        o.suggest_limit("model:wide/many", 1)
        assert o.status().keys["model:wide/many"].limit == 5


async def test_the_daemons_limits_win_over_an_agent_files_limit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`[limits] "agent:x"` in outrider.toml beats the `limit` of x's definition; an agent
    the config does not name keeps its own."""
    from outrider._daemon._config import load_config
    from outrider._daemon._serve import _orchestrator

    (tmp_path / ".outrider" / "agents").mkdir(parents=True)
    for name in ("capped", "free"):
        (tmp_path / ".outrider" / "agents" / f"{name}.md").write_text(
            f"---\ndescription: {name}\nmodel: fake/m\nlimit: 7\n---\nWork.\n"
        )
    (tmp_path / "outrider.toml").write_text('[limits]\n"agent:capped" = 2\n')
    monkeypatch.chdir(tmp_path)
    (tmp_path / "home").mkdir(mode=0o700)
    monkeypatch.setenv("OUTRIDER_HOME", str(tmp_path / "home"))
    async with _orchestrator(load_config(tmp_path / "outrider.toml", environ={})) as o:
        keys = o.status().keys
        assert (keys["agent:capped"].limit, keys["agent:free"].limit) == (2, 7)


async def test_budget_stop_keeps_the_transcript(
    orch: outrider.Orchestrator, fake: FakeLLM, workspace: Path
) -> None:
    # Two answers fit; the third request would not (its output is capped to what is left).
    listing = (("list_files", {}),)
    fake.script("budgeted", [Reply(tool_calls=listing, input_tokens=800, output_tokens=10),
                             Reply(tool_calls=listing, input_tokens=1000, output_tokens=4000),
                             Reply.say("never")])  # fmt: skip
    done = await _run(orch, outrider.agent("budgeted", "Spend", workspace=str(workspace)))
    assert done.state == outrider.TaskState.FAILED
    assert done.error is not None
    assert done.error.type == "budget"
    assert "Token budget exceeded" in done.error.message
    transcript = await orch.session(S).transcript(done.id)
    assert isinstance(transcript, dict)
    kinds = [m["kind"] for m in transcript["messages"]]
    assert kinds[:4] == ["request", "response"] * 2
    assert len(fake.calls_for("budgeted")) == 2  # the third request was never sent
    assert transcript["budget"] == {"tokens": 5000, "cost": None}  # what it (its tree) may spend
    assert transcript["tree"] == done.id


async def test_loop_detector_max_turns_and_empty_output(
    orch: outrider.Orchestrator, fake: FakeLLM, workspace: Path
) -> None:
    fake.script("looper", [Reply.tool("grep", pattern="x")] * 6)
    looped = await _run(orch, outrider.agent("looper", "Loop", workspace=str(workspace)))
    assert looped.error is not None
    assert looped.error.type == "loop"
    assert "grep was called 5 times in a row" in looped.error.message
    fake.script("short", [Reply.tool("list_files"), Reply.tool("grep", pattern="a"),
                          Reply.say("late")])  # fmt: skip
    short = await _run(orch, outrider.agent("short", "Turns", workspace=str(workspace)))
    assert short.error is not None
    assert short.error.type == "max_turns"
    fake.script("worker", [Reply.say("   ")])
    empty = await _run(orch, outrider.agent("worker", "Nothing", workspace=str(workspace)))
    assert empty.state == outrider.TaskState.FAILED
    assert empty.error is not None
    assert empty.error.message == "The agent produced no output."


async def test_anthropic_messages_api(
    orch: outrider.Orchestrator, fake: FakeLLM, workspace: Path
) -> None:
    fake.script("claude-test", [Reply.tool("read_file", path="notes.txt"),
                                Reply.say("It says alpha.")])  # fmt: skip
    done = await _run(orch, outrider.agent("anthro", "Read", workspace=str(workspace)))
    assert done.state == outrider.TaskState.SUCCEEDED, done.error
    assert done.result == "It says alpha."
    calls = fake.calls_for("claude-test")
    assert calls[0].api == "anthropic"
    assert "alpha" in calls[1].tool_results[0]
    assert done.usage is not None
    assert done.usage.cost is None


async def test_retry_after_dropped_stream_and_fallback(
    orch: outrider.Orchestrator, fake: FakeLLM, workspace: Path
) -> None:
    fake.script("worker", [
        Reply.error(429, retry_after=0.3), Reply.error(500),
        Reply.say("x" * 200, drop_after_chunks=3), Reply.say("recovered"),
    ])  # fmt: skip
    done = await _run(orch, outrider.agent("worker", "Flaky", workspace=str(workspace)))
    assert done.state == outrider.TaskState.SUCCEEDED, done.error
    assert done.result == "recovered"
    assert len(fake.calls_for("worker")) >= 4
    fake.script("shaky", [Reply.error(400)])
    fake.script("backup", [Reply.say("from backup")])
    fell = await _run(orch, outrider.agent("shaky", "Fall back", workspace=str(workspace)))
    assert fell.state == outrider.TaskState.SUCCEEDED, fell.error
    assert fell.result == "from backup"
    transcript = await orch.session(S).transcript(fell.id)
    assert isinstance(transcript, dict)
    attempts = transcript["attempts"]
    assert [a["model"] for a in attempts] == ["fake/shaky", "fake/backup"]
    assert "HTTP 400" in attempts[0]["error"]
    assert attempts[1]["error"] is None


async def test_the_rate_a_provider_states_paces_its_model(
    tmp_path: Path, fake: FakeLLM, workspace: Path
) -> None:
    providers = _providers(fake)
    runner = AgentRunner({"stated": _agent("stated", "fake/stated")}, providers, max_depth=1)
    fake.limit_rate(6000, burst=100, stated=True)
    try:
        async with outrider.Orchestrator(db=tmp_path / "o.db", runners=[runner]) as orch:
            done = await _run(orch, outrider.agent("stated", "Hi", workspace=str(workspace)))
    finally:
        fake.limit_rate(None)
    assert done.state == outrider.TaskState.SUCCEEDED, done.error
    limiter = providers.limiter(providers.resolve("fake/stated"))
    assert limiter.rpm == 6000  # from the answer's `x-ratelimit-limit-requests`
    assert limiter.limit.rpm is None


async def test_missing_key_and_dead_endpoint_fail_at_once(tmp_path: Path, fake: FakeLLM) -> None:
    providers = Providers(
        {"nokey": ProviderConfig(base_url=fake.base_url, api_key_env="OUTRIDER_TEST_NO_SUCH_KEY"),
         "dead": ProviderConfig(base_url="http://127.0.0.1:9/v1", api_key="k")},
        environ={},
    )  # fmt: skip
    agents = {"a": _agent("a", "nokey/m"), "b": _agent("b", "dead/m"), "c": _agent("c", "nope/m")}
    runner = AgentRunner(agents, providers)
    async with outrider.Orchestrator(db=tmp_path / "o.db", runners=[runner]) as o:
        nokey = await _run(o, outrider.agent("a", "hi", workspace=str(tmp_path)))
        dead = await _run(o, outrider.agent("b", "hi", workspace=str(tmp_path)))
        unknown = await _run(o, outrider.agent("c", "hi", workspace=str(tmp_path)))
    assert nokey.error is not None
    assert "OUTRIDER_TEST_NO_SUCH_KEY" in nokey.error.message
    assert dead.error is not None
    assert "cannot reach dead at http://127.0.0.1:9/v1" in (dead.error.message)
    assert unknown.error is not None
    assert "Unknown provider 'nope'" in unknown.error.message


async def test_cancel_mid_stream_aborts_the_request(
    orch: outrider.Orchestrator, fake: FakeLLM, workspace: Path
) -> None:
    fake.script("worker", [Reply.say("word " * 200, chunk_delay=0.05)])
    aborted = fake.aborted
    task = await orch.session(S).submit(outrider.agent("worker", "Talk", workspace=str(workspace)))
    with anyio.fail_after(20):
        async for event in orch.session(S).events():
            if event.task_id == task.id and event.type == "task.output":
                break
    ended = await orch.session(S).cancel(task.id)
    assert ended.state == outrider.TaskState.CANCELLED
    await wait_until(lambda: fake.aborted > aborted, timeout=10)  # the server's own thread


async def test_an_interrupted_agent_resumes_its_conversation(
    tmp_path: Path, fake: FakeLLM, workspace: Path
) -> None:
    """The second attempt continues the stored transcript: no model or tool call is redone."""
    fake.script("resumer", [
        Reply.tool("write_file", path="out.txt", content="one"),
        Reply(text="never sent", latency=60),  # the process stops while it waits for this
        Reply.say("done"),
    ])  # fmt: skip
    agents = {"resumer": _agent("resumer", "fake/resumer", workspace=str(workspace))}
    db = tmp_path / "resume.db"
    runner = AgentRunner(agents, _providers(fake))
    async with outrider.Orchestrator(
        db, outrider.Settings(shutdown_grace=0.1), runners=[runner]
    ) as first:
        spec = outrider.agent("resumer", "Write it.")
        task = await first.session(S).submit(spec, max_attempts=2)
        await wait_until(lambda: len(fake.calls_for("resumer")) == 2, timeout=20)
    assert (workspace / "out.txt").read_text() == "one"
    runner = AgentRunner(agents, _providers(fake))
    async with outrider.Orchestrator(db=db, runners=[runner]) as second:
        (done,) = await second.session(S).wait([task.id], timeout=30)
        transcript = await second.session(S).transcript(task.id)
        output = await second.session(S).tail(task.id, lines=100)
    assert done.state is outrider.TaskState.SUCCEEDED
    assert done.result == "done"
    calls = fake.calls_for("resumer")
    assert len(calls) == 3  # the first call is not made again...
    assert calls[2].tool_results == calls[1].tool_results != []  # ...nor the tool call
    assert "[resumed from the stored transcript:" in output
    assert isinstance(transcript, dict)
    assert transcript["attempts"][-1] == {"model": "fake/resumer", "error": None, "resumed": True}


def _runner(fake: FakeLLM, **kw: Any) -> AgentRunner:
    return AgentRunner(providers=_providers(fake), **kw)


async def test_the_documented_opencode_reviewer_can_neither_write_nor_run(
    tmp_path: Path, fake: FakeLLM, workspace: Path
) -> None:
    from tests.agents.test_definitions import OPENCODE_REVIEW

    (workspace / ".opencode/agent").mkdir(parents=True)
    review = OPENCODE_REVIEW.replace("anthropic/claude-sonnet-4-20250514", "fake/review")
    (workspace / ".opencode/agent/review.md").write_text(review)
    fake.script("review", [
        Reply.tools(("write_file", {"path": "pwned.txt", "content": "x"}),
                    ("run_command", {"command": "touch ran.txt"})),
        Reply.say("reviewed"),
    ])  # fmt: skip
    runner = _runner(fake, discover=True)
    async with outrider.Orchestrator(db=tmp_path / "o.db", runners=[runner]) as o:
        done = await _run(o, outrider.agent("review", "Review", workspace=str(workspace)))
        children = [t for t in await o.session(S).list() if t.parent == done.id]
    assert done.state == outrider.TaskState.SUCCEEDED, done.error
    offered = {t["function"]["name"] for t in fake.calls_for("review")[0].body["tools"]}
    assert offered == {"read_file", "list_files", "grep", "delegate"}
    assert not (workspace / "pwned.txt").exists()
    assert not (workspace / "ran.txt").exists()
    assert children == []


async def test_agents_are_resolved_where_the_task_is_delegated_from_and_reread(
    tmp_path: Path, fake: FakeLLM, workspace: Path
) -> None:
    runner = _runner(fake, discover=True)  # its own cwd has no agents
    folder = workspace / ".claude/agents"
    async with outrider.Orchestrator(db=tmp_path / "o.db", runners=[runner]) as o:
        missing = await _run(o, outrider.agent("late", "Hi", workspace=str(workspace)))
        assert missing.error is not None
        assert f"Unknown agent 'late' (looked in {workspace}" in missing.error.message
        folder.mkdir(parents=True)
        (folder / "late.md").write_text("---\nname: late\nmodel: fake/late\n---\nBe late.\n")
        fake.script("late", [Reply.say("here now")])
        found = await _run(o, outrider.agent("late", "Hi", workspace=str(workspace)))
        assert found.result == "here now"  # no restart needed
        (folder / "late.md").write_text("---\nname: late\nmodel: fake/later\n---\nx\n")
        fake.script("later", [Reply.say("changed")])
        changed = await _run(o, outrider.agent("late", "Hi", workspace=str(workspace)))
        assert changed.result == "changed"
        assert changed.keys == ("agent:late", "model:fake/later")


async def test_commands_run_sandboxed_and_the_modes_say_so(
    tmp_path: Path, fake: FakeLLM, workspace: Path
) -> None:
    from outrider._agents._sandbox import probe

    secret = tmp_path / "vault"
    secret.mkdir()
    (secret / "token").write_text("sandbox-must-hide-this")
    (workspace / "peek").symlink_to(secret / "token")
    agents = {"sh": _agent("sh", "fake/sh")}
    line = f"cat {secret}/token peek; echo end"
    fake.script("sh", [Reply.tool("run_command", command=line), Reply.say("ok")] * 3)
    modes = [
        AgentRunner(agents, _providers(fake), sandbox_hide=[secret]),
        AgentRunner(agents, _providers(fake), sandbox="off"),
        AgentRunner(agents, _providers(fake), bwrap="/nonexistent/bwrap"),
        AgentRunner(agents, _providers(fake), sandbox="required", bwrap="/nonexistent/bwrap"),
    ]
    logs: list[str] = []
    answers: list[str] = []
    for runner in modes:
        async with outrider.Orchestrator(db=tmp_path / "o.db", runners=[runner]) as o:
            done = await _run(o, outrider.agent("sh", "Peek", workspace=str(workspace)))
            logs.append(await o.session(S).tail(done.id, lines=100))
            answers.append(fake.calls_for("sh")[-1].last_user_text)
        if runner.sandbox == "required":
            assert done.error is not None
            assert done.error.type == "sandbox"
            assert "apt-get install bubblewrap" in done.error.message
    if probe().available:
        assert "sandbox-must-hide-this" not in answers[0]
        assert "end" in answers[0]
        assert "[outrider]" not in logs[0]
    assert logs[1].startswith('[outrider] commands run without a sandbox (sandbox = "off")')
    assert logs[2].startswith("[outrider] commands run WITHOUT a sandbox: bubblewrap (`bwrap`)")
    assert "sandbox-must-hide-this" in answers[1]  # unsandboxed: what the sandbox prevents


async def test_a_catastrophic_search_never_stalls_the_event_loop(
    tmp_path: Path, fake: FakeLLM, workspace: Path
) -> None:
    (workspace / "evil.txt").write_text(("a" * 40 + "!\n") * 5)
    runner = AgentRunner(
        {"grepper": _agent("grepper", "fake/grepper")}, _providers(fake), search_timeout=4.0
    )
    fake.script("grepper", [Reply.tool("grep", pattern="(a|a)+$"), Reply.say("searched")])
    async with outrider.Orchestrator(db=tmp_path / "o.db", runners=[runner]) as o:
        task = await o.session(S).submit(outrider.agent("grepper", "Go", workspace=str(workspace)))
        with anyio.fail_after(30):
            async for event in o.session(S).events():
                data = getattr(event.data, "text", None) if event.type == "task.output" else None
                if event.task_id == task.id and isinstance(data, str) and "→ grep" in data:
                    break
        await o.session(S).get(task.id)  # the loop answers while the search runs
        assert len(fake.calls_for("grepper")) == 1  # the search had not ended yet
        (done,) = await o.session(S).wait([task.id], timeout=30)
    assert done.state == outrider.TaskState.SUCCEEDED, done.error
    (answer,) = fake.calls_for("grepper")[-1].tool_results
    assert "search stopped after 4 s" in answer


async def test_max_tokens_is_capped_by_what_the_budget_has_left(
    tmp_path: Path, fake: FakeLLM, workspace: Path
) -> None:
    agents = {
        "tiny": _agent("tiny", "fake/tiny", budget_tokens=150),
        "capped": _agent("capped", "fake/capped", budget_tokens=3000),
        "pricey": _agent("pricey", "fake/pricey", budget_cost=0.004),
        "unpriced": _agent("unpriced", "fake/capped", budget_cost=1.0),
    }
    big = {"output_tokens": 50_000}
    fake.script("tiny", [Reply.say("x", **big)])
    fake.script("capped", [Reply.tool("list_files", **big), Reply.say("done", **big)])
    fake.script("pricey", [Reply.tool("list_files", **big), Reply.say("done", **big)])
    providers = _providers(fake)
    providers.prices["fake/pricey"] = Price(input=1.0, output=2.0)
    runner = AgentRunner(agents, providers)
    async with outrider.Orchestrator(db=tmp_path / "o.db", runners=[runner]) as o:
        tiny = await _run(o, outrider.agent("tiny", "Hi", workspace=str(workspace)))
        capped = await _run(o, outrider.agent("capped", "Hi", workspace=str(workspace)))
        cost = await _run(o, outrider.agent("pricey", "Hi", workspace=str(workspace)))
        unpriced = await _run(o, outrider.agent("unpriced", "Hi", workspace=str(workspace)))
    assert tiny.error is not None
    assert tiny.error.type == "budget"
    assert "it was not sent" in tiny.error.message
    assert fake.calls_for("tiny") == []  # its input alone exceeded the budget
    calls = fake.calls_for("capped")
    assert calls
    assert all(c.max_tokens is not None and c.max_tokens < 3000 for c in calls)
    assert capped.usage is not None
    assert capped.usage.input_tokens + capped.usage.output_tokens <= 3000
    assert all(c.max_tokens is not None for c in fake.calls_for("pricey"))
    assert cost.usage is not None
    assert cost.usage.cost is not None
    assert cost.usage.cost <= 0.004
    assert unpriced.error is not None
    assert unpriced.error.type == "config"
    assert 'add [prices."fake/capped"]' in unpriced.error.message


async def test_an_empty_answer_costs_no_second_call(
    orch: outrider.Orchestrator, fake: FakeLLM, workspace: Path
) -> None:
    fake.script("helper", [Reply.say(""), Reply.say("a paid retry")])
    before = len(fake.calls_for("helper"))
    done = await _run(orch, outrider.agent("helper", "Say nothing", workspace=str(workspace)))
    assert done.error is not None
    assert (done.error.type, done.error.message) == (
        "empty_output", "The agent produced no output.",
    )  # fmt: skip
    assert len(fake.calls_for("helper")) == before + 1
    fake.scripts["helper"].clear()


async def test_a_provider_takes_as_many_calls_at_once_as_its_concurrency_allows(
    fake: FakeLLM,
) -> None:
    """No connection pool caps the calls in flight below the model's own concurrency."""
    calls = 120  # above httpx's default pool of 100 connections
    providers = Providers(
        {"fake": ProviderConfig(base_url=fake.base_url, api_key="k", max_concurrency=200)}
    )
    fake.script("wide", [Reply.say("ok", latency=3.0) for _ in range(calls)])
    client = providers._client(providers.resolve("fake/wide"))
    body = {"model": "wide", "messages": [{"role": "user", "content": "hi"}]}
    fake.max_in_flight = 0

    async def call() -> None:
        await client.post(f"{fake.base_url}/chat/completions", json=body)

    try:
        async with anyio.create_task_group() as tg:
            for _ in range(calls):
                tg.start_soon(call)
            await wait_until(lambda: fake.max_in_flight >= calls, timeout=10)
            tg.cancel_scope.cancel()
    finally:
        fake.scripts.pop("wide", None)
        await providers.aclose()
    assert fake.max_in_flight >= calls  # (a call of an earlier test may still be in flight)


async def _output_of(events: AsyncIterator[Event], task_id: str) -> AsyncIterator[str]:
    """The output of `task_id` in `events`, until it ends."""
    async for event in events:
        if event.task_id == task_id and isinstance(event.data, TaskOutput):
            yield event.data.text
        if event.task_id == task_id and event.type == "task.succeeded":
            return


async def test_model_answers_are_streamed_when_the_task_is_watched(
    orch: outrider.Orchestrator, fake: FakeLLM, workspace: Path, tmp_path: Path
) -> None:
    """Unwatched: whole answers; a subscriber, a stall timeout or `always`: streams."""
    session = orch.session(S)

    def streamed() -> list[bool]:
        return [bool(c.body.get("stream")) for c in fake.calls_for("worker")]

    fake.calls.clear()
    fake.script("worker", [Reply.tool("list_files"), Reply.say("quietly done")])
    done = await _run(orch, outrider.agent("worker", "Alone", workspace=str(workspace)))
    assert done.result == "quietly done"
    assert streamed() == [False, False]
    assert done.progress is not None
    assert done.progress.message == "turn 2"
    assert "quietly done" in await session.tail(done.id)

    fake.calls.clear()
    fake.script("worker", [Reply.say("watched by its stall timeout")])
    task = await session.submit(
        outrider.agent("worker", "Stall", workspace=str(workspace)), stall_timeout=30
    )
    await session.wait([task.id], timeout=30)
    assert streamed() == [True]

    fake.calls.clear()
    fake.script("worker", [Reply.say("followed")] * 2)
    follower = session.events(all_sessions=True)
    await anext(aiter(follower))  # a subscriber of every task's events
    await _run(orch, outrider.agent("worker", "Followed", workspace=str(workspace)))
    await follower.aclose()
    notices = session.events(types=["task.succeeded"])
    await anext(aiter(notices))  # one that wants no output watches nothing
    await _run(orch, outrider.agent("worker", "Followed", workspace=str(workspace)))
    await notices.aclose()
    fake.script("worker", [Reply.say("seen a turn at a time")])
    quiet = session.events(all_sessions=True, watch=False)
    await anext(aiter(quiet))  # takes the output as it comes, watching nothing
    done = await _run(orch, outrider.agent("worker", "Not watched", workspace=str(workspace)))
    assert "seen a turn at a time" in "".join([text async for text in _output_of(quiet, done.id)])
    await quiet.aclose()
    assert streamed() == [True, False, False]

    runner = AgentRunner({"worker": _agent("worker", "fake/worker")}, _providers(fake),
                         streaming="always")  # fmt: skip
    fake.calls.clear()
    fake.script("worker", [Reply.say("always")])
    async with outrider.Orchestrator(db=tmp_path / "always.db", runners=[runner]) as always:
        await _run(always, outrider.agent("worker", "Always", workspace=str(workspace)))
    assert streamed() == [True]
    with pytest.raises(ValueError, match="streaming must be 'watched' or 'always'"):
        AgentRunner(streaming="sometimes")  # type: ignore[arg-type]
