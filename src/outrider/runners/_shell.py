"""The `shell` runner: a command in its own process group, output streamed to the task log.

- The child starts in a new session (`start_new_session=True`), so its process group holds it
  and everything it starts that does not leave the group.
- Output (stdout and stderr interleaved) is read in chunks of at most 64 KiB and handed to
  `ctx.output`; only a bounded tail (8 KiB) is kept in memory, for the result or the error.
  A caller that parses stdout (`run(…, stdout=…)`) gets stdout's chunks too, and stderr is
  read from its own pipe so it only reaches the log.
- Stopping (cancellation, timeout, shutdown): SIGTERM to the group, `grace_period` seconds for
  the leader to exit, then SIGKILL to the group and to any descendant that left it. The child
  is always waited for, so no zombie is left. Cleanup is shielded and bounded.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
from typing import TYPE_CHECKING

import anyio
import anyio.abc
import psutil

from .._models import ShellSpec
from ._protocol import RunContext, RunFailure, RunOutcome

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ["ShellRunner", "terminate_process_tree"]

_CHUNK = 64 * 1024
_TAIL_BYTES = 8 * 1024
_RESULT_LINES = 20
_RESULT_CHARS = 4000


def _last_lines(tail: bytes, lines: int = _RESULT_LINES) -> str:
    text = tail.decode(errors="replace")
    return "".join(text.splitlines(keepends=True)[-lines:])[-_RESULT_CHARS:]


def _signal_name(code: int) -> str:
    try:
        return signal.Signals(-code).name
    except ValueError:
        return f"signal {-code}"


def _kill_group(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


_PROC_CHILDREN = os.path.exists(f"/proc/self/task/{threading.get_native_id()}/children")
"""Linux lists a process's children in /proc; reading them beats scanning every process."""


def _child_pids(pid: int) -> list[int]:
    found: list[int] = []
    try:
        for thread in os.scandir(f"/proc/{pid}/task"):
            with open(os.path.join(thread.path, "children")) as listing:
                found.extend(int(p) for p in listing.read().split())
    except OSError:  # it exited meanwhile: its children went to init, out of our reach
        pass
    return found


def _descendants(pid: int) -> list[psutil.Process]:
    if not _PROC_CHILDREN:
        try:
            return psutil.Process(pid).children(recursive=True)
        except psutil.Error:
            return []
    found: list[psutil.Process] = []
    pending = _child_pids(pid)
    while pending:
        child = pending.pop()
        with contextlib.suppress(psutil.Error):
            found.append(psutil.Process(child))
            pending.extend(_child_pids(child))
    return found


def _kill_all(processes: list[psutil.Process]) -> None:
    for proc in processes:
        with contextlib.suppress(psutil.Error):
            proc.kill()


def terminate_process_tree(pid: int, *, create_time: float | None, grace_period: float) -> bool:
    """Stop a process left by a dead outrider: TERM its group, wait, KILL; synchronous.

    A process whose start time differs from `create_time` is another program that reused the
    pid and is left alone.

    Returns:
        Whether the process was found (and stopped).
    """
    try:
        proc = psutil.Process(pid)
        if create_time is not None and abs(proc.create_time() - create_time) > 0.5:
            return False
        children = proc.children(recursive=True)
    except psutil.Error:
        return False
    _kill_group(pid, signal.SIGTERM)
    with contextlib.suppress(psutil.Error):
        proc.terminate()
    _, alive = psutil.wait_procs([proc, *children], timeout=grace_period)
    _kill_group(pid, signal.SIGKILL)
    _kill_all(alive)
    psutil.wait_procs(alive, timeout=1.0)
    return True


class ShellRunner:
    """Runs `ShellSpec` tasks as child processes."""

    kind = "shell"
    uses_processes = True

    def default_keys(self, spec: object) -> tuple[str, ...]:
        """Every shell task holds the key `shell` unless it names its own."""
        return ("shell",)

    async def run(
        self, spec: object, ctx: RunContext, *, stdout: Callable[[bytes], None] | None = None
    ) -> RunOutcome:
        """Run the command; see the module docstring for output and stopping.

        Args:
            spec: The `ShellSpec`.
            ctx: Where output and the process are reported.
            stdout: Also called with each chunk of stdout; stderr is then kept apart from it
                (it goes to the log only).
        """
        assert isinstance(spec, ShellSpec)
        argv = ["/bin/sh", "-c", spec.command] if isinstance(spec.command, str) else spec.command
        if spec.cwd is not None and not await anyio.Path(spec.cwd).is_dir():
            raise RunFailure(
                f"The working directory {spec.cwd!r} does not exist or is not a folder; "
                "create it or fix `cwd`.",
                type="RunnerError",
            )
        try:
            process = await anyio.open_process(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT if stdout is None else subprocess.PIPE,
                cwd=spec.cwd,
                env={**os.environ, **spec.env},
                start_new_session=True,
            )
        except FileNotFoundError:
            raise RunFailure(
                f"The executable {argv[0]!r} was not found; install it or fix `command` "
                "(a string runs through /bin/sh).",
                type="RunnerError",
            ) from None
        except PermissionError:
            raise RunFailure(
                f"The executable {argv[0]!r} is not executable; fix its permissions.",
                type="RunnerError",
            ) from None
        tail = bytearray()
        try:
            await ctx.track_process(process.pid)
            await self._read(process, ctx, tail, stdout)
            code = await process.wait()
        finally:
            with anyio.CancelScope(shield=True):
                await self._stop(process, spec.grace_period)
        text = _last_lines(bytes(tail))
        if code == 0:
            return RunOutcome(result=text, exit_code=0)
        if code < 0:
            message = f"The command was killed by {_signal_name(code)}."
        else:
            message = f"The command exited with code {code}."
        raise RunFailure(message, type="exit", exit_code=code, detail=text, retryable=True)

    @classmethod
    async def _read(
        cls,
        process: anyio.abc.Process,
        ctx: RunContext,
        tail: bytearray,
        stdout: Callable[[bytes], None] | None,
    ) -> None:
        """Read the output to the log; stdout also to `stdout`, stderr apart, when given."""
        if stdout is None:
            await cls._pump(process, ctx, tail)
            return
        async with anyio.create_task_group() as tg:
            tg.start_soon(cls._pump, process, ctx, tail, process.stdout, stdout)
            tg.start_soon(cls._pump, process, ctx, tail, process.stderr)

    @staticmethod
    async def _pump(
        process: anyio.abc.Process,
        ctx: RunContext,
        tail: bytearray,
        pipe: anyio.abc.ByteReceiveStream | None = None,
        also: Callable[[bytes], None] | None = None,
    ) -> None:
        stream = pipe or process.stdout
        assert stream is not None
        if also is not None:
            ctx = _Tee(ctx, also)  # type: ignore[assignment]  # forwards every RunContext member
        while True:
            try:
                if process.returncode is not None:
                    # The leader is gone; a backgrounded grandchild may hold the pipe open.
                    with anyio.move_on_after(0.5):
                        chunk = await stream.receive(_CHUNK)
                        ctx.output(chunk)
                        tail += chunk
                        continue
                    return
                chunk = await stream.receive(_CHUNK)
            except (anyio.EndOfStream, anyio.ClosedResourceError, anyio.BrokenResourceError):
                return
            ctx.output(chunk)
            tail += chunk
            if len(tail) > _TAIL_BYTES:
                del tail[: len(tail) - _TAIL_BYTES]

    @staticmethod
    async def _stop(process: anyio.abc.Process, grace_period: float) -> None:
        """Make sure the process and its group are gone, and reap the leader."""
        pid = process.pid
        stragglers = _descendants(pid)
        if process.returncode is None:
            _kill_group(pid, signal.SIGTERM)
            with anyio.move_on_after(grace_period):
                await process.wait()
        _kill_group(pid, signal.SIGKILL)
        if process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
        with anyio.move_on_after(5):
            await process.wait()
        _kill_all([p for p in stragglers if _alive(p)])
        with contextlib.suppress(Exception):
            await process.aclose()


class _Tee:
    """A RunContext whose output also goes to `also` (stdout to a parser)."""

    def __init__(self, ctx: RunContext, also: Callable[[bytes], None]) -> None:
        self._ctx = ctx
        self._also = also

    def __getattr__(self, name: str) -> object:
        return getattr(self._ctx, name)

    def output(self, data: bytes | str) -> None:
        self._also(data.encode() if isinstance(data, str) else data)
        self._ctx.output(data)


def _alive(proc: psutil.Process) -> bool:
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False
