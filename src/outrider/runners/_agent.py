"""The `agent` runner: outrider's built-in tool-using LLM agent, on pydantic-ai.

One run: the agent definition's system prompt and the task's prompt go to its model; the model
answers with text or tool calls; tools run and their answers go back; until it answers with
text, which is the task's result.

- Tools (`read_file`, `list_files`, `grep`, `write_file`, `edit_file`, `run_command`,
  `delegate`) are confined to the workspace and checked against the agent's policy in code
  (`outrider._agents._workspace`). `run_command` runs a `shell` task (limited, logged,
  killable) and `delegate` an `agent` task, both children of this one; while they run this task
  gives its concurrency slots to others, and when it is stopped they are cancelled with it.
- Reports: each model turn and tool call is progress; streamed text, tool calls and results go
  to the output log; usage (tokens, requests, cost from the price table) after each turn; the
  transcript (pydantic-ai's message history, JSON) after each turn and at the end.
- Guards: max turns; a token and a cost budget per task and per delegation tree (children
  draw on what the tree has left); at most `max_descendants` live tasks per tree; delegation
  depth at most `max_depth`; a loop detector (the same tool call `loop_limit` times in a row).
  Each ends the task `failed` with the reason, transcript kept.
- Provider errors that the transport's retries did not fix move the run to the agent's next
  fallback model, continuing from the conversation so far; every attempt is recorded in the
  output and the transcript file. A dropped stream is retried once on the same model.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import TYPE_CHECKING

import anyio.to_thread

from .._agents._providers import ProviderError, Providers
from .._models import AgentSpec

if TYPE_CHECKING:
    from collections.abc import Mapping

    from .._agents._definitions import AgentDefinition
    from .._orchestrator import Orchestrator
    from ._protocol import RunContext, RunOutcome

__all__ = ["TOOL_NAMES", "AgentRunner", "Tree"]

TOOL_NAMES = (
    "read_file", "list_files", "grep", "write_file", "edit_file", "run_command", "delegate",
)  # fmt: skip
"""The built-in agent's tools."""


@dataclass
class Tree:
    """What a delegation tree has left, shared by its running tasks."""

    tokens_left: int | None
    cost_left: float | None
    live: int = 0
    """Delegated tasks not yet ended."""

    def charge(self, tokens: int, cost: float | None) -> None:
        if self.tokens_left is not None:
            self.tokens_left -= tokens
        if self.cost_left is not None and cost is not None:
            self.cost_left -= cost

    def exhausted(self) -> str | None:
        if self.tokens_left is not None and self.tokens_left <= 0:
            return "its delegation tree's token budget is spent"
        if self.cost_left is not None and self.cost_left <= 0:
            return "its delegation tree's cost budget is spent"
        return None


class AgentRunner:
    """Runs `agent` tasks.

    Args:
        agents: The agent definitions, by name.
        providers: Models, keys, limits and prices.
        max_depth: How deep delegation may nest (a caller's task is depth 0).
        max_descendants: Live tasks per delegation tree, beyond its root.
        loop_limit: The same tool call this many times in a row stops the run.
        default_max_turns: Model turns of an agent whose definition sets none.
        command_timeout: Seconds a `run_command` call may run.
    """

    kind = "agent"
    uses_processes = False

    def __init__(
        self,
        agents: Mapping[str, AgentDefinition],
        providers: Providers | None = None,
        *,
        max_depth: int = 2,
        max_descendants: int = 10,
        loop_limit: int = 5,
        default_max_turns: int = 50,
        command_timeout: float = 600.0,
    ) -> None:
        self.agents = dict(agents)
        self.providers = providers or Providers()
        self.max_depth = max_depth
        self.max_descendants = max_descendants
        self.loop_limit = loop_limit
        self.default_max_turns = default_max_turns
        self.command_timeout = command_timeout
        self._trees: dict[str, Tree] = {}
        self._orchestrator: Orchestrator | None = None

    def attach(self, orchestrator: Orchestrator) -> None:
        """Called by the orchestrator that runs this runner's tasks (for child tasks)."""
        self._orchestrator = orchestrator
        if self.providers.on_limit is None:
            self.providers.on_limit = orchestrator.set_limit

    def default_keys(self, spec: object) -> tuple[str, ...]:
        """`agent:<name>` and, when the model resolves, `model:<provider/model>`."""
        assert isinstance(spec, AgentSpec)
        keys = [f"agent:{spec.agent}"]
        definition = self.agents.get(spec.agent)
        try:
            ref = self.providers.resolve(spec.model or (definition.model if definition else None))
        except ProviderError:
            return tuple(keys)
        keys.append(f"model:{ref.name}")
        return tuple(keys)

    async def aclose(self) -> None:
        """Close the providers' HTTP clients (the orchestrator calls it when it closes)."""
        await self.providers.aclose()

    async def run(self, spec: object, ctx: RunContext) -> RunOutcome:
        """Run the agent until it answers, a guard stops it, or its models all fail."""
        assert isinstance(spec, AgentSpec)
        module = await anyio.to_thread.run_sync(importlib.import_module, "outrider._agents._loop")
        outcome: RunOutcome = await module.AgentLoop(self).run(spec, ctx)
        return outcome
