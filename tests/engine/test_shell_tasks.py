from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio
import psutil
import pytest

import outrider
from outrider import TaskState
from outrider.runners._shell import _spawn_failure
from outrider.testing import wait_until

if TYPE_CHECKING:
    from collections.abc import Callable

S = "alice"
PY = sys.executable


def py(code: str) -> list[str]:
    return [PY, "-c", code]


async def first_output(orch: outrider.Orchestrator, task_id: str) -> str:
    """The task's first line of output, from its durable `task.output` events."""
    text = ""
    with anyio.fail_after(10):
        async for event in orch.session(S).events():
            if event.task_id == task_id and event.type == "task.output":
                text += str(event.data.text)
                if "\n" in text:
                    return text.split("\n")[0]
    raise AssertionError("unreachable")


def gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


async def test_shell_success_and_tail(orch: outrider.Orchestrator) -> None:
    task = await orch.session(S).submit(outrider.shell("echo hello; echo world >&2"))
    (done,) = await orch.session(S).wait([task.id], timeout=10)
    assert done.state is TaskState.SUCCEEDED
    assert done.exit_code == 0
    assert done.result == "hello\nworld\n"
    assert await orch.session(S).tail(task.id, lines=1) == "world\n"


async def test_shell_failure_keeps_exit_code_and_last_lines(orch: outrider.Orchestrator) -> None:
    task = await orch.session(S).submit(outrider.shell(py("print('oops'); raise SystemExit(3)")))
    (done,) = await orch.session(S).wait([task.id], timeout=10)
    assert done.state is TaskState.FAILED
    assert done.exit_code == 3
    assert done.error is not None
    assert done.error.message == "The command exited with code 3."
    assert done.error.detail == "oops\n"


async def test_missing_executable_and_cwd(orch: outrider.Orchestrator, tmp_path: Path) -> None:
    missing = await orch.session(S).submit(outrider.shell(["/no/such/tool", "x"]))
    bad_cwd = await orch.session(S).submit(outrider.shell("true", cwd=str(tmp_path / "nope")))
    done = await orch.session(S).wait([missing.id, bad_cwd.id], timeout=10)
    assert [t.state for t in done] == [TaskState.FAILED, TaskState.FAILED]
    assert done[0].error is not None
    assert "'/no/such/tool' was not found" in done[0].error.message
    assert done[1].error is not None
    assert "does not exist" in done[1].error.message


async def test_a_working_directory_is_checked_by_the_spawn_itself(
    orch: outrider.Orchestrator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A look at the folder in a worker thread before each spawn cost a task 0.2 ms of CPU;
    # the spawn's own change of directory says what is wrong with it.
    looked: list[object] = []
    hop = anyio.to_thread.run_sync

    async def spy(fn: Callable[..., object], *args: object, **kwargs: Any) -> object:
        if isinstance(getattr(fn, "__self__", None), Path):
            looked.append(fn)
        return await hop(fn, *args, **kwargs)

    monkeypatch.setattr(anyio.to_thread, "run_sync", spy)
    a_file = tmp_path / "a-file"
    a_file.write_text("")
    session = orch.session(S)
    specs = [outrider.shell("true", cwd=str(tmp_path)), outrider.shell("true", cwd=str(a_file)),
             outrider.shell(["/no/such/tool"], cwd=str(tmp_path / "no"))]  # fmt: skip
    tasks = [await session.submit(spec) for spec in specs]
    ran, not_a_folder, missing = await session.wait([t.id for t in tasks], timeout=10)
    assert ran.state is TaskState.SUCCEEDED
    for failed, where in ((not_a_folder, a_file), (missing, tmp_path / "no")):
        assert failed.error is not None
        assert failed.error.message == (
            f"The working directory {str(where)!r} does not exist or is not a folder; create it "
            "or fix `cwd`."
        )
    assert looked == []


def test_a_failed_spawn_names_the_folder_or_the_executable() -> None:
    def said(exc: OSError, cwd: str | None = "/w") -> str:
        return str(_spawn_failure(exc, "tool", cwd))

    assert said(PermissionError(13, "Permission denied", "/w")) == (
        "The working directory '/w' cannot be entered; fix its permissions."
    )
    assert "'/w' does not exist or is not a folder" in said(NotADirectoryError(20, "", "/w"))
    assert "'tool' was not found" in said(FileNotFoundError(2, "", "tool"))
    assert "'tool' is not executable" in said(PermissionError(13, "", "tool"), cwd=None)
    other = OSError(7, "Argument list too long", "tool")
    assert _spawn_failure(other, "tool", "/w") is other


async def test_env_and_cwd(orch: outrider.Orchestrator, tmp_path: Path) -> None:
    task = await orch.session(S).submit(
        outrider.shell('echo "$GREETING from $(pwd)"', cwd=str(tmp_path), env={"GREETING": "hi"})
    )
    (done,) = await orch.session(S).wait([task.id], timeout=10)
    assert done.result == f"hi from {tmp_path}\n"


STUBBORN = (
    "import os, signal, subprocess, sys, time\n"
    "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
    "child = subprocess.Popen([sys.executable, '-c', "
    "'import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
    "time.sleep(600)'])\n"  # sleep-ok: the blocking work of a child process
    "print('ready', os.getpid(), child.pid, flush=True)\n"
    "time.sleep(600)\n"  # sleep-ok: the blocking work of a child process
)


async def test_cancel_kills_a_stubborn_process_tree(orch: outrider.Orchestrator) -> None:
    task = await orch.session(S).submit(outrider.shell(py(STUBBORN), grace_period=0.2))
    _, pid, grandchild = (await first_output(orch, task.id)).split()
    done = await orch.session(S).cancel(task.id)
    assert done.state is TaskState.CANCELLED
    assert gone(int(pid))
    assert gone(int(grandchild))
    assert orch.status().keys["shell"].running == 0


@pytest.mark.slow
async def test_timeout_kills_the_process(orch: outrider.Orchestrator) -> None:
    task = await orch.session(S).submit(outrider.shell(py(STUBBORN), grace_period=0.2), timeout=1.0)
    _, pid, grandchild = (await first_output(orch, task.id)).split()
    (done,) = await orch.session(S).wait([task.id], timeout=10)
    assert done.state is TaskState.TIMED_OUT
    assert gone(int(pid))
    assert gone(int(grandchild))


async def test_output_is_capped_with_head_and_tail(orch: outrider.Orchestrator) -> None:
    code = "import sys\nfor i in range(300000): sys.stdout.write(f'line {i:06d}\\n')"
    task = await orch.session(S).submit(outrider.shell(py(code)))
    (done,) = await orch.session(S).wait([task.id], timeout=30)
    assert done.state is TaskState.SUCCEEDED
    assert await orch.session(S).tail(task.id, lines=1) == "line 299999\n"
    assert done.result is not None
    assert str(done.result).endswith("line 299999\n")


@pytest.mark.slow
async def test_kill_9_loses_nothing_and_leaves_no_process(tmp_path: Path) -> None:
    db = tmp_path / "crash.db"
    script = Path(__file__).with_name("crash_script.py")
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[2] / "src")}
    proc = subprocess.Popen(  # noqa: ASYNC220 - the engine under test must be killable with SIGKILL
        [sys.executable, str(script), str(db)], stdout=subprocess.PIPE, text=True, env=env
    )
    try:
        assert proc.stdout is not None
        line = await anyio.to_thread.run_sync(proc.stdout.readline)
        _, a_id, a_pid, b_id, b_pid = line.split()
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()
    # The children outlive the killed engine: they are in sessions of their own.
    assert not gone(int(a_pid))
    assert not gone(int(b_pid))
    async with outrider.Orchestrator(
        db, outrider.Settings(limits={"shell": 2}, shutdown_grace=0.1)
    ) as orch:
        (a,) = await orch.session("s").wait([a_id], timeout=20)
        assert gone(int(a_pid))
        assert gone(int(b_pid))
        assert a.state is TaskState.FAILED
        assert a.error is not None
        assert a.error.type == "interrupted"
        c = next(t for t in await orch.session("s").list() if t.label == "c")
        (c_done,) = await orch.session("s").wait([c.id], timeout=10)
        assert c_done.state is TaskState.SUCCEEDED
        assert c_done.result == "done\n"
        await wait_until(lambda: _started_twice(orch, b_id), timeout=10)
        b = await orch.session("s").cancel(b_id)
        assert b.attempt == 2
        assert b.state is TaskState.CANCELLED


async def _started_twice(orch: outrider.Orchestrator, task_id: str) -> bool:
    task = await orch.session("s").get(task_id)
    return task.attempt == 2 and task.state is TaskState.RUNNING
