"""Merging a task's branch back into the parent's checkout, four ways (blocking; in a thread).

- `apply`: the branch's changes, merged with the parent's current files (uncommitted ones
  too), are applied to the parent's files only; its index and HEAD are untouched, so the
  parent reviews and commits them as it likes.
- `squash`: the same changes, staged and committed as one commit on the parent's branch
  (the parent must have nothing staged, and no uncommitted changes in the files it touches).
- `cherry-pick`: the branch's commits replayed onto the parent's branch, as they are (the
  parent must have no uncommitted changes to tracked files).
- `patch`: nothing is applied; the answer is the `.patch` file.

Every way first writes the `.patch` and previews the merge (`git merge-tree`): with conflicts
nothing is touched and the answer names the paths. A refusal or failure leaves the parent as
it was (`git apply` is all-or-nothing; a failed cherry-pick is aborted) and keeps the branch,
the worktree and the patch. After a merge the worktree and branch are removed: the work is in
the parent (and in the patch).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from .._types._worktrees import MergeResult, Worktree
from ._git import IDENTITY, NO_HOOKS, GitError, Repo

if TYPE_CHECKING:
    from collections.abc import Callable

    from .._types._worktrees import MergeHow

__all__ = ["merge_sync"]


class _Refused(Exception):
    """The merge cannot be done as asked; the message says why and what to do."""

    def __init__(self, message: str, paths: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.paths = paths


def merge_sync(worktree: Worktree, how: MergeHow, title: str) -> MergeResult:
    """Merge `worktree`'s branch into its parent checkout `how` (see the module doc)."""
    from ._manager import write_patch  # the manager imports this module

    repo = Repo(Path(worktree.repo))
    assert worktree.head is not None, "a kept worktree has a head"
    patch = write_patch(repo, worktree)
    kept = worktree.model_copy(update={"patch": patch})
    if how == "patch":
        return MergeResult(
            task_id=worktree.task_id, how=how, merged=False, patch=patch, worktree=kept,
            message=f"The changes are in {patch}; apply them with `git apply {patch}` in "
            f"{worktree.repo}. The branch {worktree.branch} and its worktree stay until "
            "`discard_task`.",
        )  # fmt: skip
    preview, tree, ours = repo.merge_preview(worktree.head)
    try:
        if not preview.clean:
            raise _Refused(
                f"it conflicts with the checkout's current files in {preview.text[13:]}",
                preview.conflicts,
            )
        assert tree is not None
        commit = _WAYS[how](repo, worktree, ours, tree, title)
    except (_Refused, GitError) as exc:
        return MergeResult(
            task_id=worktree.task_id, how=how, merged=False, patch=patch, worktree=kept,
            conflicts=exc.paths if isinstance(exc, _Refused) else (),
            message=f"Not merged: {exc}. Nothing in {worktree.repo} was changed; the branch "
            f"{worktree.branch}, its worktree ({worktree.path}) and the patch ({patch}) are "
            "kept: resolve it there and merge again, merge the branch yourself, or "
            "`discard_task`.",
        )  # fmt: skip
    note = _clean_up(repo, worktree)
    return MergeResult(
        task_id=worktree.task_id, how=how, merged=True, patch=patch, commit=commit,
        worktree=kept.model_copy(update={"state": "merged"}),
        message=f"Merged ({how}) into {worktree.repo}" + (f" as {commit[:12]}" if commit else "")
        + f"; the patch stays at {patch}." + note,
    )  # fmt: skip


def _apply(repo: Repo, worktree: Worktree, ours: str, tree: str, title: str) -> str | None:
    diff = repo.diff(ours, tree)
    if diff:
        _check_apply(repo, diff, "--check")
        repo.git("apply", "--whitespace=nowarn", stdin=diff)
    return None


def _squash(repo: Repo, worktree: Worktree, ours: str, tree: str, title: str) -> str | None:
    if repo.git("diff", "--cached", "--quiet", ok=(0, 1)).returncode:
        raise _Refused(
            "the checkout has staged changes, which a squash commit would take in; commit or "
            "unstage them, or use how='apply'"
        )
    diff = repo.diff(ours, tree)
    if not diff:
        return None
    _check_apply(repo, diff, "--index", "--check")
    repo.git("apply", "--index", "--whitespace=nowarn", stdin=diff)
    message = f"{title}\n\nWork of outrider task {worktree.task_id} ({worktree.branch})."
    repo.git(*NO_HOOKS, "commit", "--quiet", "--no-verify", "-m", message, env=_identity(repo))
    return repo.head()


def _cherry_pick(repo: Repo, worktree: Worktree, ours: str, tree: str, title: str) -> str | None:
    dirty = repo.git("status", "--porcelain", "--untracked-files=no").stdout.splitlines()
    if dirty:
        paths = tuple(line[3:] for line in dirty)
        raise _Refused(
            "a cherry-pick needs no uncommitted changes to tracked files, and the checkout has "
            f"some in {', '.join(paths[:5])}; commit or stash them, or use how='apply'",
            paths,
        )
    commits = repo.git("rev-list", "--reverse", f"{worktree.base}..{worktree.head}").stdout.split()
    done = repo.git(
        *NO_HOOKS, "cherry-pick", "--allow-empty", *commits, env=_identity(repo), ok=(0, 1)
    )
    if done.returncode:
        conflicts = tuple(repo.git("diff", "--name-only", "--diff-filter=U").stdout.split())
        repo.git("cherry-pick", "--abort", ok=(0, 128))
        raise _Refused(f"the cherry-pick stopped on conflicts in {', '.join(conflicts)}", conflicts)
    return repo.head()


_WAYS: dict[str, Callable[[Repo, Worktree, str, str, str], str | None]] = {
    "apply": _apply, "squash": _squash, "cherry-pick": _cherry_pick,
}  # fmt: skip


def _check_apply(repo: Repo, diff: str, *flags: str) -> None:
    done = repo.git("apply", *flags, stdin=diff, ok=(0, 1))
    if done.returncode:
        said = [ln for ln in done.stderr.splitlines() if ln.startswith("error:")]
        paths = tuple(
            ln.split(": ", 2)[1] for ln in said if ln.count(": ") >= 2 and " " not in ln[7:8]
        )
        reason = "; ".join(s.removeprefix("error: ") for s in said[:3]) or "git apply refused"
        raise _Refused(f"the changes do not apply to the checkout as it is now ({reason})", paths)


def _identity(repo: Repo) -> dict[str, str]:
    """Outrider's identity for a commit in the parent, only where the user has none set."""
    return {} if repo.git("config", "user.email", ok=(0, 1)).stdout.strip() else IDENTITY


def _clean_up(repo: Repo, worktree: Worktree) -> str:
    """Remove the merged worktree and branch; a note if the folder had to stay."""
    try:
        repo.remove_worktree(Path(worktree.path))
    except GitError as exc:
        return f" Its worktree stays at {worktree.path} ({exc})."
    repo.delete_branch(worktree.branch)
    return ""
