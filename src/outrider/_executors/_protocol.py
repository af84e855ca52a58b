"""The executor seam: how a started task's attempt runs, and where.

The engine, the store, limits, timers and events stay in the orchestrator's process; an
`Executor` only runs `runner.run(spec, ctx)` somewhere: `InProcess` on the orchestrator's own
event loop, `WorkerPool` in worker processes (`_pool`). `Executed` puts a runner behind an
executor for the engine, and stays a runner in every other way (its keys, its workplace, its
lifespan are the runner's own, in the orchestrator's process).

Invariants (every executor):
- `run` returns or raises as `runner.run` would: a `RunOutcome`, a `RunFailure`, or the
  cancellation that stopped it, and it returns only once the attempt is really over.
- What the run reports goes through the `ctx` it was given, in the order it was made.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from ..runners._protocol import RunFailure, Wrapping, WritingRunner

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Mapping
    from contextlib import AbstractAsyncContextManager

    from ..runners._protocol import RunContext, Runner, RunnerHost, RunOutcome

__all__ = [
    "CallLimiter", "Executed", "Executor", "InProcess", "Moved", "WorkerHost", "settled",
]  # fmt: skip


class CallLimiter(Protocol):
    """A model's call limiter: paces and bounds its calls (`_agents._limits.ModelLimiter`)."""

    async def acquire(self, tokens: int = 0) -> None:
        """Wait for a call slot and the call's turn."""
        ...

    async def release(self) -> None:
        """End a call started by `acquire`."""
        ...

    def succeeded(self) -> None:
        """A call went through."""
        ...

    def throttled(self, retry_after: float | None) -> None:
        """The provider throttled a call (429/529), maybe asking for a pause."""
        ...

    def stated(self, rpm: float | None, tpm: float | None) -> None:
        """The provider stated its per-minute limits."""
        ...


class WorkerHost(Protocol):
    """What a worker offers the runners it builds (a `WorkerPool` factory's second argument)."""

    def suggest_limit(self, key: str, limit: int) -> None:
        """Ask the daemon for a concurrency key's limit (`RunnerHost.suggest_limit`)."""
        ...

    def limiter(self, model: str) -> CallLimiter:
        """The daemon's limiter of `model` (`provider/model`), shared by every worker."""
        ...


class Executor(Protocol):
    """Runs the attempts of tasks (see the module docstring)."""

    def lifespan(self, host: RunnerHost) -> AbstractAsyncContextManager[None]:
        """Entered once when the orchestrator opens, left after every run ended."""
        ...

    async def run(self, runner: Runner, spec: object, ctx: RunContext) -> RunOutcome:
        """Run one attempt of a task of `runner`'s kind."""
        ...


@dataclass(frozen=True, slots=True)
class Moved:
    """A spec to run in another folder (its worktree), moved by the runner where it runs.

    The runner's `relocate` may note what it needs of the move (an agent runner notes the
    folder a worktree stands for, to find agents there), so it is called in the process that
    runs the task.
    """

    spec: object
    folder: str
    env: Mapping[str, str]


def settled(runner: Runner, spec: object) -> object:
    """The spec `runner` runs: a `Moved` one relocated by `runner` (a `WritingRunner`)."""
    if not isinstance(spec, Moved):
        return spec
    if not isinstance(runner, WritingRunner):
        raise RunFailure(
            f"The {runner.kind!r} runner here cannot move a task into a worktree; run it "
            "with isolation 'none'.",
            type="config",
        )
    return runner.relocate(spec.spec, spec.folder, spec.env)


class InProcess:
    """Runs attempts on the orchestrator's own event loop."""

    @contextlib.asynccontextmanager
    async def lifespan(self, host: RunnerHost) -> AsyncIterator[None]:
        """Nothing to start or stop."""
        yield

    async def run(self, runner: Runner, spec: object, ctx: RunContext) -> RunOutcome:
        """`runner.run(spec, ctx)`."""
        return await runner.run(settled(runner, spec), ctx)


class Executed(Wrapping["Runner"]):
    """`inner`, its runs going through `executor`; everything else is `inner`'s own."""

    def __init__(self, inner: Runner, executor: Executor) -> None:
        super().__init__(inner)
        self.executor = executor

    def relocate(self, spec: object, folder: str, env: Mapping[str, str]) -> Moved:
        """The spec, to be moved to `folder` by the inner runner where the attempt runs."""
        return Moved(spec, folder, dict(env))

    async def run(self, spec: object, ctx: RunContext) -> RunOutcome:
        """Run the attempt through the executor."""
        return await self.executor.run(self.inner, spec, ctx)
