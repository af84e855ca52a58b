"""Containment: whatever a task started is gone when it ends, stopped or after a crash."""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import anyio
import psutil
import pytest

import outrider
from outrider import TaskState
from outrider._store._sqlite import SQLiteBackend, UpdateTask
from outrider.runners import _procs, _tracked
from outrider.testing import wait_until

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Iterator

S = "s"
SCRIPT = Path(__file__).with_name("leftover_script.py")
REAPER = Path(__file__).with_name("reaper.py")
SRC = str(Path(__file__).parents[2] / "src")


@pytest.fixture
def tok() -> Iterator[str]:
    """A unique sleep duration, to recognise a test's processes; they are killed after it."""
    value = f"{random.randint(300, 399)}.{random.randint(10**8, 10**9)}"
    yield value
    for pid in survivors(value):
        with contextlib.suppress(psutil.Error):
            psutil.Process(pid).kill()


def survivors(tok: str) -> list[int]:
    """Live (non-zombie) `sleep TOK` processes."""
    found = []
    for proc in psutil.process_iter(["cmdline", "status"]):
        cmdline = proc.info["cmdline"] or []
        if proc.info["status"] != psutil.STATUS_ZOMBIE and cmdline[-1:] == [tok]:
            found.append(proc.pid)
    return [p for p in found if psutil.Process(p).name() == "sleep"] if found else []


@contextlib.asynccontextmanager
async def crash_after_start(
    db: Path, items: list[dict[str, object]]
) -> AsyncIterator[list[tuple[str, str]]]:
    """Run the tasks in a child process, SIGKILL it once each printed a line; (id, line) each.

    The child runs under `reaper.py`, which reaps what it leaves as init would, until the end.
    """
    env = {**os.environ, "PYTHONPATH": SRC}
    argv = [sys.executable, str(REAPER), sys.executable, str(SCRIPT), str(db), json.dumps(items)]
    proc = subprocess.Popen(  # noqa: ASYNC220 - the engine under test is killed with SIGKILL
        argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env
    )
    assert proc.stdin is not None
    assert proc.stdout is not None
    try:
        _, child = (await anyio.to_thread.run_sync(proc.stdout.readline)).split()
        try:
            lines = []
            for _ in items:
                line = await anyio.to_thread.run_sync(proc.stdout.readline)
                _, task_id, first = line.rstrip("\n").split(" ", 2)
                lines.append((task_id, first))
        finally:
            os.kill(int(child), signal.SIGKILL)
            await wait_until(lambda: not psutil.pid_exists(int(child)), timeout=10)
        yield lines
    finally:
        proc.stdin.close()
        await anyio.to_thread.run_sync(proc.wait)
        proc.stdout.close()


def gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


@pytest.mark.slow
async def test_a_retry_starts_only_once_what_the_crashed_attempt_left_is_gone(
    tmp_path: Path, tok: str
) -> None:
    """The leader died with the engine (SIGPIPE); its background `sleep` must not outlive it."""
    db = tmp_path / "crash.db"
    command = f"sleep {tok} & echo $!; while :; do echo tick; sleep .1; done"
    async with crash_after_start(db, [{"command": command, "max_attempts": 2}]) as started:
        [(task_id, bg)] = started
        leader = os.getsid(int(bg))
        await wait_until(lambda: not psutil.pid_exists(leader), timeout=10)  # SIGPIPE, reaped
        assert not gone(int(bg))
        async with outrider.Orchestrator(db, outrider.Settings(shutdown_grace=0.1)) as orch:
            with anyio.fail_after(20):
                async for event in orch.session(S).events():
                    if event.type == "task.started" and event.data.attempt == 2:
                        break
            assert gone(int(bg)), "the retry started beside the first attempt's process"
            await orch.session(S).cancel(task_id)
    assert survivors(tok) == []


async def test_a_leader_without_its_marker_is_found_by_its_recorded_pid_and_start(
    tmp_path: Path, tok: str
) -> None:
    db = tmp_path / "crash.db"
    command = f"echo go; exec env -i sleep {tok}"  # the leader itself drops the marker
    async with crash_after_start(db, [{"command": command}]) as started:
        [(task_id, _)] = started
        await wait_until(lambda: len(survivors(tok)) == 1, timeout=10)
        async with outrider.Orchestrator(db, outrider.Settings(shutdown_grace=0.1)) as orch:
            (task,) = await orch.session(S).wait([task_id], timeout=20)
    assert task.state is TaskState.FAILED
    assert survivors(tok) == []


@pytest.mark.slow
async def test_an_attempt_whose_pid_was_never_recorded_is_found_by_its_marker(
    tmp_path: Path, tok: str
) -> None:
    db = tmp_path / "crash.db"
    async with crash_after_start(db, [{"command": f"sleep {tok} & echo $!; wait"}]) as started:
        [(task_id, _)] = started
        backend = SQLiteBackend(str(db))  # the crash came before the pid was stored
        assert backend.apply([[UpdateTask(task_id, {"pid": None, "pid_created": None})]]) == [[]]
        backend.close()
        async with outrider.Orchestrator(db, outrider.Settings(shutdown_grace=0.1)) as orch:
            (task,) = await orch.session(S).wait([task_id], timeout=20)
    assert task.state is TaskState.FAILED
    assert task.error is not None
    assert task.error.type == "interrupted"
    assert survivors(tok) == []


@pytest.mark.slow
async def test_stubborn_leftovers_are_stopped_together_while_the_store_is_open(
    tmp_path: Path, tok: str
) -> None:
    db = tmp_path / "crash.db"
    stubborn = {"command": f"trap '' TERM; echo up; sleep {tok}", "grace_period": 1.0}
    async with crash_after_start(db, [stubborn] * 6) as started:
        assert len(survivors(tok)) == 6
        async with outrider.Orchestrator(db, outrider.Settings(shutdown_grace=0.1)) as orch:
            assert orch.status().recovering == 6  # open at once; leftovers stopped meanwhile
            assert orch.status().states[TaskState.RUNNING] == 6
            tasks = await orch.session(S).wait([i for i, _ in started], timeout=20)
            assert orch.status().recovering == 0
    assert {t.state for t in tasks} == {TaskState.FAILED}
    assert survivors(tok) == []


@pytest.mark.parametrize("stop", ["cancel", "timeout"])
async def test_a_setsid_escapee_is_stopped_with_its_task(
    tmp_path: Path, tok: str, stop: str
) -> None:
    command = f"( setsid sleep {tok} & ); echo started; sleep 300"
    timeout = 1.0 if stop == "timeout" else None
    async with outrider.Orchestrator(
        tmp_path / "db", outrider.Settings(shutdown_grace=0.1)
    ) as orch:
        shell = outrider.shell(command, grace_period=0.5)
        task = await orch.session(S).submit(shell, timeout=timeout)
        await wait_until(lambda: len(survivors(tok)) == 1, timeout=10)
        if stop == "cancel":
            done = await orch.session(S).cancel(task.id)
        else:
            (done,) = await orch.session(S).wait([task.id], timeout=20)
        assert done.state is (TaskState.CANCELLED if stop == "cancel" else TaskState.TIMED_OUT)
        assert survivors(tok) == []


@pytest.mark.parametrize("escape", ["setsid", "nohup"])
async def test_what_a_command_leaves_when_it_exits_at_once_is_stopped(
    tmp_path: Path, tok: str, escape: str
) -> None:
    """The quick check that a finished command left nothing (no search) is never fooled.

    (One that clears its environment too is lost once orphaned: see README's *Containment*.)
    """
    async with outrider.Orchestrator(
        tmp_path / "db", outrider.Settings(shutdown_grace=0.1)
    ) as orch:
        task = await orch.session(S).submit(outrider.shell(f"{escape} sleep {tok} &"))
        (done,) = await orch.session(S).wait([task.id], timeout=20)
    assert done.state is TaskState.SUCCEEDED
    assert survivors(tok) == []


async def test_a_stop_that_lands_during_the_spawn_leaves_nothing(tmp_path: Path, tok: str) -> None:
    command = f"sleep {tok} & sleep {tok} & wait"
    rng = random.Random(7)
    async with outrider.Orchestrator(
        tmp_path / "db", outrider.Settings(limits={"shell": 60}, max_running=60, shutdown_grace=0.1)
    ) as orch:
        me = orch.session(S)
        spec = outrider.shell(command)
        ids = [(await me.submit(spec, timeout=rng.uniform(0.001, 0.03))).id for _ in range(60)]
        tasks = await me.wait(ids, timeout=30)
    assert all(t.state is TaskState.TIMED_OUT for t in tasks)
    assert survivors(tok) == []


@pytest.mark.parametrize("pidfds", [True, False], ids=["pidfd", "anyio-process"])
async def test_a_task_ends_when_its_main_process_exits(
    tmp_path: Path, pidfds: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A background writer holding the output pipe is stopped; what it wrote is kept.

    Also without pidfds (a kernel before 5.3), where the leader is an anyio process.
    """
    monkeypatch.setattr(_tracked, "pidfds_work", lambda: pidfds)
    # 12 MB first, so the 10 MiB cap is passed however slowly `yes` runs on a busy machine.
    command = "yes flood | head -c 12000000; yes flood & sleep 0.3; exit 0"
    async with outrider.Orchestrator(
        tmp_path / "db", outrider.Settings(shutdown_grace=0.1)
    ) as orch:
        task = await orch.session(S).submit(outrider.shell(command, grace_period=0.5))
        (done,) = await orch.session(S).wait([task.id], timeout=20)
        assert done.state is TaskState.SUCCEEDED
        assert done.exit_code == 0
        assert "flood\nflood\n" in await orch.session(S).tail(task.id, lines=3)
        assert "bytes cut" in await orch.session(S).tail(task.id, lines=10**6)
    assert not [p for p in psutil.Process().children(recursive=True) if p.name() == "yes"]


def test_the_environment_of_a_task_is_clean_and_marked() -> None:
    source = {"PATH": "/bin", "HOME": "/h", "LC_ALL": "C", "OPENAI_API_KEY": "k",
              "OUTRIDER_HOME": "/secret", "AIDER_X": "1", "CUSTOM": "c"}  # fmt: skip
    env = _procs.task_environment("t_1.2", {"CUSTOM": "mine", "OUTRIDER_TASK": "forged"},
                                  passthrough=["AIDER_*"], source=source)  # fmt: skip
    assert env == {"PATH": "/bin", "HOME": "/h", "LC_ALL": "C", "AIDER_X": "1", "CUSTOM": "mine",
                   "OUTRIDER_TASK": "t_1.2", "OUTRIDER_OWNER": _procs.OWNER}  # fmt: skip
    assert _procs.task_environment("m", {}, source={})["PATH"].startswith("/usr/local/bin")


@pytest.mark.parametrize("subreaper", [True, False])
async def test_a_tasks_processes_are_found_by_tree_session_and_marker(
    subreaper: bool, monkeypatch: pytest.MonkeyPatch, tok: str
) -> None:
    """The walk of this process's tree (a subreaper's) and the scan of every process agree.

    (This test process is no real subreaper, so the walk cannot see the orphaned `setsid` one.)
    """
    monkeypatch.setattr(_procs._registry, "subreaper", subreaper)
    env = _procs.task_environment("t_find.1", {})
    leader = await anyio.open_process(
        ["/bin/sh", "-c", f"sleep {tok} & sh -c 'sleep {tok} & wait' & ( setsid sleep {tok} & )"
         "; wait"], env=env, start_new_session=True,
    )  # fmt: skip
    started = _procs.register_leader(leader.pid)
    try:
        await wait_until(lambda: len(survivors(tok)) == 3, timeout=10)
        found = _procs.find_task_processes("t_find.1", leader.pid, started)
        expected = {p for p in survivors(tok) if not subreaper or os.getsid(p) != p}
        assert len(expected) == (2 if subreaper else 3)
        assert expected < set(found)
        assert leader.pid in found
        assert _procs.find_task_processes("t_other.1", None, 0) == {}
    finally:
        os.killpg(leader.pid, signal.SIGKILL)
        await leader.wait()
        await leader.aclose()
        _procs.forget_leader(leader.pid)
