"""Cleanup rules, the sweep, `--prune`, and what a crash leaves."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from typing import TYPE_CHECKING

import anyio
import pytest

import outrider
from outrider.runners._cli_agent import CliAgentRunner, CliTemplate
from outrider.testing import FakeClock

from .conftest import exists, git, write

if TYPE_CHECKING:
    from pathlib import Path

DAY = 86_400.0


def _sh() -> CliAgentRunner:
    return CliAgentRunner({"sh": CliTemplate(("/bin/sh", "-c", "{prompt}"))})


async def test_the_sweep_keeps_work_and_removes_only_what_it_may(
    repo: Path, tmp_path: Path
) -> None:
    clock = FakeClock(wall_start=1_800_000_000.0)
    settings = outrider.Settings(worktrees_dir=str(tmp_path / "wts"), worktree_retention=DAY)
    async with outrider.Orchestrator(
        tmp_path / "o.db", settings, runners=[_sh()], clock=clock
    ) as orch:
        session = orch.session("s")
        specs = [outrider.cli_agent("sh", f"echo {n} > f{n}.py; echo ok", cwd=str(repo))
                 for n in range(4)]  # fmt: skip
        ids = [(await session.submit(spec)).id for spec in specs]
        done = await session.wait(ids, timeout=30)
        assert all(t.state == "succeeded" for t in done), [t.error for t in done]
        kept, dirty, merged, discarded = ids
        assert (await session.merge_task(merged)).merged
        gone = await session.discard_task(discarded)
        by_id = {w.task_id: w for w in await session.worktrees()}
        write(by_id[dirty].path + "/scratch.txt", "not committed")

        assert await session.prune_worktrees() == []  # within retention: nothing to do
        clock.jump(2 * DAY)
        swept = await session.prune_worktrees()
        assert [w.task_id for w in swept] == [kept]  # the folder of kept work, past retention
        assert not exists(by_id[kept].path)
        assert git(repo, "show", f"outrider/{kept}:f0.py") == "0\n"  # its branch stays
        assert exists(by_id[dirty].path + "/scratch.txt")  # uncommitted: never removed
        left = {w.task_id: w.state for w in await session.worktrees()}
        assert left == {kept: "kept", dirty: "kept"}  # merged and discarded ones forgotten
        assert gone.patch is not None
        assert not exists(gone.patch)
        # kept work can still be merged once its folder is gone
        assert (await session.merge_task(kept)).merged
        assert (repo / "f0.py").read_text() == "0\n"


async def test_another_session_cannot_prune_mine(repo: Path, tmp_path: Path) -> None:
    settings = outrider.Settings(worktrees_dir=str(tmp_path / "wts"), worktree_retention=1)
    async with outrider.Orchestrator(tmp_path / "o.db", settings, runners=[_sh()]) as orch:
        task = await orch.session("s").submit(
            outrider.cli_agent("sh", "echo x > x.py; echo ok", cwd=str(repo))
        )
        await orch.session("s").wait([task.id], timeout=30)
        assert await orch.session("other").prune_worktrees() == []
        assert [w.state for w in await orch.session("s").worktrees()] == ["kept"]


def test_a_crash_leaves_the_work_on_its_branch(repo: Path, tmp_path: Path) -> None:
    db, wts = tmp_path / "o.db", tmp_path / "wts"
    child = subprocess.Popen(
        [sys.executable, "-m", "tests.worktrees.crash_script", str(db), str(repo), str(wts)],
        stdout=subprocess.PIPE, text=True, start_new_session=True,
    )  # fmt: skip
    try:
        assert child.stdout is not None
        line = child.stdout.readline()
        assert line.startswith("READY"), line
        _, once, again = line.split()
        assert git(repo, "worktree", "list", "--porcelain").count("locked") == 2
    finally:
        os.killpg(child.pid, signal.SIGKILL)
        child.wait()
        if child.stdout is not None:
            child.stdout.close()

    async def restart() -> tuple[list[outrider.Task], list[outrider.Worktree]]:
        settings = outrider.Settings(worktrees_dir=str(wts))
        async with outrider.Orchestrator(db, settings, runners=[_sh()]) as orch:
            tasks = await orch.session("s").wait([once, again], timeout=30)
            return list(tasks), await orch.session("s").worktrees()

    tasks, worktrees = anyio.run(restart)
    assert tasks[0].state == "failed"
    assert tasks[0].error is not None
    assert tasks[0].error.type == "interrupted"
    assert tasks[1].state == "succeeded"  # retried in the worktree the crash left
    assert isinstance(tasks[1].result, str)
    assert tasks[1].result.endswith("resumed")
    assert "locked" not in git(repo, "worktree", "list", "--porcelain")
    states = {w.task_id: w.state for w in worktrees}
    assert states == {once: "kept", again: "kept"}
    for task_id in (once, again):
        assert git(repo, "show", f"outrider/{task_id}:half.py") == "half\n"  # nothing lost


@pytest.mark.parametrize("changed", [True, False])
async def test_a_folder_without_a_record_is_adopted_or_removed(
    repo: Path, tmp_path: Path, changed: bool
) -> None:
    wts = tmp_path / "wts"
    settings = outrider.Settings(worktrees_dir=str(wts))
    async with outrider.Orchestrator(tmp_path / "o.db", settings, runners=[_sh()]) as orch:
        task = await orch.session("s").submit(outrider.shell("true"))
        await orch.session("s").wait([task.id], timeout=30)
    # what a crash between `git worktree add` and the record's write leaves
    folder = wts / "repo-x" / task.id
    git(repo, "worktree", "add", "-q", "--lock", "-b", f"outrider/{task.id}", str(folder))
    if changed:
        (folder / "left.py").write_text("left\n")
    stray = wts / "repo-x" / "not-ours"
    git(repo, "worktree", "add", "-q", "-b", "someone-else", str(stray))
    async with outrider.Orchestrator(tmp_path / "o.db", settings, runners=[_sh()]) as orch:
        (record,) = await orch.session("s").worktrees()
    assert record.task_id == task.id
    assert stray.exists()  # not outrider's: left alone
    if changed:
        assert record.state == "kept"
        assert [f.path for f in record.files] == ["left.py"]
    else:
        assert record.state == "removed"
        assert not folder.exists()
        assert f"outrider/{task.id}" not in git(repo, "branch", "--list")
