"""Cleaning up worktrees: the sweep (cleanup rules), and reconciling with git at start.

Invariants:
- Nothing with uncommitted files is removed, and a branch with unmerged work is never
  deleted: past retention only the folder of kept work goes (`_core._worktrees.sweep_action`).
- At start no task runs, so a worktree recorded `active` was left by a crash: what its task
  left is committed on its branch, it is unlocked and kept (or removed if it changed nothing),
  ready for the task's retry to continue in it, or for `merge_task` / `discard_task`.
- A folder in the worktrees root with no record (a crash between `git worktree add` and the
  record's write) is adopted when it names a known task, and removed when it holds no work.
- Records of worktrees merged, discarded or removed long ago are forgotten, with their patch.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import TYPE_CHECKING

import anyio
import anyio.to_thread

from .._core._worktrees import sweep_action, task_of_branch
from .._logging import logger
from .._store._sqlite import DeleteWorktree
from ._git import GitError, Repo, run_git

if TYPE_CHECKING:
    from .._types._worktrees import Worktree
    from ._manager import Worktrees

__all__ = ["reconcile", "sweep"]


async def sweep(
    worktrees: Worktrees, *, now: float, retention: float, session: str | None = None
) -> list[Worktree]:
    """Apply the cleanup rules to the worktrees (of `session`, or all); the ones changed."""
    changed: list[Worktree] = []
    for worktree in await worktrees.list(session):
        age = now - worktree.updated_at.timestamp()
        if worktree.state in ("merged", "discarded", "removed"):
            if age > retention:
                await _forget(worktrees, worktree)
            if worktree.state == "removed" or not await anyio.Path(worktree.path).exists():
                continue
        try:
            done = await _sweep_one(worktrees, worktree, age=age, retention=retention)
        except GitError as exc:
            logger.warning("worktree %s not swept: %s", worktree.path, exc)
            continue
        if done is not None:
            changed.append(done)
    return changed


async def _sweep_one(
    worktrees: Worktrees, worktree: Worktree, *, age: float, retention: float
) -> Worktree | None:
    path = Path(worktree.path)
    exists = await anyio.Path(path).is_dir()
    dirty = exists and await anyio.to_thread.run_sync(Repo(path).dirty)
    action = sweep_action(worktree, dirty=dirty, age=age, retention=retention)
    if action == "keep" or (action == "remove_folder" and not exists):
        return None
    repo = Repo(Path(worktree.repo))
    await worktrees.admin(worktree.repo, repo.remove_worktree, path)
    if action == "remove_folder":
        logger.info("removed the folder of %s (past retention; its branch stays)", path)
        return await worktrees.save(worktree.model_copy(update={"updated_at": worktrees.now()}))
    if worktree.state == "kept":  # it changed nothing: its branch goes too
        await worktrees.admin(worktree.repo, repo.delete_branch, worktree.branch)
        worktree = worktree.model_copy(update={"state": "removed"})
    return await worktrees.save(worktree.model_copy(update={"updated_at": worktrees.now()}))


async def _forget(worktrees: Worktrees, worktree: Worktree) -> None:
    if worktree.patch is not None:
        with contextlib.suppress(OSError):
            await anyio.Path(worktree.patch).unlink(missing_ok=True)
    await worktrees.store.commit([DeleteWorktree(worktree.task_id)])


async def reconcile(worktrees: Worktrees) -> None:
    """Settle what a crash left: `active` worktrees, and folders without a record."""
    known = {w.path: w for w in await worktrees.list()}
    for worktree in known.values():
        if worktree.state != "active":
            continue
        try:
            done = await worktrees.finish(worktree)
        except GitError as exc:
            logger.warning("worktree %s left by a crash is kept as it is: %s", worktree.path, exc)
            continue
        logger.info("worktree %s left by a crash: %s", worktree.path, done.summary)
    for folder in await anyio.to_thread.run_sync(_folders, worktrees.root):
        if str(folder) not in known:
            try:
                await _adopt(worktrees, folder)
            except GitError as exc:
                logger.warning("worktree %s has no record and is left as it is: %s", folder, exc)


def _folders(root: Path) -> list[Path]:
    if not root.is_dir():
        return []
    return sorted(
        p for repo in root.iterdir() if repo.is_dir() for p in repo.iterdir() if p.is_dir()
    )


async def _adopt(worktrees: Worktrees, folder: Path) -> None:
    """Record (or remove, if it holds no work) a worktree folder that has no record."""

    def inspect() -> tuple[Path, str] | None:
        common = run_git(folder, "rev-parse", "--path-format=absolute", "--git-common-dir")
        branch = run_git(folder, "symbolic-ref", "--quiet", "HEAD", ok=(0, 1)).stdout.strip()
        task_id = task_of_branch(branch)
        if task_id is None or task_id != folder.name:
            return None
        return Path(common.stdout.strip()).parent, task_id

    found = await anyio.to_thread.run_sync(inspect)
    if found is None:
        logger.warning("%s is not an outrider worktree; left as it is", folder)
        return
    top, task_id = found
    task = await worktrees.store.get(task_id)
    if task is None:
        logger.warning("worktree %s names no known task; left as it is", folder)
        return
    await worktrees.adopt(task_id, task.session, top, folder)
