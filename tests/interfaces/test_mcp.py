"""The MCP server through the official SDK client, over stdio and Streamable HTTP."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any, cast

import anyio
from mcp import Client
from mcp.client.stdio import StdioServerParameters
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client

from outrider import Notice, shell
from outrider._daemon._config import DEFAULT_MCP_TOOLS, MCP_TOOLS
from outrider._mcp._tools import Caller, Tools
from tests.fakellm import FakeLLM, Reply

from .conftest import Daemon, launch, stop

if TYPE_CHECKING:
    from collections.abc import AsyncIterator
    from pathlib import Path

    import pytest
    from mcp_types import CallToolResult

    from outrider._types._api import Tasks


@asynccontextmanager
async def stdio(daemon: Daemon, *args: str) -> AsyncIterator[Client]:
    params = StdioServerParameters(
        command=sys.executable,
        args=["-m", "outrider._cli", "mcp", *args],
        env={k: v for k, v in daemon.env.items() if k != "OUTRIDER_URL"},
    )
    async with Client(params, log_level="info") as client:
        yield client


@asynccontextmanager
async def http(daemon: Daemon, session: str | None = None) -> AsyncIterator[Client]:
    headers = {"Authorization": f"Bearer {daemon.token}"}
    if session:
        headers["X-Outrider-Session"] = session
    async with create_mcp_http_client(headers=headers) as http_client:
        transport = streamable_http_client(daemon.url + "/mcp", http_client=http_client)
        async with Client(transport) as client:
            yield client


def text(result: CallToolResult) -> str:
    (block,) = result.content
    assert block.type == "text"
    return block.text


async def call(client: Client, tool: str, **arguments: Any) -> CallToolResult:
    result = await client.call_tool(tool, arguments)
    assert not result.is_error, text(result)
    return result


async def test_default_tools_are_few_and_tools_option_selects(daemon: Daemon) -> None:
    async with stdio(daemon) as client:
        names = [t.name for t in (await client.list_tools()).tools]
        assert names == list(DEFAULT_MCP_TOOLS)
        tools = {t.name: t for t in (await client.list_tools()).tools}
        assert "background" in tools["delegate_task"].description
    async with stdio(daemon, "--tools", ",".join(MCP_TOOLS)) as client:
        assert {t.name for t in (await client.list_tools()).tools} == set(MCP_TOOLS)


def test_bad_tools_option_fails_with_a_clear_line(daemon: Daemon) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "outrider._cli", "mcp", "--tools", "delegate_task,nope"],
        env=daemon.env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 2
    assert "mcp_tools" in done.stderr
    assert "nope" in done.stderr


async def run_flow(client: Client, other: Client) -> None:
    """Delegate 20 tasks, see notices, collect, cancel one; `other` sees none of it."""
    notices: list[dict[str, Any]] = []

    async def step(tool: str, **arguments: Any) -> CallToolResult:
        result = await call(client, tool, **arguments)
        notices.extend(result.structured_content.get("notices", []))
        return result

    started = await step(
        "agents_start",
        tasks=[{"command": f"echo out-{i}", "description": f"job {i}"} for i in range(20)],
        group="twenty",
    )
    ids = [item["task"]["id"] for item in started.structured_content["items"]]
    assert len(ids) == 20
    slow = await step("run_background", command="sleep 60", label="slow")
    slow_id = slow.structured_content["task"]["id"]
    assert "queued" in text(slow)

    waited = await step("wait_tasks", task_ids=ids, timeout=50)
    assert waited.structured_content["still_running"] == []
    # The batch's one summary notice arrives with some answer, then never again.
    while not any(n["kind"] == "group" for n in notices):
        await step("wait_tasks", task_ids=ids[:1], timeout=1)
    (summary,) = [n for n in notices if n["kind"] == "group"]
    assert summary["counts"]["succeeded"] == 20
    assert "group 'twenty' finished: 20 tasks" in summary["text"]
    delivered = [n["task_id"] for n in notices if n["kind"] == "task"]
    assert len(delivered) == len(set(delivered))  # at most once per answer stream
    again = await step("list_tasks", status="active")
    assert "notices" not in again.structured_content
    assert slow_id in text(again)
    page = await step("list_tasks", limit=5)  # the newest five: the slow one and 4 of the batch
    shown = [t["id"] for t in page.structured_content["tasks"]]
    assert shown == [*ids[-4:], slow_id]
    assert page.structured_content["more"] is True
    assert text(page).startswith("(the newest 5; older ones are not shown)")
    whole = await step("list_tasks", limit=21)
    assert whole.structured_content["more"] is False
    assert "older ones" not in text(whole)

    result = await step("get_task_result", task_id=ids[7])
    assert "out-7" in text(result)
    assert result.structured_content["task"]["result"] == "out-7\n"

    # Another connection (session) cannot read or touch these tasks.
    foreign = await other.call_tool("get_task_result", {"task_id": ids[7]})
    assert foreign.is_error
    assert "No task" in text(foreign)
    foreign = await other.call_tool("cancel_task", {"task_id": slow_id})
    assert foreign.is_error
    assert ids[0] not in text(await call(other, "list_tasks"))

    cancelled = await step("cancel_task", task_id=slow_id)
    assert "cancelled" in text(cancelled)
    checked = await step("check_background", task_id=slow_id)
    assert checked.structured_content["task"]["state"] == "cancelled"


async def test_stdio_flow(daemon: Daemon) -> None:
    tools = ",".join(MCP_TOOLS)
    async with (
        stdio(daemon, "--tools", tools, "--session", "stdio-a") as client,
        stdio(daemon, "--tools", tools) as other,
    ):
        await run_flow(client, other)


async def test_a_refused_token_is_a_clear_tool_error_not_a_crash(daemon: Daemon) -> None:
    params = StdioServerParameters(
        command=sys.executable,
        args=["-m", "outrider._cli", "mcp"],
        env={**daemon.env, "OUTRIDER_TOKEN": "not-the-token"},
    )
    async with Client(params) as client:
        result = await client.call_tool("delegate_task", {"description": "x", "command": "true"})
    assert result.is_error
    assert "token" in text(result)


async def test_streamable_http_flow(daemon: Daemon) -> None:
    async with http(daemon, "http-a") as client, http(daemon) as other:
        names = {t.name for t in (await client.list_tools()).tools}
        assert names == set(DEFAULT_MCP_TOOLS)
        delegated = await call(client, "delegate_task", description="hi", command="echo hi")
        task_id = delegated.structured_content["task"]["id"]
        foreign = await other.call_tool("get_task_result", {"task_id": task_id})
        assert foreign.is_error
        done = await call(client, "get_task_result", task_id=task_id, wait=30)
        assert "hi" in text(done)


async def test_each_http_session_gets_its_own_notices(daemon: Daemon) -> None:
    # Session b's task ends first, so its notice has the lower seq; a's answer must not hide it.
    with daemon.client("notes-b") as rest_b, daemon.client("notes-a") as rest_a:
        first = rest_b.submit(shell("true"), label="b-task")
        rest_b.wait([first.id], timeout=30)
        second = rest_a.submit(shell("true"), label="a-task")
        rest_a.wait([second.id], timeout=30)
    async with http(daemon, "notes-a") as a, http(daemon, "notes-b") as b:
        carried_a = (await call(a, "list_tasks", status="queued")).structured_content["notices"]
        assert [n["task_id"] for n in carried_a] == [second.id]
        carried_b = (await call(b, "list_tasks", status="queued")).structured_content["notices"]
        assert [n["task_id"] for n in carried_b] == [first.id]
        assert "notices" not in (await call(b, "list_tasks", status="queued")).structured_content


async def test_blocking_calls_answer_still_running_at_the_cap(daemon: Daemon) -> None:
    async with http(daemon, "capped") as client:
        # mcp_wait is 5 s in this daemon's config; the task would take 60.
        result = await call(
            client, "delegate_task", description="long", command="sleep 60", background=False
        )
        assert "still running" in text(result)
        task_id = result.structured_content["task"]["id"]
        waited = await call(client, "wait_tasks", task_ids=[task_id], timeout=120)
        assert waited.structured_content["still_running"] == [task_id]
        await call(client, "cancel_task", task_id=task_id)


async def test_notices_survive_reconnects_under_a_session_name(daemon: Daemon) -> None:
    async with stdio(daemon, "--session", "keep") as client:
        first = await call(client, "delegate_task", description="remember me", command="exit 3")
        task_id = first.structured_content["task"]["id"]
    # Delivered to no one yet: the next connection under the same name gets it, once.
    async with stdio(daemon, "--session", "keep") as client:
        notices: list[dict[str, Any]] = []
        while not notices:
            result = await call(client, "list_tasks", status="queued")
            notices = result.structured_content.get("notices", [])
        (notice,) = notices
        assert notice["task_id"] == task_id
        assert notice["state"] == "failed"
        assert "remember me" in text(result)
        assert "exit 3" in notice["text"]
        assert "notices" not in (await call(client, "list_tasks")).structured_content


async def test_a_notice_carried_by_the_last_answer_is_acknowledged_on_the_way_out(
    daemon: Daemon,
) -> None:
    async with stdio(daemon, "--session", "flush") as client:
        await call(client, "delegate_task", description="once only", command="exit 4")
        notices: list[dict[str, Any]] = []
        while not notices:  # the last answer of this connection carries the notice
            result = await call(client, "list_tasks", status="queued")
            notices = result.structured_content.get("notices", [])
    async with stdio(daemon, "--session", "flush") as client:
        again = await call(client, "list_tasks", status="queued")
        assert "notices" not in again.structured_content


async def test_agent_work_is_refused_with_what_is_available(daemon: Daemon) -> None:
    async with http(daemon, "agents") as client:
        result = await client.call_tool(
            "delegate_task", {"description": "x", "agent": "builder", "prompt": "build"}
        )
        assert result.is_error
        assert "builder" in text(result)
        assert "command" in text(result)


async def test_a_bad_batch_item_fails_alone_and_a_task_can_be_retried(daemon: Daemon) -> None:
    tools = ",".join(MCP_TOOLS)
    async with stdio(daemon, "--tools", tools, "--session", "batch-items") as client:
        started = await call(
            client, "agents_start",
            tasks=[{"command": "exit 3", "label": "fails"}, {"command": "true", "priority": 42},
                   {"label": "no work"}],
        )  # fmt: skip
        first, bad, empty = started.structured_content["items"]
        assert "priority" in bad["error"]
        assert "42" in bad["error"]
        assert "command" in empty["error"]
        task_id = first["task"]["id"]
        await call(client, "wait_tasks", task_ids=[task_id], timeout=30)
        again = await call(client, "retry_task", task_id=task_id)
        retried = again.structured_content["task"]
        assert retried["id"] != task_id
        assert retried["retry_of"] == task_id
        assert f"retry of {task_id}" in text(again)


async def test_progress_notifications_while_waiting(daemon: Daemon, tmp_path: Path) -> None:
    gate = tmp_path / "gate"
    updates: list[tuple[float, float | None, str | None]] = []

    async def on_progress(done: float, total: float | None, message: str | None) -> None:
        updates.append((done, total, message))
        gate.touch()  # the wait has begun: let the tasks finish

    command = f"while [ ! -e {gate} ]; do sleep 0.02; done; echo ok"
    async with stdio(daemon, "--tools", ",".join(MCP_TOOLS)) as client:
        started = await call(client, "agents_start", tasks=[{"command": command}] * 3)
        ids = [i["task"]["id"] for i in started.structured_content["items"]]
        result = await client.call_tool(
            "wait_tasks", {"task_ids": ids, "timeout": 30}, progress_callback=on_progress
        )
    assert not result.is_error
    assert updates[0][:2] == (0, 3)
    assert [u[:2] for u in updates[1:]] == [(1, 3), (2, 3), (3, 3)]
    assert all("succeeded" in (u[2] or "") for u in updates[1:])


async def test_delegate_to_an_agent_defined_to_run_through_a_cli(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "claude"
    fake.write_text(  # the prompt is the last argument, after `--`
        '#!/bin/sh\nfor a in "$@"; do last="$a"; done\n'
        'echo "{\\"result\\": \\"fixed: $(echo "$last" | tail -n 1)\\"}"\n'
    )
    fake.chmod(0o755)
    project = tmp_path / "project"
    (project / ".outrider" / "agents").mkdir(parents=True)
    (project / ".outrider" / "agents" / "fixer.md").write_text(
        "---\ndescription: Fixes bugs\ncli: claude\nlimit: 2\n---\nYou fix bugs.\n"
    )
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.chdir(project)
    daemon = launch(home)
    try:
        params = StdioServerParameters(
            command=sys.executable, args=["-m", "outrider._cli", "mcp"], cwd=str(project),
            env={**os.environ, "OUTRIDER_HOME": str(home)},
        )  # fmt: skip
        async with Client(params) as client:
            result = await call(
                client, "delegate_task", description="fix it", agent="fixer",
                prompt="the login bug", background=False,
            )  # fmt: skip
            assert "fixed: the login bug" in text(result)
            refused = await client.call_tool(
                "delegate_task", {"description": "x", "agent": "nobody", "prompt": "y"}
            )
            assert refused.is_error
            assert "available: fixer" in text(refused)
        with daemon.client() as plain:
            assert plain.status().keys["agent:fixer"].limit == 2
    finally:
        stop(daemon)


async def test_delegate_to_a_built_in_agent_and_read_its_transcript(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    project = tmp_path / "project"
    project.mkdir()
    (project / "README.txt").write_text("the project readme")
    home = tmp_path / "home"
    home.mkdir()
    with FakeLLM() as fake:
        fake.script("scout-model", [Reply.tool("read_file", path="README.txt"),
                                    Reply.say("It is a project.")])  # fmt: skip
        providers = json.dumps({"fake": {"base_url": fake.base_url, "api_key": "k"}})
        monkeypatch.setenv("OUTRIDER_PROVIDERS", providers)
        monkeypatch.chdir(home)  # the daemon starts elsewhere, before the agent file exists
        daemon = launch(home)
        (project / ".outrider" / "agents").mkdir(parents=True)
        (project / ".outrider" / "agents" / "scout.md").write_text(
            "---\ndescription: Looks around\nmodel: fake/scout-model\n---\nYou look around.\n"
        )
        monkeypatch.chdir(project)  # the host's bridge runs in the project
        try:
            async with stdio(daemon, "--session", "scouting") as client:
                result = await call(
                    client, "delegate_task", description="look", agent="scout",
                    prompt="What is this?", background=False,
                )  # fmt: skip
                assert "It is a project." in text(result)
                task_id = result.structured_content["task"]["id"]  # type: ignore[index]
                full = await call(client, "get_task_result", task_id=task_id, full=True)
                assert "→ read_file" in text(full)
                assert "← read_file: the project readme" in text(full)
                assert full.structured_content is not None
                assert full.structured_content["transcript"]["agent"] == "scout"
            shown = await anyio.run_process(
                [sys.executable, "-m", "outrider._cli", "show", task_id, "--transcript",
                 "--session", "scouting"],
                env=daemon.env, cwd=project,
            )  # fmt: skip
            assert "user: What is this?" in shown.stdout.decode()
            assert "assistant: It is a project." in shown.stdout.decode()
            assert fake.calls_for("scout-model")[1].tool_results == ["the project readme"]
        finally:
            stop(daemon)


async def test_the_bridge_keeps_delivering_notices_after_its_daemon_restarts(
    tmp_path: Path,
) -> None:
    daemon = launch(tmp_path)
    params = StdioServerParameters(
        command=sys.executable, args=["-m", "outrider._cli", "mcp", "--session", "restart"],
        env={**{k: v for k, v in daemon.env.items() if k != "OUTRIDER_URL"},
             "OUTRIDER_PORT": "0"},  # found by its home; a daemon it starts takes a free port
    )  # fmt: skip
    try:
        async with Client(params) as client:

            async def notice_of(delegated: CallToolResult) -> None:
                task_id = delegated.structured_content["task"]["id"]
                answer = delegated  # a slow answer carries what ended meanwhile, its own task too
                with anyio.fail_after(30):
                    while True:
                        carried = answer.structured_content.get("notices", [])
                        if any(n["task_id"] == task_id for n in carried):
                            return
                        answer = await call(client, "list_tasks", status="queued")

            await notice_of(
                await call(client, "delegate_task", description="before", command="true")
            )
            stop(daemon)
            # The next call starts a daemon again (the bridge's own autostart), on a new port;
            # the bridge's notice stream finds it there.
            await notice_of(
                await call(client, "delegate_task", description="after", command="true")
            )
    finally:
        stop(daemon)
        record = tmp_path / "daemon.json"
        if record.exists():  # the daemon the bridge started
            pid = json.loads(record.read_text())["pid"]
            stop(Daemon(url="", token=daemon.token, home=tmp_path, pid=pid))


async def test_http_without_a_session_is_refused_never_shared(daemon: Daemon) -> None:
    # A current-protocol client has no MCP session: it must name an outrider session, else
    # every such connection would share one.
    async with http(daemon) as client:
        refused = await client.call_tool("delegate_task", {"description": "x", "command": "true"})
        assert refused.is_error
        assert "X-Outrider-Session: NAME" in text(refused)
    with daemon.client("mcp") as rest:
        assert rest.list() == []


async def test_two_windows_sharing_a_session_name_each_receive_every_notice(
    daemon: Daemon,
) -> None:
    async with (
        stdio(daemon, "--session", "shared") as one,
        stdio(daemon, "--session", "shared") as two,
    ):
        # A window's delivery starts when the daemon first hears from it: the bridge's warm-up
        # does that just after the handshake, in a thread, which a loaded machine may delay
        # past window one's acknowledgement; a call of its own settles it.
        await call(two, "list_tasks")
        delegated = await call(one, "delegate_task", description="both", command="true")
        task_id = delegated.structured_content["task"]["id"]
        await call(one, "wait_tasks", task_ids=[task_id])
        for window in (one, two):
            carried: list[dict[str, Any]] = []
            while not carried:  # the wait's own answer may have carried it to window one
                answer = await call(window, "list_tasks", status="queued")
                carried = answer.structured_content.get("notices", [])
                if window is one:
                    break
            assert window is one or [n["task_id"] for n in carried] == [task_id]


async def test_answers_given_at_once_carry_each_notice_once(daemon: Daemon, tmp_path: Path) -> None:
    """A host may run a turn's tool calls in parallel: one answer carries a notice, not each.

    (opencode's three parallel `delegate_task` calls once showed the model a notice twice.)
    """
    gate = tmp_path / "gate"
    async with stdio(daemon, "--session", "parallel") as client:
        delegated = await call(  # it ends after its own answer (which could else carry it)
            client, "delegate_task", description="once",
            command=f"while [ ! -e {shlex.quote(str(gate))} ]; do sleep 0.01; done",
        )  # fmt: skip
        assert "notices" not in delegated.structured_content
        task_id = delegated.structured_content["task"]["id"]
        gate.touch()
        with daemon.client(session="parallel") as api:  # ends unseen by the window's reader
            await anyio.to_thread.run_sync(lambda: api.wait([task_id], timeout=30))
        answers: list[CallToolResult] = []

        async def list_tasks() -> None:
            answers.append(await call(client, "list_tasks", status="queued"))

        async with anyio.create_task_group() as tg:
            for _ in range(8):
                tg.start_soon(list_tasks)
        carried = [n["task_id"] for a in answers for n in a.structured_content.get("notices", [])]
        assert carried == [task_id]


class _Reader:
    """The notice calls `Tools` makes for one reader; `held` stalls its acknowledgement."""

    def __init__(self, session: str, held: anyio.Event | None = None) -> None:
        self.session = session
        self.held = held
        self.acknowledging = anyio.Event()
        self.notice = Notice(seq=1, kind="task", task_id="t_1", text="t_1 succeeded")

    async def notices(self, *, limit: int, reader: str | None) -> list[Notice]:
        return [self.notice]

    async def ack_notices(self, up_to: int, *, reader: str | None) -> None:
        self.acknowledging.set()
        if self.held is not None:
            await self.held.wait()


async def test_one_readers_slow_answer_does_not_hold_up_another_readers() -> None:
    """Answers take a reader's notices one at a time, per reader: windows wait for nobody."""
    tools = Tools(_no_caller)
    held = anyio.Event()
    slow, quick = _Reader("a", held), _Reader("b")
    slow_caller = Caller(tasks=cast("Tasks", slow), reader="window-1")
    quick_caller = Caller(tasks=cast("Tasks", quick), reader="window-2")
    async with anyio.create_task_group() as tg:
        tg.start_soon(tools._answer, slow_caller, "slow", {}, [slow.notice])
        await slow.acknowledging.wait()  # the slow answer holds its reader's turn
        with anyio.fail_after(5):
            answer = await tools._answer(quick_caller, "quick", {}, [quick.notice])
        assert answer.structured_content["notices"][0]["task_id"] == "t_1"
        held.set()


async def _no_caller(ctx: object) -> Caller:
    raise AssertionError("not called")


async def test_what_the_model_reads_is_plain_and_names_real_tools(daemon: Daemon) -> None:
    async with http(daemon, "words") as client:
        bad = await client.call_tool("delegate_task", {"description": "x", "priority": "high"})
        assert bad.is_error
        said = text(bad)
        assert said.startswith("Invalid argument")
        assert "`priority`" in said
        assert "e.g." in said
        assert "pydantic" not in said
        assert "Traceback" not in said
        missing = await client.call_tool("get_task_result", {"task_id": "t_nope"})
        assert missing.is_error
        assert "list_tasks shows" in text(missing)
        assert missing.structured_content["answer"] == text(missing)
        ok = await call(client, "list_tasks")
        assert ok.structured_content["answer"] == text(ok)
