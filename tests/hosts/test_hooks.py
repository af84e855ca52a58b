"""The host hooks and the stdio bridge as processes, against a real daemon.

A notice reaches each window's model once: a hook prints it, then acknowledges it as that
window's reader. The rewake hook exits 2 only with notices, and the newer of two waiters of a
window wins, so a host that starts one per turn is never woken twice or in a loop.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import re
import select
import signal
import socket
import subprocess
import sys
import threading
import time
from typing import TYPE_CHECKING, Any

import psutil
import pytest

from outrider._hosts._hooks import bridge_record
from tests.interfaces.conftest import Daemon, launch, stop

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

OUTRIDER = [sys.executable, "-m", "outrider._cli"]


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[Daemon]:
    running = launch(tmp_path)
    yield running
    stop(running)


def hook(daemon: Daemon, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run([*OUTRIDER, "hook", *args], input=stdin, env=daemon.env,
                          capture_output=True, text=True, timeout=60, check=False)  # fmt: skip


def finished(daemon: Daemon, session: str, command: str) -> str:
    with daemon.client(session) as client:
        task = client.submit(outrider_shell(command))
        client.wait([task.id])
        return task.id


def outrider_shell(command: str) -> Any:
    from outrider import shell

    return shell(command)


def test_prompt_hook_hands_pending_notices_once(daemon: Daemon) -> None:
    task_id = finished(daemon, "claude-abc", "exit 3")
    first = hook(daemon, "claude-prompt", stdin=json.dumps({"session_id": "abc"}))
    assert first.returncode == 0, first.stderr
    assert task_id in first.stdout
    assert "⟦outrider seq=" in first.stdout
    again = hook(daemon, "claude-prompt", stdin=json.dumps({"session_id": "abc"}))
    assert (again.returncode, again.stdout) == (0, "")
    with daemon.client("claude-abc") as client:
        assert client.notices() == []  # acknowledged: never again after a restart


def test_session_start_hook_redelivers_what_no_model_received(daemon: Daemon) -> None:
    task_id = finished(daemon, "claude-s1", "true")
    started = hook(daemon, "claude-start", stdin=json.dumps({"session_id": "s1"}))
    assert task_id in started.stdout


def test_rewake_hook_wakes_once_and_the_newest_waiter_wins(daemon: Daemon) -> None:
    stdin = json.dumps({"session_id": "w1"}).encode()
    waiters = []
    for _ in range(2):
        process = subprocess.Popen(
            [*OUTRIDER, "hook", "claude-rewake"], env=daemon.env,
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )  # fmt: skip
        process.stdin.write(stdin)  # type: ignore[union-attr]
        process.stdin.close()  # type: ignore[union-attr]
        waiters.append(process)
    try:
        # Whichever registered first is superseded by the other and wakes nobody.
        watched = [psutil.Process(p.pid) for p in waiters]
        deadline = time.monotonic() + 30
        done: list[psutil.Process] = []
        while not done:  # the first to end (wait_procs alone waits for all of them)
            assert time.monotonic() < deadline, "neither waiter gave way to the other"
            done = psutil.wait_procs(watched, timeout=0.2)[0]
        assert len(done) == 1
        (older,) = [p for p in waiters if p.pid == done[0].pid]
        assert older.wait() == 0  # type: ignore[union-attr]
        assert older.stderr.read() == b""  # type: ignore[union-attr]
        (newer,) = [p for p in waiters if p is not older]
        task_id = finished(daemon, "claude-w1", "exit 5")
        assert newer.wait(timeout=30) == 2
        woke = newer.stderr.read().decode()  # type: ignore[union-attr]
        assert task_id in woke
        assert "⟦outrider seq=" in woke
    finally:
        for process in waiters:
            if process.poll() is None:
                process.kill()
            process.wait()
            for pipe in (process.stdout, process.stderr):
                pipe.close()  # type: ignore[union-attr]
    with daemon.client("claude-w1") as client:
        assert client.notices() == []


def test_stop_hook_finds_the_bridge_of_its_host_and_blocks_with_notices(
    daemon: Daemon, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OUTRIDER_HOME", str(daemon.home))
    record = bridge_record(os.getpid())  # this test process plays the host
    record.parent.mkdir(parents=True, exist_ok=True)
    record.write_text(json.dumps({"session": "mcp-b1", "reader": "mcp-b1"}))
    try:
        assert hook(daemon, "stop", stdin="{}").stdout == ""
        task_id = finished(daemon, "mcp-b1", "true")
        blocked = hook(daemon, "stop", stdin="{}")
        decision = json.loads(blocked.stdout)
        assert decision["decision"] == "block"
        assert task_id in decision["reason"]
        assert hook(daemon, "stop", stdin="{}").stdout == ""
    finally:
        record.unlink()


def test_next_and_ack_for_the_plugin(daemon: Daemon) -> None:
    task_id = finished(daemon, "opencode-p1", "true")
    found = json.loads(hook(daemon, "next", "--session", "opencode-p1", "--timeout", "0").stdout)
    assert found["up_to"] > 0
    assert task_id in found["text"]
    again = json.loads(hook(daemon, "next", "--session", "opencode-p1", "--timeout", "0").stdout)
    assert again["up_to"] == found["up_to"]  # reading acknowledges nothing
    acked = hook(daemon, "ack", "--session", "opencode-p1", "--up-to", str(found["up_to"]))
    assert acked.returncode == 0
    after = json.loads(hook(daemon, "next", "--session", "opencode-p1", "--timeout", "0").stdout)
    assert after["up_to"] == 0
    assert hook(daemon, "ack", "--session", "opencode-p1").returncode == 2


def test_no_bridge_no_delivery(daemon: Daemon, tmp_path: Path) -> None:
    quiet = hook(daemon, "stop", stdin="{}")
    assert (quiet.returncode, quiet.stdout) == (0, "")
    gone = Daemon(url="http://127.0.0.1:9", token="x", home=tmp_path / "none", pid=0)
    for event in ("claude-prompt", "claude-start"):  # no daemon: the turn goes on, quietly
        done = hook(gone, event, stdin=json.dumps({"session_id": "q"}))
        assert (done.returncode, done.stdout, done.stderr) == (0, "", "")
    assert hook(gone, "next", "--session", "q", "--timeout", "0").returncode == 1


class Bridge:
    """`outrider mcp` as a host starts it: its own process group, JSON-RPC lines on stdio."""

    def __init__(self, env: dict[str, str], cwd: Path) -> None:
        self.process = subprocess.Popen([*OUTRIDER, "mcp"], stdin=subprocess.PIPE,
                                        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                        env=env, cwd=cwd, start_new_session=True)  # fmt: skip
        self._ids = 0

    def ask(self, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        self._ids += 1
        message = {"jsonrpc": "2.0", "id": self._ids, "method": method, "params": params or {}}
        assert self.process.stdin is not None
        assert self.process.stdout is not None
        self.process.stdin.write(json.dumps(message).encode() + b"\n")
        self.process.stdin.flush()
        while True:
            answer: dict[str, Any] = json.loads(self.process.stdout.readline())
            if answer.get("id") == self._ids:
                return answer

    def call(self, tool: str, **arguments: Any) -> str:
        result = self.ask("tools/call", {"name": tool, "arguments": arguments})["result"]
        text: str = result["content"][0]["text"]
        assert result["structuredContent"]["answer"] == text  # every host shows the same
        return text

    def kill_group(self) -> None:
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()
        for pipe in (self.process.stdin, self.process.stdout):
            if pipe is not None:
                pipe.close()


def test_bridge_answers_without_a_daemon_and_the_daemon_outlives_its_host(
    tmp_path: Path,
) -> None:
    env = {**os.environ, "OUTRIDER_HOME": str(tmp_path / "home"), "OUTRIDER_PORT": "0"}
    env.pop("OUTRIDER_URL", None)
    project = tmp_path / "project"
    (project / ".claude" / "agents").mkdir(parents=True)
    (project / ".claude" / "agents" / "helper.md").write_text(
        "---\nname: helper\ndescription: helps\n---\nHelp.\n"
    )
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    pids: list[int] = []
    starter = Bridge(env, elsewhere)  # a first host, in another directory, starts the daemon
    hello = {"name": "test", "version": "1"}
    init = starter.ask(
        "initialize", {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": hello}
    )
    assert init["result"]["serverInfo"]["name"] == "outrider"
    names = {t["name"] for t in starter.ask("tools/list")["result"]["tools"]}
    assert {"delegate_task", "wait_tasks", "get_task_result"} <= names
    assert "No daemon was running, so one was started" in starter.call("list_tasks")
    starter.kill_group()  # that host ends its MCP server's whole group: the daemon lives on
    bridge = Bridge(env, project)
    try:
        bridge.ask("initialize", {"protocolVersion": "2025-06-18", "capabilities": {}})
        text = bridge.call("delegate_task", description="where", command="pwd")
        task_id = re.findall(r"\bt_[0-9a-z]{18}\b", text)[0]
        done = bridge.call("get_task_result", task_id=task_id, wait=30)
        assert str(project) in done  # run in this host's directory, not the daemon's
        pids.append(json.loads((tmp_path / "home" / "daemon.json").read_text())["pid"])
        unknown = bridge.ask("tools/call", {"name": "delegate_task", "arguments": {
            "description": "x", "agent": "nope", "prompt": "go"}})["result"]  # fmt: skip
        assert unknown["isError"]
        assert "helper" in unknown["content"][0]["text"]  # the agents of the host's project
        psutil.Process(pids[0]).kill()  # kill -9 of the daemon the bridge started
        psutil.Process(pids[0]).wait(30)
        again = bridge.call("list_tasks")
        assert "No daemon was running, so one was started" in again
        pids.append(json.loads((tmp_path / "home" / "daemon.json").read_text())["pid"])
        assert pids[1] != pids[0]
        bridge.kill_group()  # a host ending its MCP server's whole group
        assert psutil.Process(pids[1]).status() != psutil.STATUS_ZOMBIE
        assert psutil.pid_exists(pids[1])
    finally:
        if bridge.process.poll() is None:
            bridge.kill_group()
        for pid in pids[1:]:
            if psutil.pid_exists(pid):
                psutil.Process(pid).terminate()
                psutil.Process(pid).wait(60)


def test_doctor_sees_the_daemon_and_the_installed_hosts(daemon: Daemon, tmp_path: Path) -> None:
    project = tmp_path / "project"
    project.mkdir()
    env = {**daemon.env, "HOME": str(tmp_path / "home")}
    run = functools.partial(subprocess.run, cwd=project, env=env, capture_output=True, text=True,
                            timeout=60, check=False)  # fmt: skip
    before = run([*OUTRIDER, "doctor"]).stdout
    assert "daemon: running" in before
    assert "fix: outrider install claude" in before
    run([*OUTRIDER, "install", "claude"])
    after = run([*OUTRIDER, "doctor"]).stdout
    assert "hosts: outrider is installed in claude (project)" in after


_HOST = """
import subprocess, sys
subprocess.run(["/bin/sh", "-c", sys.argv[1]], check=False)
"""
"""A host that runs a hook the way Claude Code does (through a shell), then waits."""


def test_a_rewake_hook_ends_with_its_host(tmp_path: Path) -> None:
    """A rewake hook waits up to a day; the host it would wake going away ends it at once."""
    env = {**os.environ, "OUTRIDER_HOME": str(tmp_path / "home"), "OUTRIDER_PORT": "9"}
    env.pop("OUTRIDER_URL", None)  # no daemon either: the hook keeps polling for one
    pid_file = tmp_path / "hook.pid"
    command = (f"{' '.join(OUTRIDER)} hook claude-rewake --session s & echo $! > {pid_file}; "
               "wait")  # fmt: skip
    host = subprocess.Popen([sys.executable, "-c", _HOST, command], env=env,
                            start_new_session=True)  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while not pid_file.exists() or not pid_file.read_text().strip():
            assert time.monotonic() < deadline
            time.sleep(0.05)  # sleep-ok: another process writes the file
        waiter = psutil.Process(int(pid_file.read_text()))
        psutil.wait_procs([waiter], timeout=1)  # it started, and waits on
        assert waiter.is_running()
        host.kill()  # the host goes; its shell and the hook are left behind
        host.wait()
        _, alive = psutil.wait_procs([waiter], timeout=30)
        assert not alive
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(host.pid, signal.SIGKILL)


def _drop_calls(peer: socket.socket) -> None:
    """Answer each request on `peer` with `{}`, but drop the connection at a relayed call."""
    # The bridge may go first (a reset): this thread outlives the test, and must end quietly.
    with contextlib.suppress(OSError), peer, peer.makefile("rb") as reader:
        while (line := reader.readline()) and not line.startswith(b"POST /mcp"):
            if line == b"\r\n":
                peer.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}")


def test_a_daemon_that_drops_a_call_unanswered_gets_the_host_an_answer(tmp_path: Path) -> None:
    listener = socket.create_server(("127.0.0.1", 0))

    def serve() -> None:
        with contextlib.suppress(OSError):  # the listener closed: the test is over
            while True:
                peer, _ = listener.accept()
                threading.Thread(target=_drop_calls, args=(peer,), daemon=True).start()

    threading.Thread(target=serve, daemon=True).start()
    url = f"http://127.0.0.1:{listener.getsockname()[1]}"
    env = {**os.environ, "OUTRIDER_HOME": str(tmp_path), "OUTRIDER_URL": url}
    env.pop("OUTRIDER_TOKEN", None)
    bridge = Bridge(env, tmp_path)
    try:
        bridge.ask("initialize", {"protocolVersion": "2025-06-18", "capabilities": {}})
        assert bridge.process.stdout is not None
        assert bridge.process.stdin is not None
        call = {"jsonrpc": "2.0", "id": 9, "method": "tools/call",
                "params": {"name": "list_tasks", "arguments": {}}}  # fmt: skip
        bridge.process.stdin.write(json.dumps(call).encode() + b"\n")
        bridge.process.stdin.flush()
        assert select.select([bridge.process.stdout], [], [], 20)[0], "no answer"
        answer = json.loads(bridge.process.stdout.readline())
        assert answer["result"]["isError"]
        assert "The daemon stopped during this call" in answer["result"]["content"][0]["text"]
    finally:
        bridge.kill_group()
        listener.close()
