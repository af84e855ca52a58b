"""The real `outrider` binary against a real daemon: client commands, start-up, shutdown."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from typing import TYPE_CHECKING

import anyio
import httpx
import psutil
import pytest

from outrider import AsyncClient, DaemonError, TaskState, UserError, shell
from outrider._daemon._config import load_config

from .conftest import launch, stop

if TYPE_CHECKING:
    from pathlib import Path


def cli(
    *args: str, home: Path, input_text: str | None = None, url: str | None = None
) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "OUTRIDER_HOME": str(home), "OUTRIDER_PORT": "0"}
    env.pop("OUTRIDER_URL", None)
    if url is not None:
        env["OUTRIDER_URL"] = url
    return subprocess.run(
        [sys.executable, "-m", "outrider._cli", *args], capture_output=True, text=True,
        env=env, timeout=120, check=False, input=input_text, cwd=home,
    )  # fmt: skip


def test_client_commands_start_the_daemon_and_follow_the_exit_codes(tmp_path: Path) -> None:
    submitted = cli("submit", "echo from-cli", "--label", "hello", home=tmp_path)
    assert submitted.returncode == 0, submitted.stderr
    assert "started the outrider daemon" in submitted.stderr
    task_id = submitted.stdout.strip()
    assert task_id.startswith("t_")
    pid = json.loads((tmp_path / "daemon.json").read_text())["pid"]
    try:
        waited = cli("wait", task_id, "--timeout", "60", home=tmp_path)
        assert waited.returncode == 0, waited.stdout + waited.stderr
        assert "succeeded" in waited.stdout
        assert "started" not in waited.stderr  # the running daemon is reused

        logs = cli("logs", task_id, home=tmp_path)
        assert logs.stdout == "from-cli\n"
        shown = cli("show", task_id, "--json", home=tmp_path)
        assert json.loads(shown.stdout)["state"] == "succeeded"

        failing = cli("submit", "--wait", "--", "sh", "-c", "echo bad >&2; exit 5", home=tmp_path)
        assert failing.returncode == 1
        assert "exit code" in failing.stdout

        long = cli("submit", "echo started; sleep 60", home=tmp_path).stdout.strip()
        listed = cli("ps", "--json", home=tmp_path)
        assert [t["id"] for t in json.loads(listed.stdout)] == [long]
        assert len(json.loads(cli("ps", "--all", "--json", home=tmp_path).stdout)) == 3
        other = cli("ps", "--all", "--json", "--session", "elsewhere", home=tmp_path)
        assert json.loads(other.stdout) == []

        followed = subprocess.Popen(
            [sys.executable, "-m", "outrider._cli", "logs", "-f", long],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            env={**os.environ, "OUTRIDER_HOME": str(tmp_path)},
        )  # fmt: skip
        assert followed.stdout is not None
        assert followed.stdout.readline() == "started\n"  # following live from here
        cancelled = cli("cancel", long, "t_unknown", home=tmp_path)
        assert cancelled.returncode == 1
        assert "cancelled" in cancelled.stdout
        assert "t_unknown" in cancelled.stderr
        _, err = followed.communicate(timeout=60)
        assert followed.returncode == 0
        assert long in err

        status = cli("status", "--json", home=tmp_path)
        assert json.loads(status.stdout)["keys"]["shell"]["running"] == 0
        missing = cli("show", "t_nope", home=tmp_path)
        assert missing.returncode == 1
        assert "No task 't_nope'" in missing.stderr
        bad = cli("submit", "--handler", "h", "--params", "{oops", home=tmp_path)
        assert bad.returncode == 2
        assert "--params" in bad.stderr
    finally:
        stopped = cli("stop", home=tmp_path)
        assert "stopping" in stopped.stderr
        psutil.Process(pid).wait(timeout=60)
    assert not (tmp_path / "daemon.json").exists()


def test_sigterm_stops_gracefully_and_a_restart_recovers(tmp_path: Path) -> None:
    (tmp_path / "outrider.toml").write_text("shutdown_grace = 0.5\n[limits]\nshell = 1\n")
    daemon = launch(tmp_path)
    with daemon.client() as client:
        running = client.submit(shell("sleep 60"))
        queued = client.submit(shell("echo later"))
        client.wait([running.id], timeout=0)
    assert stop(daemon) == 0
    assert not (tmp_path / "daemon.json").exists()
    daemon = launch(tmp_path)
    try:
        with daemon.client() as client:
            stopped = client.get(running.id)
            assert stopped.state in (TaskState.FAILED, TaskState.CANCELLED)
            assert stopped.error is not None
            (later,) = client.wait([queued.id], timeout=60)
            assert later.state is TaskState.SUCCEEDED
    finally:
        stop(daemon)


async def test_open_event_streams_end_as_the_daemon_stops(tmp_path: Path) -> None:
    """A stream still open does not hold up the stop: it ends whole, not cut off after a wait.

    A client following it goes on to the next daemon, and says so when there is none: its
    stream never just ends as if nothing more were to come.
    """
    daemon = launch(tmp_path)
    headers = {"Authorization": f"Bearer {daemon.token}"}
    ended: dict[str, str] = {}
    async with (
        httpx.AsyncClient(base_url=daemon.url, headers=headers, timeout=None) as http,
        httpx.AsyncClient(base_url=daemon.url, timeout=None) as browser,
        AsyncClient(daemon.url, token=daemon.token) as client,
    ):

        async def follow_with_the_client(opened: anyio.Event) -> None:
            try:
                async for _ in client.events():
                    opened.set()
                ended["client"] = "ended"
            except DaemonError as exc:
                ended["client"] = type(exc).__name__

        async def follow(path: str, opened: anyio.Event) -> None:
            try:
                async with (browser if path == live else http).stream("GET", path) as response:
                    assert response.status_code == 200
                    opened.set()
                    async for _ in response.aiter_lines():
                        pass
                ended["dashboard" if path == live else path] = "whole"
            except httpx.HTTPError as exc:
                ended["dashboard" if path == live else path] = repr(exc)

        login = (await http.post("/v1/dashboard/login")).json()["url"]
        assert (await browser.get(login)).status_code == 200
        page = (await browser.get("/ui/s/default")).text
        live = re.findall(r'hx-sse:connect="([^"]+)"', page)[0].replace("&amp;", "&")
        async with anyio.create_task_group() as tg:
            for path in ("/v1/events", "/v1/notices/stream", live):
                opened = anyio.Event()
                tg.start_soon(follow, path, opened)
                await opened.wait()
            await client.submit(shell("true"))  # an event for the client to read first
            opened = anyio.Event()
            tg.start_soon(follow_with_the_client, opened)
            await opened.wait()
            assert await anyio.to_thread.run_sync(stop, daemon) == 0
    assert ended == {"/v1/events": "whole", "/v1/notices/stream": "whole", "dashboard": "whole",
                     "client": "DaemonError"}  # fmt: skip


def test_start_up_refuses_bad_config_and_remote_binds(tmp_path: Path) -> None:
    (tmp_path / "outrider.toml").write_text("max_running = 0\n")
    done = cli("serve", home=tmp_path)
    assert done.returncode == 2
    assert "max_running" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
    (tmp_path / "outrider.toml").write_text("colour = 'blue'\n")
    done = cli("serve", home=tmp_path)
    assert "unknown setting `colour`" in done.stderr
    (tmp_path / "outrider.toml").write_text('[cli_agents.mine]\ncommand = ["mine", "run"]\n')
    done = cli("serve", home=tmp_path)
    assert done.returncode == 2
    assert "`cli_agents.*.command`: it must contain `{prompt}`" in done.stderr
    (tmp_path / "outrider.toml").unlink()
    done = cli("serve", "--host", "0.0.0.0", home=tmp_path)
    assert done.returncode == 2
    assert "--allow-remote" in done.stderr
    env_bad = subprocess.run(
        [sys.executable, "-m", "outrider._cli", "serve"], capture_output=True, text=True,
        env={**os.environ, "OUTRIDER_HOME": str(tmp_path), "OUTRIDER_MAX_QUEUED": "many"},
        timeout=60, check=False,
    )  # fmt: skip
    assert env_bad.returncode == 2
    assert "max_queued" in env_bad.stderr


def test_no_daemon_and_no_autostart_is_a_clear_error(tmp_path: Path) -> None:
    done = cli("status", home=tmp_path, url="http://127.0.0.1:9")
    assert done.returncode == 2
    assert "No outrider daemon at http://127.0.0.1:9" in done.stderr


async def test_calls_that_find_no_daemon_together_start_one(own_home: Path) -> None:
    tmp_path = own_home
    started: list[str] = []
    try:
        async with (
            AsyncClient(session="together", autostart=True, on_autostart=started.append) as client,
            anyio.create_task_group() as tg,
        ):
            for _ in range(4):
                tg.start_soon(client.status)
        assert len(started) == 1
    finally:
        record = tmp_path / "daemon.json"
        if record.exists():
            psutil.Process(json.loads(record.read_text())["pid"]).terminate()


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        (b"\xff = 1\n", "byte 0xff at position 0 is not UTF-8"),
        (b'db = "a\\u0000b"\n', "invalid `db`: the path contains a NUL byte"),
        (b"max_running = true\n", "invalid `max_running`: Input should be a valid integer"),
        (b"shutdown_grace = inf\n", "invalid `shutdown_grace`: Input should be a finite number"),
        (b"[limits]\nshell = true\n", "invalid `limits.shell`"),
        (b'task_env = [""]\n', "invalid `task_env.0`"),
        (b'[cli_agents.x]\ncommand = ["x", "{prompt}"]\npass_env = "K"\n', "cli_agents.x.pass_env"),
        (b'[placement.shell]\ngpu = ""\n', "invalid `placement.shell.gpu`"),
        (b'[placement.shell]\n"a b" = "c"\n', "invalid `placement.shell.a b"),
    ],
)  # fmt: skip
def test_a_bad_config_file_is_one_line_naming_the_setting(
    tmp_path: Path, text: bytes, problem: str
) -> None:
    path = tmp_path / "outrider.toml"
    path.write_bytes(text)
    with pytest.raises(UserError) as refused:
        load_config(path, environ={})
    assert problem in str(refused.value)
    assert "\n" not in str(refused.value)


def test_placement_names_labels_per_key(tmp_path: Path) -> None:
    path = tmp_path / "outrider.toml"
    path.write_text('[placement."agent:trainer"]\ngpu = "a100"\n[placement.dataset]\nzone = "b"\n')
    config = load_config(path, environ={})
    assert config.placement == {"agent:trainer": {"gpu": "a100"}, "dataset": {"zone": "b"}}


def test_numbers_from_the_environment_are_numbers_and_booleans_are_not() -> None:
    config = load_config(None, environ={"OUTRIDER_PORT": "0", "OUTRIDER_RETENTION": "2.5",
                                        "OUTRIDER_LIMITS": '{"shell": 2}'})  # fmt: skip
    assert (config.port, config.retention, config.limits) == (0, 2.5, {"shell": 2})
    with pytest.raises(UserError, match="max_running"):
        load_config(None, environ={"OUTRIDER_MAX_RUNNING": "true"})
