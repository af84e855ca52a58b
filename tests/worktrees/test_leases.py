"""Writers sharing a folder (no git, or isolation none): path leases and the stale-read guard."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

import anyio
import pytest

import outrider
from outrider._agents._workspace import Policy, ToolRefused, Workspace
from outrider._core._leases import Leases
from outrider.testing import wait_until
from tests.fakellm import FakeLLM, Reply

from .conftest import S, read, run

if TYPE_CHECKING:
    from pathlib import Path


def _writer(folder: Path, model: str) -> outrider.AgentSpec:
    return outrider.agent("writer", "write", workspace=str(folder), model=f"fake/{model}")


def _answer(fake: FakeLLM, model: str) -> str:
    """The last tool answer the model `model` was sent."""
    content = fake.calls_for(model)[-1].body["messages"][-1]["content"]
    assert isinstance(content, str)
    return content


async def test_a_file_another_task_writes_is_refused_until_it_ends(
    orch: outrider.Orchestrator, fake: FakeLLM, tmp_path: Path
) -> None:
    plain = tmp_path / "plain"  # not a git repository: writers share it, with leases
    plain.mkdir()
    os.mkfifo(plain / "gate")
    fake.script("w1", [Reply.tool("write_file", path="a.py", content="one\n"),
                       Reply.tool("run_command", command="cat gate"),
                       Reply.say("first")])  # fmt: skip
    fake.script("w2", [Reply.tool("write_file", path="a.py", content="two\n"),
                       Reply.say("second")])  # fmt: skip
    fake.script("w3", [Reply.tool("write_file", path="a.py", content="three\n"),
                       Reply.say("third")])  # fmt: skip
    session = orch.session(S)
    first = await session.submit(
        outrider.agent("writer", "1", workspace=str(plain), model="fake/w1")
    )
    await wait_until(lambda: (plain / "a.py").exists(), timeout=20)
    (second,) = await run(
        orch, outrider.agent("writer", "2", workspace=str(plain), model="fake/w2")
    )
    assert second.state == "succeeded"
    refusal = _answer(fake, "w2")
    assert f"is being edited by task {first.id}" in refusal
    assert f"wait_tasks(['{first.id}'])" in refusal
    assert read(str(plain / "a.py")) == "one\n"  # nothing overwritten
    await anyio.to_thread.run_sync((plain / "gate").write_text, "go\n")
    (done,) = await session.wait([first.id], timeout=30)
    assert done.state == "succeeded", done.error
    (third,) = await run(orch, _writer(plain, "w3"))
    assert third.state == "succeeded"
    assert read(str(plain / "a.py")) == "three\n"  # released when the holder ended


async def test_an_edit_of_a_file_changed_since_it_was_read_is_refused(
    orch: outrider.Orchestrator, fake: FakeLLM, repo: Path
) -> None:
    fake.script("writer", [
        Reply.tool("read_file", path="a.py"),
        Reply.tool("run_command", command="echo appended >> a.py"),
        Reply.tool("edit_file", path="a.py", old="two", new="TWO"),
        Reply.tool("read_file", path="a.py"),
        Reply.tool("edit_file", path="a.py", old="two", new="TWO"),
        Reply.say("edited"),
    ])  # fmt: skip
    (done,) = await run(orch, outrider.agent("writer", "edit", workspace=str(repo)))
    assert done.state == "succeeded", done.error
    answers = [c.body["messages"][-1]["content"] for c in fake.calls_for("writer")[-4:]]
    assert "changed since you last read it" in answers[1]  # the edit after the command
    assert answers[3] == "edited a.py"  # after reading it again


def test_the_stale_read_guard_of_the_workspace(tmp_path: Path) -> None:
    (tmp_path / "a.py").write_text("one\n")
    ws = Workspace(tmp_path, Policy())
    ws.write("new.py", "x\n")  # never read: writing is fine
    ws.read("a.py")
    (tmp_path / "a.py").write_text("someone else\n")
    with pytest.raises(ToolRefused, match="changed since you last read it"):
        ws.edit("a.py", "someone", "me")
    with pytest.raises(ToolRefused, match="read it again"):
        ws.write("a.py", "mine\n")
    ws.read("a.py")
    assert ws.edit("a.py", "someone", "me") == "edited a.py"
    assert ws.write("a.py", "mine\n") == "wrote 5 bytes to a.py"  # its own edit is not stale


def test_leases_one_holder_per_path() -> None:
    leases = Leases()
    assert leases.claim("t_1", "fix", "/r/a.py") is None
    assert leases.claim("t_1", "fix", "/r/a.py") is None  # again: still its own
    refusal = leases.claim("t_2", "other", "/r/a.py")
    assert refusal is not None
    assert "t_1 ('fix')" in refusal
    assert leases.claim("t_2", "other", "/r/b.py") is None
    assert leases.release("t_1") == ["/r/a.py"]
    assert leases.claim("t_2", "other", "/r/a.py") is None
    assert sorted(leases.release("t_2")) == ["/r/a.py", "/r/b.py"]
    assert leases.release("t_3") == []
