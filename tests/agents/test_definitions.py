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
    reviewer = found.agents["reviewer"]
    assert reviewer.format == "opencode"
    assert reviewer.tools == ("bash",)
    assert reviewer.read_only
    assert reviewer.max_turns == 12
    assert reviewer.temperature == 0.1
    assert reviewer.limit == 3  # the default
    inspector = found.agents["inspector"]
    assert inspector.tools == ("Read", "Grep", "Glob")
    assert inspector.model is None  # "inherit"
    assert inspector.prompt == "Find the root cause."


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
