"""`Tasks`: one session's API, declared once.

Two classes implement it: `Session` in process (`Orchestrator.session(name)`) and `AsyncClient`
over HTTP. The HTTP routes and the MCP tools are written against it, and one contract suite
(`tests/contracts/`) runs the same behaviour tests over both implementations, so a caller gets
the same answers whichever way it comes in.

Every method acts in the one session the object was made for; a task of another session is
reported exactly like an unknown one (`TaskNotFound`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Literal, Protocol, TypedDict

from pydantic import ValidationError

from ._errors import (
    OutriderError,
    QueueFull,
    StoreError,
    StoreUnavailable,
    TaskCancelled,
    TaskFailed,
    TaskTimedOut,
    UserError,
    user_error,
)
from ._names import check_session_name
from ._task import SubmitItem, TaskState

if TYPE_CHECKING:
    import builtins
    from collections.abc import AsyncIterator, Iterable, Mapping, Sequence

    from pydantic import JsonValue
    from typing_extensions import Unpack

    from ._events import Event
    from ._task import (
        KeyStatus,
        Notice,
        NoticeWait,
        SessionSummary,
        Status,
        SubmitError,
        Task,
        TaskSpec,
    )
    from ._worktrees import MergeHow, MergeResult, Worktree

__all__ = [
    "ReturnWhen",
    "check_session_name",
    "Sessions",
    "SubmitOptions",
    "Tasks",
    "options_of",
    "submit_error",
    "submit_item",
    "task_outcome",
]

ReturnWhen = Literal["all", "any"]


class SubmitOptions(TypedDict, total=False):
    """How a task is scheduled (validated at submit; see `SubmitItem` for each field).

    An option that is absent or None takes its default.
    """

    priority: int | None
    keys: Sequence[str] | None
    timeout: float | None
    ttl: float | None
    stall_timeout: float | None
    max_attempts: int | None
    label: str | None
    description: str | None
    group: str | None
    parent: str | None
    depends_on: Sequence[str] | None


class Tasks(Protocol):
    """One session's tasks: in process (`Orchestrator.session`) or over HTTP (`AsyncClient`).

    Cancellation: cancelling a call abandons it; a submit that was stored stays stored, and
    a cancel that reached the engine still stops its task.
    """

    @property
    def session(self) -> str:
        """The session every call acts in."""
        ...

    async def submit(self, spec: TaskSpec, /, **options: Unpack[SubmitOptions]) -> Task:
        """Store one task and queue it; returns its record at once (`position`, `waiting_for`).

        Raises:
            UserError: A field is invalid (nothing was stored).
            QueueFull: `max_queued` unfinished tasks are stored already.
        """
        ...

    async def submit_many(
        self,
        items: Iterable[SubmitItem | JsonValue],
        /,
        *,
        group: str | None = None,
    ) -> builtins.list[Task | SubmitError]:
        """Store many tasks; each item is validated and stored on its own, in order."""
        ...

    async def run(
        self, spec: TaskSpec, /, *, wait: float | None = None, **options: Unpack[SubmitOptions]
    ) -> JsonValue:
        """Submit a task and wait for its result: delegate and wait in one call.

        Args:
            spec: What to run.
            wait: Seconds to wait for the end (None: as long as it takes).
            **options: As `submit`.

        Raises:
            TaskFailed, TaskCancelled, TaskTimedOut: It ended so (`.task` is its record).
            TimeoutError: `wait` passed first; the task goes on (its id is in the message).
        """
        ...

    async def get(self, task_id: str) -> Task:
        """One task's current record."""
        ...

    async def list(
        self,
        *,
        states: Iterable[str] | None = None,
        group: str | None = None,
        limit: int | None = None,
    ) -> builtins.list[Task]:
        """The session's tasks in submission order (the newest `limit`), filtered."""
        ...

    async def wait(
        self,
        task_ids: Sequence[str],
        *,
        timeout: float | None = None,
        return_when: ReturnWhen = "all",
    ) -> builtins.list[Task]:
        """The tasks once all (or any) of them ended, or as they are after `timeout` seconds."""
        ...

    async def result(self, task_id: str, *, timeout: float | None = None) -> JsonValue:
        """Wait for the task and return its result (raises as `run`)."""
        ...

    async def cancel(self, task_id: str) -> Task:
        """Cancel a task and the tasks it started; returns it once it ended. Idempotent."""
        ...

    async def cancel_all(self) -> builtins.list[Task]:
        """Cancel every unfinished task of the session; returns them as they ended."""
        ...

    async def retry(self, task_id: str) -> Task:
        """Submit an ended task again as a new task (`retry_of` names the old one)."""
        ...

    async def tail(self, task_id: str, *, lines: int = 50) -> str:
        """The last `lines` lines of the task's output (also while it runs)."""
        ...

    async def worktrees(self) -> builtins.list[Worktree]:
        """The worktrees of the session's writing tasks, oldest first."""
        ...

    async def prune_worktrees(self) -> builtins.list[Worktree]:
        """Apply the cleanup rules to the session's worktrees now; returns the ones changed.

        Removed: what changed nothing, and what was merged or discarded; past the retention,
        the folder of kept work (its branch stays). Never uncommitted files or unmerged work.
        """
        ...

    async def merge_task(self, task_id: str, *, how: MergeHow = "apply") -> MergeResult:
        """Bring an ended task's work from its worktree into its parent's checkout.

        `how`: `apply` (to the files only), `squash` (one commit), `cherry-pick` (its
        commits), or `patch` (only write the `.patch`). A merge that cannot be done (conflicts,
        uncommitted changes in the way) changes nothing, keeps the branch, the worktree and a
        `.patch`, and names the paths: `merged` is False.

        Raises:
            TaskNotFound: No such task in the session.
            UserError: It has no worktree with work to merge, or is still running.
        """
        ...

    async def discard_task(self, task_id: str) -> Worktree:
        """Give up an ended task's work: its worktree and branch go (a `.patch` stays).

        Raises:
            TaskNotFound: No such task in the session.
            UserError: It has no worktree with work, or is still running.
        """
        ...

    async def transcript(self, task_id: str) -> JsonValue:
        """An agent task's transcript (models tried, every message), or None."""
        ...

    async def status(self) -> Status:
        """The load: tasks per state, and per key running / limit / queued."""
        ...

    async def set_limit(self, key: str, limit: int) -> KeyStatus:
        """Change a key's concurrency limit at once, for every session, until a restart.

        Returns:
            The key's load under its new limit.

        Raises:
            UserError: A bad key or limit.
            NotAllowed: The caller may not change limits (in the daemon, only its owner may).
        """
        ...

    async def notices(
        self, *, limit: int = 100, reader: str | None = None
    ) -> builtins.list[Notice]:
        """The session's completion notices not yet acknowledged, oldest first.

        With `reader` (one host window reading the session), the notices that reader has not
        received yet instead, acknowledged by another reader or not: two windows sharing a
        session each receive every notice. A new reader starts at the acknowledged ones.

        Raises:
            UserError: An invalid reader name.
        """
        ...

    async def ack_notices(self, up_to: int, *, reader: str | None = None) -> None:
        """Acknowledge the notices with `seq <= up_to` (at most the last one issued).

        Call it once the notices reached a model. With `reader`, they also count as received
        by that reader.
        """
        ...

    async def next_notices(self, *, timeout: float, reader: str | None = None) -> NoticeWait:
        """The notices `notices(reader=…)` would return, waiting up to `timeout` s for one.

        A long poll for what wakes an idle host: it answers as soon as there is a notice.
        Newest waiter wins: a call for the same reader (or, without one, the same session)
        ends the one waiting at once with `superseded`, so a host never has two waiters.
        Nothing is acknowledged.

        Cancellation: a cancelled wait leaves nothing behind.
        """
        ...

    def follow_notices(self, *, after: int = 0) -> AsyncIterator[Notice]:
        """The unacknowledged notices, then each new one as it happens (from `seq > after`)."""
        ...

    def events(
        self,
        *,
        after: int = 0,
        follow: bool = True,
        all_sessions: bool = False,
        task_id: str | None = None,
        types: Iterable[str] | None = None,
        watch: bool = True,
    ) -> AsyncIterator[Event]:
        """The durable event stream from `seq > after`, then live; resumable by `seq`.

        `follow=False`: end after the events stored so far. `all_sessions`: every session of
        the same owner, each event naming its session. `task_id`: only that task's events (an
        unknown task, or another session's, raises `TaskNotFound`). `types`: only events of
        these types (an unknown type raises `UserError`). `watch=False`: take the `task.output`
        events as they come without watching the tasks: a built-in agent streams a model's
        answer chunk by chunk only while a stream that watches follows its output (the
        default), else its output comes a turn at a time, for a fraction of the CPU.
        """
        ...

    async def sessions(self) -> builtins.list[SessionSummary]:
        """Every session of the same owner, by name, with its tasks per state.

        Each also tells its unseen failures, its newest event's `seq` and its last change; a
        session is listed while it holds tasks.
        """
        ...


Sessions = Callable[[str, str], Tasks]
"""`sessions(principal, name)`: a principal's session, as the daemon hands it to its interfaces."""


def options_of(item: SubmitItem) -> SubmitOptions:
    """The options of a validated submit item (the inverse of `submit_item`)."""
    return SubmitOptions(
        priority=item.priority, keys=item.keys, timeout=item.timeout, ttl=item.ttl,
        stall_timeout=item.stall_timeout, max_attempts=item.max_attempts, label=item.label,
        description=item.description, group=item.group, parent=item.parent,
        depends_on=item.depends_on,
    )  # fmt: skip


def submit_item(spec: TaskSpec, options: Mapping[str, object]) -> SubmitItem:
    """A validated submit item of `spec` and its options (None or absent: the default).

    Raises:
        UserError: An option is invalid; the message names it.
    """
    given = {
        k: tuple(v) if isinstance(v, list | tuple) else v
        for k, v in options.items()
        if v is not None
    }
    try:
        return SubmitItem.model_validate({**given, "spec": spec})
    except ValidationError as exc:
        raise user_error(exc.errors()) from None


def submit_error(error: SubmitError, max_queued: int | None) -> OutriderError:
    """The exception a refused single submit raises."""
    match error.type:
        case "QueueFull":
            return QueueFull(max_queued)
        case "StoreUnavailable":
            return StoreUnavailable(error.message)
        case "StoreError" | "Closed":
            return StoreError(error.message)
        case _:
            return UserError(error.message, field=error.field)


def task_outcome(task: Task, timeout: float | None) -> JsonValue:
    """A waited-for task's result, or the error its end stands for.

    Raises:
        TaskFailed, TaskCancelled, TaskTimedOut: It ended so.
        TimeoutError: It has not ended (the wait's `timeout` passed first).
    """
    match task.state:
        case TaskState.SUCCEEDED:
            result: JsonValue = task.result
            return result
        case TaskState.FAILED:
            message = task.error.message if task.error else "failed"
            raise TaskFailed(f"Task {task.id!r} failed: {message}", task)
        case TaskState.CANCELLED:
            raise TaskCancelled(f"Task {task.id!r} was cancelled.", task)
        case TaskState.TIMED_OUT:
            raise TaskTimedOut(f"Task {task.id!r} timed out.", task)
        case _:
            raise TimeoutError(f"Task {task.id!r} is still {task.state} after {timeout}s.")
