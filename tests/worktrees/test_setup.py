"""A new worktree's setup: `.worktreeinclude`, the setup command; and merging automatically."""

from __future__ import annotations

from typing import TYPE_CHECKING

import outrider
from tests.fakellm import FakeLLM, Reply

from .conftest import S, git, run

if TYPE_CHECKING:
    from pathlib import Path


async def test_worktreeinclude_copies_ignored_files(
    orch: outrider.Orchestrator, repo: Path
) -> None:
    (repo / ".gitignore").write_text("*.log\n.env\n")
    (repo / ".env").write_text("TOKEN=local\n")
    (repo / "debug.log").write_text("not asked for\n")
    (repo / ".worktreeinclude").write_text(".env\n")
    (done,) = await run(
        orch, outrider.cli_agent("sh", "cat .env; ls debug.log; echo x > x.py", cwd=str(repo))
    )
    assert done.state == "succeeded", done.error
    assert isinstance(done.result, str)
    assert "TOKEN=local" in done.result
    assert "debug.log" not in done.result  # only what .worktreeinclude names
    files = git(repo, "ls-tree", "-r", "--name-only", f"outrider/{done.id}")
    assert ".env" not in files.split()  # copied, still ignored: never committed


async def test_the_setup_command_runs_first_as_a_child_task(
    orch: outrider.Orchestrator, fake: FakeLLM, repo: Path
) -> None:
    fake.script("prepared", [Reply.tool("read_file", path="setup.log"), Reply.say("saw it")])
    (done,) = await run(orch, outrider.agent("prepared", "look", workspace=str(repo)))
    assert done.state == "succeeded", done.error
    assert fake.calls_for("prepared")[-1].body["messages"][-1]["content"] == "ready\n"
    children = [t for t in await orch.session(S).list() if t.parent == done.id]
    assert [t.label for t in children] == [f"setup of {done.id}"]
    assert done.result == "saw it"  # setup.log is ignored: the task changed nothing


async def test_a_failed_setup_fails_the_task(
    orch: outrider.Orchestrator, fake: FakeLLM, repo: Path
) -> None:
    (done,) = await run(orch, outrider.agent("unprepared", "x", workspace=str(repo)))
    assert done.state == "failed"
    assert done.error is not None
    assert "setup command 'echo no; exit 4' ended failed, exit 4" in done.error.message
    assert done.error.detail is not None
    assert "no" in done.error.detail
    assert fake.calls_for("unprepared") == []  # the agent never started
    assert "outrider/" not in git(repo, "branch", "--list")


async def test_auto_if_clean_merges_as_the_task_ends(
    orch: outrider.Orchestrator, fake: FakeLLM, repo: Path
) -> None:
    fake.script("auto", [Reply.tool("write_file", path="auto.py", content="auto\n"),
                         Reply.say("done")])  # fmt: skip
    (done,) = await run(orch, outrider.agent("auto", "x", workspace=str(repo)))
    assert done.state == "succeeded", done.error
    assert done.result == (
        f"[its work was applied to {repo}: 1 file (+1 -0), from outrider/{done.id}]\ndone"
    )
    assert (repo / "auto.py").read_text() == "auto\n"
    (worktree,) = await orch.session(S).worktrees()
    assert worktree.state == "merged"
