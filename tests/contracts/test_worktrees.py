"""Worktree verbs, the same in process and over HTTP: list, merge (clean and not), discard."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

import outrider
from outrider import TaskNotFound, UserError
from tests.gitrepo import new_repo

if TYPE_CHECKING:
    from pathlib import Path

    from .conftest import World


async def test_merge_discard_and_list(world: World, tmp_path: Path) -> None:
    repo = new_repo(tmp_path)
    tasks = await world.tasks()
    specs = [outrider.cli_agent("sh", f"echo {w} > same.txt; echo ok", cwd=str(repo))
             for w in ("one", "two", "three")]  # fmt: skip
    ids = [(await tasks.submit(spec)).id for spec in specs]
    done = await tasks.wait(ids, timeout=30)
    assert [t.state for t in done] == ["succeeded"] * 3
    listed = await tasks.worktrees()
    assert {w.task_id for w in listed} == set(ids)
    assert all(w.state == "kept" and w.session == "s" for w in listed)

    merged = await tasks.merge_task(ids[0])
    assert merged.merged
    assert (repo / "same.txt").read_text() == "one\n"

    refused = await tasks.merge_task(ids[1], how="squash")
    assert not refused.merged
    assert refused.conflicts == ("same.txt",)
    assert refused.patch is not None

    dropped = await tasks.discard_task(ids[2])
    assert dropped.state == "discarded"
    with pytest.raises(UserError, match="nothing left to merge"):
        await tasks.merge_task(ids[2])
    with pytest.raises(TaskNotFound):
        await tasks.merge_task("t_unknown")
    other = await world.tasks("other")
    with pytest.raises(TaskNotFound):
        await other.discard_task(ids[1])
    assert await other.worktrees() == []
