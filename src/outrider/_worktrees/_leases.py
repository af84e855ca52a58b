"""Path leases: tasks writing in one folder without worktrees do not write the same file at once.

Where a writing task works in place (no git repository, or `isolation = "none"`), the built-in
agent's `write_file` and `edit_file` first claim the file: a file another running task holds is
refused, naming the holder and what to do (wait for it, or choose another file). A task holds
what it claimed until it ends, however it ends.

The leases (`outrider._core._leases.Leases`) live in the memory of the process that runs the
tasks: that process owns the store and runs every task of it, so when it dies its leases die
with its tasks, and a restart starts with none (nothing to expire). Keys are real paths.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .._core._leases import Leases

__all__ = ["TaskLeases"]


class TaskLeases:
    """One task's side of `Leases` (a `PathGuard`)."""

    def __init__(self, leases: Leases, task_id: str, label: str) -> None:
        self._leases = leases
        self._task_id = task_id
        self._label = label

    async def claim(self, path: str) -> str | None:
        """Hold `path` until the task ends; None, or why not."""
        return self._leases.claim(self._task_id, self._label, path)
