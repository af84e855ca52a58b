"""Worktrees: made for writing tasks, finished when they end, merged back only when asked.

Invariants:
- A worktree lives under outrider's data dir (`<root>/<repo-id>/<task-id>`), never inside the
  repository, on branch `outrider/<task-id>`, and is locked (`git worktree lock`) while its
  task runs, so no `git worktree prune` elsewhere removes it.
- Its record is stored before the task runs in it and after every change (write-ahead): a
  crash leaves a record the next start can reconcile.
- Finishing commits what the task left (no hooks, no signing), records the files changed,
  and previews the merge against the parent's current state. A worktree whose branch did not
  move is removed at once, branch too; one with work is kept.
- Merges and discards of one repository run one at a time. Before a merge is tried, the
  task's changes are written to a `.patch` beside its worktree; a merge that does not happen
  keeps the branch, the worktree and the patch, and names the conflicting paths. An agent's
  commits are never lost: a branch is deleted only once its work reached the parent (or the
  caller discarded it, and its patch is kept).

Cancellation: the git commands run in worker threads to completion; callers shield the
finishing step so a stopped task still leaves its work committed on its branch.
"""

from __future__ import annotations

import contextlib
import hashlib
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import anyio
import anyio.to_thread

from .._core._leases import Leases
from .._core._worktrees import Placement, branch_of, place
from .._paths import private_dir
from .._store._sqlite import PutWorktree
from .._types._errors import UserError
from .._types._worktrees import MergeResult, Worktree
from ._git import GitError, Repo, check_version, toplevel
from ._merge import merge_sync
from ._overlap import Overlaps

if TYPE_CHECKING:
    from collections.abc import Callable

    from .._store._store import Store
    from .._types._worktrees import Isolation, MergeHow
    from ..runners._protocol import Workplace

__all__ = ["Begun", "Worktrees", "repo_id"]


@dataclass(frozen=True, slots=True)
class Begun:
    """Where a task runs: its folder (relocated into its worktree, if it has one)."""

    folder: str
    worktree: Worktree | None = None
    note: str | None = None
    new: bool = False
    """Whether the worktree was just made (not left by an earlier attempt)."""


def repo_id(root: Path) -> str:
    """A folder name for a repository: its name and a hash of its path."""
    name = re.sub(r"[^A-Za-z0-9._-]", "_", root.name)[:40] or "repo"
    return f"{name}-{hashlib.sha256(str(root).encode()).hexdigest()[:10]}"


class Worktrees:
    """The worktrees of one orchestrator's tasks.

    Args:
        store: Where their records live.
        root: The folder they are made in (in the data dir).
        configured: The default `isolation` of writing tasks.
        wall: UTC epoch seconds now (the orchestrator's clock).
        setup: The command run in each new worktree (an agent file's `setup` wins).
    """

    def __init__(
        self,
        store: Store,
        *,
        root: Path,
        configured: Isolation,
        wall: Callable[[], float],
        setup: str | None = None,
    ) -> None:
        self.store = store
        self.setup = setup
        self.wall = wall
        self.overlaps = Overlaps(self)
        self.leases = Leases()
        """Files held by writing tasks that work in place."""
        self.root = root
        self.configured: Isolation = configured
        self._repo_locks: dict[str, anyio.Lock] = {}

    def now(self) -> datetime:
        """The time of a record's change."""
        return datetime.fromtimestamp(self.wall(), UTC)

    def repo_lock(self, repo: str) -> anyio.Lock:
        """The lock that serialises changes to one repository's worktrees and branches."""
        return self._repo_locks.setdefault(repo, anyio.Lock())

    async def save(self, worktree: Worktree) -> Worktree:
        """Store a record (write-ahead: before anyone acts on it)."""
        await self.store.commit([PutWorktree(worktree)])
        return worktree

    async def find(self, task_id: str, session: str | None = None) -> Worktree | None:
        """A task's worktree record (None for another session's task)."""
        found = await self.store.worktrees(task_id=task_id)
        if not found or (session is not None and found[0].session != session):
            return None
        return found[0]

    async def begin(self, task_id: str, session: str, workplace: Workplace) -> Begun:
        """Decide where a task works; make (or reuse, on a retry) its worktree if it gets one.

        Raises:
            GitError: The worktree could not be made (the message says why).
        """
        top = await anyio.to_thread.run_sync(toplevel, Path(workplace.folder))
        placement: Placement = place(
            writes=workplace.writes, in_git=top is not None, asked=workplace.asked,
            agent_default=workplace.agent_default, configured=self.configured,
            nested=Path(workplace.folder).is_relative_to(self.root),
        )  # fmt: skip
        if not placement.worktree:
            return Begun(workplace.folder, note=placement.note)
        assert top is not None
        await anyio.to_thread.run_sync(check_version)
        reused = await self._reuse(task_id)
        worktree = reused or await self._create(task_id, session, top, workplace.base)
        inner = Path(worktree.path) / Path(workplace.folder).relative_to(top)
        return Begun(str(inner), worktree, new=reused is None)

    async def _reuse(self, task_id: str) -> Worktree | None:
        """The worktree an earlier attempt left, locked again, if it is still there."""
        old = await self.find(task_id)
        if old is None or old.state not in ("active", "kept"):
            return None
        if not await anyio.Path(old.path).is_dir():
            return None
        repo = Repo(Path(old.repo))
        await self.admin(old.repo, repo.lock, Path(old.path), _reason(task_id))
        return await self.save(old.model_copy(update={"state": "active", "updated_at": self.now()}))

    async def _create(self, task_id: str, session: str, top: Path, base: str | None) -> Worktree:
        repo = Repo(top)
        path = self.root / repo_id(top) / task_id
        branch = branch_of(task_id)

        def base_commit() -> str:
            private_dir(self.root)
            if base in (None, "snapshot"):
                return repo.snapshot()
            return repo.resolve("HEAD" if base == "head" else base)

        commit = await anyio.to_thread.run_sync(base_commit)
        await self.admin(str(top), repo.add_worktree, path, branch, commit, _reason(task_id))
        await anyio.to_thread.run_sync(repo.copy_included, path)
        now = self.now()
        record = Worktree(
            task_id=task_id, session=session, repo=str(top), path=str(path), branch=branch,
            base=commit, created_at=now, updated_at=now,
        )  # fmt: skip
        return await self.save(record)

    async def adopt(self, task_id: str, session: str, top: Path, folder: Path) -> Worktree:
        """Record a worktree folder of `task_id` that has none, then finish it.

        Its base is where its branch left the checkout's HEAD.
        """
        repo = Repo(top)

        def base() -> str:
            head = Repo(folder).head()
            assert head is not None, "a worktree's branch has a commit"
            ours = repo.head()
            if ours is None:
                return head
            return repo.git("merge-base", ours, head, ok=(0, 1)).stdout.strip() or head

        now = self.now()
        record = Worktree(
            task_id=task_id, session=session, repo=str(top), path=str(folder),
            branch=branch_of(task_id), base=await anyio.to_thread.run_sync(base),
            created_at=now, updated_at=now,
        )  # fmt: skip
        return await self.finish(await self.save(record))

    async def finish(self, worktree: Worktree) -> Worktree:
        """Commit what the task left, record its changes and merge preview; unlock it.

        A worktree whose branch did not move is removed, branch too. On a git failure the
        worktree is kept as it is (unlocked) and the failure is raised.

        Raises:
            GitError: A git command failed.
        """
        tree, repo = Repo(Path(worktree.path)), Repo(Path(worktree.repo))

        def work() -> Worktree:
            tree.commit_all(f"outrider {worktree.task_id}: the files the task left")
            head = tree.head() or worktree.base
            if head == worktree.base:
                return worktree.model_copy(update={"head": head, "state": "removed"})
            files = repo.changes(worktree.base, head)
            preview = repo.merge_preview(head)[0]
            return worktree.model_copy(
                update={"head": head, "files": files, "preview": preview, "state": "kept"}
            )

        try:
            done = await anyio.to_thread.run_sync(work)
            if done.state == "removed":
                await self.admin(worktree.repo, remove_unchanged, repo, worktree)
            else:
                await self.admin(worktree.repo, repo.unlock, Path(worktree.path))
        except GitError:
            with contextlib.suppress(GitError):
                await self.admin(worktree.repo, repo.unlock, Path(worktree.path))
            await self.save(worktree.model_copy(update={"state": "kept", "updated_at": self.now()}))
            raise
        saved = await self.save(done.model_copy(update={"updated_at": self.now()}))
        if saved.state == "kept":
            await self.overlaps.touched(saved, frozenset(f.path for f in saved.files))
        else:
            self.overlaps.forget(saved.task_id)
        return saved

    async def admin(self, repo: str, fn: Callable[..., object], *args: object) -> None:
        """Run a git command that changes the repository's worktree records, one at a time.

        git reads every worktree's record while it adds, removes or prunes one, or deletes a
        branch; one made meanwhile is read half-written (`failed to read …/commondir`).
        """
        async with self.repo_lock(repo):
            await anyio.to_thread.run_sync(fn, *args)

    async def merge(self, task_id: str, session: str, how: MergeHow, title: str) -> MergeResult:
        """Bring a finished task's work into the parent's checkout (see `_merge`).

        Raises:
            UserError: The task has no worktree with work to merge (the message says why).
        """
        worktree = await self._mergeable(task_id, session)
        async with self.repo_lock(worktree.repo):
            worktree = await self._mergeable(task_id, session)  # as it is now
            result = await anyio.to_thread.run_sync(merge_sync, worktree, how, title)
            if result.worktree is not None:
                await self.save(result.worktree.model_copy(update={"updated_at": self.now()}))
        return result

    async def _mergeable(self, task_id: str, session: str) -> Worktree:
        worktree = await self.find(task_id, session)
        if worktree is None:
            raise UserError(
                f"Task {task_id!r} has no worktree: it did not write, or ran with isolation "
                "'none' (its changes are in its folder already)."
            )
        if worktree.state == "active":
            raise UserError(
                f"Task {task_id!r} is still running in its worktree; wait for it to end, "
                "then merge it."
            )
        if worktree.state != "kept":
            raise UserError(
                f"Task {task_id!r}'s worktree is {worktree.state}; there is nothing left to merge."
            )
        return worktree

    async def discard(self, task_id: str, session: str) -> Worktree:
        """Give up a finished task's work: its worktree and branch go, a `.patch` stays.

        Raises:
            UserError: The task has no kept worktree (or is still running).
        """
        worktree = await self._mergeable(task_id, session)
        async with self.repo_lock(worktree.repo):

            def work() -> Worktree:
                repo = Repo(Path(worktree.repo))
                patch = write_patch(repo, worktree)
                repo.git("worktree", "unlock", worktree.path, ok=(0, 128))
                if Path(worktree.path).exists():
                    repo.git("worktree", "remove", "--force", worktree.path)
                repo.git("worktree", "prune")
                repo.delete_branch(worktree.branch)
                return worktree.model_copy(update={"state": "discarded", "patch": patch})

            done = await anyio.to_thread.run_sync(work)
        return await self.save(done.model_copy(update={"updated_at": self.now()}))

    async def list(self, session: str | None = None) -> list[Worktree]:
        """Worktree records, oldest first (a session's, or all)."""
        return await self.store.worktrees(session=session)


def _reason(task_id: str) -> str:
    return f"outrider task {task_id} is running in it"


def remove_unchanged(repo: Repo, worktree: Worktree) -> None:
    """Remove an unchanged worktree and its branch."""
    repo.remove_worktree(Path(worktree.path))
    repo.delete_branch(worktree.branch)


def write_patch(repo: Repo, worktree: Worktree) -> str | None:
    """Write the branch's changes as `<task-id>.patch` beside the worktree; its path."""
    if worktree.head is None:
        return None
    path = Path(worktree.path).with_suffix(".patch")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(repo.diff(worktree.base, worktree.head))
    path.chmod(0o600)
    return str(path)
