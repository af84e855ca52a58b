"""The `shell` runner: a command in its own process group, output streamed to the task log.

- The child starts in a new session with a clean environment: a documented safe base (`PATH`,
  `HOME`, `LANG`, … — `outrider.runners._procs.SAFE_ENV`), the names the runner is told to pass
  through, the task's own `env`, and the attempt's marker (`OUTRIDER_TASK`), by which every
  process it starts is found (`outrider.runners._tracked`).
- A task of a principal that does not own the daemon runs in a sandbox hiding the daemon's
  store, tokens and processes (`outrider.runners._sandbox`), when the runner is given one.
- Output (stdout and stderr interleaved) is read in chunks of at most 64 KiB and handed to
  `ctx.output`; only a bounded tail (8 KiB) is kept in memory, for the result or the error.
  A caller that parses stdout (`execute(…, stdout=…)`) gets stdout's chunks too, and stderr is
  read from its own pipe so it only reaches the log.
- The task ends when its main process exits: whatever it left running is then stopped (TERM,
  `grace_period`, KILL), and the output they wrote up to then is kept.
- Stopping (cancellation, timeout, shutdown): SIGTERM to the group and to every process of the
  task, `grace_period` seconds for them to exit, then SIGKILL to what is left. The child is
  always waited for, so no zombie is left. Cleanup is shielded and bounded.
"""

from __future__ import annotations

import contextlib
import signal
import subprocess
from typing import TYPE_CHECKING

import anyio
import anyio.lowlevel

from .._types._task import ShellSpec
from ._pidfd import PidfdProcess
from ._procs import marker, task_environment
from ._protocol import RunContext, RunFailure, RunnerHost, RunOutcome
from ._tracked import TaskProcess

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from contextlib import AbstractAsyncContextManager

    from anyio.abc import ByteReceiveStream

    from ._sandbox import Sandbox

__all__ = ["ShellRunner"]

_CHUNK = 64 * 1024
_TAIL_BYTES = 8 * 1024
_RESULT_LINES = 20
_RESULT_CHARS = 4000
_DRAIN = 1.0
"""Seconds to read what is left in the pipe once every process of the task is stopped."""


def _last_lines(tail: bytes, lines: int = _RESULT_LINES) -> str:
    text = tail.decode(errors="replace")
    return "".join(text.splitlines(keepends=True)[-lines:])[-_RESULT_CHARS:]


def _signal_name(code: int) -> str:
    try:
        return signal.Signals(-code).name
    except ValueError:
        return f"signal {-code}"


def _spawn_failure(exc: OSError, executable: str, cwd: str | None) -> Exception:
    """What a spawn that failed says to its task (the error itself if it is none of these)."""
    if cwd is not None and exc.filename == cwd:  # `Popen` names the folder it could not enter
        if isinstance(exc, PermissionError):
            message = f"The working directory {cwd!r} cannot be entered; fix its permissions."
        else:
            message = (f"The working directory {cwd!r} does not exist or is not a folder; "
                       "create it or fix `cwd`.")  # fmt: skip
    elif isinstance(exc, FileNotFoundError):
        message = (f"The executable {executable!r} was not found; install it or fix `command` "
                   "(a string runs through /bin/sh).")  # fmt: skip
    elif isinstance(exc, PermissionError):
        message = f"The executable {executable!r} is not executable; fix its permissions."
    else:
        return exc
    return RunFailure(message, type="RunnerError")


class ShellRunner:
    """Runs `ShellSpec` tasks as child processes.

    Args:
        pass_env: Names passed from outrider's environment to every task besides the safe
            base (an entry ending in `*` is a prefix).
        sandbox: Where tasks of untrusted principals run (`outrider.runners._sandbox`).
    """

    kind = "shell"
    uses_processes = True

    def __init__(self, *, pass_env: Sequence[str] = (), sandbox: Sandbox | None = None) -> None:
        self.pass_env = tuple(pass_env)
        self.sandbox = sandbox

    def default_keys(self, spec: object) -> tuple[str, ...]:
        """Every shell task holds the key `shell` unless it names its own."""
        return ("shell",)

    def required_keys(self, spec: object) -> tuple[str, ...]:
        """None: a command names no outside limit."""
        return ()

    def lifespan(self, host: RunnerHost) -> AbstractAsyncContextManager[None]:
        """Nothing to set up: each task's processes are its own."""
        return contextlib.nullcontext()

    async def run(self, spec: object, ctx: RunContext) -> RunOutcome:
        """Run the command; see the module docstring for output and stopping."""
        assert isinstance(spec, ShellSpec)
        return await self.execute(spec, ctx)

    async def execute(
        self,
        spec: ShellSpec,
        ctx: RunContext,
        *,
        pass_env: Sequence[str] = (),
        stdout: Callable[[bytes], None] | None = None,
    ) -> RunOutcome:
        """Run `spec` for `ctx`'s task.

        Args:
            spec: The command.
            ctx: Where output and the process are reported.
            pass_env: Names also passed through from outrider's environment (agent CLIs).
            stdout: Also called with each chunk of stdout; stderr is then kept apart from it
                (it goes to the log only).
        """
        argv = ["/bin/sh", "-c", spec.command] if isinstance(spec.command, str) else spec.command
        task_marker = marker(ctx.task_id, ctx.attempt)
        env = task_environment(task_marker, spec.env, passthrough=(*self.pass_env, *pass_env))
        if self.sandbox is not None and self.sandbox.applies_to(ctx.session):
            argv = self.sandbox.wrap(argv, env)
        try:
            proc = await TaskProcess.spawn(
                argv, env=env, cwd=spec.cwd, task_marker=task_marker,
                stderr=subprocess.STDOUT if stdout is None else subprocess.PIPE,
            )  # fmt: skip
        except OSError as exc:  # the child's change of directory comes first, then its exec
            raise _spawn_failure(exc, argv[0], spec.cwd) from None
        tail = bytearray()
        try:
            await anyio.lowlevel.checkpoint_if_cancelled()  # stopped while it was spawned
            await ctx.track_process(proc.pid)
            code = await self._communicate(proc, ctx, tail, spec.grace_period, stdout)
        finally:
            with anyio.CancelScope(shield=True):
                await proc.stop(spec.grace_period)
        text = _last_lines(bytes(tail))
        if code == 0:
            return RunOutcome(result=text, exit_code=0)
        if code < 0:
            message = f"The command was killed by {_signal_name(code)}."
        else:
            message = f"The command exited with code {code}."
        raise RunFailure(message, type="exit", exit_code=code, detail=text, retryable=True)

    @classmethod
    async def _communicate(
        cls,
        proc: TaskProcess,
        ctx: RunContext,
        tail: bytearray,
        grace_period: float,
        stdout: Callable[[bytes], None] | None,
    ) -> int:
        """Stream the output until the leader exits; stop what it left; keep what they wrote."""
        process = proc.process
        if isinstance(process, PidfdProcess):

            def on_output(from_stdout: bool, chunk: bytes) -> None:
                cls._take(chunk, ctx, tail, stdout if from_stdout else None)

            return await cls._follow(process, proc, on_output, grace_period)
        assert process.stdout is not None
        pipes: list[tuple[ByteReceiveStream, Callable[[bytes], None] | None]] = [
            (process.stdout, stdout)
        ]
        if process.stderr is not None:
            pipes.append((process.stderr, None))
        drained = [anyio.Event() for _ in pipes]
        async with anyio.create_task_group() as tg:
            for (stream, also), done in zip(pipes, drained, strict=True):
                tg.start_soon(cls._pump, stream, ctx, tail, done, also)
            code = await process.wait()
            if not proc.left_nothing():
                with anyio.CancelScope(shield=True):
                    await proc.stop_rest(grace_period)
            if not all(done.is_set() for done in drained):  # (a cancel costs: anyio formats it)
                with anyio.move_on_after(_DRAIN):
                    for done in drained:
                        await done.wait()
                tg.cancel_scope.cancel()
        return code

    @staticmethod
    async def _follow(
        process: PidfdProcess,
        proc: TaskProcess,
        on_output: Callable[[bool, bytes], None],
        grace_period: float,
    ) -> int:
        """`_communicate` in this task alone: one wait for every pipe and the exit."""
        code = await process.follow(on_output, max_bytes=_CHUNK, until_exit=True)
        assert code is not None
        if not proc.left_nothing():
            with anyio.CancelScope(shield=True):
                await proc.stop_rest(grace_period)
        if not process.output_ended:
            with anyio.move_on_after(_DRAIN):  # what they wrote before they were stopped
                await process.follow(on_output, max_bytes=_CHUNK, until_exit=False)
        return code

    @staticmethod
    def _take(
        chunk: bytes, ctx: RunContext, tail: bytearray, also: Callable[[bytes], None] | None
    ) -> None:
        if also is not None:
            also(chunk)
        ctx.output(chunk)
        tail += chunk
        if len(tail) > _TAIL_BYTES:
            del tail[: len(tail) - _TAIL_BYTES]

    @staticmethod
    async def _pump(
        stream: ByteReceiveStream,
        ctx: RunContext,
        tail: bytearray,
        drained: anyio.Event,
        also: Callable[[bytes], None] | None = None,
    ) -> None:
        try:
            while True:
                ShellRunner._take(await stream.receive(_CHUNK), ctx, tail, also)
        except (anyio.EndOfStream, anyio.ClosedResourceError, anyio.BrokenResourceError):
            drained.set()
