"""Secrets and the local machine: private files, proven daemons, clean and sandboxed tasks."""

from __future__ import annotations

import http.server
import json
import os
import shutil
import stat
import subprocess
import sys
import threading
from typing import TYPE_CHECKING

import anyio
import psutil
import pytest

from outrider import AsyncClient, Client, DaemonError, UserError, shell
from outrider._http._auth import read_token
from outrider.testing import wait_until

from .conftest import launch, stop
from .test_daemon_cli import cli

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

SECRET = "sk-the-daemons-own-key"


def modes(home: Path) -> dict[str, int]:
    """Every path under `home` that outrider made, with its permission bits."""
    return {
        str(p.relative_to(home)): stat.S_IMODE(p.stat().st_mode)
        for p in [home, *home.rglob("*")]
        if p.name not in ("outrider.toml", "alice.token.orig")
    }


@pytest.fixture
def env_secret(monkeypatch: pytest.MonkeyPatch) -> str:
    """An API key in the environment of the daemons this test starts."""
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    return SECRET


def run_task(daemon_url: str, token: str, command: str) -> str:
    with Client(daemon_url, token=token, session="s") as client:
        task = client.submit(shell(command))
        (done,) = client.wait([task.id], timeout=60)
        return client.tail(done.id, lines=100)


@pytest.mark.slow
def test_files_are_private_tasks_are_clean_and_other_principals_are_sandboxed(
    tmp_path: Path, env_secret: str
) -> None:
    if shutil.which("bwrap") is None:
        pytest.skip("bubblewrap is not installed")
    home = tmp_path / "home"
    home.mkdir(mode=0o755)
    (home / "alice.token").write_text("alice-token\n")
    (home / "alice.token").chmod(0o644)  # loose: tightened at start
    (home / "outrider.toml").write_text(f'[principals.alice]\ntoken_file = "{home}/alice.token"\n')
    daemon = launch(home)
    try:
        spy = (
            f'echo "key=[$OPENAI_API_KEY] home=[$OUTRIDER_HOME]"; cat {home}/token || true; '
            f"tr '\\0' '\\n' < /proc/{daemon.pid}/environ | grep OPENAI || echo no-daemon-env"
        )
        local = run_task(daemon.url, daemon.token, spy)
        assert "key=[] home=[]" in local  # a clean environment, even for the daemon's owner
        assert daemon.token in local  # the owner's tasks may read the owner's files
        other = run_task(daemon.url, "alice-token", spy)
        assert "key=[] home=[]" in other
        assert daemon.token not in other
        assert SECRET not in other
        assert "no-daemon-env" in other
        found = modes(home)
        assert {p: m for p, m in found.items() if (home / p).is_dir() and m != 0o700} == {}
        assert {p: m for p, m in found.items() if (home / p).is_file() and m != 0o600} == {}
        assert {"outrider.db", "outrider.db-wal", "token", "daemon.json"} <= set(found)
    finally:
        assert stop(daemon) == 0


@pytest.fixture
def read_only(tmp_path: Path) -> Iterator[Path]:
    """A directory nobody may write to (a read-only tmpfs, as root can write anywhere else)."""
    path = tmp_path / "ro"
    path.mkdir()
    (path / "token").write_text("loose-token\n")
    (path / "token").chmod(0o644)
    if os.geteuid() != 0:
        path.chmod(0o500)
        yield path
        path.chmod(0o700)
        return
    done = subprocess.run(["mount", "--bind", "-o", "ro", str(path), str(path)],
                          capture_output=True, check=False)  # fmt: skip
    if done.returncode:
        pytest.skip(f"cannot make a read-only mount: {done.stderr.decode().strip()}")
    subprocess.run(["mount", "-o", "remount,ro,bind", str(path)], check=False)
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


@pytest.mark.slow
def test_a_read_only_data_dir_is_one_clear_line_everywhere(read_only: Path) -> None:
    for args, problem in (
        (("serve",), "Cannot"),
        (("submit", "--", "true"), "Cannot start the daemon"),
        (("run", "x.toml", "--db", str(read_only / "o.db")), "Cannot open the store"),
    ):
        if args[0] == "run":
            (read_only.parent / "x.toml").write_text('[[task]]\nlabel = "a"\ncommand = "true"\n')
            done = subprocess.run(
                [sys.executable, "-m", "outrider._cli", *args], capture_output=True, text=True,
                cwd=read_only.parent, timeout=120, check=False,
            )  # fmt: skip
        else:
            done = cli(*args, home=read_only)
        assert done.returncode == 2, (args, done.stderr)
        assert problem in done.stderr, (args, done.stderr)
        assert "Traceback" not in done.stderr
    with pytest.raises(UserError, match="cannot be made private"):
        read_token(read_only / "token")  # 0644 on a disk where it cannot become 0600


class _Stranger(http.server.BaseHTTPRequestHandler):
    """Whatever listens at a dead daemon's address; it records what it is sent."""

    seen: list[dict[str, str]] = []  # noqa: RUF012 - shared by the handler instances

    def do_GET(self) -> None:
        type(self).seen.append(dict(self.headers))
        body = json.dumps({"status": "ok", "tasks": []}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        return None


def test_a_client_sends_no_token_to_a_stranger_at_the_recorded_address(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Stranger)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        (tmp_path / "token").write_text("the-owners-token\n")
        (tmp_path / "daemon.json").write_text(json.dumps(
            {"url": f"http://127.0.0.1:{server.server_port}", "pid": os.getpid()}  # pid reused
        ))  # fmt: skip
        monkeypatch.setenv("OUTRIDER_HOME", str(tmp_path))
        monkeypatch.delenv("OUTRIDER_URL", raising=False)
        monkeypatch.delenv("OUTRIDER_TOKEN", raising=False)
        with Client(session="s") as client, pytest.raises(DaemonError, match="did not prove"):
            client.list()
        assert _Stranger.seen  # it was asked to prove itself...
        assert not any("the-owners-token" in str(h) for h in _Stranger.seen)  # ...and got nothing
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.slow
def test_clients_starting_the_daemon_together_all_use_one(tmp_path: Path) -> None:
    env = {**os.environ, "OUTRIDER_HOME": str(tmp_path), "OUTRIDER_PORT": "0"}
    env.pop("OUTRIDER_URL", None)
    procs = [
        subprocess.Popen([sys.executable, "-m", "outrider._cli", "status", "--json"], env=env,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(6)
    ]  # fmt: skip
    results = [p.communicate(timeout=120) for p in procs]
    pid = json.loads((tmp_path / "daemon.json").read_text())["pid"]
    try:
        assert [p.returncode for p in procs] == [0] * 6, [err for _, err in results]
        assert sum("started the outrider daemon" in err for _, err in results) == 1
        daemons = [p for p in psutil.process_iter(["cmdline", "environ"])
                   if "serve" in (p.info["cmdline"] or [])
                   and (p.info["environ"] or {}).get("OUTRIDER_HOME") == str(tmp_path)]  # fmt: skip
        assert [d.pid for d in daemons] == [pid]
    finally:
        psutil.Process(pid).terminate()
        psutil.Process(pid).wait(timeout=60)


@pytest.mark.slow
async def test_a_bridge_starts_a_daemon_again_after_each_crash(own_home: Path) -> None:
    tmp_path = own_home
    started: list[str] = []
    async with AsyncClient(session="s", autostart=True, on_autostart=started.append) as client:
        pids = []
        for _ in range(3):
            await client.status()
            pid = json.loads((tmp_path / "daemon.json").read_text())["pid"]
            pids.append(pid)
            psutil.Process(pid).kill()
            await wait_until(lambda p=pid: not psutil.pid_exists(p), timeout=10)  # type: ignore[misc]
        assert len(set(pids)) == 3
        assert len(started) == 3
        await client.status()  # and a fourth
        last = psutil.Process(json.loads((tmp_path / "daemon.json").read_text())["pid"])
    last.terminate()
    await anyio.to_thread.run_sync(lambda: last.wait(timeout=60))
