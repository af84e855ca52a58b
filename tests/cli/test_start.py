"""What the commands started most often load: `--help`, a plain `submit`, the stdio bridge.

Their start-up times are measured in `bench/serve.py` (figures in docs/PERFORMANCE.md); here,
without timing, each runs as a process under `python -X importtime` and must not import the
heavy parts it does not need, and must print the same as before.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import TYPE_CHECKING

import pytest

from outrider._client._light import LightClient
from tests.interfaces.conftest import Daemon, launch, stop

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

OUTRIDER = [sys.executable, "-X", "importtime", "-m", "outrider._cli"]
HEAVY = (
    "typer", "click", "rich", "pygments", "pydantic", "pydantic_core", "pydantic_ai", "httpx",
    "anyio", "mcp", "fastapi", "starlette", "uvicorn", "jinja2", "yaml", "psutil", "http.client",
    "email", "outrider._engine", "outrider._service", "outrider._store", "outrider._daemon",
    "outrider._agents",
)  # fmt: skip
BUILT = "from outrider._cli import build_app; build_app()(prog_name='outrider', args=['--help'])"


def loaded(stderr: str) -> set[str]:
    """The modules `-X importtime` reports as imported."""
    return {
        line.rsplit("|", 1)[1].strip()
        for line in stderr.splitlines()
        if line.startswith("import time:") and "|" in line
    }


def heavy_in(modules: set[str]) -> set[str]:
    return {m for m in modules for h in HEAVY if m == h or m.startswith(h + ".")}


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    running = launch(tmp_path_factory.mktemp("home"))
    yield running
    stop(running)


@pytest.mark.parametrize("columns", ["80", "132", "60"])
def test_help_is_the_applications_own_and_builds_no_application(columns: str) -> None:
    env = {**os.environ, "COLUMNS": columns}
    own = subprocess.run([sys.executable, "-c", BUILT], env=env, capture_output=True, text=True)
    shown = subprocess.run([*OUTRIDER, "--help"], env=env, capture_output=True, text=True)
    assert (shown.returncode, shown.stdout) == (0, own.stdout)
    if columns != "60":  # a narrower terminal gets the application's help, wrapped to it
        modules = loaded(shown.stderr)
        assert not heavy_in(modules)
        assert not {m for m in modules if m.startswith(("outrider._cli._", "outrider._client"))}


def test_plain_submit_loads_neither_typer_nor_models_nor_http_client(daemon: Daemon) -> None:
    done = subprocess.run([*OUTRIDER, "submit", "--label", "quick", "--", "true"],
                          env=daemon.env, capture_output=True, text=True)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("t_")
    assert not heavy_in(loaded(done.stderr))
    with daemon.client() as client:
        assert client.get(done.stdout.strip()).label == "quick"


def test_a_submit_without_a_daemon_says_so_without_loading_typer() -> None:
    env = {**os.environ, "OUTRIDER_URL": "http://127.0.0.1:9"}
    done = subprocess.run([*OUTRIDER, "submit", "--", "true"], env=env, capture_output=True,
                          text=True)  # fmt: skip
    assert done.returncode == 2
    assert "error: No outrider daemon at http://127.0.0.1:9" in done.stderr
    assert not heavy_in(loaded(done.stderr))


def test_the_bridge_relays_without_the_stack(daemon: Daemon, tmp_path: Path) -> None:
    lines = [
        {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
            "protocolVersion": "2025-06-18", "capabilities": {}}},
        {"jsonrpc": "2.0", "method": "notifications/initialized"},
        {"jsonrpc": "2.0", "id": 2, "method": "tools/list"},
        {"jsonrpc": "2.0", "id": 3, "method": "tools/call", "params": {
            "name": "list_tasks", "arguments": {}}},
    ]  # fmt: skip
    bridge = subprocess.Popen([*OUTRIDER, "mcp"], env=daemon.env, cwd=tmp_path,
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)  # fmt: skip
    assert bridge.stdin is not None
    assert bridge.stdout is not None
    bridge.stdin.write("".join(json.dumps(line) + "\n" for line in lines))
    bridge.stdin.flush()
    answers = {}
    while len(answers) < 3:
        answer = json.loads(bridge.stdout.readline())
        answers[answer["id"]] = answer
    _, stderr = bridge.communicate(timeout=60)  # closes stdin: the bridge ends
    assert "result" in answers[3], answers[3]
    assert not answers[3]["result"].get("isError"), answers[3]
    assert not heavy_in(loaded(stderr))


def test_the_light_client_uses_an_open_connection_again(
    daemon: Daemon, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OUTRIDER_HOME", str(daemon.home))
    monkeypatch.setenv("OUTRIDER_URL", daemon.url)
    client = LightClient("reuse")
    replies = []
    for _ in range(3):
        reply = client.send("GET", "/v1/tasks")
        assert reply.json() is not None
        reply.close()
        replies.append(reply)
        if len(replies) == 2:
            reply.connection.close()  # as a daemon that closed it: not used again
    assert replies[1].connection is replies[0].connection
    assert replies[2].connection is not replies[1].connection
    client.close()
