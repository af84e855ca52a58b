"""Value types of the worktrees writing tasks run in, and of merging them back.

A writing task (a built-in agent that is not read-only, an agent CLI) in a git repository runs
in its own git worktree, on branch `outrider/<task-id>`, so parallel writers never overwrite
each other; its work reaches the parent's checkout only through `merge_task`. These records
say where each worktree is, what it changed and whether it merges cleanly.
"""

from __future__ import annotations

from datetime import datetime  # pydantic reads the annotations at run time
from typing import Literal, TypeAlias

from pydantic import BaseModel, ConfigDict

__all__ = [
    "ISOLATIONS",
    "MERGE_HOWS",
    "FileChange",
    "Isolation",
    "MergeHow",
    "MergePolicy",
    "MergePreview",
    "MergeResult",
    "Worktree",
    "WorktreeState",
]

Isolation: TypeAlias = Literal["worktree", "none"]
"""Where a writing task works: its own git worktree, or the parent's folder itself."""
ISOLATIONS: tuple[Isolation, ...] = ("worktree", "none")
MergePolicy: TypeAlias = Literal["manual", "auto-if-clean"]
"""When a task's work is merged: when asked (`manual`), or as it ends if it merges cleanly."""
MergeHow: TypeAlias = Literal["apply", "squash", "cherry-pick", "patch"]
"""How `merge_task` brings a task's work back (see `docs/worktrees.md`)."""
MERGE_HOWS: tuple[MergeHow, ...] = ("apply", "squash", "cherry-pick", "patch")
WorktreeState: TypeAlias = Literal["active", "kept", "merged", "discarded", "removed"]
"""`active` while the task runs; `kept` with changes to merge; `merged` or `discarded` once
asked; `removed` when it changed nothing (or was swept)."""

_FROZEN = ConfigDict(frozen=True, extra="forbid")


class FileChange(BaseModel):
    """One file a task changed, with its lines added and removed (None for a binary file)."""

    model_config = _FROZEN
    path: str
    added: int | None = None
    removed: int | None = None


class MergePreview(BaseModel):
    """Whether the task's branch merges into the parent's current state without conflicts."""

    model_config = _FROZEN
    clean: bool
    conflicts: tuple[str, ...] = ()
    """The paths that conflict (empty when `clean`)."""

    @property
    def text(self) -> str:
        """`clean`, or `conflicts in a.py, b.py`."""
        if self.clean:
            return "clean"
        shown = ", ".join(self.conflicts[:5])
        more = f" and {len(self.conflicts) - 5} more" if len(self.conflicts) > 5 else ""
        return f"conflicts in {shown}{more}"


class Worktree(BaseModel):
    """A task's worktree: where it is, what it is based on, what it changed."""

    model_config = _FROZEN
    task_id: str
    session: str
    repo: str
    """The parent's checkout (its top folder) the task works for."""
    path: str
    """The worktree's folder (under outrider's data dir)."""
    branch: str
    base: str
    """The commit it started from (a snapshot of the parent's state, or a ref's commit)."""
    head: str | None = None
    """The branch's last commit once the task finished."""
    state: WorktreeState = "active"
    files: tuple[FileChange, ...] = ()
    preview: MergePreview | None = None
    patch: str | None = None
    """A `.patch` file of its changes, written when a merge did not happen."""
    created_at: datetime
    updated_at: datetime

    @property
    def changed(self) -> bool:
        """Whether its branch has commits beyond its base (the task's work)."""
        return self.head is not None and self.head != self.base

    @property
    def changes(self) -> str:
        """`2 files (+14 -3)`, or `no changes`."""
        if not self.files:
            return "no changes"
        added = sum(f.added or 0 for f in self.files)
        removed = sum(f.removed or 0 for f in self.files)
        n = len(self.files)
        return f"{n} file{'s' if n != 1 else ''} (+{added} -{removed})"

    @property
    def summary(self) -> str:
        """One line: branch, files and lines changed, and whether it merges cleanly."""
        line = f"worktree {self.branch}: {self.changes}"
        if self.files and self.preview is not None:
            line += f", merge: {self.preview.text}"
        return line


class MergeResult(BaseModel):
    """What `merge_task` did."""

    model_config = _FROZEN
    task_id: str
    how: MergeHow
    merged: bool
    """Whether the work reached the parent's checkout."""
    message: str
    """One sentence saying what happened and, on failure, what to do."""
    conflicts: tuple[str, ...] = ()
    patch: str | None = None
    """The `.patch` file (always for `patch`; on failure, kept beside the branch)."""
    commit: str | None = None
    """The commit made in the parent (`squash`, `cherry-pick`)."""
    worktree: Worktree | None = None
