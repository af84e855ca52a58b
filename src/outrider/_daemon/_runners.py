"""The runners of agent tasks, composed from the config and the agent definitions.

One composition for every orchestrator the command line starts: the daemon (`outrider serve`)
and a batch file's (`outrider run`) run `cli_agent` tasks through the agent CLI templates
(built-in and `[cli_agents]`) and `agent` tasks through the built-in runner, with the config's
model providers, and limit each agent's tasks by its `agent:<name>` key.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..runners._agent import AgentRunner
from ..runners._cli_agent import CliAgentRunner, CliTemplate
from ._config import find_config_file

if TYPE_CHECKING:
    from collections.abc import Mapping
    from pathlib import Path

    from .._agents._definitions import AgentDefinition
    from ..runners import Runner
    from ._config import Config

__all__ = ["agent_limits", "agent_runners", "hidden_paths"]


def agent_runners(config: Config, agents: Mapping[str, AgentDefinition]) -> list[Runner]:
    """A runner for `cli_agent` tasks and one for `agent` tasks (the agents without `cli:`)."""
    templates = {
        name: CliTemplate(tuple(c.command), tuple(c.model_args), c.output)
        for name, c in config.cli_agents.items()
    }
    built_in = {name: a for name, a in agents.items() if a.cli is None}
    return [
        CliAgentRunner(templates),
        AgentRunner(
            built_in, config.model_providers(), discover=True, sandbox=config.sandbox,
            sandbox_hide=hidden_paths(config), max_depth=config.agent_max_depth,
            max_descendants=config.agent_max_descendants,
        ),
    ]  # fmt: skip


def hidden_paths(config: Config) -> list[Path]:
    """What the agent's sandboxed commands never see: the store, the tokens, the config file."""
    hidden = [
        config.db_path,
        config.db_path.with_name(config.db_path.name + "-wal"),
        config.local_token_file,
        *(p.token_file for p in config.principals.values()),
    ]
    if (config_file := find_config_file()) is not None:
        hidden.append(config_file)  # it may hold provider keys
    return hidden


def agent_limits(agents: Mapping[str, AgentDefinition]) -> dict[str, int]:
    """Each agent's concurrency limit, by its key (`agent:<name>`)."""
    return {f"agent:{name}": agent.limit for name, agent in agents.items()}
