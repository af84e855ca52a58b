"""Path leases: which task holds which file. Pure: no I/O, no time.

Where writing tasks share a folder (no worktrees), a task claims each file before it writes it
and holds it until it ends (`outrider._worktrees._leases`).

Invariants:
- A path has at most one holder; claiming a path one already holds succeeds again.
- A refusal names the holder and what to do; it changes nothing.
- Releasing a task frees exactly its paths.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Leases"]


@dataclass(frozen=True, slots=True)
class _Holder:
    task_id: str
    label: str


class Leases:
    """Every lease held, by real path."""

    def __init__(self) -> None:
        self.held: dict[str, _Holder] = {}

    def claim(self, task_id: str, label: str, path: str) -> str | None:
        """Hold `path` for `task_id`; None, or the refusal for the model."""
        holder = self.held.setdefault(path, _Holder(task_id, label))
        if holder.task_id == task_id:
            return None
        return (
            f"refused: {path} is being edited by task {holder.task_id} ({holder.label!r}), "
            f"which holds it until it ends; wait for it (wait_tasks(['{holder.task_id}'])) and "
            "read the file again, or change another file"
        )

    def release(self, task_id: str) -> list[str]:
        """Let go of everything `task_id` holds; the paths."""
        mine = [p for p, h in self.held.items() if h.task_id == task_id]
        for path in mine:
            del self.held[path]
        return mine
