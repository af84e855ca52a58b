"""How the built-in agent runner is built, once: in the daemon, and in each worker process.

An `AgentRecipe` holds the runner's settings, its given agents and its providers as data, so
a worker process builds the same runner the daemon would (`worker_runners`); the daemon keeps
its own copy for what is decided there (a task's keys, its workplace) and for the model
limiters every worker's calls go through (`agent_pool`). Provider keys travel in the recipe
over the worker's private channel or come from the inherited environment, never on argv.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict, Field

from .._executors._pool import DEFAULT_NICE, WorkerPool
from .._types._task import AgentSpec
from ._definitions import AgentDefinition
from ._providers import Price, ProviderConfig, Providers
from ._runner import AgentRunner, Streaming
from ._sandbox import SandboxMode

if TYPE_CHECKING:
    from collections.abc import Callable

    from pydantic import JsonValue

    from .._executors._protocol import CallLimiter, WorkerHost
    from ..runners._protocol import Runner

__all__ = ["WORKER_FACTORY", "AgentRecipe", "agent_pool", "tree_of", "worker_runners"]

WORKER_FACTORY = "outrider._agents._recipe:worker_runners"
"""What a worker process calls to build its runners."""


class AgentRecipe(BaseModel):
    """The settings of an `AgentRunner` (see its arguments), as data."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    agents: dict[str, AgentDefinition] = Field(default_factory=dict)
    providers: dict[str, ProviderConfig] = Field(default_factory=dict)
    prices: dict[str, Price] = Field(default_factory=dict)
    aliases: dict[str, str] = Field(default_factory=dict)
    default_model: str | None = None
    discover: bool = False
    max_depth: int = 2
    max_descendants: int = 10
    loop_limit: int = 5
    default_max_turns: int = 50
    command_timeout: float = 600.0
    sandbox: SandboxMode = "auto"
    sandbox_hide: tuple[Path, ...] = ()
    search_timeout: float = 10.0
    bwrap: str = "bwrap"
    streaming: Streaming = "watched"

    def build(self, shared_limiter: Callable[[str], CallLimiter] | None = None) -> AgentRunner:
        """The runner; its model calls go through `shared_limiter` when given."""
        providers = Providers(
            self.providers, prices=self.prices, aliases=self.aliases,
            default_model=self.default_model, shared_limiter=shared_limiter,
        )  # fmt: skip
        return AgentRunner(
            self.agents, providers, discover=self.discover, max_depth=self.max_depth,
            max_descendants=self.max_descendants, loop_limit=self.loop_limit,
            default_max_turns=self.default_max_turns, command_timeout=self.command_timeout,
            sandbox=self.sandbox, sandbox_hide=self.sandbox_hide,
            search_timeout=self.search_timeout, bwrap=self.bwrap, streaming=self.streaming,
        )  # fmt: skip


def worker_runners(config: JsonValue, host: WorkerHost) -> list[Runner]:
    """A worker's runners: the agent runner of the recipe in `config`, limited by the daemon."""
    return [AgentRecipe.model_validate(config).build(shared_limiter=host.limiter)]


def tree_of(spec: object, task_id: str) -> str | None:
    """An agent task's delegation tree (its root's id): its placement key in a pool."""
    if isinstance(spec, AgentSpec):
        return spec.tree or task_id
    return None


def agent_pool(
    recipe: AgentRecipe, runner: AgentRunner, *, size: int | None = None,
    nice: int = DEFAULT_NICE,
) -> WorkerPool:  # fmt: skip
    """A pool of workers running `recipe`'s agents, limited by `runner`'s model limiters.

    A delegation tree runs on one worker, where its budget is kept (`AgentRunner.trees`). The
    workers run `nice` below the daemon's CPU priority (`WorkerPool`).
    """
    return WorkerPool(
        WORKER_FACTORY, recipe.model_dump(mode="json"), size=size, affinity=tree_of,
        limiter=runner.providers.limiter_named, nice=nice,
    )  # fmt: skip
