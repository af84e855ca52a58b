"""The sandbox of the built-in agent's commands: real bubblewrap, real processes."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import threading
from pathlib import Path
from typing import TYPE_CHECKING

import psutil
import pytest

from outrider._agents._sandbox import bwrap_argv, probe

if TYPE_CHECKING:
    from collections.abc import Iterator

STATUS = probe()
if not STATUS.available:  # CI installs bubblewrap (.ci/run): there it must work
    if os.environ.get("CI"):
        pytest.fail(f"bubblewrap must work in CI: {STATUS.reason}", pytrace=False)
    pytest.skip(f"no sandbox here: {STATUS.reason}", allow_module_level=True)
BWRAP = STATUS.bwrap or "bwrap"


@pytest.fixture
def layout(tmp_path: Path) -> dict[str, Path]:
    ws = tmp_path / "ws"
    (ws / "secrets").mkdir(parents=True)
    (ws / "secrets" / "key").write_text("denied-inside")
    (ws / "notes.txt").write_text("visible")
    data = tmp_path / "data"
    data.mkdir()
    (data / "token").write_text("the-daemon-token")
    (ws / "token-link").symlink_to(data / "token")
    (ws / "secret-link").symlink_to(ws / "secrets" / "key")
    (tmp_path / "outside.txt").write_text("next-to-the-workspace")
    return {"ws": ws, "data": data, "root": tmp_path}


def _run(command: str, ws: Path, hidden: list[Path], *, network: bool = False) -> str:
    argv = bwrap_argv(BWRAP, command, workspace=ws, hidden=hidden, network=network)
    done = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)
    return done.stdout + done.stderr


def test_reads_of_hidden_paths_fail_also_through_links(layout: dict[str, Path]) -> None:
    ws, data = layout["ws"], layout["data"]
    hidden = [data, ws / "secrets"]
    out = _run(
        "cat notes.txt; cat secrets/key; cat token-link; cat secret-link; "
        f"cat {data}/token; cat ../outside.txt; ls {data}",
        ws, hidden,
    )  # fmt: skip
    assert "visible" in out
    for secret in ("denied-inside", "the-daemon-token", "next-to-the-workspace"):
        assert secret not in out


def test_writes_outside_the_workspace_fail_and_inside_succeed(
    layout: dict[str, Path], tmp_path: Path
) -> None:
    ws = layout["ws"]
    home_file = tmp_path / "escape.txt"
    out = _run(
        f"echo in > made.txt; echo out > {home_file}; echo sys > /usr/escape 2>&1; "
        "echo tmp > /tmp/private && cat /tmp/private",
        ws, [],
    )  # fmt: skip
    assert (ws / "made.txt").read_text() == "in\n"
    assert not home_file.exists()
    assert not os.path.exists("/usr/escape")
    assert "Read-only file system" in out
    assert "tmp" in out  # a private /tmp works inside


@pytest.fixture
def server() -> Iterator[int]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.bind(("127.0.0.1", 0))
    sock.listen(8)
    accepted = threading.Event()

    def serve() -> None:
        try:
            conn, _ = sock.accept()
        except OSError:
            return
        accepted.set()
        conn.sendall(b"hello from the host\n")
        conn.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield sock.getsockname()[1]
    sock.close()
    thread.join(5)


def test_no_network_unless_the_policy_allows_it(layout: dict[str, Path], server: int) -> None:
    probe_line = (
        "python3 -c \"import socket; s = socket.create_connection(('127.0.0.1', "
        f'{server}), timeout=5); print(s.recv(100).decode())"'
    )
    cut = _run(probe_line, layout["ws"], [])
    assert "hello from the host" not in cut
    assert "Connection refused" in cut or "unreachable" in cut
    allowed = _run(probe_line, layout["ws"], [], network=True)
    assert "hello from the host" in allowed


def test_the_whole_process_tree_dies_with_the_sandbox(layout: dict[str, Path]) -> None:
    argv = bwrap_argv(
        BWRAP, "setsid sleep 300 & sleep 300", workspace=layout["ws"], hidden=[], network=False
    )
    process = subprocess.Popen(argv, start_new_session=True)
    try:
        outer = psutil.Process(process.pid)
        deadline_children: list[psutil.Process] = []
        for _ in range(200):  # sleep-ok: waiting for bwrap to start its children (another process)
            deadline_children = outer.children(recursive=True)
            if len([p for p in deadline_children if p.name() == "sleep"]) == 2:
                break
            threading.Event().wait(0.02)  # sleep-ok: bounded poll of another process
        sleeps = [p for p in deadline_children if p.name() == "sleep"]
        assert len(sleeps) == 2
        process.kill()  # the shell runner's SIGKILL of the group leader
        process.wait(10)
        _, alive = psutil.wait_procs(sleeps, timeout=10)
        assert alive == []  # even the one that left the session
    finally:
        process.kill()
        process.wait(10)


def test_probe_names_the_fix_when_bubblewrap_is_missing() -> None:
    status = probe("/nonexistent/bwrap")
    assert not status.available
    assert status.reason == "bubblewrap (`bwrap`) is not installed"
    assert status.fix is not None
    assert "apt-get install bubblewrap" in status.fix


def test_credentials_stay_masked_when_the_workspace_is_the_home_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = tmp_path / "home"
    (home / ".ssh").mkdir(parents=True)
    (home / ".ssh" / "id_ed25519").write_text("private-key")
    monkeypatch.setenv("HOME", str(home))
    assert "private-key" not in _run("cat .ssh/id_ed25519", home.resolve(), [])
    assert _run("ls -A .ssh; echo done", home.resolve(), []) == "done\n"  # an empty folder


def test_probe_reports_a_bubblewrap_that_cannot_create_namespaces(tmp_path: Path) -> None:
    fake = tmp_path / "bwrap"
    fake.write_text("#!/bin/sh\necho 'bwrap: No permissions to create new namespace' >&2\nexit 1\n")
    fake.chmod(0o755)
    status = probe(str(fake))
    assert not status.available
    assert status.reason == (
        "bubblewrap cannot create its namespaces: bwrap: No permissions to create new namespace"
    )
    assert status.fix is not None
    assert "kernel.unprivileged_userns_clone=1" in status.fix


def test_a_data_dir_in_tmp_and_its_files_masked_together_still_run(
    layout: dict[str, Path],
) -> None:
    # The daemon hides its data dir and the token file in it; both under /tmp (tests, a
    # throwaway OUTRIDER_HOME), the token's mask once failed inside the masked, read-only dir.
    ws, data = layout["ws"], layout["data"]
    out = _run(f"cat notes.txt; cat {data}/token; echo ran", ws, [data, data / "token"])
    assert "visible" in out
    assert "ran" in out
    assert "the-daemon-token" not in out
    inside = _run("cat secrets/key; echo ran", ws, [ws / "secrets", ws / "secrets" / "key"])
    assert "ran" in inside
    assert "denied-inside" not in inside


@pytest.fixture
def outside_tmp() -> Iterator[Path]:
    """A folder outside /tmp (the sandbox empties /tmp, which would hide what is tested)."""
    folder = Path(tempfile.mkdtemp(prefix=".outrider-test-", dir=Path.home()))
    try:
        yield folder
    finally:
        shutil.rmtree(folder)


def test_a_workspace_inside_a_hidden_folder_sees_only_itself(outside_tmp: Path) -> None:
    # A worktree lives in outrider's data dir, which commands must not see (its store).
    data = outside_tmp / "data"
    ws = data / "worktrees" / "repo-1" / "t_1"
    ws.mkdir(parents=True)
    (ws / "mine.txt").write_text("the-worktree")
    (data / "outrider.db").write_text("the-store")
    (data / "worktrees" / "repo-1" / "t_2").mkdir()
    (data / "worktrees" / "repo-1" / "t_2" / "theirs.txt").write_text("another-worktree")
    out = _run(
        f"cat mine.txt; cat {data}/outrider.db; ls {data}/worktrees/repo-1; echo w > new.txt",
        ws.resolve(), [data],
    )  # fmt: skip
    assert "the-worktree" in out
    assert "the-store" not in out
    assert "t_2" not in out
    assert (ws / "new.txt").read_text() == "w\n"
