"""PidfdProcess: a child followed through its pipes and pidfd in one task."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess

import anyio
import pytest

from outrider.runners._pidfd import PidfdProcess, pidfds_work

pytestmark = pytest.mark.skipif(not pidfds_work(), reason="needs pidfds (Linux 5.3 or later)")


def start(command: str, *, stderr: int = subprocess.PIPE) -> PidfdProcess:
    return PidfdProcess.start(["/bin/sh", "-c", command], env={}, cwd=None, stderr=stderr)


async def test_follow_keeps_stdout_and_stderr_apart_and_returns_the_status() -> None:
    proc = start("echo out; echo err >&2; exit 3")
    got: dict[bool, bytes] = {True: b"", False: b""}

    def on_output(from_stdout: bool, chunk: bytes) -> None:
        got[from_stdout] += chunk

    with anyio.fail_after(10):
        assert await proc.follow(on_output, max_bytes=1024, until_exit=True) == 3
        assert await proc.follow(on_output, max_bytes=1024, until_exit=False) is None
    assert got == {True: b"out\n", False: b"err\n"}
    assert proc.output_ended
    await proc.aclose()


async def test_the_exit_is_seen_while_a_process_it_left_holds_the_pipe() -> None:
    proc = start("(sleep 30; echo late) & exit 0", stderr=subprocess.STDOUT)
    chunks: list[bytes] = []
    with anyio.fail_after(10):
        assert await proc.follow(lambda _, c: chunks.append(c), max_bytes=64, until_exit=True) == 0
    assert not proc.output_ended  # the background reader still holds it
    os.killpg(proc.pid, signal.SIGKILL)  # its group: the leftover
    with anyio.fail_after(10):
        await proc.follow(lambda _, c: chunks.append(c), max_bytes=64, until_exit=False)
    await proc.aclose()


async def test_one_waiter_at_a_time_and_a_kill_ends_the_wait() -> None:
    proc = start("exec sleep 30")
    async with anyio.create_task_group() as tg:
        tg.start_soon(proc.wait)
        await anyio.wait_all_tasks_blocked()
        with pytest.raises(anyio.BusyResourceError):
            await proc.wait()
        proc.kill()
    with anyio.fail_after(10):
        assert await proc.wait() == -signal.SIGKILL
    await proc.aclose()


def _open_fds() -> set[int]:
    """This process's pipes, pidfds and `/dev/null`s (what a start could leave open)."""
    kinds = ("pipe:", "anon_inode:[pidfd]", "pidfd:", os.devnull)
    found = set()
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):  # the listing's own descriptor is gone by now
            if os.readlink(f"/proc/self/fd/{fd}").startswith(kinds):
                found.add(int(fd))
    return found


async def test_the_leader_reads_nothing_and_its_descriptors_are_closed_here() -> None:
    first = start("true")  # the first start opens /dev/null, kept open for every later one
    with anyio.fail_after(10):
        await first.wait()
    await first.aclose()
    before = _open_fds()
    proc = start("cat; echo read", stderr=subprocess.STDOUT)  # stdin: /dev/null, at its end
    chunks: list[bytes] = []
    assert len(_open_fds() - before) == 2  # the read end of its pipe and its pidfd, no more
    with anyio.fail_after(10):
        assert await proc.follow(lambda _, c: chunks.append(c), max_bytes=64, until_exit=True) == 0
        await proc.follow(lambda _, c: chunks.append(c), max_bytes=64, until_exit=False)
    assert b"".join(chunks) == b"read\n"
    await proc.aclose()
    assert _open_fds() == before
    with pytest.raises(FileNotFoundError):
        PidfdProcess.start(["/nonexistent/leader"], env={}, cwd=None, stderr=subprocess.PIPE)
    assert _open_fds() == before
