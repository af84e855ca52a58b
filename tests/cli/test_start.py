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
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import typer.main
from typer.testing import CliRunner

from outrider._cli import app
from outrider._cli._fast import OPTIONS, REPEATED, submit_fast
from outrider._client._light import LightClient
from tests.interfaces.conftest import Daemon, launch, stop

if TYPE_CHECKING:
    from collections.abc import Iterator

OUTRIDER = [sys.executable, "-X", "importtime", "-m", "outrider._cli"]
HEAVY = (
    "typer", "click", "rich", "pygments", "pydantic", "pydantic_core", "pydantic_ai", "httpx",
    "anyio", "mcp", "fastapi", "starlette", "uvicorn", "jinja2", "yaml", "psutil", "http.client",
    "email", "outrider._engine", "outrider._service", "outrider._store", "outrider._daemon",
    "outrider._agents", "typing", "argparse",
)  # fmt: skip
"""What none of them needs (typing is cheap, but costs a fast command a twentieth of its start)."""
BUILT = "from outrider._cli import build_app; build_app()(prog_name='outrider', args=['--help'])"


def loaded(stderr: str) -> set[str]:
    """The modules `-X importtime` reports as imported, but for the interpreter's own `site`.

    `site` runs the `.pth` files, and the test run's coverage starts from one in every process.
    """
    names: set[str] = set()
    group: list[str] = []
    for line in stderr.splitlines():
        if not line.startswith("import time:") or line.count("|") != 2:
            continue
        shown = line.rsplit("|", 1)[1]  # " name" at the top level, deeper ones indented
        group.append(shown.strip())
        if not shown.startswith("  "):  # a top-level import ends the group of its own imports
            names.update(group if group[-1] != "site" else ())
            group = []
    return names


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
    assert own.returncode == 0, own.stderr
    shown = subprocess.run([*OUTRIDER, "--help"], env=env, capture_output=True, text=True)
    assert shown.returncode == 0, shown.stderr[-3000:]
    assert shown.stdout == own.stdout
    if columns != "60":  # a narrower terminal gets the application's help, wrapped to it
        modules = loaded(shown.stderr)
        assert not heavy_in(modules)
        assert not {m for m in modules if m.startswith(("outrider._cli._", "outrider._client"))}
        assert not modules & {"pathlib", "shutil", "json", "socket"}


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


def test_every_fast_submit_option_is_the_typer_commands_own() -> None:
    command = typer.main.get_command(app).commands["submit"]  # type: ignore[attr-defined]
    params = {option: p for p in command.params for option in p.opts}
    for option, kind in OPTIONS.items():
        annotation = params[option].type_descriptor.annotation
        if option in REPEATED:
            assert annotation == list[kind], option  # type: ignore[valid-type]
        else:
            assert annotation in ({kind, Path} if option == "--cwd" else {kind}), option
    assert params["--json"].is_flag
    assert (params["--priority"].min, params["--priority"].max) == (0, 10)
    assert (params["--max-attempts"].min, params["--max-attempts"].max) == (1, 100)


@pytest.mark.parametrize(
    "args",
    [
        ["--", "true"],
        ["--label", "a b", "--description=why", "--priority", "8", "--timeout", "30",
         "--ttl=120", "--stall-timeout", "60", "--max-attempts", "2", "--key", "k1", "--key=k2",
         "--group", "g", "--env", "A=1", "--env", "B=", "--env", "C=x=y", "echo", "hi"],
        ["echo", "--label", "between", "two", "--", "sh", "-c", "exit 0"],
        ["--label=", "--priority", "+3", "--", "--not-an-option"],
    ],
)  # fmt: skip
def test_the_fast_submit_stores_what_the_typer_command_stores(
    daemon: Daemon, args: list[str], monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str], tmp_path: Path,
) -> None:  # fmt: skip
    for name, value in {**daemon.env, "OUTRIDER_SESSION": "same", "COLUMNS": "200"}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.chdir(tmp_path)
    assert submit_fast(["--json", *args]) == 0
    fast = json.loads(capsys.readouterr().out)
    typed = CliRunner().invoke(app, ["submit", "--json", *args])
    assert typed.exit_code == 0, typed.output
    slow = json.loads(typed.stdout)
    kept = ("spec", "keys", "priority", "timeout", "ttl", "stall_timeout", "max_attempts",
            "label", "description", "group", "depends_on", "session")  # fmt: skip
    assert {k: fast[k] for k in kept} == {k: slow[k] for k in kept}


@pytest.mark.parametrize(
    "args",
    [
        ["--help"], ["-h"], ["--wait", "true"], ["--agent", "a", "go"], ["--priority", "11", "x"],
        ["--priority", "high", "x"], ["--max-attempts", "0", "x"], ["--label", "-x", "true"],
        ["--label"], ["--json=1", "x"], ["--lab", "x", "y"], ["-", "x"], ["--cwd", "/nowhere", "x"],
        ["--env", "NOEQUALS", "x"], [], ["--"],
    ],
)  # fmt: skip
def test_what_the_fast_submit_does_not_take_plainly_goes_to_typer(args: list[str]) -> None:
    assert submit_fast(args) is None
