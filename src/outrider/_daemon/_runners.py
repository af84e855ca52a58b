"""The runners of process and agent tasks, composed from the config and the agent definitions.

One composition for every orchestrator the command line starts: the daemon (`outrider serve`)
and a batch file's (`outrider run`). Shell and agent-CLI tasks get a clean environment (the
safe base, `task_env`, and each CLI template's `pass_env`); other principals' process tasks run
in a sandbox that hides outrider's own files; `agent` tasks run on the built-in runner with the
config's model providers, agents found from each task's folder, and commands sandboxed. Each
agent's tasks are limited by its `agent:<name>` key. Built-in agents run in a pool of worker
processes (`agent_workers`), built from the same recipe as the daemon's own agent runner.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._agents._recipe import AgentRecipe, agent_pool
from .._agents._runner import AgentRunner
from .._paths import data_dir
from ..runners._cli_agent import BUILTIN_TEMPLATES, CliAgentRunner, CliTemplate
from ..runners._sandbox import Sandbox
from ..runners._shell import ShellRunner
from ._config import find_config_file

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence
    from pathlib import Path

    from .._agents._definitions import AgentDefinition
    from .._executors._protocol import Executor
    from ..runners import Runner
    from ._config import Config

__all__ = ["agent_limits", "agent_recipe", "executors", "hidden_paths", "runners"]


def runners(config: Config, agents: Mapping[str, AgentDefinition]) -> list[Runner]:
    """The shell, agent-CLI and built-in agent runners.

    The given `agents` without `cli:` win over the ones found from a task's folder.
    """
    hidden = hidden_paths(config)
    shell = ShellRunner(pass_env=config.task_env, sandbox=Sandbox(tuple(hidden)))
    templates = {}
    for name, c in config.cli_agents.items():
        builtin = BUILTIN_TEMPLATES.get(name)
        pass_env = c.pass_env if c.pass_env is not None else builtin.pass_env if builtin else ()
        templates[name] = CliTemplate(
            tuple(c.command), tuple(c.model_args), c.output, pass_env=tuple(pass_env)
        )
    return [shell, CliAgentRunner(templates, shell=shell), agent_recipe(config, agents).build()]


def agent_recipe(config: Config, agents: Mapping[str, AgentDefinition]) -> AgentRecipe:
    """The built-in agent runner: the given agents without `cli:`, and the config's providers."""
    return AgentRecipe(
        agents={name: a for name, a in agents.items() if a.cli is None},
        providers=config.providers, prices=config.prices, aliases=config.model_aliases,
        default_model=config.default_model, discover=True, sandbox=config.sandbox,
        sandbox_hide=tuple(hidden_paths(config)), max_depth=config.agent_max_depth,
        max_descendants=config.agent_max_descendants,
    )  # fmt: skip


def executors(
    config: Config, agents: Mapping[str, AgentDefinition], runners: Sequence[Runner]
) -> dict[str, Executor]:
    """Where `agent` tasks run: a pool of `agent_workers` processes (0: in the daemon)."""
    if config.agent_workers == 0:
        return {}
    runner = next(r for r in runners if isinstance(r, AgentRunner))
    return {"agent": agent_pool(agent_recipe(config, agents), runner, size=config.agent_workers)}


def hidden_paths(config: Config) -> list[Path]:
    """What sandboxed tasks and agents never see: the data dir, the store, tokens, config."""
    db = config.db_path
    hidden = [data_dir(), config.local_token_file, db.with_name(db.name + ".logs")]
    hidden += [db.with_name(db.name + suffix) for suffix in ("", "-wal", "-shm", ".lock")]
    hidden += [p.token_file.expanduser() for p in config.principals.values()]
    if (config_file := find_config_file()) is not None:
        hidden.append(config_file)  # it may hold provider keys
    return hidden


def agent_limits(agents: Mapping[str, AgentDefinition]) -> dict[str, int]:
    """Each agent's concurrency limit, by its key (`agent:<name>`)."""
    return {f"agent:{name}": agent.limit for name, agent in agents.items()}
