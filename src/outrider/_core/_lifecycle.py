"""Lifecycle steps: each step of a task's life as one pure `Transition`. No I/O.

A transition holds the task's record after the step, exactly the fields that changed (what the
store writes), the state it left, and the event that reports it. The engine commits it
(write-ahead) and then makes `task` its record in memory, so the store and memory are updated
from one declaration and can never be derived differently. The store turns a transition into
rows in one place (`outrider._store._sqlite.rows_of`).

Invariants:
- `task` is `was`-state record updated with exactly `update` (no other field changes).
- Entering `running` starts attempt `task.attempt`; leaving it ends that attempt.
- Every transition reports one event, built without validation (the values are the engine's).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from .._text import clip
from .._types._events import (
    ENDED_TYPE,
    ErrorSummary,
    EventData,
    EventType,
    TaskEnded,
    TaskQueued,
    TaskRetrying,
    TaskStarted,
)
from .._types._task import ErrorInfo, Task, TaskState

if TYPE_CHECKING:
    from collections.abc import Mapping

    from pydantic import JsonValue

__all__ = ["Transition", "end", "preview", "queued", "retry", "start"]

_PREVIEW_CHARS = 200


@dataclass(frozen=True, slots=True)
class Transition:
    """One lifecycle step of one task."""

    task: Task
    """The record after the step."""
    update: Mapping[str, object]
    """Exactly the fields that changed (`Task` field names)."""
    was: TaskState
    """The state before the step."""
    event_type: EventType
    event: EventData
    at: float
    """When, in UTC epoch seconds."""

    @property
    def starts_attempt(self) -> bool:
        """Whether the step starts an attempt (`task.attempt`)."""
        return self.task.state is TaskState.RUNNING and self.was is not TaskState.RUNNING

    @property
    def ends_attempt(self) -> bool:
        """Whether the step ends the running attempt (`task.attempt`)."""
        return self.was is TaskState.RUNNING and self.task.state is not TaskState.RUNNING


def _step(
    task: Task, update: dict[str, object], kind: EventType, data: EventData, at: float
) -> Transition:
    return Transition(task.model_copy(update=update), update, task.state, kind, data, at)


def _utc(epoch: float) -> datetime:
    return datetime.fromtimestamp(epoch, UTC)


def preview(value: JsonValue, limit: int = _PREVIEW_CHARS) -> str | None:
    """The start of a result, for notices and events (None for no result)."""
    if value is None:
        return None
    text = value if isinstance(value, str) else repr(value)
    return clip(text.strip(), limit)


def queued(task: Task, *, at: float) -> Transition:
    """A new task was stored and queued (its record is the one stored: nothing changes)."""
    data = TaskQueued.model_construct(
        kind=task.kind, label=task.label, priority=task.priority, keys=list(task.keys)
    )
    return Transition(task, {}, task.state, "task.queued", data, at)


def start(task: Task, *, at: float) -> Transition:
    """An attempt of a queued task starts."""
    attempt = task.attempt + 1
    update = {"state": TaskState.RUNNING, "attempt": attempt, "started_at": _utc(at),
              "progress": None, "node": None}  # fmt: skip
    data = TaskStarted.model_construct(attempt=attempt, label=task.label)
    return _step(task, update, "task.started", data, at)


def retry(task: Task, error: ErrorInfo, *, delay: float, at: float) -> Transition:
    """A failed (or interrupted) attempt is followed by another one after `delay` seconds."""
    update = {"state": TaskState.QUEUED, "error": error}
    data = TaskRetrying.model_construct(
        attempt=task.attempt, max_attempts=task.max_attempts, delay=round(delay, 3), error=error
    )
    return _step(task, update, "task.retrying", data, at)


def end(
    task: Task,
    state: TaskState,
    *,
    at: float,
    result: JsonValue = None,
    error: ErrorInfo | None = None,
    exit_code: int | None = None,
) -> Transition:
    """The task ends in `state` (terminal)."""
    assert state.terminal, state
    update = {"state": state, "finished_at": _utc(at), "result": result, "error": error,
              "exit_code": exit_code}  # fmt: skip
    started = task.started_at
    data = TaskEnded.model_construct(
        state=state, label=task.label, description=task.description, exit_code=exit_code,
        result_preview=preview(result),
        error=None if error is None else ErrorSummary.model_construct(
            type=error.type, message=error.message
        ),
        elapsed=None if started is None else round(max(0.0, at - started.timestamp()), 3),
    )  # fmt: skip
    return _step(task, update, ENDED_TYPE[state], data, at)
