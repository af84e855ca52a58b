"""The git commands behind worktrees, as blocking functions (callers run them in threads).

- Every command runs with a clean git environment (no `GIT_DIR`, `GIT_INDEX_FILE`, … from
  outrider's own), never prompts, and never runs hooks or signs: outrider's commits are its
  own bookkeeping (`--no-verify`, `commit.gpgsign=false`, author `outrider`).
- The parent's index, HEAD and files are never touched except by a merge it asked for: a
  snapshot of its state is built in a temporary index (`GIT_INDEX_FILE`, a copy of the real
  one so unchanged files are not re-hashed), written as a tree and a commit object.
- Each command has a timeout; git's own lock files keep concurrent commands on one
  repository consistent, and merges into one repository are serialised by the caller.
"""

from __future__ import annotations

import contextlib
import functools
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from .._core._worktrees import parse_merge_tree, parse_numstat, parse_status

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from .._types._worktrees import FileChange, MergePreview

__all__ = [
    "IDENTITY", "MIN_VERSION", "NO_HOOKS", "GitError", "Repo", "check_version", "run_git",
    "toplevel",
]  # fmt: skip

_TIMEOUT = 120.0
IDENTITY = {
    "GIT_AUTHOR_NAME": "outrider", "GIT_AUTHOR_EMAIL": "outrider@localhost",
    "GIT_COMMITTER_NAME": "outrider", "GIT_COMMITTER_EMAIL": "outrider@localhost",
}  # fmt: skip
NO_HOOKS = ("-c", "core.hooksPath=/dev/null", "-c", "commit.gpgsign=false")


class GitError(Exception):
    """A git command failed; the message says which and git's own words."""

    def __init__(self, message: str, *, stderr: str = "", code: int | None = None) -> None:
        super().__init__(message)
        self.stderr = stderr
        self.code = code


def _env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    env.update(GIT_TERMINAL_PROMPT="0", GIT_OPTIONAL_LOCKS="0", LC_ALL="C")
    env.update(extra or {})
    return env


def run_git(
    cwd: Path,
    *args: str,
    env: Mapping[str, str] | None = None,
    stdin: str | None = None,
    ok: Sequence[int] = (0,),
) -> subprocess.CompletedProcess[str]:
    """Run `git args` in `cwd`; its exit code must be one of `ok`.

    Raises:
        GitError: git is missing, timed out, or exited otherwise.
    """
    argv = ["git", *args]
    # A group of its own keeps a terminal's Ctrl-C off git; staying in our session keeps a
    # subreaper's orphan reaping (`outrider run`) from taking its exit status.
    try:
        done = subprocess.run(
            argv, cwd=cwd, env=_env(env), input=stdin, capture_output=True, text=True,
            timeout=_TIMEOUT, check=False, process_group=0,
        )  # fmt: skip
    except FileNotFoundError:
        if shutil.which("git") is None:
            raise GitError("git is not installed; install git 2.38 or newer") from None
        raise GitError(f"the folder {cwd} does not exist") from None
    except subprocess.TimeoutExpired:
        raise GitError(f"`git {args[0]}` took over {_TIMEOUT:g} s in {cwd}") from None
    if done.returncode not in ok:
        said = done.stderr.strip() or done.stdout.strip()
        raise GitError(
            f"`git {' '.join(args[:3])}` failed in {cwd}: {said}",
            stderr=done.stderr,
            code=done.returncode,
        )
    return done


MIN_VERSION = (2, 38)
"""`git merge-tree --write-tree` (the merge previews) came in git 2.38."""


@functools.cache
def check_version() -> None:
    """Check once that git is installed and new enough.

    Raises:
        GitError: It is missing or older than 2.38 (the message says what to do).
    """
    said = run_git(Path("/"), "version").stdout.split()
    parts = said[2].split(".")[:2] if len(said) > 2 else []
    found = tuple(int(p) if p.isdigit() else 0 for p in parts)
    if found < MIN_VERSION:
        raise GitError(
            f"{' '.join(said)} is older than 2.38, which worktrees need (merge previews); "
            "install a newer git, or set isolation 'none'"
        )


def toplevel(folder: Path) -> Path | None:
    """The top folder of the checkout (or worktree) holding `folder`, or None outside git.

    Git finds a checkout by a `.git` in the folder or above it (`GIT_*` variables are not
    passed on), so where there is none, git is not asked: most tasks outside a repository
    cost no process.
    """
    absolute = folder.absolute()
    if not any((f / ".git").exists() for f in (absolute, *absolute.parents)):
        return None
    try:
        done = run_git(folder, "rev-parse", "--show-toplevel")
    except (GitError, OSError):
        return None
    return Path(done.stdout.strip())


@dataclass(frozen=True, slots=True)
class Repo:
    """A checkout: its top folder."""

    root: Path

    def git(
        self,
        *args: str,
        env: Mapping[str, str] | None = None,
        stdin: str | None = None,
        ok: Sequence[int] = (0,),
    ) -> subprocess.CompletedProcess[str]:
        """Run git in the checkout (see `run_git`)."""
        return run_git(self.root, *args, env=env, stdin=stdin, ok=ok)

    def head(self) -> str | None:
        """HEAD's commit, or None before the first commit."""
        done = self.git("rev-parse", "--verify", "--quiet", "HEAD^{commit}", ok=(0, 1))
        return done.stdout.strip() or None

    def resolve(self, ref: str) -> str:
        """The commit `ref` names.

        Raises:
            GitError: It names no commit.
        """
        done = self.git("rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}", ok=(0, 1))
        if not done.stdout.strip():
            raise GitError(f"{ref!r} names no commit in {self.root}")
        return done.stdout.strip()

    def snapshot(self) -> str:
        """A commit of the checkout's current files, uncommitted and untracked ones included.

        Ignored files are left out. HEAD itself when nothing differs from it. The real index
        is copied, never written.
        """
        head = self.head()
        index = Path(self.git("rev-parse", "--git-path", "index").stdout.strip())
        index = index if index.is_absolute() else self.root / index
        with tempfile.TemporaryDirectory(prefix="outrider-index-") as tmp:
            temp_index = Path(tmp) / "index"
            if index.exists():
                shutil.copyfile(index, temp_index)
            env = {"GIT_INDEX_FILE": str(temp_index)}
            self.git("add", "-A", "--", ".", env=env)
            tree = self.git("write-tree", env=env).stdout.strip()
        if head is not None and self.git("rev-parse", f"{head}^{{tree}}").stdout.strip() == tree:
            return head
        parents = ["-p", head] if head else []
        done = self.git(
            "commit-tree", tree, *parents, "-m", "outrider: snapshot of the working tree",
            env=IDENTITY,
        )  # fmt: skip
        return done.stdout.strip()

    def add_worktree(self, path: Path, branch: str, base: str, reason: str) -> None:
        """Check `base` out at `path` on a new `branch`, locked with `reason`."""
        path.parent.mkdir(parents=True, exist_ok=True)
        self.git("worktree", "add", "--quiet", "--lock", "--reason", reason, "-b", branch,
                 str(path), base)  # fmt: skip

    def copy_included(self, dest: Path) -> int:
        """Copy the ignored files `.worktreeinclude` names (gitignore syntax) to `dest`.

        Claude Code's file, read the same way: `.env`, local settings, … that a worktree of
        tracked and new files would lack. Returns how many were copied.
        """
        include = self.root / ".worktreeinclude"
        if not include.is_file():
            return 0
        listed = self.git("ls-files", "--others", "--ignored", "-z", f"--exclude-from={include}")
        copied = 0
        for rel in filter(None, listed.stdout.split("\0")):
            source, target = self.root / rel, dest / rel
            if target.exists() or source.is_symlink() or not source.is_file():
                continue  # a new file the snapshot holds already, or not a plain file
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
            copied += 1
        return copied

    def remove_worktree(self, path: Path) -> None:
        """Remove a worktree's folder and record (it must have no uncommitted files)."""
        self.git("worktree", "unlock", str(path), ok=(0, 128))
        if path.exists():
            self.git("worktree", "remove", str(path))
        self.git("worktree", "prune")
        with contextlib.suppress(OSError):  # the repository's folder, once it is empty
            path.parent.rmdir()

    def delete_branch(self, branch: str) -> None:
        """Delete a branch (gone already is fine)."""
        self.git("branch", "-D", branch, ok=(0, 1))

    def merge_preview(self, theirs: str) -> tuple[MergePreview, str | None, str]:
        """Whether `theirs` merges into the checkout's current state.

        Returns:
            The preview, the merged tree when clean, and the snapshot it was computed against.
        """
        ours = self.snapshot()
        done = self.git(
            "merge-tree", "--write-tree", "-z", "--name-only", "--no-messages", ours, theirs,
            ok=(0, 1),
        )  # fmt: skip
        preview = parse_merge_tree(done.returncode, done.stdout)
        tree = done.stdout.split("\0", 1)[0].strip() if preview.clean else None
        return preview, tree, ours

    def changes(self, base: str, head: str) -> tuple[FileChange, ...]:
        """Files changed from `base` to `head`."""
        done = self.git("diff", "--numstat", "-z", "-M", base, head)
        return parse_numstat(done.stdout)

    def diff(self, old: str, new: str) -> str:
        """A binary-safe patch from `old` to `new` (commits or trees)."""
        return self.git("diff", "--binary", "--full-index", old, new).stdout

    def touched(self, base: str) -> frozenset[str]:
        """Files changed since `base`: committed, uncommitted, and new (not ignored)."""
        status = self.git("status", "--porcelain", "-z", "--untracked-files=all").stdout
        committed = self.git("diff", "--name-only", "-z", base, "HEAD").stdout
        return parse_status(status) | {p for p in committed.split("\0") if p}

    def dirty(self) -> bool:
        """Whether the checkout has uncommitted or untracked (not ignored) files."""
        return bool(self.git("status", "--porcelain", "-z").stdout)

    def commit_all(self, message: str) -> bool:
        """Commit every change and new file (no hooks, no signing); False when none."""
        self.git("add", "-A", "--", ".")
        if self.git("diff", "--cached", "--quiet", ok=(0, 1)).returncode == 0:
            return False
        self.git(*NO_HOOKS, "commit", "--quiet", "--no-verify", "-m", message, env=IDENTITY)
        return True

    def lock(self, path: Path, reason: str) -> None:
        """Lock a worktree (a lock already there is fine)."""
        self.git("worktree", "lock", "--reason", reason, str(path), ok=(0, 128))

    def unlock(self, path: Path) -> None:
        """Unlock a worktree (not locked is fine)."""
        self.git("worktree", "unlock", str(path), ok=(0, 128))
