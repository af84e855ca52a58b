"""Merging a task's worktree back, four ways; failures keep the branch, worktree and patch."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

import anyio
import pytest

import outrider
from outrider import TaskNotFound, UserError
from outrider.testing import wait_until

from .conftest import S, exists, git, read, run, state

if TYPE_CHECKING:
    from pathlib import Path


def _writes(repo: Path, script: str) -> outrider.CliAgentSpec:
    return outrider.cli_agent("sh", f"{script}; echo done", cwd=str(repo))


async def test_apply_changes_the_files_only_and_cleans_up(
    orch: outrider.Orchestrator, repo: Path
) -> None:
    (done,) = await run(orch, _writes(repo, "echo one > app.py; echo four >> a.py"))
    index = git(repo, "ls-files", "--stage")
    result = await orch.session(S).merge_task(done.id)
    assert result.merged, result.message
    assert (repo / "app.py").read_text() == "one\n"
    assert (repo / "a.py").read_text().endswith("three\nfour\n")
    assert git(repo, "ls-files", "--stage") == index  # nothing staged
    assert "outrider/" not in git(repo, "branch", "--list")
    assert result.worktree is not None
    assert result.worktree.state == "merged"
    assert not exists(result.worktree.path)
    assert result.patch is not None
    assert "+one" in read(result.patch)
    (listed,) = await orch.session(S).worktrees()
    assert listed.state == "merged"


async def test_a_conflicting_merge_changes_nothing_and_keeps_everything(
    orch: outrider.Orchestrator, repo: Path
) -> None:
    first, second = await run(
        orch, _writes(repo, "echo one > app.py"), _writes(repo, "echo two > app.py")
    )
    assert (await orch.session(S).merge_task(first.id)).merged
    before = state(repo)
    result = await orch.session(S).merge_task(second.id)
    assert not result.merged
    assert result.conflicts == ("app.py",)
    assert "app.py" in result.message
    assert state(repo) == before
    assert (repo / "app.py").read_text() == "one\n"
    # the branch, the worktree and the patch are all still there (never lose the work)
    assert git(repo, "show", f"outrider/{second.id}:app.py") == "two\n"
    assert result.worktree is not None
    assert read(result.worktree.path + "/app.py") == "two\n"
    assert result.patch is not None
    assert "+two" in read(result.patch)
    (_, kept) = await orch.session(S).worktrees()
    assert kept.state == "kept"
    assert kept.preview is not None


async def test_a_dirty_parent_merges_when_the_lines_differ(
    orch: outrider.Orchestrator, repo: Path
) -> None:
    (done,) = await run(orch, _writes(repo, "sed -i 's/^one$/ONE/' a.py"))
    (repo / "a.py").write_text("one\ntwo\nthree\nparent's line\n")  # after the task started
    result = await orch.session(S).merge_task(done.id)
    assert result.merged, result.message
    assert (repo / "a.py").read_text() == "ONE\ntwo\nthree\nparent's line\n"


async def test_squash_makes_one_commit(orch: outrider.Orchestrator, repo: Path) -> None:
    script = "echo x > x.py; git add x.py; git commit -qm x; echo y > y.py"
    (done,) = await run(orch, _writes(repo, script))
    head = git(repo, "rev-parse", "HEAD")
    result = await orch.session(S).merge_task(done.id, how="squash")
    assert result.merged, result.message
    assert result.commit is not None
    assert git(repo, "rev-parse", "HEAD~1") == head
    assert sorted(git(repo, "show", "--name-only", "--format=", "HEAD").split()) == ["x.py", "y.py"]
    assert git(repo, "log", "-1", "--format=%an", "HEAD").strip() == "Dev"
    assert git(repo, "status", "--porcelain") == ""


async def test_squash_refuses_a_staged_index(orch: outrider.Orchestrator, repo: Path) -> None:
    (done,) = await run(orch, _writes(repo, "echo x > x.py"))
    (repo / "b.py").write_text("staged\n")
    git(repo, "add", "b.py")
    before = state(repo)
    result = await orch.session(S).merge_task(done.id, how="squash")
    assert not result.merged
    assert "staged changes" in result.message
    assert state(repo) == before


async def test_cherry_pick_keeps_the_commits(orch: outrider.Orchestrator, repo: Path) -> None:
    script = "echo x > x.py; git add x.py; git commit -qm 'add x'; echo y > y.py"
    (done,) = await run(orch, _writes(repo, script))
    result = await orch.session(S).merge_task(done.id, how="cherry-pick")
    assert result.merged, result.message
    subjects = git(repo, "log", "-2", "--format=%s").splitlines()
    assert subjects == [f"outrider {done.id}: the files the task left", "add x"]


async def test_cherry_pick_refuses_uncommitted_tracked_changes(
    orch: outrider.Orchestrator, repo: Path
) -> None:
    (done,) = await run(orch, _writes(repo, "echo x > x.py"))
    (repo / "b.py").write_text("dirty\n")
    result = await orch.session(S).merge_task(done.id, how="cherry-pick")
    assert not result.merged
    assert result.conflicts == ("b.py",)
    assert not (repo / "x.py").exists()


async def test_patch_only_writes_the_patch(orch: outrider.Orchestrator, repo: Path) -> None:
    (done,) = await run(orch, _writes(repo, "echo x > x.py"))
    result = await orch.session(S).merge_task(done.id, how="patch")
    assert not result.merged
    assert result.patch is not None
    git(repo, "apply", "--check", result.patch)
    assert not (repo / "x.py").exists()
    (kept,) = await orch.session(S).worktrees()
    assert kept.state == "kept"


async def test_discard_removes_the_worktree_and_branch_but_keeps_a_patch(
    orch: outrider.Orchestrator, repo: Path
) -> None:
    (done,) = await run(orch, _writes(repo, "echo x > x.py"))
    worktree = await orch.session(S).discard_task(done.id)
    assert worktree.state == "discarded"
    assert not exists(worktree.path)
    assert "outrider/" not in git(repo, "branch", "--list")
    assert worktree.patch is not None
    assert "+x" in read(worktree.patch)
    with pytest.raises(UserError, match="discarded; there is nothing left to merge"):
        await orch.session(S).merge_task(done.id)


async def test_what_cannot_be_merged_says_why(
    orch: outrider.Orchestrator, repo: Path, tmp_path: Path
) -> None:
    (shell,) = await run(orch, outrider.shell("true", cwd=str(repo)))
    with pytest.raises(UserError, match="has no worktree"):
        await orch.session(S).merge_task(shell.id)
    with pytest.raises(TaskNotFound):
        await orch.session(S).merge_task("t_nope")
    (mine,) = await run(orch, _writes(repo, "echo x > x.py"))
    with pytest.raises(TaskNotFound):
        await orch.session("another").merge_task(mine.id)
    with pytest.raises(UserError, match="`how` must be one of"):
        await orch.session(S).merge_task(mine.id, how="rebase")  # type: ignore[arg-type]
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    running = await orch.session(S).submit(_writes(repo, f"cat {fifo}"))

    async def active() -> bool:
        return any(w.state == "active" for w in await orch.session(S).worktrees())

    await wait_until(active, timeout=10)
    with pytest.raises(UserError, match="still running"):
        await orch.session(S).merge_task(running.id)
    await orch.session(S).cancel(running.id)


async def test_eight_parallel_writers_merge_one_at_a_time(
    orch: outrider.Orchestrator, repo: Path
) -> None:
    tasks = await run(orch, *(_writes(repo, f"echo {n} > f{n}.py") for n in range(8)))
    assert all(t.state == "succeeded" for t in tasks), [t.error.message for t in tasks if t.error]
    results: list[outrider.MergeResult] = []

    async def merge(task_id: str) -> None:
        results.append(await orch.session(S).merge_task(task_id))

    async with anyio.create_task_group() as tg:
        for task in tasks:
            tg.start_soon(merge, task.id)
    assert all(r.merged for r in results), [r.message for r in results]
    assert all(read(str(repo / f"f{n}.py")) == f"{n}\n" for n in range(8))
    assert "outrider/" not in git(repo, "branch", "--list")
