"""outrider inside the real opencode (from npm), driven by a scripted model over HTTP.

`outrider install opencode` writes the MCP entry and the plugin into a project; the project
names its model provider (the fake OpenAI-compatible server of `tests/fakellm.py`), as a user
adds theirs. opencode runs as `opencode serve` on 127.0.0.1; the test prompts a session over its
HTTP API. npm is pointed at a closed local port: opencode's own background install of plugin
types fails quietly, and nothing leaves the machine.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import httpx
import psutil
import pytest

from tests.fakellm import Call, FakeLLM, Reply

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from pathlib import Path

pytestmark = [pytest.mark.hosts, pytest.mark.slow, pytest.mark.timeout(300)]

MARK = "⟦outrider seq="


TASK_ID = re.compile(r"\bt_[0-9a-z]{18}\b")


def _said(message: dict[str, Any]) -> str:
    content = message.get("content")
    if isinstance(content, list):
        return "\n".join(str(p.get("text", "")) for p in content)
    return str(content or "")


def respond(call: Call) -> Reply:
    """The scripted model: a keyword in the newest user message says what it does."""
    tools = [t.get("function", {}).get("name") for t in call.body.get("tools", [])]
    messages = [m for m in call.body.get("messages") or [] if m.get("role") != "system"] or [{}]
    if messages[-1].get("role") != "user" or "outrider_delegate_task" not in tools:
        return Reply.say("noted")
    said = call.last_user_text
    if "delegate it" in said:
        return Reply.tool("outrider_delegate_task", description="wake me", command="pwd")
    if "delegate three" in said:
        return Reply.tools(*[
            ("outrider_delegate_task", {"description": f"job {n}", "command": f"echo job-{n}"})
            for n in (1, 2, 3)
        ])  # fmt: skip
    if "delegate long" in said:
        return Reply.tool("outrider_delegate_task", description="long", command="sleep 300")
    if "cancel long" in said:
        earlier = "\n".join(_said(m) for m in messages)
        (task_id,) = {m for m in TASK_ID.findall(earlier) if f"{m} queued: sleep 300" in earlier}
        return Reply.tool("outrider_cancel_task", task_id=task_id)
    if "list them" in said:
        return Reply.tool("outrider_list_tasks", status="all")
    return Reply.say("noted")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


class Opencode:
    """`opencode serve` on 127.0.0.1 in a project: one host window, its sessions over HTTP."""

    def __init__(self, binary: Path, project: Path, env: dict[str, str]) -> None:
        port = _free_port()
        self.url = f"http://127.0.0.1:{port}"
        self.server = subprocess.Popen(
            [str(binary), "serve", "--hostname", "127.0.0.1", "--port", str(port)],
            cwd=project, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )  # fmt: skip
        assert self.server.stdout is not None
        for line in self.server.stdout:
            if "listening" in line.lower():
                break
        threading.Thread(target=self.server.stdout.read, daemon=True).start()  # keep it drained
        self.api = httpx.Client(base_url=self.url, timeout=90)

    def session(self) -> str:
        session: str = self.api.post("/session", json={}).json()["id"]
        return session

    def turn(self, session: str, text: str) -> None:
        """A user turn, answered (the scripted model's tool calls and their results included)."""
        model = {"providerID": "fake", "modelID": "m1"}
        body = {"parts": [{"type": "text", "text": text}], "model": model}
        answer = self.api.post(f"/session/{session}/message", json=body)
        assert answer.status_code == 200, answer.text

    def close(self) -> None:
        self.api.close()
        if self.server.poll() is None:
            self.server.terminate()  # opencode stops its MCP servers' process trees on exit
            self.server.wait(30)
        if self.server.stdout is not None:
            self.server.stdout.close()


@dataclass
class Project:
    """A project with outrider installed for opencode, its model the fake provider."""

    binary: Path
    folder: Path
    data: Path
    env: dict[str, str]
    fake: FakeLLM
    windows: list[Opencode] = field(default_factory=list)

    def window(self) -> Opencode:
        self.windows.append(Opencode(self.binary, self.folder, self.env))
        return self.windows[-1]

    def daemon_pid(self) -> int:
        pid: int = json.loads((self.data / "daemon.json").read_text())["pid"]
        return pid

    def calls(self, first_words: str) -> list[Call]:
        """The model calls of the conversation whose first turn said `first_words`."""
        return [c for c in self.fake.calls if c.body.get("tools") and any(
            first_words in _said(m) for m in c.body.get("messages", [])[:3])]  # fmt: skip


@pytest.fixture
def project(opencode_bin: Path, tmp_path: Path) -> Iterator[Project]:
    fake = FakeLLM()
    fake.responder = lambda call: respond(call)  # the module's, read at each call
    home, data, folder = tmp_path / "home", tmp_path / "outrider", tmp_path / "project"
    for path in (home, folder):
        path.mkdir()
    closed = "http://127.0.0.1:9/"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OUTRIDER_", "OPENCODE"))}
    env.update(
        HOME=str(home), XDG_CONFIG_HOME=str(home / ".config"), PWD=str(folder),
        XDG_DATA_HOME=str(home / ".local/share"), XDG_CACHE_HOME=str(home / ".cache"),
        OUTRIDER_HOME=str(data), OUTRIDER_PORT="0", OPENCODE_DISABLE_MODELS_FETCH="1",
        OPENCODE_DISABLE_AUTOUPDATE="1", OPENCODE_DISABLE_LSP_DOWNLOAD="1",
        npm_config_registry=closed, BUN_CONFIG_REGISTRY=closed, NPM_CONFIG_OFFLINE="true",
    )  # fmt: skip
    outrider = os.path.join(os.path.dirname(sys.executable), "outrider")
    with fake:
        subprocess.run([outrider, "install", "opencode"], cwd=folder, env=env, check=True,
                       capture_output=True)  # fmt: skip
        config = json.loads((folder / "opencode.json").read_text())
        config["provider"] = {"fake": {
            "npm": "@ai-sdk/openai-compatible", "name": "Fake",
            "options": {"baseURL": fake.base_url, "apiKey": "sk-fake"},
            "models": {"m1": {"name": "m1", "tool_call": True}}}}  # fmt: skip
        config.update(model="fake/m1", small_model="fake/m1")
        (folder / "opencode.json").write_text(json.dumps(config))
        made = Project(opencode_bin, folder, data, env, fake)
        try:
            yield made
        finally:
            for window in made.windows:
                window.close()
            record = data / "daemon.json"
            if record.exists():
                pid = json.loads(record.read_text())["pid"]
                if psutil.pid_exists(pid):
                    psutil.Process(pid).terminate()
                    psutil.Process(pid).wait(60)


def _until(check: Callable[[], bool], what: str, timeout: float = 60) -> None:
    """Wait for what the host's own process does (its model calls, the plugin's prompts)."""
    pause = threading.Event()
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, what
        pause.wait(0.2)  # sleep-ok: the host's model calls arrive from its own process


def test_opencode_plugin_wakes_the_idle_session_once_and_the_daemon_outlives_it(
    project: Project,
) -> None:
    window = project.window()
    session = window.session()
    window.turn(session, "delegate it")
    delegated = "\n".join(c.last_user_text for c in project.fake.calls)
    assert "queued" in delegated
    woken: list[Call] = []

    def woke() -> bool:
        woken[:] = [c for c in project.fake.calls if MARK in c.last_user_text]
        return bool(woken)

    _until(woke, "the idle session was not woken")  # the plugin prompts it when the task ends
    window.api.get(f"/session/{session}/message")  # the woken turn has been recorded
    (call,) = woken  # prompted once
    assert re.search(r"t_[0-9a-z]{18} ✓ pwd", call.last_user_text)
    assert str(project.folder) in call.last_user_text  # run in the host's project directory
    pid = project.daemon_pid()
    window.close()  # opencode stops its MCP servers' process trees on exit
    assert psutil.Process(pid).status() != psutil.STATUS_ZOMBIE  # the daemon lives on


def _sleepers(daemon_pid: int) -> list[psutil.Process]:
    return [p for p in psutil.Process(daemon_pid).children(recursive=True)
            if "sleep" in " ".join(p.cmdline())]  # fmt: skip


def test_opencode_delegates_three_cancels_keeps_windows_apart_and_survives_a_daemon_kill(
    project: Project,
) -> None:
    a, b = project.window(), project.window()
    session_a = a.session()
    a.turn(session_a, "window-A: delegate three")
    ids: set[str] = set()

    def all_carried() -> bool:
        calls = project.calls("window-A")
        ids.update(TASK_ID.findall("\n".join(calls[-1].tool_results)))
        latest = "\n".join(_said(m) for m in calls[-1].body["messages"])
        return len(ids) == 3 and all(f"{i} ✓" in latest for i in ids)

    _until(all_carried, "the three notices did not all reach the model")
    latest = project.calls("window-A")[-1].body["messages"]
    for task_id in ids:  # each notice reached the model exactly once
        notice = re.compile(re.escape(task_id) + r" ✓[^⟦\n]*⟦outrider seq=")
        assert len([m for m in latest if notice.search(_said(m))]) == 1, task_id

    b.turn(b.session(), "window-B: list them")  # another window, another session
    (listed,) = [c for c in project.calls("window-B") if c.tool_results]
    assert "list_tasks" not in listed.tool_results[-1]  # a real answer, not an error
    assert not ids & set(TASK_ID.findall(listed.tool_results[-1]))

    a.turn(session_a, "window-A: delegate long")
    _until(lambda: bool(_sleepers(project.daemon_pid())), "the long task did not start")
    a.turn(session_a, "window-A: cancel long")
    assert _sleepers(project.daemon_pid()) == []  # cancelling left no process

    a.turn(session_a, "window-A: delegate long")
    daemon = psutil.Process(project.daemon_pid())
    _until(lambda: bool(_sleepers(daemon.pid)), "the second long task did not start")
    daemon.kill()  # kill -9 of the daemon, its task mid-run
    daemon.wait(30)
    a.turn(session_a, "window-A: list them")
    told = [r for r in project.calls("window-A")[-1].tool_results
            if "No daemon was running, so one was started" in r]  # fmt: skip
    assert len(told) == 2  # at the first call, and after the kill: the model is told
    assert TASK_ID.findall(told[-1])  # the new daemon still has the window's tasks
    pid = project.daemon_pid()
    for window in (a, b):
        window.close()
    assert psutil.Process(pid).is_running()  # the hosts exited; the daemon did not
