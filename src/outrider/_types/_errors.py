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
├── NotAllowed                the caller may not do this (HTTP 403): only the daemon's owner may
└── DaemonError               the daemon could not be reached or started, or answered oddly
```

`WIRE_ERRORS` is the one table of how each error crosses HTTP (its status) and ends a CLI
command (its exit code); the daemon, both clients and the CLI read it.

Every message is one sentence that says what happened, the offending value, and how to fix it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from .._text import clip

TYPE_CHECKING = False  # as `typing`'s: the commands that must start fast do not import typing
if TYPE_CHECKING:
    from typing import Final

    from ._task import Task

__all__ = [
    "AuthError",
    "Closed",
    "DaemonError",
    "NotAllowed",
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
    "WIRE_ERRORS",
    "error_from_wire",
    "exit_code_of",
    "http_status_of",
    "user_error",
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

    def __init__(self, task_id: str, message: str | None = None) -> None:
        super().__init__(
            message
            or f"No task {task_id!r} in this session; listing the session's tasks shows its ids."
        )
        self.task_id = task_id
        self.field = "task_id"


class QueueFull(OutriderError):
    """The bound on unfinished tasks is reached; the submit stored nothing."""

    def __init__(self, max_queued: int | None, message: str | None = None) -> None:
        super().__init__(
            message
            or f"The queue is full: {max_queued} unfinished tasks are stored (`max_queued`); "
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


class NotAllowed(OutriderError, PermissionError):
    """The caller may not do this (only the daemon's owner may stop it or change limits)."""


class DaemonError(OutriderError):
    """The daemon could not be reached or started, or gave an unexpected answer."""


WIRE_ERRORS: Final[tuple[tuple[type[OutriderError], int, int], ...]] = (
    (UserError, 400, 2),
    (AuthError, 401, 2),
    (NotAllowed, 403, 2),
    (TaskNotFound, 404, 1),
    (QueueFull, 429, 2),
    (Closed, 503, 2),
    (StoreUnavailable, 503, 2),
    (StoreError, 503, 2),
)
"""(error, HTTP status, CLI exit code); any other error is a 500 and exit code 2."""
_BY_NAME: Final = {cls.__name__: cls for cls, _, _ in WIRE_ERRORS}


def http_status_of(exc: OutriderError) -> int:
    """The HTTP status an error is answered with."""
    return next((status for cls, status, _ in WIRE_ERRORS if isinstance(exc, cls)), 500)


def exit_code_of(exc: OutriderError) -> int:
    """The exit code a CLI command ends with on this error."""
    return next((code for cls, _, code in WIRE_ERRORS if isinstance(exc, cls)), 2)


def error_from_wire(
    status: int, kind: str, message: str, *, field: str | None = None, task_id: str | None = None
) -> OutriderError:
    """The exception an error answer stands for (the daemon's message kept as it is)."""
    cls = _BY_NAME.get(kind) or next((c for c, s, _ in WIRE_ERRORS if s == status), DaemonError)
    if cls is TaskNotFound:
        return TaskNotFound(task_id or "?", message)
    if cls is QueueFull:
        return QueueFull(None, message)
    if cls is UserError:
        return UserError(message, field=field)
    if cls is DaemonError:
        return DaemonError(f"HTTP {status}: {message}")
    return cls(message)


_LOCATION_PARTS: Final = frozenset({"body", "query", "header", "path"})
_SPEC_KINDS: Final = frozenset({"shell", "handler", "cli_agent", "agent"})


def user_error(
    errors: Sequence[Mapping[str, object]], *, prefix: str = "", subject: str = "the request"
) -> UserError:
    """One sentence for the first of pydantic's validation errors, naming the field and value.

    Args:
        errors: `ValidationError.errors()` (or FastAPI's request errors, which add where the
            value came from, e.g. `body`).
        prefix: Put before the field's dotted path (e.g. `tasks.3.`).
        subject: What is invalid when no field is to blame (the whole value).
    """
    first = errors[0] if errors else {"loc": (), "msg": "invalid input"}
    raw_loc = first.get("loc")
    where_from = raw_loc if isinstance(raw_loc, tuple | list) else ()
    parts: list[str] = []
    for p in where_from:
        if p in _LOCATION_PARTS or (isinstance(p, int) and p < 0):
            continue
        if parts[-1:] == ["spec"] and p in _SPEC_KINDS:
            continue  # the tag pydantic puts in a union's path: `spec.command`, as written
        parts.append(str(p))
    if "[key]" in parts:  # a mapping's key is bad: the mapping is the field
        parts = parts[: max(0, parts.index("[key]") - 1)]
    loc = ".".join(parts)
    field = f"{prefix}{loc}" if loc else (prefix.rstrip(".") or None)
    if field is None and where_from:  # the whole body (or header, query) is to blame
        field = str(where_from[0])
    message = str(first.get("msg")).removeprefix("Value error, ")
    if field == "body" and first.get("type") == "missing":
        message = "it is empty; send a JSON object"
    got = first.get("input")
    shown = (
        "" if got is None or isinstance(got, Mapping | list) else f" (got {clip(repr(got), 200)})"
    )
    where = f"`{field}`" if field else subject
    return UserError(f"Invalid {where}: {message}{shown}.", field=field)
