"""Overlap warnings: tasks of one repository that change the same files, told while they run.

The files each worktree task touched are kept: for a running one, what `git status` and its
own commits show, looked at again after its progress or output (at most once a second); for a
finished one with work to merge, the files its branch changed. When a task's set meets another
running or kept task's, a durable `task.overlap` event goes to each of the two tasks' sessions
(so each parent gets a notice), once per pair of tasks. The warning is advisory: both tasks go
on. Whether a pair was reported is read from the stored events, so a restart does not repeat
it.

Checks run one at a time (one lock), so two tasks touching a file at once report it once.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import anyio

from .._core._worktrees import new_overlaps
from .._store._sqlite import AddEvent
from .._types._events import TaskOverlap

if TYPE_CHECKING:
    from .._store._sqlite import Op
    from .._types._worktrees import Worktree
    from ._manager import Worktrees

__all__ = ["Overlaps"]

_MAX_PATHS = 50


class Overlaps:
    """The touched files of a repository's worktree tasks, and the warnings they make."""

    def __init__(self, worktrees: Worktrees) -> None:
        self.worktrees = worktrees
        self.live: dict[str, frozenset[str]] = {}
        """The files each running task has touched so far, by task id."""
        self._lock = anyio.Lock()

    async def touched(self, worktree: Worktree, paths: frozenset[str]) -> None:
        """A task's touched files are `paths` now; warn of any new overlap."""
        async with self._lock:
            if worktree.state == "active":
                self.live[worktree.task_id] = paths
            else:
                self.live.pop(worktree.task_id, None)
            await self._check(worktree.task_id, worktree.repo, paths)

    def forget(self, task_id: str) -> None:
        """The task ended without work to merge."""
        self.live.pop(task_id, None)

    async def _check(self, task_id: str, repo: str, paths: frozenset[str]) -> None:
        records = {w.task_id: w for w in await self.worktrees.list() if w.repo == repo}
        mine = records.get(task_id)
        if mine is None or not paths:
            return
        others = {
            w.task_id: self.live.get(w.task_id, frozenset(f.path for f in w.files))
            for w in records.values()
            if w.task_id != task_id and w.state in ("active", "kept")
        }
        found = new_overlaps(paths, others, await self.worktrees.store.overlap_peers(task_id))
        if not found:
            return
        tasks = await self.worktrees.store.get_many([task_id, *found])
        ops: list[Op] = []
        at = self.worktrees.wall()
        for other_id, shared in found.items():
            other = records[other_id]
            for one, two in ((mine, other), (other, mine)):
                a, b = tasks.get(one.task_id), tasks.get(two.task_id)
                data = TaskOverlap(
                    other=two.task_id, other_session=two.session, paths=list(shared[:_MAX_PATHS]),
                    repo=repo, label=a.name if a else None, other_label=b.name if b else None,
                )  # fmt: skip
                group = a.group if a else None
                ops.append(AddEvent("task.overlap", one.session, at, one.task_id, group, data))
        await self.worktrees.store.commit(ops)
