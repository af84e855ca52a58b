"""One `Op` per endpoint of the HTTP API: what to send and how to read the answer.

An op is a plain value (sans I/O): a client sends it with its own transport and passes the
decoded JSON body (None for an empty answer) to `op.decode`. Errors are not decoded here:
`outrider._errors.error_from_wire` turns any non-2xx answer into the exception it stands for.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, Literal, TypeVar
from urllib.parse import quote

from .._types._events import Event
from .._types._task import (
    KeyStatus,
    Notice,
    SessionSummary,
    Status,
    SubmitError,
    SubmitItem,
    Task,
)
from .._types._worktrees import MergeResult, Worktree
from ._bodies import (
    BatchResult,
    DashboardLogin,
    Health,
    NoticeList,
    Output,
    SessionList,
    TaskList,
    Transcript,
    WaitResult,
    WorktreeList,
)

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Mapping, Sequence

    from pydantic import JsonValue

__all__ = [
    "EVENTS",
    "NOTICE_STREAM",
    "Op",
    "Stream",
    "ack_notices",
    "cancel",
    "cancel_all",
    "dashboard_login",
    "get",
    "health",
    "discard_task",
    "list_tasks",
    "merge_task",
    "prune_worktrees",
    "notices",
    "retry",
    "sessions",
    "set_limit",
    "shutdown",
    "status",
    "submit",
    "submit_many",
    "tail",
    "transcript",
    "wait",
    "worktrees",
]

T = TypeVar("T")
M = TypeVar("M", Event, Notice)


@dataclass(frozen=True, slots=True)
class Op(Generic[T]):
    """One request and how to read its answer's JSON."""

    method: Literal["GET", "POST", "PUT"]
    path: str
    decode: Callable[[Any], T]
    json: Any = None
    params: Mapping[str, Any] | None = None
    task_id: str | None = None
    """The task the request is about (a 404 names it)."""
    hold: float = 0.0
    """Seconds the daemon may hold the request before it answers (long polls)."""
    auth: bool = True
    """Whether the request carries the token (then the daemon must first prove it holds it)."""


@dataclass(frozen=True, slots=True)
class Stream(Generic[M]):
    """A Server-Sent Events endpoint whose messages are `model`s with a `seq`."""

    path: str
    model: type[M]


EVENTS = Stream("/v1/events", Event)
NOTICE_STREAM = Stream("/v1/notices/stream", Notice)


def _none(_: Any) -> None:
    return None


def _task(body: Any) -> Task:
    return Task.model_validate(body)


def _tasks(body: Any) -> list[Task]:
    return TaskList.model_validate(body).tasks


def _task_path(task_id: str, suffix: str = "") -> str:
    return f"/v1/tasks/{quote(task_id, safe='')}{suffix}"


def _present(params: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in params.items() if v is not None and v != []}


def health() -> Op[Health]:
    """`GET /health`: liveness (no token needed)."""
    return Op("GET", "/health", Health.model_validate, auth=False)


def submit(item: SubmitItem, *, wait: float | None = None) -> Op[Task]:
    """`POST /v1/tasks`: store one task; with `wait`, answer once it ended (or at the deadline)."""
    body = item.model_dump(mode="json", exclude_none=True, exclude_defaults=True)
    body["spec"] = item.spec.model_dump(mode="json")
    return Op("POST", "/v1/tasks", _task, json=body, params=_present({"wait": wait}),
              hold=wait or 0.0)  # fmt: skip


def submit_many(
    items: Iterable[SubmitItem | JsonValue], *, group: str | None
) -> Op[list[Task | SubmitError]]:
    """`POST /v1/tasks/batch`: store many tasks, each on its own."""
    body = [
        i.model_dump(mode="json", exclude_none=True) if isinstance(i, SubmitItem) else i
        for i in items
    ]

    def decode(data: Any) -> list[Task | SubmitError]:
        return [r.task or r.error for r in BatchResult.model_validate(data).results]  # type: ignore[misc]  # one of the two is set

    return Op("POST", "/v1/tasks/batch", decode, json=_present({"items": body, "group": group}))


def list_tasks(
    *, states: Iterable[str] | None, group: str | None, limit: int | None
) -> Op[list[Task]]:
    """`GET /v1/tasks`: the session's tasks, filtered."""
    params = _present({"state": [str(s) for s in states or ()], "group": group, "limit": limit})
    return Op("GET", "/v1/tasks", _tasks, params=params)


def get(task_id: str) -> Op[Task]:
    """`GET /v1/tasks/{id}`: one task."""
    return Op("GET", _task_path(task_id), _task, task_id=task_id)


def wait(
    task_ids: Sequence[str], *, timeout: float, return_when: Literal["all", "any"]
) -> Op[WaitResult]:
    """`POST /v1/wait`: long-poll until all (any) ended, or `timeout` seconds."""
    body = {"task_ids": list(task_ids), "timeout": timeout, "return_when": return_when}
    only = task_ids[0] if len(task_ids) == 1 else None
    return Op("POST", "/v1/wait", WaitResult.model_validate, json=body, task_id=only, hold=timeout)


def cancel(task_id: str) -> Op[Task]:
    """`POST /v1/tasks/{id}/cancel`: stop a task and its children."""
    return Op("POST", _task_path(task_id, "/cancel"), _task, task_id=task_id)


def cancel_all() -> Op[list[Task]]:
    """`POST /v1/session/cancel`: stop every unfinished task of the session."""
    return Op("POST", "/v1/session/cancel", _tasks)


def retry(task_id: str) -> Op[Task]:
    """`POST /v1/tasks/{id}/retry`: submit an ended task again."""
    return Op("POST", _task_path(task_id, "/retry"), _task, task_id=task_id)


def tail(task_id: str, *, lines: int) -> Op[str]:
    """`GET /v1/tasks/{id}/output`: the last lines of output."""
    return Op("GET", _task_path(task_id, "/output"),
              lambda data: Output.model_validate(data).output,
              params={"lines": lines}, task_id=task_id)  # fmt: skip


def transcript(task_id: str) -> Op[JsonValue]:
    """`GET /v1/tasks/{id}/transcript`: an agent task's transcript."""
    return Op("GET", _task_path(task_id, "/transcript"),
              lambda data: Transcript.model_validate(data).transcript, task_id=task_id)  # fmt: skip


def worktrees() -> Op[list[Worktree]]:
    """`GET /v1/worktrees`: the session's worktrees."""
    return Op("GET", "/v1/worktrees", lambda data: WorktreeList.model_validate(data).worktrees)


def prune_worktrees() -> Op[list[Worktree]]:
    """`POST /v1/worktrees/prune`: apply the cleanup rules now; the worktrees changed."""
    return Op(
        "POST", "/v1/worktrees/prune", lambda data: WorktreeList.model_validate(data).worktrees
    )


def merge_task(task_id: str, *, how: str) -> Op[MergeResult]:
    """`POST /v1/tasks/{id}/merge`: bring a task's worktree back into its parent's checkout."""
    return Op("POST", _task_path(task_id, "/merge"), MergeResult.model_validate,
              json={"how": how}, task_id=task_id)  # fmt: skip


def discard_task(task_id: str) -> Op[Worktree]:
    """`POST /v1/tasks/{id}/discard`: give up a task's worktree."""
    return Op("POST", _task_path(task_id, "/discard"), Worktree.model_validate, task_id=task_id)


def status() -> Op[Status]:
    """`GET /v1/status`: the load per state and per key."""
    return Op("GET", "/v1/status", Status.model_validate)


def sessions() -> Op[list[SessionSummary]]:
    """`GET /v1/sessions`: every session of the principal, with its tasks per state."""
    return Op("GET", "/v1/sessions", lambda data: SessionList.model_validate(data).sessions)


def set_limit(key: str, limit: int) -> Op[KeyStatus]:
    """`PUT /v1/limits/{key}`: change a key's limit; answers the key's load."""
    return Op("PUT", f"/v1/limits/{quote(key, safe='')}", KeyStatus.model_validate,
              json={"limit": limit})  # fmt: skip


def notices(*, limit: int) -> Op[list[Notice]]:
    """`GET /v1/notices`: the unacknowledged completion notices."""
    return Op("GET", "/v1/notices", lambda data: NoticeList.model_validate(data).notices,
              params={"limit": limit})  # fmt: skip


def ack_notices(up_to: int) -> Op[None]:
    """`POST /v1/notices/ack`: acknowledge notices up to a seq."""
    return Op("POST", "/v1/notices/ack", _none, json={"up_to": up_to})


def dashboard_login() -> Op[DashboardLogin]:
    """`POST /v1/dashboard/login`: a one-time login link to the dashboard."""
    return Op("POST", "/v1/dashboard/login", DashboardLogin.model_validate)


def shutdown() -> Op[None]:
    """`POST /v1/shutdown`: stop the daemon gracefully (its owner only)."""
    return Op("POST", "/v1/shutdown", _none)
