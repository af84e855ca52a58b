"""A child process awaited through its pidfd, its pipes read as the loop finds them ready.

Why: asyncio's subprocess transport costs the loop a protocol, a transport per pipe and their
callbacks for every child (and, on Python 3.11 without `pidfd_child_watcher`, a thread). Here
the child is a plain `subprocess.Popen`, its pipes are read with `anyio.wait_readable` and
`os.read`, and its exit is awaited on its pidfd. The spawn blocks until the child has called
`exec`, as asyncio's does; a spawn in a worker thread was measured and cost more: the thread
then waits for the GIL, and the loop for the thread.

Invariants:
- `start` returns a process that is awaitable: its pidfd is open. If that cannot be done
  after the child exists, the child is killed and reaped before the error is raised.
- The exit status is collected by `wait` (a `waitpid` once the pidfd is readable); nothing
  else here reaps the child. One task waits at a time (a second one fails with anyio's
  `BusyResourceError`), as one task reads a pipe at a time.
- Every read waits for readiness first, so a pipe that never runs dry cannot starve the loop.
- `aclose` closes the pipes and the pidfd, waking any reader (`ClosedResourceError`); the
  child is left as it is (the caller stops it and awaits it first).
- Linux 5.3 or later (`pidfds_work`); elsewhere callers use `anyio.open_process`.
"""

from __future__ import annotations

import contextlib
import functools
import os
import signal
import subprocess
from typing import IO, TYPE_CHECKING

import anyio
from anyio.abc import ByteReceiveStream, Process

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from anyio.abc import ByteSendStream

__all__ = ["PidfdProcess", "pidfds_work"]


@functools.cache
def pidfds_work() -> bool:
    """Whether this kernel and Python give pidfds (Linux 5.3 or later)."""
    try:
        os.close(os.pidfd_open(os.getpid()))
    except (AttributeError, OSError):  # pragma: no cover - a kernel before 5.3, not Linux
        return False
    return True


class _Pipe(ByteReceiveStream):
    """The read end of a child's pipe, non-blocking, read when the loop says it is ready."""

    def __init__(self, file: IO[bytes]) -> None:
        self._file = file  # it owns the descriptor
        self._fd: int | None = file.fileno()
        os.set_blocking(self._fd, False)

    async def receive(self, max_bytes: int = 65536) -> bytes:
        while True:
            if self._fd is None:
                raise anyio.ClosedResourceError
            await anyio.wait_readable(self._fd)  # raises ClosedResourceError if closed meanwhile
            if self._fd is None:  # pragma: no cover - closed by another task as it woke
                raise anyio.ClosedResourceError
            try:
                data = os.read(self._fd, max_bytes)
            except BlockingIOError:  # pragma: no cover - readiness was spurious
                continue
            if not data:
                raise anyio.EndOfStream
            return data

    async def aclose(self) -> None:
        self.close()

    def close(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            anyio.notify_closing(fd)
            self._file.close()


class PidfdProcess(Process):
    """A child started by `start`; the subset of anyio's `Process` that a task's leader needs."""

    def __init__(self, popen: subprocess.Popen[bytes], pidfd: int) -> None:
        self._popen = popen
        self._pidfd: int | None = pidfd
        assert popen.stdout is not None
        self._stdout = _Pipe(popen.stdout)
        self._stderr = _Pipe(popen.stderr) if popen.stderr is not None else None

    @classmethod
    def start(
        cls,
        argv: Sequence[str],
        *,
        env: Mapping[str, str],
        cwd: str | None,
        stderr: int,
    ) -> PidfdProcess:
        """Start `argv` in a new session, stdout piped (and stderr per `stderr`).

        Raises:
            OSError: The executable is missing or not executable (nothing was started).
        """
        popen = subprocess.Popen(
            list(argv), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=stderr,
            cwd=cwd, env=dict(env), start_new_session=True,
        )  # fmt: skip
        try:
            pidfd = os.pidfd_open(popen.pid)
        except BaseException:  # pragma: no cover - pidfds were checked before (`pidfds_work`)
            popen.kill()
            popen.wait()
            raise
        return cls(popen, pidfd)

    @property
    def pid(self) -> int:
        return self._popen.pid

    @property
    def returncode(self) -> int | None:
        return self._popen.returncode

    @property
    def stdin(self) -> ByteSendStream | None:
        return None

    @property
    def stdout(self) -> ByteReceiveStream:
        return self._stdout

    @property
    def stderr(self) -> ByteReceiveStream | None:
        return self._stderr

    async def wait(self) -> int:
        """The exit status, once the child has exited (negative: the signal that ended it)."""
        while (code := self._popen.poll()) is None:
            if self._pidfd is None:
                raise anyio.ClosedResourceError
            await anyio.wait_readable(self._pidfd)
        return code

    def send_signal(self, signal: signal.Signals) -> None:
        self._popen.send_signal(signal)

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)

    async def aclose(self) -> None:
        """Close the pipes and the pidfd (the child itself is not touched)."""
        self._stdout.close()
        if self._stderr is not None:
            self._stderr.close()
        if self._pidfd is not None:
            fd, self._pidfd = self._pidfd, None
            anyio.notify_closing(fd)
            with contextlib.suppress(OSError):
                os.close(fd)
