"""The task spec that hands a prompt to a defined sub-agent, built the same way by every interface.

The MCP tools, `outrider submit --agent` and agent tasks of `outrider run` batch files all go
through `agent_spec`: an agent with `cli:` becomes a `cli_agent` task (its system prompt put
before the prompt, run in `cwd`), any other one an `agent` task for the built-in runner (its
workspace is `cwd`).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from .._types._errors import UserError
from .._types._task import AgentSpec, CliAgentSpec

if TYPE_CHECKING:
    from collections.abc import Mapping

    from ._definitions import AgentDefinition

__all__ = ["agent_spec"]


def agent_spec(
    agents: Mapping[str, AgentDefinition],
    name: str,
    prompt: str | None,
    *,
    cwd: str | None,
    model: str | None = None,
) -> tuple[AgentSpec | CliAgentSpec, AgentDefinition]:
    """The spec that runs `prompt` as agent `name`, and the agent's definition.

    Args:
        agents: The defined agents (`load_agents().agents`).
        name: The agent to run.
        prompt: Its instructions.
        cwd: Where it works (None: the definition's workspace or the runner's directory for
            a built-in agent; this directory for an agent CLI).
        model: `provider/model` (or the CLI's model name) instead of the definition's.

    Raises:
        UserError: No agent is called `name` (the message lists the defined ones), or the
            prompt is empty.
    """
    agent = agents.get(name)
    if agent is None:
        available = ", ".join(agents) or "none are defined (.outrider/agents/*.md)"
        raise UserError(f"Unknown agent {name!r}; available: {available}.", field="agent")
    if not prompt or not prompt.strip():
        raise UserError(f"Give `prompt`: the instructions for agent {name!r}.", field="prompt")
    if agent.cli is None:
        return AgentSpec(agent=agent.name, prompt=prompt, model=model, workspace=cwd), agent
    text = f"{agent.prompt}\n\n{prompt}" if agent.prompt else prompt
    spec = CliAgentSpec(
        cli=agent.cli, prompt=text, agent=agent.name, model=model or agent.model,
        cwd=cwd or str(Path.cwd()),
    )  # fmt: skip
    return spec, agent
