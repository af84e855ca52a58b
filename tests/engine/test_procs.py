"""The process-finding and stopping primitives, on real processes."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from typing import TYPE_CHECKING

import anyio
import psutil

from outrider.runners import _procs
from outrider.testing import wait_until

if TYPE_CHECKING:
    from pathlib import Path


def spawn(code: str, **env: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(["/bin/sh", "-c", code], env={**os.environ, **env},
                            start_new_session=True)  # fmt: skip


def alive(proc: subprocess.Popen[bytes]) -> bool:
    return proc.poll() is None


def test_the_guardian_stops_its_owners_processes_when_the_owner_dies() -> None:
    owned = spawn("trap '' TERM; sleep 60 & wait", OUTRIDER_OWNER="owner-1")
    other = spawn("sleep 60", OUTRIDER_OWNER="owner-2")
    read_fd, write_fd = os.pipe()
    guardian = threading.Thread(target=_procs.guard_main, args=([str(read_fd), "owner-1", "0.2"],))
    guardian.start()
    try:
        anyio.run(lambda: wait_until(lambda: len(_procs.find_by_owner("owner-1")) == 2))
        os.close(write_fd)  # the owner dies
        guardian.join(timeout=20)
        assert not guardian.is_alive()
        assert owned.wait(timeout=5) is not None
        assert _procs.find_by_owner("owner-1") == {}
        assert alive(other)
    finally:
        os.close(read_fd)
        for proc in (owned, other):
            proc.kill()
            proc.wait()


def _ready(env: dict[str, str]) -> subprocess.Popen[str]:
    """A process with `env` that is running its own code (its environment is in place)."""
    proc = subprocess.Popen(
        [sys.executable, "-c", "import sys; print('ready', flush=True); sys.stdin.read()"],
        env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert proc.stdout is not None
    assert proc.stdout.readline() == "ready\n"
    return proc


def test_a_variable_is_read_wherever_it_is_in_the_environment() -> None:
    first = _ready({"OUTRIDER_TASK": "t.1", "A": "b"})
    last = _ready({"A": "b", "OUTRIDER_TASK": "t.2"})
    try:
        assert _procs._environ_value(first.pid, "OUTRIDER_TASK") == "t.1"
        assert _procs._environ_value(last.pid, "OUTRIDER_TASK") == "t.2"
        assert _procs._environ_value(last.pid, "MISSING") is None
        assert _procs._environ_value(2**22 + 7, "A") is None  # no such process
    finally:
        for proc in (first, last):
            proc.kill()
            proc.communicate()


def test_a_stop_kills_after_the_grace_and_what_forked_meanwhile() -> None:
    stubborn = spawn("trap '' TERM; sleep 60", OUTRIDER_TASK="t_s.1")
    started = _procs.register_leader(stubborn.pid)
    try:
        anyio.run(lambda: wait_until(
            lambda: len(_procs.find_task_processes("t_s.1", stubborn.pid, started)) == 2
        ))  # fmt: skip
        found = _procs.find_task_processes("t_s.1", stubborn.pid, started)
        late = spawn("sleep 61", OUTRIDER_TASK="t_s.1")  # forked after the search

        def again() -> dict[int, int]:
            return _procs.find_task_processes("t_s.1", None, started)

        count = _procs.stop_processes([(found, 0.1)], find_again=again)
        assert count >= 3
        assert stubborn.wait(timeout=5) is not None
        assert late.wait(timeout=5) is not None
        assert again() == {}
    finally:
        _procs.forget_leader(stubborn.pid)


def test_without_a_subreaper_there_are_no_orphans_to_stop_or_reap() -> None:
    assert not _procs.is_subreaper()
    assert _procs.stop_orphans(0.1) == 0
    assert _procs.reap_orphans() == []
    assert psutil.Process().pid == os.getpid()


_REAPING_WHILE_GIT_RUNS = """
import sys, threading
from pathlib import Path
from outrider.runners import _procs
from outrider._worktrees._git import toplevel

assert _procs.become_subreaper()
stop = threading.Event()

def reap() -> None:
    while not stop.is_set():
        _procs.reap_orphans()

reaper = threading.Thread(target=reap)
reaper.start()
wrong = sum(toplevel(Path(sys.argv[1])) is not None for _ in range(60))
stop.set()
reaper.join()
print(wrong)
"""


def test_a_subreaper_never_reaps_a_command_outrider_awaits(tmp_path: Path) -> None:
    """A git command's status is its caller's: `outrider run` reaping orphans must not take it.

    (Taken, its exit 128 "not a git repository" read as 0, and a folder outside git as a checkout.)
    """
    done = subprocess.run(
        [sys.executable, "-c", _REAPING_WHILE_GIT_RUNS, str(tmp_path)],
        capture_output=True, text=True, timeout=120, check=True,
    )  # fmt: skip
    assert done.stdout.strip() == "0", done.stderr


async def test_within_the_pidfd_watcher_processes_are_awaited_without_a_thread_each() -> None:
    """The daemon's watcher (Python 3.11): children end through pidfds; then the old one is back."""
    import asyncio

    from outrider._asynclib import pidfd_child_watcher

    before = asyncio.get_child_watcher()
    with pidfd_child_watcher():
        assert isinstance(asyncio.get_child_watcher(), asyncio.PidfdChildWatcher)
        procs = [await anyio.open_process(["/bin/sh", "-c", "sleep 1; exit 3"]) for _ in range(8)]
        waiters = [t for t in threading.enumerate() if "waitpid" in t.name]
        assert waiters == []  # no waiter thread per process (3.11's default starts one each)
        assert [await p.wait() for p in procs] == [3] * 8
    assert asyncio.get_child_watcher() is before
    done = await anyio.run_process(["/bin/sh", "-c", "exit 4"], check=False)  # still works
    assert done.returncode == 4
