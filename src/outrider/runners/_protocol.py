"""The runner protocol: the one seam between the engine and kind-specific work.

A runner turns a validated spec into work. The engine gives it a `RunContext` to report
through and a cancel scope around `run`; the runner returns a `RunOutcome` or raises.

- Returning means success. Raising `RunFailure` means a failure the runner understood
  (non-zero exit, a handler's error); any other exception is recorded with its traceback
  (`failure_of`, at every task boundary: the daemon's and a worker's).
- Cancellation arrives as the backend's cancellation exception inside `run`. The runner
  must release what it holds (kill its processes, wait for them) in a shielded `finally`
  and let the cancellation propagate; the engine decides the outcome from its own record
  of why it cancelled.
"""

from __future__ import annotations

import traceback
from dataclasses import dataclass
from typing import TYPE_CHECKING, Generic, Protocol, TypeVar, runtime_checkable

from ._open_files import too_many_files

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping
    from contextlib import AbstractAsyncContextManager

    import anyio
    from pydantic import JsonValue

    from outrider._types._task import Task, TaskSpec, Usage
    from outrider._types._worktrees import Isolation, MergePolicy

__all__ = [
    "GuardedContext", "PathGuard", "RunContext", "RunFailure", "RunOutcome", "Runner",
    "RunnerHost", "Workplace", "Wrapping", "WritingRunner", "failure_of",
]  # fmt: skip


@dataclass(frozen=True, slots=True)
class RunOutcome:
    """What a successful run produced."""

    result: JsonValue = None
    exit_code: int | None = None


class RunFailure(Exception):
    """A run ended in a failure the runner understood.

    Args:
        message: One sentence for the task's `error.message`.
        type: A short kind for `error.type` (for example `exit`, `ValueError`).
        detail: More lines (the output's tail, a traceback).
        exit_code: The process's exit code, for process-backed runners.
        retryable: Whether another attempt may succeed (then `max_attempts` applies).
    """

    def __init__(
        self,
        message: str,
        *,
        type: str = "error",
        detail: str | None = None,
        exit_code: int | None = None,
        retryable: bool = False,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.type = type
        self.detail = detail
        self.exit_code = exit_code
        self.retryable = retryable


def failure_of(exc: Exception) -> RunFailure:
    """How a run that raised `exc` failed, as its task's error will tell it.

    A `RunFailure` as it is; any other exception by its type and message, its traceback as the
    detail, not to be retried, except a want of open files: that says which limit and how to
    raise it, and another attempt may find files free.
    """
    if isinstance(exc, RunFailure):
        return exc
    detail = "".join(traceback.format_exception(exc, limit=-8))[-8000:]
    kind = type(exc).__name__
    if (message := too_many_files(exc)) is not None:
        return RunFailure(message, type=kind, detail=detail, retryable=True)
    return RunFailure(str(exc), type=kind, detail=detail)


class RunContext(Protocol):
    """What a runner may report through while its task runs. Methods never block."""

    @property
    def task_id(self) -> str:
        """The task's id."""
        ...

    @property
    def attempt(self) -> int:
        """The attempt number, from 1."""
        ...

    @property
    def resuming(self) -> bool:
        """Whether the previous attempt was interrupted (a crash or a shutdown).

        A runner that kept its progress (`save_transcript`) may continue from it.
        """
        ...

    @property
    def cancel_requested(self) -> bool:
        """Whether the task is being stopped; code in threads polls this."""
        ...

    def progress(
        self, completed: float, total: float | None = None, message: str | None = None
    ) -> None:
        """Report progress (`completed` of `total`, with an optional message)."""
        ...

    def output(self, data: bytes | str) -> None:
        """Append to the task's output log (capped; head and tail kept)."""
        ...

    def usage(self, usage: Usage) -> None:
        """Report the tokens and cost spent so far (replaces the previous report)."""
        ...

    @property
    def watched(self) -> bool:
        """Whether this task's output is watched as it comes, now.

        It is while someone follows it live (a subscriber of its events), and always when
        the task has a `stall_timeout` (which watches its output for silence). A runner may
        report less finely while it is not: the built-in agent then asks its model for whole
        answers instead of streams. It may change during a run.
        """
        ...

    @property
    def session(self) -> str:
        """The session the task belongs to (tasks it starts belong to it too)."""
        ...

    async def spawn(
        self, spec: TaskSpec, /, *, label: str | None = None, timeout: float | None = None
    ) -> Task:
        """Run a child task and return its record once it ended.

        The child is in this task's session, has it as `parent`, and starts first in its
        priority. While it runs, this task's concurrency slots go to others; it takes them back
        (ahead of its priority's other tasks) before this returns.

        Raises:
            UserError: The spec was refused (its message says why).

        Cancellation: if this task is stopped, the child is cancelled with it (shielded)
        before the cancellation propagates.
        """
        ...

    async def tail(self, task_id: str, *, lines: int = 50) -> str:
        """The last `lines` lines of the output of a task this one spawned."""
        ...

    async def save_transcript(self, data: bytes) -> None:
        """Store the task's transcript (JSON), replacing the previous one."""
        ...

    async def load_transcript(self) -> bytes | None:
        """The transcript stored by this task's previous attempts, if any."""
        ...

    def abandon(self, ended: anyio.Event) -> None:
        """The run is stopped but left work it cannot interrupt (a thread) running on.

        The task ends now, saying so, and keeps its concurrency slots until `ended` is set.
        """
        ...

    async def track_process(self, pid: int) -> None:
        """Record a child process so a later start can kill it if this process dies.

        Returns once the record is queued for the store (it is committed ahead of the task's
        end); until then a later start finds the process by its marker. Safe to cancel.
        """
        ...


class PathGuard(Protocol):
    """Leases on the files a task writes in a folder other tasks write in too."""

    async def claim(self, path: str) -> str | None:
        """Hold `path` (absolute) for this task until it ends; None, or why it may not write it.

        The answer is for the model: it names the task holding the file and what to do.
        """
        ...


@runtime_checkable
class GuardedContext(RunContext, Protocol):
    """The context of a task that writes in place beside others: its writes take leases."""

    @property
    def path_guard(self) -> PathGuard:
        """The task's leases."""
        ...


class RunnerHost(Protocol):
    """What a runner may ask of the orchestrator that runs it (see `Runner.lifespan`)."""

    def suggest_limit(self, key: str, limit: int) -> None:
        """Ask for a concurrency key's limit; it applies unless the operator set that key's.

        An agent's `limit`, a model's concurrency as its provider throttles and recovers.
        """
        ...

    def on_watch_change(self, callback: Callable[[], object]) -> Callable[[], None]:
        """Call `callback` whenever someone starts or stops following events live.

        A `RunContext.watched` may have changed then. Returns the callback's removal.
        """
        ...


class Runner(Protocol):
    """Runs the tasks of one kind."""

    @property
    def kind(self) -> str:
        """The spec kind this runner handles."""
        ...

    @property
    def uses_processes(self) -> bool:
        """Whether its tasks start processes (then resource admission applies)."""
        ...

    def default_keys(self, spec: object) -> tuple[str, ...]:
        """The concurrency keys of a task that names none (its kind's: `shell`, `agent:x`)."""
        ...

    def required_keys(self, spec: object) -> tuple[str, ...]:
        """Keys a task holds whatever keys it names.

        They stand for limits outside outrider (a model's rate, a provider's), which only the
        runner can tell from the spec. Asked at each submit, and by an orchestrator that opens
        of the unfinished tasks it recovers, so a runner sets those keys' limits on its host
        (`RunnerHost.suggest_limit`) before they run.
        """
        ...

    def lifespan(self, host: RunnerHost) -> AbstractAsyncContextManager[None]:
        """Entered by the orchestrator when it opens, left when it closes (after every run).

        A runner keeps `host` to act on the orchestrator, and releases what it holds (HTTP
        clients, worker processes) on the way out.
        """
        ...

    async def run(self, spec: object, ctx: RunContext) -> RunOutcome:
        """Run one attempt of a task.

        Raises:
            RunFailure: The run failed in a way the runner understood.
        """
        ...


@dataclass(frozen=True, slots=True)
class Workplace:
    """Where a task of a writing runner works, and what it asked for (see `WritingRunner`)."""

    folder: str
    """Its folder (an agent's workspace, a CLI's `cwd`), absolute."""
    writes: bool
    """Whether it can change files there (a read-only agent cannot)."""
    asked: Isolation | None = None
    """The submit's `isolation`."""
    agent_default: Isolation | None = None
    """The agent file's `isolation`."""
    base: str | None = None
    """What a worktree starts from: `snapshot` (None), `head`, or a ref."""
    setup: str | None = None
    """A shell command run in a new worktree before the task (its agent file's `setup`)."""
    merge: MergePolicy = "manual"
    """`auto-if-clean`: its work is applied to the folder as it ends, if it merges cleanly."""


@runtime_checkable
class WritingRunner(Runner, Protocol):
    """A runner whose tasks write files, and so may each run in their own git worktree."""

    async def workplace(self, spec: object) -> Workplace:
        """Where the task would work and what it asked for."""
        ...

    def relocate(self, spec: object, folder: str, env: Mapping[str, str]) -> object:
        """The spec run in `folder` (the worktree's copy of its folder) with `env` added."""
        ...


R = TypeVar("R", bound=Runner)


class Wrapping(Generic[R]):
    """A runner that is `inner` in every way but how it runs (a subclass defines `run`)."""

    def __init__(self, inner: R) -> None:
        self.inner = inner

    @property
    def kind(self) -> str:
        """The wrapped runner's kind."""
        return self.inner.kind

    @property
    def uses_processes(self) -> bool:
        """The wrapped runner's."""
        return self.inner.uses_processes

    def default_keys(self, spec: object) -> tuple[str, ...]:
        """The wrapped runner's."""
        return self.inner.default_keys(spec)

    def required_keys(self, spec: object) -> tuple[str, ...]:
        """The wrapped runner's."""
        return self.inner.required_keys(spec)

    def lifespan(self, host: RunnerHost) -> AbstractAsyncContextManager[None]:
        """The wrapped runner's."""
        return self.inner.lifespan(host)

    def __getattr__(self, name: str) -> object:
        """Anything else the wrapped runner offers (a writing runner's `workplace`, …)."""
        return getattr(self.inner, name)
