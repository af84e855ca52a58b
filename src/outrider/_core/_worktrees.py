"""Pure decisions about worktrees: who gets one, how git's answers read, what may be removed.

No I/O: the git commands run in `outrider._worktrees`; these functions decide from their
answers, so every rule is tested alone.

Invariants:
- A task that cannot write never gets a worktree; a writing task gets one by default in a git
  repository, unless `none` was asked for (the submit's choice wins over the agent file's,
  which wins over the configured default).
- A task that asked for a worktree outside git is never run silently unisolated: the decision
  carries a note saying so, which the task's output and result repeat.
- A sweep never removes uncommitted files or a branch with unmerged work; past retention it
  removes only the folder of kept work (its branch stays).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, TypeAlias

from .._types._worktrees import FileChange, MergePreview

if TYPE_CHECKING:
    from collections.abc import Collection, Mapping

    from .._types._worktrees import Isolation, Worktree

__all__ = [
    "BRANCH_PREFIX",
    "Placement",
    "branch_of",
    "SweepAction",
    "sweep_action",
    "new_overlaps",
    "parse_merge_tree",
    "parse_status",
    "parse_numstat",
    "place",
    "task_of_branch",
]

BRANCH_PREFIX = "outrider/"
SweepAction: TypeAlias = Literal["keep", "remove", "remove_folder"]


@dataclass(frozen=True, slots=True)
class Placement:
    """Where a task works: in a worktree or in place, and why (a note when it matters)."""

    worktree: bool
    note: str | None = None


def place(
    *,
    writes: bool,
    in_git: bool,
    asked: Isolation | None,
    agent_default: Isolation | None,
    configured: Isolation,
    nested: bool = False,
) -> Placement:
    """Whether a task runs in its own worktree.

    Args:
        writes: Whether it can write files (not a read-only agent).
        in_git: Whether its folder is inside a git repository.
        asked: The submit's `isolation`, if given.
        agent_default: The agent file's `isolation`, if given.
        configured: The configured default for writing tasks.
        nested: Whether its folder is inside another task's worktree (a delegated sub-agent):
            it writes there by default, beside its parent, with path leases.
    """
    chosen = asked or agent_default or ("none" if nested else configured)
    if not writes or chosen == "none":
        return Placement(worktree=False)
    if not in_git:
        if asked is None and agent_default is None:
            return Placement(worktree=False)  # the default where there is no git: in place
        return Placement(
            worktree=False,
            note="isolation 'worktree' was asked for, but the folder is not in a git "
            "repository: the task works in the folder itself (the built-in agent's writes "
            "take path leases there)",
        )
    return Placement(worktree=True)


def branch_of(task_id: str) -> str:
    """The branch of a task's worktree: `outrider/<task-id>`."""
    return BRANCH_PREFIX + task_id


def task_of_branch(branch: str) -> str | None:
    """The task whose worktree branch this is (`refs/heads/` optional), else None."""
    name = branch.removeprefix("refs/heads/")
    if not name.startswith(BRANCH_PREFIX) or len(name) == len(BRANCH_PREFIX):
        return None
    return name[len(BRANCH_PREFIX) :]


def parse_numstat(text: str) -> tuple[FileChange, ...]:
    """Files changed, from `git diff --numstat -z` (renames read as their new path)."""
    out: list[FileChange] = []
    fields = text.split("\0")
    i = 0
    while i < len(fields):
        head = fields[i]
        i += 1
        if not head:
            continue
        added, removed, path = head.split("\t", 2)
        if not path:  # a rename: the old and new paths follow as their own fields
            path = fields[i + 1]
            i += 2
        out.append(
            FileChange(
                path=path,
                added=None if added == "-" else int(added),
                removed=None if removed == "-" else int(removed),
            )
        )
    return tuple(out)


def parse_merge_tree(exit_code: int, stdout: str) -> MergePreview:
    """The preview from `git merge-tree --write-tree -z --name-only --no-messages`.

    Exit 0 means clean (the output is the merged tree); exit 1 means conflicts, whose paths
    follow the tree, NUL-separated.

    Raises:
        ValueError: Another exit code (git could not merge at all).
    """
    if exit_code not in (0, 1):
        raise ValueError(f"git merge-tree failed with exit {exit_code}: {stdout.strip()}")
    parts = [p for p in stdout.split("\0")[1:] if p]
    conflicts = tuple(dict.fromkeys(parts))
    return MergePreview(clean=exit_code == 0, conflicts=() if exit_code == 0 else conflicts)


def sweep_action(worktree: Worktree, *, dirty: bool, age: float, retention: float) -> SweepAction:
    """What a sweep does with a worktree.

    `keep` an active one, one with uncommitted files, or kept work within `retention`;
    `remove` (folder and branch) one that changed nothing or was merged or discarded;
    `remove_folder` for kept work past `retention`: the folder goes (that is the disk space),
    the branch and its commits stay until `merge_task` or `discard_task`.
    """
    if worktree.state in ("active", "removed") or dirty:
        return "keep"
    if worktree.state in ("merged", "discarded") or not worktree.changed:
        return "remove"
    return "remove_folder" if age > retention else "keep"


def parse_status(text: str) -> frozenset[str]:
    """The paths `git status --porcelain -z` reports (for a rename, both of them)."""
    paths: set[str] = set()
    fields = text.split("\0")
    i = 0
    while i < len(fields):
        entry = fields[i]
        i += 1
        if len(entry) < 4:
            continue
        paths.add(entry[3:])
        if entry[0] in "RC":  # the original path follows as its own field
            paths.add(fields[i])
            i += 1
    return frozenset(paths)


def new_overlaps(
    touched: frozenset[str], others: Mapping[str, frozenset[str]], reported: Collection[str]
) -> dict[str, tuple[str, ...]]:
    """The other tasks whose touched files meet `touched`, not yet reported; the shared paths.

    Each pair of tasks is reported once, however their files change afterwards.
    """
    found: dict[str, tuple[str, ...]] = {}
    for other, theirs in sorted(others.items()):
        shared = touched & theirs
        if shared and other not in reported:
            found[other] = tuple(sorted(shared))
    return found
