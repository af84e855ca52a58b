from __future__ import annotations

import os
import subprocess
import sys
from typing import TYPE_CHECKING

import pytest

from outrider._agents._definitions import load_agents

if TYPE_CHECKING:
    from pathlib import Path


@pytest.fixture(autouse=True)
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A home of its own: the user's agent folders are under it."""
    monkeypatch.setenv("OUTRIDER_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("HOME", str(tmp_path / "user"))
    monkeypatch.delenv("XDG_CONFIG_HOME", raising=False)
    return tmp_path / "user"


@pytest.fixture
def project(tmp_path: Path) -> Path:
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
    # opencode: every tool is on unless switched off; write/edit are off, bash stays on
    assert reviewer.tools == ("read_file", "list_files", "grep", "run_command", "delegate")
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


def _write(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


# opencode's documented read-only review agent (opencode.ai/docs/agents, "Markdown").
OPENCODE_REVIEW = """---
description: Reviews code for quality and best practices
mode: subagent
model: anthropic/claude-sonnet-4-20250514
temperature: 0.1
tools:
  write: false
  edit: false
  bash: false
---
You are in code review mode. Focus on code quality, potential bugs and edge cases.
"""


def test_opencode_tools_switched_off_are_gone_and_an_empty_set_is_no_tools(tmp_path: Path) -> None:
    _write(tmp_path, {
        ".opencode/agent/review.md": OPENCODE_REVIEW,
        ".opencode/agent/mute.md": "---\ntools:\n  '*': false\n---\nx\n",
        ".outrider/agents/none.md": "---\ntools: []\n---\nx\n",
        ".claude/agents/odd.md": "---\nname: odd\ntools: Read, WebSearch, Frobnicate\n---\nx\n",
    })  # fmt: skip
    found = load_agents(tmp_path)
    review = found.agents["review"]
    assert review.tools == ("read_file", "list_files", "grep", "delegate")
    assert (review.model, review.temperature, review.mode) == (
        "anthropic/claude-sonnet-4-20250514", 0.1, "subagent",
    )  # fmt: skip
    assert found.agents["mute"].tools == ()
    assert found.agents["none"].tools == ()
    assert found.agents["odd"].tools == ("read_file",)
    assert any("no tool 'Frobnicate'; not granted" in w for w in found.warnings)


# Claude Code's documented example (docs: sub-agents, "Example subagents"), with the other
# documented fields.
CLAUDE_REVIEWER = """---
name: code-reviewer
description: Expert code review specialist. Proactively reviews code for quality.
tools: Read, Grep, Glob, Bash
model: inherit
---
You are a senior code reviewer ensuring high standards of code quality and security.
"""


def test_claude_code_fields(tmp_path: Path) -> None:
    _write(tmp_path, {
        ".claude/agents/code-reviewer.md": CLAUDE_REVIEWER,
        ".claude/agents/full.md": "---\nname: full\nmodel: claude-sonnet-4-5-20250929\n"
                                  "maxTurns: 7\ndisallowedTools: Write, Edit\n---\nx\n",
        ".claude/agents/alias.md": "---\nname: alias\nmodel: sonnet\ntools: [Read, Agent(full)]\n"
                                   "permissionMode: dontAsk\nskills: [x]\ncolor: red\n---\nx\n",
        ".claude/agents/quiet.md": "---\nname: quiet\npermissionMode: dontAsk\n---\nx\n",
        ".claude/agents/planner.md": "---\nname: planner\npermissionMode: plan\n---\nx\n",
    })  # fmt: skip
    found = load_agents(tmp_path)
    reviewer = found.agents["code-reviewer"]
    assert reviewer.tools == ("read_file", "grep", "list_files", "run_command")
    assert reviewer.model is None  # inherit: the configured default
    full = found.agents["full"]
    assert full.model == "anthropic/claude-sonnet-4-5-20250929"
    assert full.max_turns == 7
    assert full.tools == ("read_file", "list_files", "grep", "run_command", "delegate")
    alias = found.agents["alias"]
    assert alias.model == "sonnet"  # resolved by the providers' aliases
    assert alias.tools == ("read_file", "delegate")
    assert alias.delegates == ("full",)
    assert alias.notes == ("skills: outrider has no skills", "color: display only")
    assert found.agents["quiet"].tools == ("read_file", "list_files", "grep", "delegate")
    assert found.agents["planner"].policy.read_only


def test_opencode_fields(tmp_path: Path) -> None:
    _write(tmp_path, {
        ".opencode/agents/steps.md": "---\nsteps: 4\nmaxSteps: 9\ntop_p: 0.5\npermission:\n"
                                     "  webfetch: deny\n  bash: {'*': allow, 'git push*': deny}\n"
                                     "---\nx\n",
        ".opencode/agents/old.md": "---\nmaxSteps: 9\npermission:\n  bash: deny\n  edit: ask\n"
                                   "---\nx\n",
        ".opencode/agents/off.md": "---\ndisable: true\n---\nx\n",
        ".opencode/agents/fromfile.md": "---\nprompt: '{file:./prompts/p.txt}'\n---\n",
        ".opencode/agents/prompts/p.txt": "Prompt from a file.\n",
    })  # fmt: skip
    found = load_agents(tmp_path)
    steps = found.agents["steps"]
    assert (steps.max_turns, steps.top_p) == (4, 0.5)
    assert steps.policy.commands.permits("git status")
    assert not steps.policy.commands.permits("git push origin")
    assert "permission.webfetch: the built-in agent has no web tool" in steps.notes
    old = found.agents["old"]
    assert old.max_turns == 9
    assert old.tools == ("read_file", "list_files", "grep", "delegate")
    assert "off" not in found.agents
    assert found.disabled == ["off"]
    assert found.agents["fromfile"].prompt == "Prompt from a file."


def test_agents_are_found_from_a_subfolder_and_in_the_user_folders(
    tmp_path: Path, home: Path
) -> None:
    repo = tmp_path / "repo"
    (repo / ".git").mkdir(parents=True)
    (repo / "src" / "deep").mkdir(parents=True)
    _write(repo, {".claude/agents/near.md": "---\nname: near\n---\nx\n"})
    _write(tmp_path, {".claude/agents/above-the-repo.md": "---\nname: above\n---\nx\n"})
    _write(home, {
        ".claude/agents/u1.md": "---\nname: u1\n---\nx\n",
        ".config/opencode/agent/u2.md": "---\ndescription: y\n---\nx\n",
        ".config/opencode/agents/u3.md": "---\ndescription: y\n---\nx\n",
    })  # fmt: skip
    _write(tmp_path / "home", {"agents/u4.md": "---\nname: u4\n---\nx\n"})
    found = load_agents(repo / "src" / "deep")
    assert set(found.agents) == {"near", "u1", "u2", "u3", "u4"}  # not above the repository


def test_the_catalog_sees_a_new_or_changed_file_at_once(tmp_path: Path) -> None:
    from outrider._agents._definitions import AgentCatalog

    catalog = AgentCatalog()
    assert catalog.load(tmp_path).agents == {}
    _write(tmp_path, {".outrider/agents/late.md": "---\nmodel: a/b\n---\nx\n"})
    assert catalog.load(tmp_path).agents["late"].model == "a/b"
    _write(tmp_path, {".outrider/agents/late.md": "---\nmodel: a/changed\n---\nx\n"})
    assert catalog.load(tmp_path).agents["late"].model == "a/changed"
    same = catalog.load(tmp_path)
    assert catalog.load(tmp_path) is same  # unchanged files: not read again


def test_doctor_reports_the_sandbox_keys_and_agents_with_fixes(project: Path) -> None:
    env = {**os.environ, "OUTRIDER_HOME": str(project / "home"), "OPENAI_API_KEY": "k"}
    env.pop("ANTHROPIC_API_KEY", None)
    done = subprocess.run(
        [sys.executable, "-m", "outrider._cli", "doctor"], cwd=project, env=env,
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    out = done.stdout
    assert "sandbox: " in out
    assert "provider openai: key in $OPENAI_API_KEY" in out
    assert "provider anthropic: no key ($ANTHROPIC_API_KEY is not set)" in out
    assert "fix: export ANTHROPIC_API_KEY=" in out
    assert "agents: 3 visible from" in out
    assert "broken.md" in out
    assert done.returncode == 1  # a broken agent file


def test_agents_show_says_which_fields_have_no_meaning_here(tmp_path: Path) -> None:
    _write(tmp_path, {".claude/agents/c.md": "---\nname: c\ncolor: red\nhooks: {}\n---\nx\n"})
    env = {**os.environ, "OUTRIDER_HOME": str(tmp_path / "home")}
    shown = subprocess.run(
        [sys.executable, "-m", "outrider._cli", "agents", "show", "c"], cwd=tmp_path, env=env,
        capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    assert "not used here  color: display only" in shown.stdout
    assert "not used here  hooks: outrider runs no hooks" in shown.stdout


def test_doctor_names_the_fix_when_the_sandbox_cannot_run(tmp_path: Path) -> None:
    env = {"OUTRIDER_HOME": str(tmp_path / "home"), "HOME": str(tmp_path), "PATH": "/nonexistent"}
    missing = subprocess.run(
        [sys.executable, "-m", "outrider._cli", "doctor"], cwd=tmp_path, env=env,
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert "warn sandbox: bubblewrap (`bwrap`) is not installed; commands run unconfined" in (
        missing.stdout
    )
    assert "fix: install it: `apt-get install bubblewrap`" in missing.stdout
    assert missing.returncode == 1
    (tmp_path / "outrider.toml").write_text('sandbox = "off"\n')
    off = subprocess.run(
        [sys.executable, "-m", "outrider._cli", "doctor"], cwd=tmp_path, env=env,
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert 'warn sandbox: off (sandbox = "off"): agent commands run unconfined' in off.stdout
