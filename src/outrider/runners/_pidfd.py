"""A child process awaited through its pidfd, its pipes read as the loop finds them ready.

Why: asyncio's subprocess transport costs the loop a protocol, a transport per pipe and their
callbacks for every child (and, on Python 3.11 without `pidfd_child_watcher`, a thread). Here
the child is a plain `subprocess.Popen` given descriptors made here (its pipes, and a
`/dev/null` opened once for every child's stdin: no file objects, no open per spawn), and one
task waits for its pipes and its pidfd together, then reads with `os.read` (no task, cancel
scope or event per pipe). The spawn blocks until the child has called `exec`, as asyncio's
does; a spawn in a worker thread was measured and cost more: the thread then waits for the
GIL, and the loop for the thread.

Invariants:
- `start` returns a process that is awaitable: its pidfd is open. If that cannot be done
  after the child exists, the child is killed and reaped before the error is raised. Either
  way this process keeps no write end of the child's pipes, and a failed start keeps nothing.
- The exit status is collected as soon as the pidfd is readable, by a reader the loop calls
  (so no zombie lingers); nothing else here reaps the child. One task waits or follows at
  a time (another gets anyio's `BusyResourceError`).
- `follow` reads every pipe and watches the exit in one task, each round after the loop
  reported readiness, so output that never pauses cannot starve the loop; a cancelled
  `follow` leaves no descriptor watched.
- `aclose` closes the pipes and the pidfd; the child is left as it is (the caller stops it
  and awaits it first).
- Linux 5.3 or later (`pidfds_work`); elsewhere callers use `anyio.open_process`.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import subprocess
from typing import TYPE_CHECKING

import anyio

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping, Sequence

__all__ = ["PidfdProcess", "pidfds_work"]


@functools.cache
def pidfds_work() -> bool:
    """Whether this kernel and Python give pidfds (Linux 5.3 or later)."""
    try:
        os.close(os.pidfd_open(os.getpid()))
    except (AttributeError, OSError):  # pragma: no cover - a kernel before 5.3, not Linux
        return False
    return True


@functools.cache
def _devnull() -> int:
    """`/dev/null`, open for reading for as long as this process runs: every leader's stdin."""
    return os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)


class _Pipe:
    """The read end of a child's pipe, non-blocking, read when the loop says it is ready."""

    def __init__(self, fd: int) -> None:
        self._fd: int | None = fd  # it owns the descriptor
        os.set_blocking(fd, False)
        self.ended = False
        """Its end was read (every writer closed it)."""

    def read_ready(self, max_bytes: int) -> bytes:
        """What the open pipe holds now, up to `max_bytes` (empty: nothing; `ended`: its end)."""
        try:
            data = os.read(self.fileno(), max_bytes)
        except BlockingIOError:  # pragma: no cover - readiness was spurious
            return b""
        self.ended = not data
        return data

    def fileno(self) -> int:
        if self._fd is None:
            raise anyio.ClosedResourceError
        return self._fd

    def close(self) -> None:
        fd, self._fd = self._fd, None  # nothing waits on it meanwhile: `_ready` lets go first
        if fd is not None:
            os.close(fd)


class PidfdProcess:
    """A child started by `start`: what a task's leader needs of anyio's `Process`, and `follow`."""

    def __init__(
        self, popen: subprocess.Popen[bytes], pidfd: int, stdout: int, stderr: int | None
    ) -> None:
        self._popen = popen
        self._pidfd: int | None = pidfd
        self._stdout = _Pipe(stdout)
        self._stderr = _Pipe(stderr) if stderr is not None else None
        self._loop = asyncio.get_running_loop()
        self._exit_waiter: Callable[[], None] | None = None
        self._loop.add_reader(pidfd, self._reap)
        self._watched = True

    def _reap(self) -> None:
        """The child exited: its status is collected at once, as asyncio's watcher does.

        So no zombie waits for its task's turn on the loop (a subreaper's orphan reaping
        would list every child while one does).
        """
        if self._popen.poll() is None:  # pragma: no cover - readiness was spurious
            return
        self._unwatch()
        if self._exit_waiter is not None:
            self._exit_waiter()

    def _unwatch(self) -> None:
        if self._watched and self._pidfd is not None:
            self._watched = False
            self._loop.remove_reader(self._pidfd)

    async def _ready(self, pipes: Sequence[_Pipe]) -> set[int]:
        """Wait until a pipe is readable or the child exited; the pipes' descriptors ready.

        Cancellation: safe; the loop stops watching the pipes either way.
        """
        if self._exit_waiter is not None:
            raise anyio.BusyResourceError("waiting for")
        ready: set[int] = set()
        woken = self._loop.create_future()

        def on_ready(fd: int) -> None:
            ready.add(fd)
            if not woken.done():
                woken.set_result(None)

        fds = [pipe.fileno() for pipe in pipes]
        for fd in fds:
            self._loop.add_reader(fd, on_ready, fd)
        self._exit_waiter = functools.partial(on_ready, -1)
        try:
            await woken
        finally:
            self._exit_waiter = None
            for fd in fds:
                self._loop.remove_reader(fd)
        return ready

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
            OSError: The working directory cannot be entered (the error's `filename` is
                `cwd`), or the executable is missing or not executable; nothing was started.
        """
        pipes: list[tuple[int, int]] = []  # (read end, write end): stdout's, then stderr's
        try:
            # (what `extend` appended before a failure stays in `pipes`, and is closed below)
            pipes.extend(os.pipe2(os.O_CLOEXEC) for _ in range(1 + (stderr == subprocess.PIPE)))
            popen = subprocess.Popen(
                list(argv), stdin=_devnull(), stdout=pipes[0][1],
                stderr=pipes[1][1] if len(pipes) > 1 else subprocess.STDOUT,
                cwd=cwd, env=dict(env), start_new_session=True,
            )  # fmt: skip
        except BaseException:
            for read_end, _ in pipes:
                os.close(read_end)
            raise
        finally:
            for _, write_end in pipes:  # the child's now
                os.close(write_end)
        try:
            pidfd = os.pidfd_open(popen.pid)
        except BaseException:  # pragma: no cover - pidfds were checked before (`pidfds_work`)
            popen.kill()
            popen.wait()
            for read_end, _ in pipes:
                os.close(read_end)
            raise
        return cls(popen, pidfd, pipes[0][0], pipes[1][0] if len(pipes) > 1 else None)

    async def follow(
        self, on_output: Callable[[bool, bytes], None], *, max_bytes: int, until_exit: bool
    ) -> int | None:
        """Hand each chunk of output to `on_output(from_stdout, chunk)` as it comes.

        One task reads every pipe (no task, scope or event per pipe). `until_exit`: return
        the exit status once the child has exited, whatever pipes are still open (a process
        it left may hold them); else return None once each pipe reached its end. Every round
        waits for the loop's readiness first, so output that never pauses starves nothing.
        """
        while True:
            if until_exit and self.returncode is not None:
                return self.returncode
            pipes = self._open_pipes()
            if not until_exit and not pipes:
                return None
            ready = await self._ready(pipes)
            for pipe in pipes:
                if pipe.fileno() in ready and (data := pipe.read_ready(max_bytes)):
                    on_output(pipe is self._stdout, data)

    def _open_pipes(self) -> list[_Pipe]:
        return [p for p in (self._stdout, self._stderr) if p is not None and not p.ended]

    @property
    def output_ended(self) -> bool:
        """Whether every pipe reached its end."""
        return not self._open_pipes()

    @property
    def pid(self) -> int:
        return self._popen.pid

    @property
    def returncode(self) -> int | None:
        return self._popen.returncode

    async def wait(self) -> int:
        """The exit status, once the child has exited (negative: the signal that ended it)."""
        while (code := self.returncode) is None:
            if not self._watched:
                raise anyio.ClosedResourceError
            await self._ready(())
        return code

    def kill(self) -> None:
        self._popen.kill()

    async def aclose(self) -> None:
        """Close the pipes and the pidfd (the child itself is not touched)."""
        self._stdout.close()
        if self._stderr is not None:
            self._stderr.close()
        self._unwatch()
        if self._pidfd is not None:
            fd, self._pidfd = self._pidfd, None
            with contextlib.suppress(OSError):
                os.close(fd)
