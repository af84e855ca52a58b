from __future__ import annotations

import os
import subprocess
import sys
from typing import TYPE_CHECKING

import pytest

from outrider._agents._definitions import load_agents

if TYPE_CHECKING:
    from pathlib import Path


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("OUTRIDER_HOME", str(tmp_path / "home"))
    files = {
        ".outrider/agents/builder.md": """---
name: builder
description: Builds features
model: openai/gpt-5-mini
tools: [read_file, write_file, run_command]
permission:
  paths: {deny: ["secrets/**"]}
  commands: {allow: ["pytest*", "git diff*"], deny: ["git push*"]}
limit: 2
timeout: 600
max_turns: 30
budget_tokens: 200000
fallback_models: [anthropic/claude-sonnet-4]
---
You build what you are asked to build.
""",
        ".opencode/agent/reviewer.md": """---
description: Reviews code
model: anthropic/claude-sonnet-4
temperature: 0.1
mode: subagent
tools:
  write: false
  edit: false
  bash: true
permission:
  edit: deny
maxSteps: 12
---
You review changes and never edit files.
""",
        ".claude/agents/inspector.md": """---
name: inspector
description: Inspects failures
tools: Read, Grep, Glob
model: inherit
color: blue
secret_sauce: 3
---
Find the root cause.
""",
        ".claude/agents/broken.md": "---\nname: [unclosed\n---\nbody\n",
        ".claude/agents/no-end.md": "---\nname: noend\nbody without a closing fence\n",
        ".outrider/agents/bad-limit.md": "---\nname: bad\nlimit: 0\n---\nx\n",
        ".opencode/agents/builder.md": "---\ndescription: shadowed\n---\nsecond builder\n",
    }
    for name, text in files.items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return tmp_path


def test_three_formats_load_and_map_their_fields(project: Path) -> None:
    found = load_agents(project)
    assert set(found.agents) == {"builder", "reviewer", "inspector"}
    builder = found.agents["builder"]
    assert builder.format == "outrider"
    assert builder.model == "openai/gpt-5-mini"
    assert builder.tools == ("read_file", "write_file", "run_command")
    assert (builder.limit, builder.timeout, builder.max_turns) == (2, 600, 30)
    assert builder.fallback_models == ("anthropic/claude-sonnet-4",)
    assert builder.prompt == "You build what you are asked to build."
    assert builder.policy.commands.permits("pytest -q")
    assert not builder.policy.commands.permits("git push origin")
    assert not builder.policy.commands.permits("rm -rf /")
    assert not builder.policy.paths.permits("secrets/key.pem")
    reviewer = found.agents["reviewer"]
    assert reviewer.format == "opencode"
    assert reviewer.tools == ("run_command",)  # opencode's bash; write/edit are off
    assert not reviewer.read_only
    assert reviewer.max_turns == 12
    assert reviewer.temperature == 0.1
    assert reviewer.limit == 3  # the default
    inspector = found.agents["inspector"]
    assert inspector.tools == ("read_file", "grep", "list_files")  # Claude Code's names mapped
    assert inspector.model is None  # "inherit"
    assert inspector.prompt == "Find the root cause."


def test_opencode_bash_patterns_and_claude_plan_mode(tmp_path: Path) -> None:
    (tmp_path / ".opencode/agent").mkdir(parents=True)
    (tmp_path / ".opencode/agent/gitter.md").write_text(
        '---\npermission:\n  edit: deny\n  bash:\n    "git status": allow\n    "*": ask\n---\nx\n'
    )
    (tmp_path / ".claude/agents").mkdir(parents=True)
    (tmp_path / ".claude/agents/planner.md").write_text(
        "---\nname: planner\npermissionMode: plan\ndisallowedTools: Bash, WebFetch\n---\nx\n"
    )
    found = load_agents(tmp_path)
    gitter = found.agents["gitter"]
    assert gitter.tools is not None
    assert "edit_file" not in gitter.tools
    assert gitter.policy.commands.permits("git status")
    assert not gitter.policy.commands.permits("git push")  # "ask" has no one to ask: denied
    planner = found.agents["planner"]
    assert planner.policy.read_only
    assert planner.tools is not None
    assert "run_command" not in planner.tools
    assert any("no tool 'WebFetch'" in w for w in found.warnings)


def test_broken_files_are_reported_and_the_rest_still_load(project: Path) -> None:
    found = load_agents(project)
    errors = "\n".join(found.errors)
    assert "broken.md" in errors
    assert "no-end.md: the front matter has no closing `---`" in errors
    assert "bad-limit.md: invalid `limit`" in errors
    warnings = "\n".join(found.warnings)
    assert "inspector.md: ignoring unknown field(s) secret_sauce" in warnings
    assert "agent 'builder' is already defined by" in warnings


def test_agents_command_lists_and_shows(project: Path) -> None:
    env = {**os.environ, "OUTRIDER_HOME": str(project / "home")}
    listed = subprocess.run(
        [sys.executable, "-m", "outrider._cli", "agents"], cwd=project, env=env,
        capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    for name in ("builder", "reviewer", "inspector", ".claude/agents/inspector.md"):
        assert name in listed.stdout
    assert "broken.md" in listed.stderr
    shown = subprocess.run(
        [sys.executable, "-m", "outrider._cli", "agents", "show", "reviewer"], cwd=project,
        env=env, capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    assert "You review changes" in shown.stdout
    assert "anthropic/claude-sonnet-4" in shown.stdout
    missing = subprocess.run(
        [sys.executable, "-m", "outrider._cli", "agents", "show", "nobody"], cwd=project,
        env=env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert missing.returncode == 1
    assert "no agent 'nobody'" in missing.stderr
