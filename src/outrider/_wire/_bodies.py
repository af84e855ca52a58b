"""The JSON bodies of the HTTP API, shared by the daemon's routes and the clients."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, Field, JsonValue

from .._types._task import MAX_SEQ, Int, Notice, Number, SessionSummary, SubmitError, Task
from .._types._worktrees import MergeHow, Worktree
from .._version import __version__

__all__ = [
    "MAX_WAIT",
    "AckBody",
    "BatchBody",
    "BatchItemResult",
    "BatchResult",
    "DashboardLogin",
    "ErrorBody",
    "ErrorDetail",
    "Health",
    "LimitBody",
    "MergeBody",
    "NoticeList",
    "Output",
    "SessionList",
    "TaskList",
    "Transcript",
    "WaitBody",
    "WaitResult",
    "WorktreeList",
]

MAX_WAIT = 300.0
"""The longest a request may be held by the daemon (long polls, `?wait=`), in seconds."""


class BatchBody(BaseModel):
    """Many tasks at once; each item is validated and stored on its own."""

    items: list[JsonValue] = Field(min_length=1, max_length=1000)
    """Each a submit body (`{"spec": {...}, "priority": 7, ...}`)."""
    group: str | None = Field(default=None, min_length=1, max_length=200)


class BatchItemResult(BaseModel):
    """One item's outcome: the stored task, or why it was not stored."""

    task: Task | None = None
    error: SubmitError | None = None


class BatchResult(BaseModel):
    """One result per item, in order."""

    results: list[BatchItemResult]


class TaskList(BaseModel):
    """Tasks in submission order."""

    tasks: list[Task]


class WaitBody(BaseModel):
    """Which tasks to wait for, and how long."""

    task_ids: list[Annotated[str, Field(min_length=1)]] = Field(min_length=1, max_length=1000)
    timeout: Number = Field(default=30.0, ge=0, le=MAX_WAIT)
    return_when: Literal["all", "any"] = "all"


class WaitResult(BaseModel):
    """The tasks as they are; `done` tells whether the wait condition was met."""

    done: bool
    tasks: list[Task]


class Output(BaseModel):
    """The last lines of a task's output."""

    task_id: str
    output: str


class Transcript(BaseModel):
    """An agent task's transcript, or null for a task that has none.

    Shape: `{agent, attempts: [{model, error}], messages: [...]}`, messages in pydantic-ai's
    JSON form.
    """

    task_id: str
    transcript: JsonValue


class SessionList(BaseModel):
    """Every session of the token's principal, by name."""

    sessions: list[SessionSummary]


class NoticeList(BaseModel):
    """Unacknowledged completion notices, oldest first."""

    notices: list[Notice]


class AckBody(BaseModel):
    """Acknowledge every notice with `seq <= up_to`."""

    up_to: Int = Field(ge=0, le=MAX_SEQ)


class LimitBody(BaseModel):
    """A key's new concurrency limit."""

    limit: Int = Field(ge=1, le=100_000)


class DashboardLogin(BaseModel):
    """A one-time link to the dashboard, for the token's principal."""

    url: str
    """Open it in a browser; it works once."""
    expires_in: float
    """Seconds it stays valid if unused."""


class MergeBody(BaseModel):
    """How to merge a task's worktree back (see `Tasks.merge_task`)."""

    how: MergeHow = "apply"


class WorktreeList(BaseModel):
    """The session's worktrees, oldest first."""

    worktrees: list[Worktree]


class ErrorDetail(BaseModel):
    """What went wrong; `field` names the bad input when there is one."""

    type: str
    message: str
    field: str | None = None


class ErrorBody(BaseModel):
    """Every error answer.

    400 bad input, 401 token, 403 not allowed, 404 unknown or foreign id, 429 queue full (with
    `Retry-After`), 503 shutting down or the store cannot write (with `Retry-After`).
    """

    error: ErrorDetail


class Health(BaseModel):
    """Liveness and state.

    `ok`; `recovering` while the processes a crash left are being stopped; `degraded` while the
    store cannot write (`detail` says why).
    """

    status: Literal["ok", "recovering", "degraded"] = "ok"
    version: str = __version__
    detail: str | None = None
    proof: str | None = None
    """The answer to `challenge`: HMAC-SHA256 keyed by the token named by `token_id`."""
