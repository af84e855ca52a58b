"""Events: one stored record per lifecycle step, with a payload typed by its `type`.

Each event type has one payload model, declared here once; the engine builds them (without
validation, on the hot path), the store writes them as JSON, readers get them typed
(`isinstance(event.data, TaskEnded)`), and completion notices are computed from them. The JSON
on the wire is `{"seq", "type", "session", "task_id", "group", "at", "data": {...}}`.

Which events end a task (`TERMINAL_EVENT_TYPES`) and which make a completion notice
(`NOTICE_TYPES`) are derived here from the terminal task states.
"""

from __future__ import annotations

from datetime import datetime  # pydantic reads the annotations at run time
from typing import Any, Final, Literal, TypeAlias

from pydantic import BaseModel, ConfigDict, model_validator

from ._task import TERMINAL_STATES, ErrorInfo, TaskState, Usage

__all__ = [
    "ENDED_TYPE",
    "NOTICE_TYPES",
    "PAYLOAD_OF",
    "TERMINAL_EVENT_TYPES",
    "ErrorSummary",
    "Event",
    "EventData",
    "EventType",
    "GroupCompleted",
    "GroupMember",
    "TaskEnded",
    "TaskOutput",
    "TaskProgress",
    "TaskQueued",
    "TaskRetrying",
    "TaskStarted",
]

EventType: TypeAlias = Literal[
    "task.queued",
    "task.started",
    "task.progress",
    "task.output",
    "task.retrying",
    "task.succeeded",
    "task.failed",
    "task.cancelled",
    "task.timed_out",
    "group.completed",
]
_PAYLOAD = ConfigDict(frozen=True, extra="ignore")


class TaskQueued(BaseModel):
    """`task.queued`: a task was stored and queued."""

    model_config = _PAYLOAD
    kind: str
    label: str | None = None
    priority: int
    keys: list[str]


class TaskStarted(BaseModel):
    """`task.started`: an attempt began (its start is stored before it runs)."""

    model_config = _PAYLOAD
    attempt: int
    label: str | None = None


class TaskProgress(BaseModel):
    """`task.progress`: the task's progress and usage as last reported."""

    model_config = _PAYLOAD
    completed: float | None = None
    total: float | None = None
    message: str | None = None
    usage: Usage | None = None


class TaskOutput(BaseModel):
    """`task.output`: output since the last one (the log holds all of it)."""

    model_config = _PAYLOAD
    text: str
    total_bytes: int


class TaskRetrying(BaseModel):
    """`task.retrying`: an attempt failed and another one will start after `delay` seconds."""

    model_config = _PAYLOAD
    attempt: int
    max_attempts: int
    delay: float
    error: ErrorInfo


class ErrorSummary(BaseModel):
    """An ended task's error without its detail."""

    model_config = _PAYLOAD
    type: str
    message: str


class TaskEnded(BaseModel):
    """`task.succeeded` / `failed` / `cancelled` / `timed_out`: how the task ended."""

    model_config = _PAYLOAD
    state: TaskState
    label: str | None = None
    description: str | None = None
    exit_code: int | None = None
    result_preview: str | None = None
    error: ErrorSummary | None = None
    elapsed: float | None = None
    """Seconds its last attempt ran, if it started."""


class GroupMember(BaseModel):
    """One task of a finished group, as its summary lists it."""

    model_config = _PAYLOAD
    id: str
    label: str | None = None
    state: TaskState
    exit_code: int | None = None


class GroupCompleted(BaseModel):
    """`group.completed`: the last task of a group ended; counts per end state."""

    model_config = _PAYLOAD
    group: str
    total: int
    succeeded: int = 0
    failed: int = 0
    cancelled: int = 0
    timed_out: int = 0
    tasks: list[GroupMember] = []
    """The first members (at most 200)."""


EventData: TypeAlias = (
    TaskQueued | TaskStarted | TaskProgress | TaskOutput | TaskRetrying | TaskEnded
    | GroupCompleted
)  # fmt: skip
ENDED_TYPE: Final[dict[TaskState, EventType]] = {
    TaskState.SUCCEEDED: "task.succeeded",
    TaskState.FAILED: "task.failed",
    TaskState.CANCELLED: "task.cancelled",
    TaskState.TIMED_OUT: "task.timed_out",
}
"""The event that records a task's end in each terminal state."""
assert set(ENDED_TYPE) == TERMINAL_STATES
TERMINAL_EVENT_TYPES: Final[tuple[EventType, ...]] = tuple(ENDED_TYPE.values())
NOTICE_TYPES: Final[tuple[EventType, ...]] = (*TERMINAL_EVENT_TYPES, "group.completed")
"""The events that make a completion notice."""
PAYLOAD_OF: Final[dict[str, type[BaseModel]]] = {
    "task.queued": TaskQueued,
    "task.started": TaskStarted,
    "task.progress": TaskProgress,
    "task.output": TaskOutput,
    "task.retrying": TaskRetrying,
    **dict.fromkeys(TERMINAL_EVENT_TYPES, TaskEnded),
    "group.completed": GroupCompleted,
}
"""Each event type's payload model."""
assert set(PAYLOAD_OF) == set(EventType.__args__)  # type: ignore[attr-defined]  # a Literal


class Event(BaseModel):
    """One stored event; `seq` grows by one per event across the whole store."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    seq: int
    type: EventType
    session: str
    task_id: str | None = None
    group: str | None = None
    at: datetime
    data: EventData
    """The payload of this `type` (`TaskEnded` for the four ending types, and so on)."""

    @model_validator(mode="before")
    @classmethod
    def _typed_data(cls, value: Any) -> Any:
        """Read `data` as the payload model its `type` names."""
        if isinstance(value, dict) and not isinstance(value.get("data"), BaseModel):
            model = PAYLOAD_OF.get(str(value.get("type")))
            if model is not None:
                value = {**value, "data": model.model_validate(value.get("data") or {})}
        return value
