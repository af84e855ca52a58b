"""`outrider serve --cluster`, `outrider worker --join` and `outrider nodes`, as a user runs them;
a `kill -9` of the daemon leaves no process of its tasks on any node."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from typing import TYPE_CHECKING

import pytest

import outrider
from outrider.testing import task_processes
from tests.cluster.conftest import free_port
from tests.interfaces.conftest import Daemon

if TYPE_CHECKING:
    from pathlib import Path

pytestmark = [pytest.mark.cluster, pytest.mark.slow, pytest.mark.timeout(300)]
OUTRIDER = [sys.executable, "-m", "outrider._cli"]


class Lines:
    """A process's stderr, read as it comes."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        self.lines: list[str] = []
        self.changed = threading.Condition()
        assert process.stderr is not None
        threading.Thread(target=self._read, args=(process.stderr,), daemon=True).start()

    def _read(self, stream: object) -> None:
        for line in stream:  # type: ignore[attr-defined]
            with self.changed:
                self.lines.append(line)
                self.changed.notify_all()

    def wait_for(self, pattern: str, timeout: float = 120) -> re.Match[str]:
        with self.changed:
            deadline = time.monotonic() + timeout
            while True:
                for line in self.lines:
                    if found := re.search(pattern, line):
                        return found
                left = deadline - time.monotonic()
                assert left > 0, f"no {pattern!r} in {self.lines}"
                self.changed.wait(left)


def _until(check: object, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not check():  # type: ignore[operator]
        assert time.monotonic() < deadline
        time.sleep(0.1)  # sleep-ok: the processes are the cluster's, in other processes


def test_a_cluster_from_the_command_line_and_a_daemon_killed_mid_task(tmp_path: Path) -> None:
    home, elsewhere = tmp_path / "home", tmp_path / "elsewhere"
    env = {**os.environ, "OUTRIDER_HOME": str(home), "OUTRIDER_PORT": "0",
           "PYTHONPATH": os.pathsep.join(sys.path)}  # fmt: skip
    env.pop("OUTRIDER_URL", None)
    serve = subprocess.Popen(
        [*OUTRIDER, "serve", "--cluster", "--cluster-port", str(free_port()), "--slots", "1"],
        env=env, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True,
        start_new_session=True,
    )  # fmt: skip
    said = Lines(serve)
    worker: subprocess.Popen[str] | None = None
    try:
        join = said.wait_for(r"outrider worker --join (\S+) --token (\S+)")
        said.wait_for(r"outrider daemon on")
        worker = subprocess.Popen(
            [*OUTRIDER, "worker", "--join", join[1], "--slots", "1", "--labels", "zone=c"],
            # Its Ray gives up on the dead head after 5 s, not 60: stopping the node is then quick.
            env={**env, "OUTRIDER_HOME": str(elsewhere), "OUTRIDER_CLUSTER_TOKEN": join[2],
                 "RAY_gcs_rpc_server_reconnect_timeout_s": "5"},
            stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True, start_new_session=True,
        )  # fmt: skip
        Lines(worker).wait_for("outrider node joined")
        listed = subprocess.run([*OUTRIDER, "nodes", "--address", join[1], "--json"], env=env,
                                capture_output=True, text=True, check=False)  # fmt: skip
        assert listed.returncode == 0, listed.stderr
        nodes = json.loads(listed.stdout)
        assert [(n["slots"], n["alive"]) for n in nodes] == [(1, True), (1, True)]
        assert {"zone": "c"} in [n["labels"] for n in nodes]

        record = json.loads((home / "daemon.json").read_text())
        daemon = Daemon(url=record["url"], token=(home / "token").read_text().strip(),
                        home=home, pid=serve.pid)  # fmt: skip
        with daemon.client("cli") as client:
            tasks = {client.submit(outrider.shell("sleep 300 & sleep 300 & wait")).id
                     for _ in range(2)}  # fmt: skip
        _until(lambda: len(task_processes(tasks)) >= 6)  # both run, one on each node
        with daemon.client("cli") as client:
            assert len({client.get(t).node for t in tasks} - {None}) == 2
        listed = subprocess.run([*OUTRIDER, "nodes", "--json"], env=env, capture_output=True,
                                text=True, check=False)  # fmt: skip  # the daemon's view
        assert listed.returncode == 0, listed.stderr
        assert sorted(n["running"] for n in json.loads(listed.stdout)) == [1, 1]
        status = subprocess.run([*OUTRIDER, "status"], env=env, capture_output=True, text=True,
                                check=False)  # fmt: skip
        assert "NODE" in status.stdout, status.stdout
        assert "zone=c" in status.stdout
        os.killpg(serve.pid, signal.SIGKILL)  # kill -9 of the daemon
        serve.wait()
        _until(lambda: not task_processes(tasks), timeout=90)  # no node keeps its tasks' processes
    finally:
        for process in (serve, worker):
            if process is not None:
                if process.poll() is None:
                    process.send_signal(signal.SIGTERM)
                    process.wait(60)
                assert process.stderr is not None
                process.stderr.close()
