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
from ..runners._protocol import RunFailure
from ..runners._sandbox import Sandbox
from ..runners._shell import ShellRunner
from ._config import find_config_file

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping, Sequence
    from pathlib import Path

    from pydantic import JsonValue

    from .._agents._definitions import AgentDefinition
    from .._executors._protocol import Executor, WorkerHost
    from ..runners import Runner
    from ._config import Config

__all__ = [
    "NODE_FACTORY", "agent_limits", "agent_recipe", "executors", "hidden_paths", "node_recipe",
    "node_runners", "runners",
]  # fmt: skip


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
        max_descendants=config.agent_max_descendants, streaming=config.agent_streaming,
    )  # fmt: skip


def executors(
    config: Config, agents: Mapping[str, AgentDefinition], runners: Sequence[Runner]
) -> dict[str, Executor]:
    """Where tasks run: on the nodes of a cluster, else on this machine.

    With `cluster`, shell, agent-CLI and built-in agent tasks run on the cluster's nodes;
    without, `agent` tasks run in a pool of `agent_workers` processes (0: in the daemon).
    """
    runner = next(r for r in runners if isinstance(r, AgentRunner))
    if config.cluster is not None:
        from .._agents._recipe import tree_of
        from .._executors._nodes import NodePool
        from .._executors._ray import RayCluster

        nodes = NodePool(
            NODE_FACTORY, node_recipe(config, agents),
            nodes=RayCluster(config.cluster, str(config.cluster_token_file)),
            placement=placement(config.placement), affinity=tree_of,
            limiter=runner.providers.limiter_named,
        )  # fmt: skip
        return {"shell": nodes, "cli_agent": nodes, "agent": nodes}
    if config.agent_workers == 0:
        return {}
    recipe = agent_recipe(config, agents)
    pool = agent_pool(recipe, runner, size=config.agent_workers, nice=config.agent_worker_nice)
    return {"agent": pool}


def placement(
    rules: Mapping[str, Mapping[str, str]],
) -> Callable[[object, tuple[str, ...]], Mapping[str, str]]:
    """The labels a node must carry to run a task: those of each key it holds (`placement`)."""

    def wanted(spec: object, keys: tuple[str, ...]) -> Mapping[str, str]:
        labels: dict[str, tuple[str, str]] = {}
        for key in keys:
            for label, value in rules.get(key, {}).items():
                was, by = labels.setdefault(label, (value, key))
                if was != value:
                    raise RunFailure(
                        f"No node may run this task: its key {by!r} asks for {label}={was} "
                        f"and its key {key!r} for {label}={value} (config `placement`); "
                        "give the task keys that agree, or change `placement`.",
                        type="config",
                    )
        return {label: value for label, (value, _) in labels.items()}

    return wanted


NODE_FACTORY = "outrider._daemon._runners:node_runners"
"""What a cluster node calls to build its runners."""


def node_recipe(config: Config, agents: Mapping[str, AgentDefinition]) -> JsonValue:
    """What a node builds its runners from: the daemon's config and its given agents."""
    return {
        "config": config.model_dump(mode="json"),
        "agents": {name: a.model_dump(mode="json") for name, a in agents.items()},
    }


def node_runners(recipe: JsonValue, host: WorkerHost) -> list[Runner]:
    """A node's runners: the daemon's own (`runners`), its model calls limited by the daemon."""
    from .._agents._definitions import AgentDefinition
    from ._config import Config

    assert isinstance(recipe, dict)
    config = Config.model_validate(recipe["config"])
    given = recipe["agents"]
    assert isinstance(given, dict)
    agents = {name: AgentDefinition.model_validate(a) for name, a in given.items()}
    shell, cli, _ = runners(config, agents)
    return [shell, cli, agent_recipe(config, agents).build(shared_limiter=host.limiter)]


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
