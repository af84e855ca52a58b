from __future__ import annotations

import contextlib
import json
import os
import signal
from dataclasses import dataclass
from typing import TYPE_CHECKING

import httpx
import psutil
import pytest

from outrider import Client
from outrider._client import start_daemon

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

CONFIG = """
max_queued = 40
shutdown_grace = 1
mcp_wait = 5
[limits]
hold = 1
[principals.alice]
token_file = "{alice}"
[cli_agents.sh]
command = ["/bin/sh", "-c", "{{prompt}}"]
"""


@dataclass
class Daemon:
    url: str
    token: str
    home: Path
    pid: int

    def client(self, session: str = "default", token: str | None = None) -> Client:
        return Client(self.url, token=token or self.token, session=session)

    def http(self, session: str | None = None, token: str | None = None) -> httpx.Client:
        headers = {"Authorization": f"Bearer {token or self.token}"}
        if session is not None:
            headers["X-Outrider-Session"] = session
        return httpx.Client(base_url=self.url, headers=headers, timeout=30)

    @property
    def env(self) -> dict[str, str]:
        return {**os.environ, "OUTRIDER_HOME": str(self.home), "OUTRIDER_URL": self.url}


def launch(home: Path, port: int = 0) -> Daemon:
    """Start a real `outrider serve` on `port` (0: a free one) of 127.0.0.1, as the CLI does."""
    saved = {k: os.environ.get(k) for k in ("OUTRIDER_HOME", "OUTRIDER_PORT", "OUTRIDER_URL")}
    os.environ.update(OUTRIDER_HOME=str(home), OUTRIDER_PORT=str(port))
    os.environ.pop("OUTRIDER_URL", None)
    try:
        url = start_daemon()
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    pid = json.loads((home / "daemon.json").read_text())["pid"]
    return Daemon(url=url, token=(home / "token").read_text().strip(), home=home, pid=pid)


def stop(daemon: Daemon, *, sig: int = signal.SIGTERM) -> int:
    """Stop the daemon with `sig` and wait for its exit; returns its exit code."""
    try:
        process = psutil.Process(daemon.pid)
    except psutil.NoSuchProcess:
        return 0
    process.send_signal(sig)
    return process.wait(timeout=60) or 0


def crash(daemon: Daemon, *, guardian_too: bool) -> None:
    """`kill -9` the daemon (and its guardian, so that only the next start can recover)."""
    process = psutil.Process(daemon.pid)
    if guardian_too:
        for child in process.children():
            with contextlib.suppress(psutil.Error):
                if "guard_main" in " ".join(child.cmdline()):
                    child.kill()
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)


@pytest.fixture
def own_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A data dir of this test's own, where clients start daemons on free ports."""
    monkeypatch.setenv("OUTRIDER_HOME", str(tmp_path))
    monkeypatch.setenv("OUTRIDER_PORT", "0")
    monkeypatch.delenv("OUTRIDER_URL", raising=False)
    monkeypatch.delenv("OUTRIDER_TOKEN", raising=False)
    return tmp_path


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    home = tmp_path_factory.mktemp("home")
    alice = home / "alice.token"
    alice.write_text("alice-secret-token\n")
    (home / "outrider.toml").write_text(CONFIG.format(alice=alice))
    running = launch(home)
    yield running
    assert stop(running) == 0
