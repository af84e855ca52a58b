"""External agent CLIs through the real shell runner, with stand-in executables on PATH."""

from __future__ import annotations

import json
import os
import stat
from typing import TYPE_CHECKING

import pytest

import outrider
from outrider import TaskState
from outrider.runners._cli_agent import CliAgentRunner, CliTemplate, parse_answer
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
[ "$1" = "-p" ] && [ "$2" = "--output-format" ] && [ "$3" = "json" ] || exit 9
[ "$4" = "--model" ] && echo "model $5" >&2
[ "$6" = "--" ] || exit 8
echo "working on: $7" >&2
echo '{json.dumps(doc)}'
""",
    )
    async with outrider.Orchestrator(tmp_path / "s.db") as orch:
        task = await orch.session("me").submit(
            outrider.cli_agent("claude", "Fix the tests", agent="builder", model="sonnet")
        )
        assert task.keys == ("agent:builder", "model:sonnet")
        (done,) = await orch.session("me").wait([task.id], timeout=30)
        assert done.state is TaskState.SUCCEEDED, done.error
        assert done.result == "Fixed 2 tests."
        assert done.usage is not None
        assert (done.usage.input_tokens, done.usage.output_tokens) == (900, 120)
        assert done.usage.cost == 0.0123
        log = await orch.session("me").tail(task.id)
        assert "working on: Fix the tests" in log
        assert "model sonnet" in log


async def test_text_cli_and_failures(bin_dir: Path, tmp_path: Path) -> None:
    fake_cli(bin_dir, "plain", 'echo "step 1"; echo "Done: $1"\n')
    fake_cli(bin_dir, "codex", "echo 'quota exceeded' >&2; exit 3\n")
    fake_cli(bin_dir, "gemini", 'echo \'{"response": ""}\'\n')
    plain = CliTemplate(("plain", "{prompt}"))
    async with outrider.Orchestrator(
        tmp_path / "s.db", runners=[CliAgentRunner({"plain": plain})]
    ) as orch:
        ok = await orch.session("me").submit(outrider.cli_agent("plain", "add docs"))
        failed = await orch.session("me").submit(outrider.cli_agent("codex", "x"))
        empty = await orch.session("me").submit(outrider.cli_agent("gemini", "x"))
        missing = await orch.session("me").submit(outrider.cli_agent("aider", "x"))
        unknown = await orch.session("me").submit(outrider.cli_agent("nope", "x"))
        ids = [ok.id, failed.id, empty.id, missing.id, unknown.id]
        done = {t.id: t for t in await orch.session("me").wait(ids, timeout=30)}
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
        task = await orch.session("me").submit(outrider.cli_agent("claude", "long job"))
        await wait_until(lambda: _started(orch, task.id), timeout=30)
        stopped = await orch.session("me").cancel(task.id)
    assert stopped.state is TaskState.CANCELLED


async def _started(orch: outrider.Orchestrator, task_id: str) -> bool:
    return "started" in await orch.session("me").tail(task_id)


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


# What each CLI prints in its structured mode (stdout) and around it (stderr), as documented.
CODEX_OUT = "\n".join(json.dumps(d) for d in [
    {"type": "thread.started", "thread_id": "0199a213-81c0-7800-8aa1-bbab2a035a53"},
    {"type": "turn.started"},
    {"type": "item.completed", "item": {"id": "item_0", "type": "reasoning",
                                        "text": "**Scanning the tests**"}},
    {"type": "item.completed", "item": {"id": "item_1", "type": "command_execution",
                                        "command": "bash -lc 'pytest -q'",
                                        "aggregated_output": "2 failed", "exit_code": 1,
                                        "status": "completed"}},
    {"type": "item.completed", "item": {"id": "item_2", "type": "agent_message",
                                        "text": "Fixed both failing tests."}},
    {"type": "turn.completed", "usage": {"input_tokens": 24763, "cached_input_tokens": 24448,
                                         "output_tokens": 122}},
])  # fmt: skip
GEMINI_OUT = json.dumps({
    "response": "The build passes now.",
    "stats": {"models": {"gemini-2.5-pro": {
        "api": {"totalRequests": 2, "totalErrors": 0, "totalLatencyMs": 5053},
        "tokens": {"prompt": 24939, "candidates": 20, "total": 25113, "cached": 21263,
                   "thoughts": 154, "tool": 0}}},
              "tools": {"totalCalls": 1}, "files": {"totalLinesAdded": 0}},
}, indent=2)  # fmt: skip
OPENCODE_OUT = "\n".join(json.dumps(d) for d in [
    {"type": "step_start", "timestamp": 1, "sessionID": "ses_1", "part": {"type": "step-start"}},
    {"type": "text", "timestamp": 2, "sessionID": "ses_1",
     "part": {"type": "text", "text": "Let me look at the tests."}},
    {"type": "tool_use", "timestamp": 3, "sessionID": "ses_1",
     "part": {"tool": "bash", "state": {"status": "completed", "output": "2 failed"}}},
    {"type": "step_finish", "timestamp": 4, "sessionID": "ses_1",
     "part": {"type": "step-finish", "reason": "tool-calls", "cost": 0.002,
              "tokens": {"input": 1000, "output": 40, "reasoning": 0,
                         "cache": {"read": 0, "write": 0}}}},
    {"type": "step_start", "timestamp": 5, "sessionID": "ses_1", "part": {"type": "step-start"}},
    {"type": "text", "timestamp": 6, "sessionID": "ses_1",
     "part": {"type": "text", "text": "Added the docs page."}},
    {"type": "step_finish", "timestamp": 7, "sessionID": "ses_1",
     "part": {"type": "step-finish", "reason": "stop", "cost": 0.001,
              "tokens": {"input": 1200, "output": 10, "reasoning": 5,
                         "cache": {"read": 0, "write": 0}}}},
])  # fmt: skip
AIDER_OUT = """Aider v0.86.1
Main model: anthropic/claude-sonnet-4-5 with diff edit format
Git repo: .git with 12 files
Repo-map: using 4096 tokens, auto refresh
Renamed the helper and updated its callers.
Tokens: 4.2k sent, 1.1k received. Cost: $0.03 message, $0.03 session.
"""


def _cli_script(stdout: str, banner: str) -> str:
    return (
        'for a in "$@"; do echo "arg: $a" >&2; done\n'
        f"echo '{banner}' >&2\n"
        "echo 'DeprecationWarning: the punycode module is deprecated' >&2\n"
        f"cat <<'OUTRIDER_EOF'\n{stdout}\nOUTRIDER_EOF\n"
    )


@pytest.mark.parametrize(
    ("cli", "stdout", "answer", "usage"),
    [
        ("codex", CODEX_OUT, "Fixed both failing tests.", (24763, 122, None)),
        ("gemini", GEMINI_OUT, "The build passes now.", (24939, 174, None)),
        ("opencode", OPENCODE_OUT, "Added the docs page.", (2200, 55, 0.003)),
        ("aider", AIDER_OUT, "Renamed the helper and updated its callers.", (4200, 1100, 0.03)),
    ],
)
async def test_structured_modes_give_the_final_answer_only(
    bin_dir: Path,
    tmp_path: Path,
    cli: str,
    stdout: str,
    answer: str,
    usage: tuple[int, int, float | None],
) -> None:
    fake_cli(bin_dir, cli, _cli_script(stdout, f"{cli} v1.0 — a banner on stderr"))
    prompt = "--delete-everything and explain"  # looks like an option
    async with outrider.Orchestrator(tmp_path / "s.db") as orch:
        task = await orch.session("me").submit(outrider.cli_agent(cli, prompt, model="m1"))
        (done,) = await orch.session("me").wait([task.id], timeout=30)
        log = await orch.session("me").tail(task.id, lines=200)
    assert done.state is TaskState.SUCCEEDED, done.error
    assert done.result == answer
    assert done.usage is not None
    assert (done.usage.input_tokens, done.usage.output_tokens) == usage[:2]
    assert done.usage.cost == pytest.approx(usage[2]) if usage[2] else done.usage.cost is None
    assert "a banner on stderr" in log  # stderr goes to the log, not into the result
    assert "DeprecationWarning" not in str(done.result)
    argv = [line.removeprefix("arg: ") for line in log.splitlines() if line.startswith("arg: ")]
    assert "m1" in argv
    if "--" in argv:  # the prompt comes after `--`, after every option
        assert argv[argv.index("--") + 1 :] == [prompt]
    else:  # or as `--option=PROMPT`
        assert argv[-1].endswith("=" + prompt)


def test_errors_reported_in_structured_output_fail_the_task() -> None:
    failed = json.dumps({"type": "turn.failed", "error": {"message": "quota exceeded"}})
    with pytest.raises(ValueError, match="quota exceeded"):
        parse_answer(failed, "codex-jsonl")
    with pytest.raises(ValueError, match="no agent message"):
        parse_answer('{"type": "turn.started"}', "codex-jsonl")
    with pytest.raises(ValueError, match="API key not valid"):
        parse_answer('{"error": {"type": "ApiError", "message": "API key not valid"}}',
                     "gemini-json")  # fmt: skip
    oc = {"type": "error", "error": {"name": "ProviderAuthError", "data": {"message": "no key"}}}
    with pytest.raises(ValueError, match="no key"):
        parse_answer(json.dumps(oc), "opencode-jsonl")
