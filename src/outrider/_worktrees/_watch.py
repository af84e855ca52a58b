"""Watching a running worktree task's files, for overlap warnings.

`Watched` is the task's `RunContext` with one addition (`Guarded` adds the task's path leases,
for a task writing in place): each progress or output report also
nudges the watcher, which then looks at the worktree's touched files (`git status` and the
branch's own commits) and hands them to `Overlaps`, at most once every `_EVERY` seconds. The
built-in agent reports progress after each tool call and model turn, so a write is seen
within a turn; an agent CLI's output does the same for it.

The watcher never fails its task: a git or store error skips that look, logged.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import anyio
import anyio.to_thread

from .._logging import logger
from .._types._errors import OutriderError
from ._git import GitError, Repo

if TYPE_CHECKING:
    from .._types._task import Task, TaskSpec, Usage
    from .._types._worktrees import Worktree
    from ..runners._protocol import PathGuard, RunContext
    from ._overlap import Overlaps

__all__ = ["Guarded", "Nudge", "Watched", "watch"]

_EVERY = 1.0
"""Seconds between two looks at one worktree (a debounce: reports come much faster)."""


class Nudge:
    """A flag the watcher waits on; setting it twice before a look counts once."""

    def __init__(self) -> None:
        self._event = anyio.Event()

    def set(self) -> None:
        """Ask for a look."""
        self._event.set()

    async def wait(self) -> None:
        """Wait until asked, then reset."""
        await self._event.wait()
        self._event = anyio.Event()


async def watch(worktree: Worktree, overlaps: Overlaps, nudge: Nudge) -> None:
    """Look at the worktree's touched files each time it is nudged (until cancelled)."""
    tree = Repo(Path(worktree.path))
    while True:
        await nudge.wait()
        try:
            touched = await anyio.to_thread.run_sync(tree.touched, worktree.base)
            await overlaps.touched(worktree, touched)
        except (GitError, OutriderError) as exc:
            logger.warning("could not look at worktree %s: %s", worktree.path, exc)
        await anyio.sleep(_EVERY)


class Watched:
    """`ctx`, nudging the watcher on each progress or output report."""

    def __init__(self, ctx: RunContext, nudge: Nudge | None = None) -> None:
        self._ctx = ctx
        self._nudge = nudge

    @property
    def task_id(self) -> str:
        """The task's id."""
        return self._ctx.task_id

    @property
    def attempt(self) -> int:
        """The attempt number."""
        return self._ctx.attempt

    @property
    def resuming(self) -> bool:
        """Whether the previous attempt was interrupted."""
        return self._ctx.resuming

    @property
    def cancel_requested(self) -> bool:
        """Whether the task is being stopped."""
        return self._ctx.cancel_requested

    @property
    def session(self) -> str:
        """The task's session."""
        return self._ctx.session

    @property
    def watched(self) -> bool:
        return self._ctx.watched

    def progress(
        self, completed: float, total: float | None = None, message: str | None = None
    ) -> None:
        """Report progress, and nudge the watcher."""
        self._ctx.progress(completed, total, message)
        self._nudged()

    def output(self, data: bytes | str) -> None:
        """Append output, and nudge the watcher."""
        self._ctx.output(data)
        self._nudged()

    def _nudged(self) -> None:
        if self._nudge is not None:
            self._nudge.set()

    def usage(self, usage: Usage) -> None:
        """Report usage."""
        self._ctx.usage(usage)

    async def spawn(
        self, spec: TaskSpec, /, *, label: str | None = None, timeout: float | None = None
    ) -> Task:
        """Run a child task (a command's end may have changed files: nudge)."""
        try:
            return await self._ctx.spawn(spec, label=label, timeout=timeout)
        finally:
            self._nudged()

    async def tail(self, task_id: str, *, lines: int = 50) -> str:
        """A child's output."""
        return await self._ctx.tail(task_id, lines=lines)

    async def save_transcript(self, data: bytes) -> None:
        """Store the transcript."""
        await self._ctx.save_transcript(data)

    async def load_transcript(self) -> bytes | None:
        """The stored transcript."""
        return await self._ctx.load_transcript()

    def abandon(self, ended: anyio.Event) -> None:
        """The run left work running on."""
        self._ctx.abandon(ended)

    async def track_process(self, pid: int) -> None:
        """Record a child process."""
        await self._ctx.track_process(pid)


class Guarded(Watched):
    """`ctx` of a task writing in place beside others: its writes claim leases (`PathGuard`)."""

    def __init__(self, ctx: RunContext, guard: PathGuard) -> None:
        super().__init__(ctx)
        self._guard = guard

    @property
    def path_guard(self) -> PathGuard:
        """The task's leases."""
        return self._guard
