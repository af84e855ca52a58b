"""The exception hierarchy of outrider.

```
OutriderError
├── UserError                 API misuse: bad config, invalid request
├── TaskNotFound              unknown id, or an id of another session (also a LookupError)
├── QueueFull                 backpressure: `max_queued` unfinished tasks are already stored
├── Closed                    the `Orchestrator` is not open (not entered yet, closing or closed)
├── TaskError                 raised only when a caller awaits a result; carries `.task`
│   ├── TaskFailed
│   ├── TaskCancelled
│   └── TaskTimedOut
├── StoreError                the store failed (wraps `sqlite3` errors) or another process has it
│   └── StoreUnavailable      it cannot write now (a full or read-only disk): retry later
├── RunnerError               a runner could not start a task (missing executable, bad spec)
├── AuthError                 the daemon refused the client's token (HTTP 401)
└── DaemonError               the daemon could not be reached or started, or answered oddly
```

Every message is one sentence that says what happened, the offending value, and how to fix it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ._models import Task

__all__ = [
    "AuthError",
    "Closed",
    "DaemonError",
    "OutriderError",
    "QueueFull",
    "RunnerError",
    "StoreError",
    "StoreUnavailable",
    "TaskCancelled",
    "TaskError",
    "TaskFailed",
    "TaskNotFound",
    "TaskTimedOut",
    "UserError",
]


class OutriderError(Exception):
    """Base class of every error outrider raises."""


class UserError(OutriderError, ValueError):
    """The caller asked for something invalid; nothing was stored.

    Attributes:
        field: The offending field (dotted path), when one field is to blame.
    """

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class TaskNotFound(OutriderError, LookupError):
    """No task with this id is visible to the caller's session."""

    def __init__(self, task_id: str) -> None:
        super().__init__(
            f"No task {task_id!r} in this session; `list` shows the ids this session can see."
        )
        self.task_id = task_id


class QueueFull(OutriderError):
    """The bound on unfinished tasks is reached; the submit stored nothing."""

    def __init__(self, max_queued: int) -> None:
        super().__init__(
            f"The queue is full: {max_queued} unfinished tasks are stored (`max_queued`); "
            "wait for some to finish, cancel some, or raise `max_queued`."
        )
        self.max_queued = max_queued


class Closed(OutriderError, RuntimeError):
    """The orchestrator is not open for this operation."""


class TaskError(OutriderError):
    """A task did not succeed; raised only to a caller that asked for its result."""

    def __init__(self, message: str, task: Task) -> None:
        super().__init__(message)
        self.task = task


class TaskFailed(TaskError):
    """The task ended `failed`."""


class TaskCancelled(TaskError):
    """The task ended `cancelled`."""


class TaskTimedOut(TaskError):
    """The task ended `timed_out`."""


class StoreError(OutriderError):
    """The store could not be opened, read or written."""


class StoreUnavailable(StoreError):
    """The store cannot write now (a full or read-only disk, an I/O error); nothing was stored.

    The condition is outside outrider: once it is fixed, the same request succeeds (HTTP 503
    with `Retry-After`).
    """


class RunnerError(OutriderError):
    """A runner could not start the task (for example, its executable is missing)."""


class AuthError(OutriderError):
    """The daemon refused the request's bearer token (missing or wrong)."""


class DaemonError(OutriderError):
    """The daemon could not be reached or started, or gave an unexpected answer."""
