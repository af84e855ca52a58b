"""Overlap warnings: tasks of one repository changing the same files, told once per pair."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

import anyio

import outrider
from outrider import TaskOverlap
from tests.fakellm import FakeLLM, Reply

from .conftest import S, run

if TYPE_CHECKING:
    from pathlib import Path


async def _overlaps(orch: outrider.Orchestrator, session: str) -> list[outrider.Event]:
    events = orch.session(session).events(follow=False)
    return [e async for e in events if e.type == "task.overlap"]


def _blocked(repo: Path, fifo: Path, script: str) -> outrider.CliAgentSpec:
    """A CLI task that changes files, says so, then waits until `fifo` is written."""
    return outrider.cli_agent("sh", f"{script}; echo wrote; cat {fifo}; echo ok", cwd=str(repo))


async def _release(*fifos: Path) -> None:
    for fifo in fifos:
        await anyio.to_thread.run_sync(lambda f=fifo: f.write_text("go\n"))


async def test_two_running_tasks_on_one_file_are_told_once(
    orch: outrider.Orchestrator, repo: Path, tmp_path: Path
) -> None:
    fifos = [tmp_path / "f1", tmp_path / "f2"]
    for fifo in fifos:
        os.mkfifo(fifo)
    first = await orch.session("one").submit(_blocked(repo, fifos[0], "echo 1 >> a.py"))
    second = await orch.session("two").submit(
        _blocked(repo, fifos[1], "echo 2 >> a.py; echo b > b.py")
    )
    with anyio.fail_after(20):
        async for event in orch.session("two").events():
            if event.type == "task.overlap":
                break
    await _release(*fifos)
    done = await orch.session("one").wait([first.id], timeout=30)
    done += await orch.session("two").wait([second.id], timeout=30)
    assert [t.state for t in done] == ["succeeded", "succeeded"]  # advisory: both went on
    (mine,) = await _overlaps(orch, "one")
    (theirs,) = await _overlaps(orch, "two")  # exactly once, though both finished since
    assert isinstance(mine.data, TaskOverlap)
    assert isinstance(theirs.data, TaskOverlap)
    assert (mine.task_id, mine.data.other, mine.data.paths) == (first.id, second.id, ["a.py"])
    assert (theirs.task_id, theirs.data.other) == (second.id, first.id)
    (notice,) = [n for n in await orch.session("one").notices() if n.kind == "overlap"]
    assert f"{first.id}" in notice.text
    assert f"changes the same files as {second.id}" in notice.text
    assert "a.py" in notice.text


async def test_disjoint_files_make_no_warning(orch: outrider.Orchestrator, repo: Path) -> None:
    tasks = await run(
        orch,
        outrider.cli_agent("sh", "echo 1 > one.py; echo ok", cwd=str(repo)),
        outrider.cli_agent("sh", "echo 2 > two.py; echo ok", cwd=str(repo)),
    )
    assert [t.state for t in tasks] == ["succeeded", "succeeded"]
    assert await _overlaps(orch, S) == []


async def test_an_agent_writing_a_file_kept_work_changed_is_told(
    orch: outrider.Orchestrator, fake: FakeLLM, repo: Path
) -> None:
    (kept,) = await run(orch, outrider.cli_agent("sh", "echo 1 >> a.py; echo ok", cwd=str(repo)))
    fake.script("writer", [Reply.tool("edit_file", path="a.py", old="two", new="TWO"),
                           Reply.tool("read_file", path="a.py"), Reply.say("edited")])  # fmt: skip
    (agent,) = await run(orch, outrider.agent("writer", "edit", workspace=str(repo)))
    assert agent.state == "succeeded", agent.error
    warnings = await _overlaps(orch, S)
    assert sorted((e.task_id, e.data.other) for e in warnings) == sorted(  # type: ignore[union-attr]
        [(agent.id, kept.id), (kept.id, agent.id)]
    )
    assert all(e.data.paths == ["a.py"] for e in warnings)  # type: ignore[union-attr]
    # merged or discarded work no longer counts
    await orch.session(S).discard_task(kept.id)
    await orch.session(S).discard_task(agent.id)
    (again,) = await run(orch, outrider.cli_agent("sh", "echo 3 >> a.py; echo ok", cwd=str(repo)))
    assert len(await _overlaps(orch, S)) == 2
    assert again.state == "succeeded"
