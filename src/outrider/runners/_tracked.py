"""A task's process tree, from a spawn that cannot leak to a stop that leaves nothing.

- `TaskProcess.spawn` starts the leader in its own session with the task's marker in its
  environment (`outrider.runners._procs`). The spawn is shielded: a stop that arrives meanwhile
  takes effect once the leader is known, so the caller's `finally` always has a process to stop.
  The leader is a `PidfdProcess` (`outrider.runners._pidfd`) where the kernel gives pidfds,
  else an anyio process.
- `stop_rest` runs when the leader exited on its own: the task has ended, and whatever it left
  running (a background writer holding the output pipe, a daemonised grandchild) is stopped.
  `left_nothing` first: a command that started no process is known to have left none, so it
  needs no search (`_procs.none_left`).
- `stop` stops everything: SIGTERM to the group and every process found, `grace_period` for
  them to exit, SIGKILL to what is left and to what forked meanwhile; then the leader is
  awaited, and orphans re-parented to this process are reaped.

Cancellation: `stop` and `stop_rest` are meant to run shielded; they are bounded by the grace
period (plus the kill rounds and a few seconds' wait for the leader's exit status).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from typing import TYPE_CHECKING

import anyio
import anyio.to_thread

from . import _procs
from ._pidfd import PidfdProcess, pidfds_work

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from anyio.abc import Process

__all__ = ["TaskProcess"]


class TaskProcess:
    """The leader of one task attempt's processes; see the module docstring."""

    def __init__(self, process: Process | PidfdProcess, task_marker: str, started: int) -> None:
        self.process = process
        self.marker = task_marker
        self._started = started
        self._spawned = anyio.current_time()
        self._rest_stopped = False
        self._none_left = False

    @property
    def pid(self) -> int:
        """The leader's pid (also the session and group id of the task's processes)."""
        return self.process.pid

    @classmethod
    async def spawn(
        cls,
        argv: Sequence[str],
        *,
        env: Mapping[str, str],
        cwd: str | None,
        task_marker: str,
        stderr: int = subprocess.STDOUT,
    ) -> TaskProcess:
        """Start the leader (shielded; see the module docstring).

        Raises:
            OSError: The working directory cannot be entered (the error's `filename` is
                `cwd`), or the executable is missing or not executable; nothing was started.
        """
        with anyio.CancelScope(shield=True), _procs.spawning():
            before = _procs.boot_ticks()
            if pidfds_work():
                process: Process | PidfdProcess = PidfdProcess.start(
                    argv, env=env, cwd=cwd, stderr=stderr
                )
            else:  # a kernel before 5.3, not Linux
                process = await anyio.open_process(
                    list(argv), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                    stderr=stderr, cwd=cwd, env=dict(env), start_new_session=True,
                )  # fmt: skip
            started = _procs.register_leader(process.pid, spawned_after=before)
        return cls(process, task_marker, started)

    def _find(self) -> dict[int, int]:
        return _procs.find_task_processes(self.marker, self.pid, self._started)

    def left_nothing(self) -> bool:
        """Whether the leader exited and surely left nothing running: a quick check, no search.

        True for most commands (see `_procs.none_left`); there is then nothing left to stop.
        """
        if not self._none_left and self.process.returncode is not None:
            lived = anyio.current_time() - self._spawned
            self._none_left = _procs.none_left(self.pid, lived)
        return self._none_left

    async def stop_rest(self, grace_period: float) -> None:
        """The leader exited: stop what it left running (TERM, grace, KILL)."""
        self._rest_stopped = True
        await self._stop_found(grace_period)

    async def stop(self, grace_period: float) -> None:
        """Stop every process of the task, await the leader, reap orphans; run it shielded.

        SIGTERM goes to the group and the leader's exit is awaited (most tasks end here); then
        whatever is left of the task (escapees from the group included) gets SIGTERM, the rest
        of the grace period, and SIGKILL.
        """
        process = self.process
        if process.returncode is None:
            deadline = anyio.current_time() + grace_period
            _kill_group(self.pid, signal.SIGTERM)
            with anyio.move_on_after(grace_period):
                await process.wait()
            await self._stop_found(max(0.0, deadline - anyio.current_time()))
        elif not self._rest_stopped:  # (`_stop_found` checks `left_nothing` first)
            await self._stop_found(grace_period)
        if process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            with anyio.move_on_after(5):
                await process.wait()
        _procs.forget_leader(self.pid)
        _procs.reap_orphans()
        with contextlib.suppress(Exception):
            await process.aclose()

    async def _stop_found(self, grace_period: float) -> None:
        if self.left_nothing():
            return  # most commands: no search, no thread
        found = await anyio.to_thread.run_sync(self._find)
        if found:
            await anyio.to_thread.run_sync(
                lambda: _procs.stop_processes([(found, grace_period)], find_again=self._find)
            )


def _kill_group(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)
