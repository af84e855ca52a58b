"""Writing tasks run in their own worktrees: isolation, snapshot base, finishing."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import outrider
from outrider._worktrees import _git
from outrider._worktrees._git import GitError, check_version, run_git
from tests.fakellm import FakeLLM, Reply

from .conftest import S, git, run, state


async def test_two_writers_of_one_file_each_get_their_own_branch(
    orch: outrider.Orchestrator, fake: FakeLLM, repo: Path
) -> None:
    (repo / "a.py").write_text("one\ntwo\nthree\nparent's edit\n")  # uncommitted
    (repo / "notes.txt").write_text("untracked\n")
    (repo / "debug.log").write_text("ignored\n")
    before = state(repo)
    fake.script("w1", [Reply.tool("read_file", path="notes.txt"),
                            Reply.tool("write_file", path="app.py", content="one\n"),
                            Reply.say("wrote one")])  # fmt: skip
    fake.script("w2", [Reply.tool("write_file", path="app.py", content="two\n"),
                            Reply.say("wrote two")])  # fmt: skip
    t1, t2 = await run(
        orch,
        outrider.agent("writer", "write one", workspace=str(repo), model="fake/w1"),
        outrider.agent("writer", "write two", workspace=str(repo), model="fake/w2"),
    )
    assert (t1.state, t2.state) == ("succeeded", "succeeded"), (t1, t2)
    print(t1.result, t2.result, git(repo, "branch", "-a"))
    # the parent is untouched: no app.py, same status, same index, same HEAD
    assert not (repo / "app.py").exists()
    assert state(repo) == before
    # each branch holds its own app.py, on top of the parent's snapshot
    for task, text in ((t1, "one\n"), (t2, "two\n")):
        branch = f"outrider/{task.id}"
        assert git(repo, "show", f"{branch}:app.py") == text
        assert git(repo, "show", f"{branch}:a.py").endswith("parent's edit\n")
        assert git(repo, "show", f"{branch}:notes.txt") == "untracked\n"
        assert "debug.log" not in git(repo, "ls-tree", "--name-only", branch)
        assert isinstance(task.result, str)
        assert task.result.startswith(
            f"[its work is kept: worktree {branch}: 1 file (+1 -0), merge: clean;"
        )
    # the untracked file was visible to the agent in its worktree
    tool_answer = fake.calls_for("w1")[1].body["messages"][-1]["content"]
    assert "untracked" in tool_answer


async def test_the_worktree_lives_in_the_data_dir_locked_while_running(
    orch: outrider.Orchestrator, fake: FakeLLM, repo: Path, tmp_path: Path
) -> None:
    script = "git worktree list --porcelain > $OUTRIDER_WORKTREE/../seen.txt; pwd; echo hi > x"
    (done,) = await run(orch, outrider.cli_agent("sh", script, cwd=str(repo)))
    assert done.state == "succeeded", done.error
    seen = next((tmp_path / "worktrees").glob("*/seen.txt")).read_text()
    path = tmp_path / "worktrees"
    assert f"worktree {path}" in seen
    assert "locked outrider task" in seen  # locked while it ran
    (worktree,) = await orch.session(S).worktrees()
    assert Path(worktree.path).is_relative_to(path)
    assert worktree.state == "kept"
    assert "locked" not in git(repo, "worktree", "list", "--porcelain")  # unlocked after
    assert worktree.files[0].path == "x"


async def test_an_unchanged_worktree_is_removed_at_once(
    orch: outrider.Orchestrator, fake: FakeLLM, repo: Path
) -> None:
    fake.script("writer", [Reply.say("nothing to do")])
    (done,) = await run(orch, outrider.agent("writer", "look", workspace=str(repo)))
    assert done.result == "nothing to do"  # nothing to merge: the answer as it is
    assert "outrider/" not in git(repo, "branch", "--list")
    assert git(repo, "worktree", "list", "--porcelain").count("worktree ") == 1
    (worktree,) = await orch.session(S).worktrees()
    assert worktree.state == "removed"


async def test_readers_shell_tasks_and_isolation_none_work_in_place(
    orch: outrider.Orchestrator, fake: FakeLLM, repo: Path
) -> None:
    fake.script("reader", [Reply.say("read")])
    fake.script("inplace", [Reply.tool("write_file", path="c.py", content="c\n"),
                                 Reply.say("wrote")])  # fmt: skip
    fake.script("writer", [Reply.tool("write_file", path="d.py", content="d\n"),
                                Reply.say("wrote")])  # fmt: skip
    tasks = await run(
        orch,
        outrider.agent("reader", "read", workspace=str(repo)),
        outrider.agent("inplace", "write c", workspace=str(repo)),
        outrider.agent("writer", "write d", workspace=str(repo), isolation="none"),
        outrider.shell("echo e > e.py", cwd=str(repo)),
    )
    assert [t.state for t in tasks] == ["succeeded"] * 4
    assert (repo / "c.py").read_text() == "c\n"
    assert (repo / "d.py").read_text() == "d\n"
    assert (repo / "e.py").exists()
    assert await orch.session(S).worktrees() == []
    assert tasks[0].result == "read"


async def test_a_worktree_asked_for_outside_git_says_so(
    orch: outrider.Orchestrator, fake: FakeLLM, tmp_path: Path
) -> None:
    plain = tmp_path / "plain"
    plain.mkdir()
    fake.script("writer", [Reply.say("done")])
    fake.script("w2", [Reply.say("done")])
    asked, default = await run(
        orch,
        outrider.agent("writer", "x", workspace=str(plain), isolation="worktree"),
        outrider.agent("writer", "y", workspace=str(plain), model="fake/w2"),
    )
    assert isinstance(asked.result, str)
    assert asked.result.startswith("[isolation 'worktree' was asked for, but the folder is not")
    assert default.result == "done"


async def test_a_cli_agent_writes_on_its_branch_without_hooks_or_signing(
    orch: outrider.Orchestrator, repo: Path
) -> None:
    hook = repo / ".git" / "hooks" / "pre-commit"
    hook.write_text("#!/bin/sh\nexit 1\n")
    hook.chmod(0o755)
    git(repo, "config", "commit.gpgsign", "true")
    script = 'echo "$OUTRIDER_BASE" > base.txt; mkdir -p sub; echo new > sub/new.py; echo done'
    (done,) = await run(orch, outrider.cli_agent("sh", script, cwd=str(repo)))
    assert done.state == "succeeded", done.error
    branch = f"outrider/{done.id}"
    assert git(repo, "show", f"{branch}:sub/new.py") == "new\n"
    assert git(repo, "log", "-1", "--format=%an %s", branch).startswith("outrider outrider")
    assert not (repo / "sub").exists()
    base = git(repo, "show", f"{branch}:base.txt").strip()
    assert base == git(repo, "rev-parse", "HEAD").strip()  # a clean parent: its HEAD
    # the completion notice tells the parent where the work is and that it merges cleanly
    (notice,) = await orch.session(S).notices()
    assert f"[its work is kept: worktree {branch}: 2 files (+2 -0), merge: clean;" in notice.text


async def test_a_failed_run_keeps_its_work_and_says_where(
    orch: outrider.Orchestrator, repo: Path
) -> None:
    script = "echo half > half.py; exit 3"
    (done,) = await run(orch, outrider.cli_agent("sh", script, cwd=str(repo)))
    assert done.state == "failed"
    assert done.error is not None
    assert f"its work is kept: worktree outrider/{done.id}: 1 file" in done.error.message
    assert git(repo, "show", f"outrider/{done.id}:half.py") == "half\n"


async def test_a_subfolder_workspace_maps_into_the_worktree(
    orch: outrider.Orchestrator, repo: Path
) -> None:
    (repo / "pkg").mkdir()
    (repo / "pkg" / "m.py").write_text("m\n")
    (done,) = await run(orch, outrider.cli_agent("sh", "ls; echo z > z.py", cwd=str(repo / "pkg")))
    assert done.state == "succeeded", done.error
    assert isinstance(done.result, str)
    assert done.result.endswith("m.py")
    assert git(repo, "show", f"outrider/{done.id}:pkg/z.py") == "z\n"


def test_agent_files_set_isolation(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OUTRIDER_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("HOME", str(tmp_path / "user"))
    (tmp_path / ".outrider" / "agents").mkdir(parents=True)
    (tmp_path / ".claude" / "agents").mkdir(parents=True)
    (tmp_path / ".outrider/agents/here.md").write_text("---\nisolation: none\n---\nWork.\n")
    (tmp_path / ".outrider/agents/lister.md").write_text("---\ntools: [grep]\n---\nLook.\n")
    (tmp_path / ".claude/agents/cc.md").write_text(
        "---\nname: cc\ndescription: d\nisolation: worktree\n---\nWork.\n"
    )
    found = outrider.load_agents(tmp_path)
    assert not found.errors
    assert not [w for w in found.warnings if "isolation" in w]
    assert found.agents["here"].isolation == "none"
    assert found.agents["cc"].isolation == "worktree"
    assert found.agents["here"].writes
    assert not found.agents["lister"].writes  # no writing tool: no worktree


async def test_the_agents_commands_run_in_its_worktree(
    orch: outrider.Orchestrator, fake: FakeLLM, repo: Path
) -> None:
    fake.script("writer", [Reply.tool("run_command", command="echo ran > ran.txt; pwd"),
                           Reply.say("ran")])  # fmt: skip
    (done,) = await run(orch, outrider.agent("writer", "run it", workspace=str(repo)))
    assert done.state == "succeeded", done.error
    assert git(repo, "show", f"outrider/{done.id}:ran.txt") == "ran\n"
    assert not (repo / "ran.txt").exists()
    answer = fake.calls_for("writer")[-1].body["messages"][-1]["content"]
    assert "worktrees/repo-" in answer  # the command ran in the worktree


def test_an_old_git_is_named_with_the_fix(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake_bin = tmp_path / "bin"
    fake_bin.mkdir()
    (fake_bin / "git").write_text("#!/bin/sh\necho 'git version 2.30.2'\n")
    (fake_bin / "git").chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake_bin}:{os.environ['PATH']}")
    check_version.cache_clear()
    try:
        with pytest.raises(GitError, match=r"git version 2\.30\.2 is older than 2\.38.*'none'"):
            check_version()
    finally:
        check_version.cache_clear()


async def test_a_delegated_sub_agent_writes_in_its_parents_worktree(
    orch: outrider.Orchestrator, fake: FakeLLM, repo: Path
) -> None:
    fake.script("writer", [Reply.tool("delegate", agent="helper", prompt="write b"),
                           Reply.say("delegated")])  # fmt: skip
    fake.script("helper", [Reply.tool("write_file", path="b2.py", content="b2\n"),
                           Reply.say("wrote b2")])  # fmt: skip
    (done,) = await run(orch, outrider.agent("writer", "go", workspace=str(repo)))
    assert done.state == "succeeded", done.error
    assert git(repo, "show", f"outrider/{done.id}:b2.py") == "b2\n"  # on the parent's branch
    assert [w.task_id for w in await orch.session(S).worktrees()] == [done.id]
    assert not (repo / "b2.py").exists()


def test_git_errors_say_what_is_missing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(GitError, match="does not exist"):
        run_git(tmp_path / "missing", "status")
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(GitError, match="git is not installed"):
        run_git(tmp_path, "status")


def test_outside_any_checkout_git_is_not_asked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, repo: Path
) -> None:
    """No `.git` in a folder or above it: no git process; with one, git names the top."""
    (repo / "sub").mkdir()
    asked: list[Path] = []

    def counting(cwd: Path, *args: str, **kw: object) -> object:
        asked.append(cwd)
        return run_git(cwd, *args)

    monkeypatch.setattr(_git, "run_git", counting)
    plain = tmp_path / "plain" / "deeper"
    plain.mkdir(parents=True)
    assert _git.toplevel(plain) is None
    assert asked == []
    assert _git.toplevel(repo / "sub") == repo.resolve()
    assert asked == [repo / "sub"]
