"""The process-finding and stopping primitives, on real processes."""

from __future__ import annotations

import contextlib
import os
import random
import subprocess
import sys
import threading
from typing import TYPE_CHECKING

import anyio
import psutil
import pytest

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


def _exited_leader(code: str) -> int:
    """Run `code` as a registered task leader until it exits; its pid (it stays registered)."""
    leader = spawn(code)
    _procs.register_leader(leader.pid)
    leader.wait()
    return leader.pid


@pytest.mark.parametrize("escape", ["setsid", "env -i setsid", "nohup"])
def test_a_command_that_left_a_process_is_never_taken_for_one_that_left_none(escape: str) -> None:
    """Whatever session, group or environment it has, what a leader left lives in the range."""
    tok = f"{random.randint(300, 399)}.{random.randint(10**8, 10**9)}"
    pid = _exited_leader(f"{escape} sleep {tok} &")
    try:
        assert not _procs.none_left(pid, lived=0.0)
    finally:
        _procs.forget_leader(pid)
        for proc in psutil.process_iter(["cmdline"]):
            if (proc.info["cmdline"] or [])[-1:] == [tok]:
                with contextlib.suppress(psutil.Error):
                    proc.kill()


def test_a_command_that_started_nothing_left_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    pid = _exited_leader("true")
    other = _exited_leader("true")  # another task's leader, spawned since: not this one's
    try:
        monkeypatch.setattr(_procs, "_last_pid", lambda: pid)  # no pid handed out since
        assert _procs.none_left(pid, lived=0.0)
        monkeypatch.setattr(_procs, "_last_pid", lambda: max(pid, other))
        assert _procs.none_left(pid, lived=0.0) is (other < pid or _nothing_between(pid, other))
        # Unprovable: the numbering wrapped around, the range is too wide, or it lived too long.
        monkeypatch.setattr(_procs, "_last_pid", lambda: pid - 1)
        assert not _procs.none_left(pid, lived=0.0)
        monkeypatch.setattr(_procs, "_last_pid", lambda: pid + _procs._PROBE_MAX + 1)
        assert not _procs.none_left(pid, lived=0.0)
        monkeypatch.setattr(_procs, "_last_pid", lambda: pid)
        assert not _procs.none_left(pid, lived=_procs._wrap_time() + 1)
        monkeypatch.setattr(_procs, "_last_pid", lambda: None)
        assert not _procs.none_left(pid, lived=0.0)
    finally:
        _procs.forget_leader(pid)
        _procs.forget_leader(other)


def _nothing_between(low: int, high: int) -> bool:
    return not any(os.path.exists(f"/proc/{p}") for p in range(low + 1, high))


def test_a_leaders_start_time_is_psutils_without_asking_it() -> None:
    proc = spawn("sleep 30")
    try:
        unregistered = _procs.leader_created(proc.pid)
        _procs.register_leader(proc.pid)
        registered = _procs.leader_created(proc.pid)
        expected = psutil.Process(proc.pid).create_time()
        assert unregistered == pytest.approx(expected, abs=0.05)
        assert registered == pytest.approx(expected, abs=0.05)
    finally:
        _procs.forget_leader(proc.pid)
        proc.kill()
        proc.wait()
    assert _procs.leader_created(proc.pid) is None  # gone


def test_a_leader_spawned_within_one_clock_tick_is_registered_without_reading_proc(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The first read of a child's /proc stat waits until its `exec` is complete, and the
    # loop spawns: a spawn that began and returned within one tick of the clock /proc counts
    # start times in has that tick as its leader's start time.
    reads: list[int] = []
    read = _procs._stat
    monkeypatch.setattr(_procs, "_stat", lambda pid: reads.append(pid) or read(pid))
    leaders: dict[int, tuple[subprocess.Popen[bytes], int]] = {}
    try:
        while sum(pid not in reads for pid in leaders) < 10:  # a spawn across a tick's end reads
            assert len(leaders) < 100, "every leader's start time was read from /proc"
            before = _procs.boot_ticks()
            proc = spawn("sleep 30")
            leaders[proc.pid] = proc, _procs.register_leader(proc.pid, spawned_after=before)
        for pid, (_, started) in leaders.items():
            info = read(pid)
            assert info is not None
            assert started == info.started, pid
    finally:
        for pid, (proc, _) in leaders.items():
            _procs.forget_leader(pid)
            proc.kill()
            proc.wait()


_REAPING_ONLY_WHAT_EXITED = """
from outrider.runners import _procs
from outrider.testing import wait_until
import subprocess, anyio

assert _procs.become_subreaper()
looked = []
real = _procs._children
_procs._children = lambda pid: looked.append(pid) or real(pid)
assert _procs.reap_orphans() == [] and looked == []  # nothing exited: no child looked at
orphaned = subprocess.run(["/bin/sh", "-c", "setsid sh -c 'echo $$' &"],
                          capture_output=True, text=True, check=True)
orphan = int(orphaned.stdout)
anyio.run(wait_until, _procs._a_child_exited)
assert _procs.reap_orphans() == [orphan], orphan
assert not _procs._a_child_exited()

# A task's leader that exited first and waits for its runner: no child is looked at, and the
# orphan behind it is reaped once the runner has awaited the leader.
leader = subprocess.Popen(["true"])
_procs.register_leader(leader.pid)
anyio.run(wait_until, _procs._a_child_exited)
orphaned = subprocess.run(["/bin/sh", "-c", "setsid sh -c 'echo $$' &"],
                          capture_output=True, text=True, check=True)
behind = int(orphaned.stdout)


def behind_exited():
    info = _procs._stat(behind)
    return info is not None and info.state == "Z"


anyio.run(wait_until, behind_exited)
looked.clear()
assert _procs.reap_orphans() == [] and looked == []
leader.wait()
_procs.forget_leader(leader.pid)
assert _procs.reap_orphans() == [behind], behind
"""


def test_a_subreaper_reaps_an_exited_orphan_and_looks_only_when_one_exited() -> None:
    done = subprocess.run([sys.executable, "-c", _REAPING_ONLY_WHAT_EXITED],
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    assert done.returncode == 0, done.stderr
