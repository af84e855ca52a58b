"""External agent CLIs through the real shell runner, with stand-in executables on PATH."""

from __future__ import annotations

import json
import os
import stat
from typing import TYPE_CHECKING

import pytest

import outrider
from outrider import TaskState
from outrider.runners._cli_agent import parse_answer
from outrider.testing import wait_until

if TYPE_CHECKING:
    from pathlib import Path


def fake_cli(folder: Path, name: str, script: str) -> None:
    """A stand-in for an agent CLI: a real executable that prints what the real one would."""
    path = folder / name
    path.write_text("#!/bin/sh\n" + script)
    path.chmod(path.stat().st_mode | stat.S_IEXEC)


@pytest.fixture
def bin_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "bin"
    folder.mkdir()
    monkeypatch.setenv("PATH", f"{folder}{os.pathsep}{os.environ['PATH']}")
    return folder


async def test_claude_json_answer_and_usage(bin_dir: Path, tmp_path: Path) -> None:
    usage = {"input_tokens": 900, "output_tokens": 120}
    doc = {"type": "result", "result": "Fixed 2 tests.", "is_error": False, "num_turns": 4,
           "total_cost_usd": 0.0123, "usage": usage}  # fmt: skip
    fake_cli(
        bin_dir,
        "claude",
        f"""
[ "$1" = "-p" ] || exit 9
echo "working on: $2" >&2
[ "$5" = "--model" ] && echo "model $6" >&2
echo '{json.dumps(doc)}'
""",
    )
    async with outrider.Orchestrator(tmp_path / "s.db") as orch:
        task = await orch.submit(
            outrider.cli_agent("claude", "Fix the tests", agent="builder", model="sonnet"),
            session="me",
        )
        assert task.keys == ("agent:builder", "model:sonnet")
        (done,) = await orch.wait([task.id], session="me", timeout=30)
        assert done.state is TaskState.SUCCEEDED, done.error
        assert done.result == "Fixed 2 tests."
        assert done.usage is not None
        assert (done.usage.input_tokens, done.usage.output_tokens) == (900, 120)
        assert done.usage.cost == 0.0123
        log = await orch.tail(task.id, session="me")
        assert "working on: Fix the tests" in log
        assert "model sonnet" in log


async def test_text_cli_and_failures(bin_dir: Path, tmp_path: Path) -> None:
    fake_cli(bin_dir, "opencode", 'echo "step 1"; echo "Done: $2"\n')
    fake_cli(bin_dir, "codex", "echo 'quota exceeded' >&2; exit 3\n")
    fake_cli(bin_dir, "gemini", "exit 0\n")
    async with outrider.Orchestrator(tmp_path / "s.db") as orch:
        ok = await orch.submit(outrider.cli_agent("opencode", "add docs"), session="me")
        failed = await orch.submit(outrider.cli_agent("codex", "x"), session="me")
        empty = await orch.submit(outrider.cli_agent("gemini", "x"), session="me")
        missing = await orch.submit(outrider.cli_agent("aider", "x"), session="me")
        unknown = await orch.submit(outrider.cli_agent("nope", "x"), session="me")
        ids = [ok.id, failed.id, empty.id, missing.id, unknown.id]
        done = {t.id: t for t in await orch.wait(ids, session="me", timeout=30)}
    assert done[ok.id].result == "step 1\nDone: add docs"
    assert done[failed.id].state is TaskState.FAILED
    assert done[failed.id].exit_code == 3
    assert done[empty.id].error is not None
    assert done[empty.id].error.message == "The agent produced no output."
    assert done[missing.id].error is not None
    assert "'aider' is not on PATH" in done[missing.id].error.message
    assert done[unknown.id].error is not None
    assert "Unknown agent CLI 'nope'" in done[unknown.id].error.message


async def test_cancelling_a_cli_agent_stops_its_process(bin_dir: Path, tmp_path: Path) -> None:
    fake_cli(bin_dir, "claude", "echo started; exec sleep 60\n")
    async with outrider.Orchestrator(tmp_path / "s.db") as orch:
        task = await orch.submit(outrider.cli_agent("claude", "long job"), session="me")
        await wait_until(lambda: _started(orch, task.id), timeout=30)
        stopped = await orch.cancel(task.id, session="me")
    assert stopped.state is TaskState.CANCELLED


async def _started(orch: outrider.Orchestrator, task_id: str) -> bool:
    return "started" in await orch.tail(task_id, session="me")


def test_parse_answer_formats() -> None:
    assert parse_answer("  hi \n", "text") == ("hi", None)
    lines = '{"type":"step"}\n{"text":"first"}\nnoise\n{"text":"last"}\n'
    assert parse_answer(lines, "jsonl-last-text") == ("last", None)
    with pytest.raises(ValueError, match="no JSON object"):
        parse_answer("plain text", "claude-json")
    with pytest.raises(ValueError, match="max turns"):
        parse_answer('{"is_error": true, "result": "max turns"}', "claude-json")


def test_config_templates_are_validated_and_used(tmp_path: Path) -> None:
    from outrider._daemon._config import load_config

    (tmp_path / "outrider.toml").write_text(
        '[cli_agents.mine]\ncommand = ["mine", "--ask", "{prompt}"]\n'
        'model_args = ["-m", "{model}"]\noutput = "jsonl-last-text"\n'
    )
    config = load_config(tmp_path / "outrider.toml", environ={})
    template = config.cli_agents["mine"]
    assert template.command == ["mine", "--ask", "{prompt}"]
    assert template.output == "jsonl-last-text"
