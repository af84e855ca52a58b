"""outrider inside the real Claude Code (from npm), driven by a scripted model over HTTP.

Claude Code runs non-interactively (`--input-format stream-json`), its model provider pointed
at the fake server (`tests/fakellm.py`) on 127.0.0.1; `outrider install claude` writes its MCP
entry and hooks into a project, exactly as a user would. What is checked is what the model
receives: the tool answers, the notices, and the turn a finished task wakes it for.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import re
import subprocess
import sys
import threading
import time
from typing import TYPE_CHECKING, Any

import psutil
import pytest

from tests.fakellm import Call, FakeLLM, Reply

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

pytestmark = [pytest.mark.hosts, pytest.mark.slow, pytest.mark.timeout(300)]

TOOL = "mcp__outrider__"
TASK_ID = re.compile(r"\bt_[0-9a-z]{18}\b")
MARK = "⟦outrider seq="


def _text(message: dict[str, Any]) -> str:
    content = message.get("content")
    if isinstance(content, str):
        return content
    parts = []
    for part in content or []:
        inner = part.get("content") if part.get("type") == "tool_result" else part.get("text")
        if isinstance(inner, list):
            inner = "".join(p.get("text", "") for p in inner)
        parts.append(str(inner or ""))
    return "\n".join(parts)


def _is_tool_result(message: dict[str, Any]) -> bool:
    content = message.get("content")
    return isinstance(content, list) and any(p.get("type") == "tool_result" for p in content)


def respond(call: Call) -> Reply:
    """The scripted model: a keyword in the newest user message says what it does."""
    messages = [m for m in call.body.get("messages") or [] if m.get("role") != "system"] or [{}]
    last = messages[-1]  # Claude Code may send a `system` message last
    if _is_tool_result(last) or not any(
        TOOL in str(t.get("name")) for t in call.body.get("tools", [])
    ):
        return Reply.say("noted")
    said = _text(last)
    if "delegate three" in said:
        return Reply.tools(*[
            (f"{TOOL}delegate_task", {"description": f"job {n}", "command": f"echo job-{n}"})
            for n in (1, 2, 3)
        ])  # fmt: skip
    if "delegate long" in said and "cancel" not in said:
        return Reply.tool(f"{TOOL}delegate_task", description="long", command="sleep 300")
    if "cancel long" in said:
        earlier = "\n".join(_text(m) for m in messages)
        (task_id,) = {m for m in TASK_ID.findall(earlier) if f"{m} queued: sleep 300" in earlier}
        return Reply.tool(f"{TOOL}cancel_task", task_id=task_id)
    if "list them" in said:
        return Reply.tool(f"{TOOL}list_tasks", status="all")
    return Reply.say("noted")


class Window:
    """One Claude Code session in stream-json mode: send user turns, read its results."""

    def __init__(self, binary: Path, env: dict[str, str], cwd: Path) -> None:
        self.process = subprocess.Popen(
            [str(binary), "-p", "--input-format", "stream-json", "--output-format", "stream-json",
             "--verbose", "--dangerously-skip-permissions"],
            env=env, cwd=cwd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL, text=True,
        )  # fmt: skip
        self.results: queue.Queue[dict[str, Any]] = queue.Queue()
        self.session_id = ""
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            message = json.loads(line)
            self.session_id = message.get("session_id") or self.session_id
            if message.get("type") == "result":
                self.results.put(message)

    def turn(self, text: str) -> dict[str, Any]:
        """Send a user turn and return the result of the turn it starts."""
        assert self.process.stdin is not None
        content = [{"type": "text", "text": text}]
        line = {"type": "user", "message": {"role": "user", "content": content}}
        self.process.stdin.write(json.dumps(line) + "\n")
        self.process.stdin.flush()
        return self.results.get(timeout=90)

    def close(self) -> None:
        if self.process.stdin is not None:
            with contextlib.suppress(BrokenPipeError):
                self.process.stdin.close()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        if self.process.stdout is not None:
            self.process.stdout.close()


@pytest.fixture
def fake() -> Iterator[FakeLLM]:
    server = FakeLLM()
    server.responder = respond
    with server:
        yield server


@pytest.fixture
def project(tmp_path: Path, fake: FakeLLM) -> Iterator[tuple[Path, dict[str, str]]]:
    home, data, folder = tmp_path / "home", tmp_path / "outrider", tmp_path / "project"
    for path in (home, data, folder):
        path.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OUTRIDER_", "ANTHROPIC_"))}
    env.update(
        HOME=str(home), OUTRIDER_HOME=str(data), OUTRIDER_PORT="0", IS_SANDBOX="1",
        ANTHROPIC_BASE_URL=fake.anthropic_url, ANTHROPIC_API_KEY="sk-fake",
        DISABLE_AUTOUPDATER="1", CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC="1",
        DISABLE_TELEMETRY="1", ENABLE_TOOL_SEARCH="false",
    )  # fmt: skip
    outrider = os.path.join(os.path.dirname(sys.executable), "outrider")
    subprocess.run([outrider, "install", "claude"], cwd=folder, env=env, check=True,
                   capture_output=True)  # fmt: skip
    yield folder, env
    record = data / "daemon.json"
    if record.exists():
        pid = json.loads(record.read_text())["pid"]
        if psutil.pid_exists(pid):
            psutil.Process(pid).terminate()
            psutil.Process(pid).wait(60)


def _conversation(fake: FakeLLM, first_words: str) -> list[dict[str, Any]]:
    """The newest request's messages of the window whose first turn said `first_words`."""
    mine = [
        c
        for c in fake.calls
        if any(first_words in _text(m) for m in c.body.get("messages", [])[:3])
    ]
    return mine[-1].body["messages"]


def test_claude_code_delegates_is_woken_once_and_windows_are_isolated(
    claude_bin: Path, fake: FakeLLM, project: tuple[Path, dict[str, str]]
) -> None:
    folder, env = project
    window_a = Window(claude_bin, env, folder)
    window_b: Window | None = None
    try:
        answer = window_a.turn("window-A: delegate three")
        assert not answer.get("is_error"), answer
        woken = window_a.results.get(timeout=60)  # nobody typed: the finished work woke it
        assert not woken.get("is_error"), woken
        messages = _conversation(fake, "window-A")
        delegated = "\n".join(_text(m) for m in messages if _is_tool_result(m))
        ids = set(TASK_ID.findall(delegated))
        assert len(ids) == 3
        for task_id in ids:  # each notice reached the model exactly once
            notice = re.compile(re.escape(task_id) + r" [^⟦\\\n]*⟦outrider seq=")
            carried = [m for m in messages if notice.search(_text(m))]
            assert len(carried) == 1, (task_id, [notice.findall(_text(m)) for m in carried])

        window_b = Window(claude_bin, env, folder)
        listed = window_b.turn("window-B: list them")
        assert not listed.get("is_error")
        seen_by_b = "\n".join(
            _text(m) for m in _conversation(fake, "window-B") if _is_tool_result(m)
        )
        assert "list_tasks" not in seen_by_b  # a real answer, not an error
        assert not ids & set(TASK_ID.findall(seen_by_b))  # another window's tasks are not its

        window_a.turn("window-A: delegate long")
        cancelled = window_a.turn("window-A: cancel long")
        assert not cancelled.get("is_error")
        daemon_pid = json.loads((folder.parent / "outrider" / "daemon.json").read_text())["pid"]
        sleepers = [p for p in psutil.Process(daemon_pid).children(recursive=True)
                    if "sleep" in " ".join(p.cmdline())]  # fmt: skip
        assert sleepers == []  # cancelling left no process

        window_a.turn("window-A: delegate long")
        psutil.Process(daemon_pid).kill()  # kill -9 of the daemon, its task mid-run
        psutil.Process(daemon_pid).wait(30)
        window_a.turn("window-A: list them")

        def told() -> list[dict[str, Any]]:
            return [m for m in _conversation(fake, "window-A") if _is_tool_result(m)
                    and "No daemon was running, so one was started" in _text(m)]  # fmt: skip

        # The turn's answer may be a woken turn's (the recovered task's notice): wait for the
        # list's own answer to reach the model.
        deadline = time.monotonic() + 60
        while len(told()) < 2 and time.monotonic() < deadline:
            with contextlib.suppress(queue.Empty):  # a turn's result, or a second gone by
                window_a.results.get(timeout=1)
        assert len(told()) == 2  # at the first call, and after the kill: the model is told
        daemon_pid = json.loads((folder.parent / "outrider" / "daemon.json").read_text())["pid"]
    finally:
        window_a.close()
        if window_b is not None:
            window_b.close()
    assert psutil.Process(daemon_pid).is_running()  # the hosts exited; the daemon did not
