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

import contextlib
import importlib
from pathlib import Path
from typing import TYPE_CHECKING, Literal, get_args

import anyio.to_thread

from .._paths import config_dir, data_dir
from .._types._task import AgentSpec
from ..runners._protocol import Workplace
from ._budget import Tree
from ._definitions import AgentCatalog, AgentSet
from ._providers import ProviderError, Providers
from ._sandbox import SandboxMode, SandboxStatus, probe

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Mapping, Sequence
    from types import ModuleType

    from ..runners._protocol import RunContext, RunnerHost, RunOutcome
    from ._definitions import AgentDefinition
    from ._providers import ModelRef

__all__ = ["TOOL_NAMES", "AgentRunner", "Streaming", "Tree"]

TOOL_NAMES = (
    "read_file", "list_files", "grep", "write_file", "edit_file", "run_command", "delegate",
)  # fmt: skip
"""The built-in agent's tools."""
_LOOP = "outrider._agents._loop"

SANDBOX_MODES: tuple[SandboxMode, ...] = ("required", "auto", "off")

Streaming = Literal["watched", "always"]
"""When model answers are streamed (`AgentRunner`'s `streaming`)."""


class AgentRunner:
    """Runs `agent` tasks.

    Args:
        agents: Agent definitions by name; they win over discovered ones.
        providers: Models, keys, limits and prices.
        discover: Also find agents in the folders visible from each task's workspace (project
            and user folders, re-read when a file changes), as `outrider agents` lists them.
        max_depth: How deep delegation may nest (a caller's task is depth 0).
        max_descendants: Live tasks per delegation tree, beyond its root.
        loop_limit: The same tool call this many times in a row stops the run.
        default_max_turns: Model turns of an agent whose definition sets none.
        command_timeout: Seconds a `run_command` call may run.
        sandbox: `required`, `auto` or `off`: how `run_command` is sandboxed (bubblewrap).
        sandbox_hide: Paths commands never see (besides the data and config folders and the
            home folder's credential stores).
        search_timeout: Seconds a `list_files` or `grep` call may take.
        bwrap: The bubblewrap executable (a name looked up on PATH, or a path).
        streaming: `watched`: a model's answer is streamed chunk by chunk while someone
            follows the task's output live (`RunContext.watched`) or it has a stall timeout,
            and asked for whole otherwise (each turn's text and progress still come as the
            turn ends); `always`: every answer is streamed.
    """

    kind = "agent"
    uses_processes = False

    def __init__(
        self,
        agents: Mapping[str, AgentDefinition] | None = None,
        providers: Providers | None = None,
        *,
        discover: bool = False,
        max_depth: int = 2,
        max_descendants: int = 10,
        loop_limit: int = 5,
        default_max_turns: int = 50,
        command_timeout: float = 600.0,
        sandbox: SandboxMode = "auto",
        sandbox_hide: Sequence[Path] = (),
        search_timeout: float = 10.0,
        bwrap: str = "bwrap",
        streaming: Streaming = "watched",
    ) -> None:
        if sandbox not in SANDBOX_MODES:
            raise ValueError(f"sandbox must be one of {', '.join(SANDBOX_MODES)}, not {sandbox!r}")
        if streaming not in get_args(Streaming):
            raise ValueError(f"streaming must be 'watched' or 'always', not {streaming!r}")
        self.agents = dict(agents or {})
        self.providers = providers or Providers()
        self.catalog = AgentCatalog() if discover else None
        self.max_depth = max_depth
        self.max_descendants = max_descendants
        self.loop_limit = loop_limit
        self.default_max_turns = default_max_turns
        self.command_timeout = command_timeout
        self.sandbox: SandboxMode = sandbox
        self.sandbox_hide = (data_dir(), config_dir(), *sandbox_hide)
        self.search_timeout = search_timeout
        self.bwrap = bwrap
        self.streaming: Streaming = streaming
        self.trees: dict[str, Tree] = {}
        """What each running delegation tree has left, by its root task's id."""
        self._host: RunnerHost | None = None
        self._limits: dict[str, int] = {}
        self._origins: dict[str, str | None] = {}
        """The folder each running worktree stands for (agents are found from there)."""
        self._loop: ModuleType | None = None
        """The agent loop's module, once imported."""

    def _visible(self, workspace: str | None) -> AgentSet:
        found = AgentSet()
        workspace = self._origins.get(workspace or "", workspace)
        if self.catalog is not None:
            seen = self.catalog.load(Path(workspace) if workspace else None)
            found = AgentSet(dict(seen.agents), list(seen.warnings), list(seen.errors))
            found.agents = {n: a for n, a in found.agents.items() if a.cli is None}
        found.agents.update(self.agents)
        return found

    async def visible(self, workspace: str | None) -> AgentSet:
        """The agents a task in `workspace` may name: the given ones, then discovered ones."""
        return await anyio.to_thread.run_sync(self._visible, workspace)

    async def sandbox_status(self) -> SandboxStatus:
        """Whether bubblewrap works here (probed once per process, in a worker thread)."""
        return await anyio.to_thread.run_sync(probe, self.bwrap)

    @contextlib.asynccontextmanager
    async def lifespan(self, host: RunnerHost) -> AsyncIterator[None]:
        """Throttling sets the `model:` keys' limits on `host`; HTTP clients close at the end."""
        self._host = host
        if self.providers.on_limit is None:
            self.providers.on_limit = host.suggest_limit
        for name, limit in self.providers.limits().items():
            host.suggest_limit(f"provider:{name}", limit)
        try:
            yield
        finally:
            await self.providers.aclose()

    def default_keys(self, spec: object) -> tuple[str, ...]:
        """`agent:<name>`."""
        assert isinstance(spec, AgentSpec)
        return (f"agent:{spec.agent}",)

    def required_keys(self, spec: object) -> tuple[str, ...]:
        """The keys a task holds whatever keys it names.

        `model:<provider/model>` when the model resolves, and `provider:<name>` when its
        provider has a `limit`.
        """
        assert isinstance(spec, AgentSpec)
        definition = self._visible(spec.workspace).agents.get(spec.agent)
        if definition is not None:
            self._apply_limit(definition)
        try:
            ref = self.providers.resolve(spec.model or (definition.model if definition else None))
        except ProviderError:
            return ()
        self._apply_model_limit(ref)
        if self.providers.limit_of(ref.provider) is None:
            return (f"model:{ref.name}",)
        return (f"model:{ref.name}", f"provider:{ref.provider}")

    def _apply_limit(self, definition: AgentDefinition) -> None:
        """A discovered agent's `limit` becomes its key's limit (once per change)."""
        key = f"agent:{definition.name}"
        if self._host is not None and self._limits.get(key) != definition.limit:
            self._limits[key] = definition.limit
            self._host.suggest_limit(key, definition.limit)

    def _apply_model_limit(self, ref: ModelRef) -> None:
        """A model's key starts at the model's concurrency (its provider's `max_concurrency`).

        Once: after that, the model's limiter moves it (`Providers.on_limit`) as the provider
        throttles and recovers.
        """
        key = f"model:{ref.name}"
        if self._host is not None and key not in self._limits:
            concurrency = self.providers.limiter(ref).concurrency
            self._limits[key] = concurrency
            self._host.suggest_limit(key, concurrency)

    async def workplace(self, spec: object) -> Workplace:
        """Its workspace; it writes unless its definition is read-only or has no writing tool."""
        assert isinstance(spec, AgentSpec)
        definition = (await self.visible(spec.workspace)).agents.get(spec.agent)
        raw = spec.workspace or (definition.workspace if definition else None) or "."
        # expanduser reads the environment only; no I/O to keep off the loop
        folder = await anyio.Path(Path(raw).expanduser()).absolute()  # noqa: ASYNC240
        return Workplace(
            str(folder),
            writes=definition is not None and definition.writes,
            asked=spec.isolation,
            agent_default=definition.isolation if definition else None,
            base=spec.base,
            setup=definition.setup if definition else None,
            merge=definition.merge if definition else "manual",
        )

    def relocate(self, spec: object, folder: str, env: Mapping[str, str]) -> AgentSpec:
        """The spec with `folder` as its workspace (agents are still found from the original).

        `env` is not used: the built-in agent's commands get the workspace they run in.
        """
        assert isinstance(spec, AgentSpec)
        self._origins[folder] = spec.workspace
        return spec.model_copy(update={"workspace": folder})

    async def run(self, spec: object, ctx: RunContext) -> RunOutcome:
        """Run the agent until it answers, a guard stops it, or its models all fail."""
        assert isinstance(spec, AgentSpec)
        module = self._loop
        if module is None:  # its first import takes seconds: off the event loop
            module = await anyio.to_thread.run_sync(importlib.import_module, _LOOP)
            self._loop = module
        try:
            outcome: RunOutcome = await module.AgentLoop(self).run(spec, ctx)
        finally:
            self._origins.pop(spec.workspace or "", None)
        return outcome
