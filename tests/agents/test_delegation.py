"""The spec every interface builds to delegate a prompt to a defined agent."""

from __future__ import annotations

from pathlib import Path

import pytest

from outrider import AgentDefinition, AgentSpec, CliAgentSpec, UserError
from outrider._agents._delegation import agent_spec


def _agent(name: str, **kw: object) -> AgentDefinition:
    return AgentDefinition.model_validate(
        {"name": name, "source": Path(f"{name}.md"), "format": "outrider", **kw}
    )


AGENTS = {
    "fixer": _agent("fixer", prompt="You fix.", model="fake/fixer"),
    "outside": _agent("outside", prompt="You are out.", cli="claude", model="sonnet"),
    "bare": _agent("bare", cli="codex"),
}


def test_a_built_in_agent_gets_an_agent_spec_in_its_workspace() -> None:
    spec, agent = agent_spec(AGENTS, "fixer", "Fix it", cwd="/work", model="fake/other")
    assert spec == AgentSpec(agent="fixer", prompt="Fix it", model="fake/other", workspace="/work")
    assert agent is AGENTS["fixer"]


def test_an_agent_cli_gets_its_system_prompt_first_and_runs_here_by_default() -> None:
    spec, _ = agent_spec(AGENTS, "outside", "Look", cwd=None)
    assert spec == CliAgentSpec(
        cli="claude", prompt="You are out.\n\nLook", agent="outside", model="sonnet",
        cwd=str(Path.cwd()),
    )  # fmt: skip
    bare, _ = agent_spec(AGENTS, "bare", "Look", cwd="/w", model="o3")
    assert (bare.prompt, bare.model) == ("Look", "o3")


@pytest.mark.parametrize(
    ("name", "prompt", "field", "message"),
    [
        ("nobody", "Hi", "agent", "Unknown agent 'nobody'; available: fixer, outside, bare."),
        ("fixer", "  ", "prompt", "Give `prompt`: the instructions for agent 'fixer'."),
    ],
)
def test_an_unknown_agent_or_an_empty_prompt_is_refused(
    name: str, prompt: str, field: str, message: str
) -> None:
    with pytest.raises(UserError, match=message.replace("(", r"\(")) as refused:
        agent_spec(AGENTS, name, prompt, cwd=None)
    assert refused.value.field == field
    with pytest.raises(UserError, match="none are defined"):
        agent_spec({}, name, prompt, cwd=None)
