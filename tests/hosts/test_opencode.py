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
from typing import TYPE_CHECKING

import httpx
import psutil
import pytest

from tests.fakellm import Call, FakeLLM, Reply

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

pytestmark = [pytest.mark.hosts, pytest.mark.slow, pytest.mark.timeout(300)]

MARK = "⟦outrider seq="


def respond(call: Call) -> Reply:
    tools = [t.get("function", {}).get("name") for t in call.body.get("tools", [])]
    if "delegate it" in call.last_user_text and "outrider_delegate_task" in tools:
        return Reply.tool("outrider_delegate_task", description="wake me", command="pwd")
    return Reply.say("noted")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@pytest.fixture
def served(
    opencode_bin: Path, tmp_path: Path
) -> Iterator[tuple[subprocess.Popen[str], str, FakeLLM, Path, Path]]:
    fake = FakeLLM()
    fake.responder = lambda call: respond(call)  # the module's, read at each call
    home, data, project = tmp_path / "home", tmp_path / "outrider", tmp_path / "project"
    for path in (home, project):
        path.mkdir()
    closed = "http://127.0.0.1:9/"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OUTRIDER_", "OPENCODE"))}
    env.update(
        HOME=str(home), XDG_CONFIG_HOME=str(home / ".config"), PWD=str(project),
        XDG_DATA_HOME=str(home / ".local/share"), XDG_CACHE_HOME=str(home / ".cache"),
        OUTRIDER_HOME=str(data), OUTRIDER_PORT="0", OPENCODE_DISABLE_MODELS_FETCH="1",
        OPENCODE_DISABLE_AUTOUPDATE="1", OPENCODE_DISABLE_LSP_DOWNLOAD="1",
        npm_config_registry=closed, BUN_CONFIG_REGISTRY=closed, NPM_CONFIG_OFFLINE="true",
    )  # fmt: skip
    outrider = os.path.join(os.path.dirname(sys.executable), "outrider")
    with fake:
        subprocess.run([outrider, "install", "opencode"], cwd=project, env=env, check=True,
                       capture_output=True)  # fmt: skip
        config = json.loads((project / "opencode.json").read_text())
        config["provider"] = {"fake": {
            "npm": "@ai-sdk/openai-compatible", "name": "Fake",
            "options": {"baseURL": fake.base_url, "apiKey": "sk-fake"},
            "models": {"m1": {"name": "m1", "tool_call": True}}}}  # fmt: skip
        config.update(model="fake/m1", small_model="fake/m1")
        (project / "opencode.json").write_text(json.dumps(config))
        port = _free_port()
        server = subprocess.Popen(
            [str(opencode_bin), "serve", "--hostname", "127.0.0.1", "--port", str(port)],
            cwd=project, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )  # fmt: skip
        try:
            assert server.stdout is not None
            for line in server.stdout:
                if "listening" in line.lower():
                    break
            threading.Thread(target=server.stdout.read, daemon=True).start()  # keep it drained
            yield server, f"http://127.0.0.1:{port}", fake, project, data
        finally:
            if server.poll() is None:
                server.terminate()
                server.wait(30)
            if server.stdout is not None:
                server.stdout.close()
            record = data / "daemon.json"
            if record.exists():
                pid = json.loads(record.read_text())["pid"]
                if psutil.pid_exists(pid):
                    psutil.Process(pid).terminate()
                    psutil.Process(pid).wait(60)


def test_opencode_plugin_wakes_the_idle_session_once_and_the_daemon_outlives_it(
    served: tuple[subprocess.Popen[str], str, FakeLLM, Path, Path],
) -> None:
    server, url, fake, project, data = served
    woken: list[Call] = []
    with httpx.Client(base_url=url, timeout=60) as api:
        session = api.post("/session", json={}).json()["id"]
        model = {"providerID": "fake", "modelID": "m1"}
        turn = {"parts": [{"type": "text", "text": "delegate it"}], "model": model}
        answer = api.post(f"/session/{session}/message", json=turn)
        assert answer.status_code == 200, answer.text
        delegated = "\n".join(c.last_user_text for c in fake.calls)
        assert "queued" in delegated
        done = threading.Event()

        def woke() -> bool:
            woken[:] = [c for c in fake.calls if MARK in c.last_user_text]
            return bool(woken)

        deadline = time.monotonic() + 60
        while not woke():  # the plugin prompts the idle session when the task ends
            assert time.monotonic() < deadline, "the idle session was not woken"
            done.wait(0.2)  # sleep-ok: the host's model calls arrive from its own process
        api.get(f"/session/{session}/message")  # the woken turn has been recorded
    (call,) = woken  # prompted once
    assert re.search(r"t_[0-9a-z]{18} ✓ pwd", call.last_user_text)
    assert str(project) in call.last_user_text  # run in the host's project directory
    pid = json.loads((data / "daemon.json").read_text())["pid"]
    server.terminate()  # opencode stops its MCP servers' process trees on exit
    server.wait(30)
    assert psutil.Process(pid).status() != psutil.STATUS_ZOMBIE  # the daemon lives on
