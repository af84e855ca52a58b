"""Lifecycle steps: each is pure, changes exactly what it says, and maps to the store's rows."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

import outrider
from outrider._core import _lifecycle as lifecycle
from outrider._store._sqlite import AddEvent, EndAttempt, StartAttempt, UpdateTask, rows_of
from outrider._types._events import TaskEnded, TaskRetrying, TaskStarted
from outrider._types._task import ErrorInfo, Task, TaskState

AT = 1_800_000_000.0


def _task() -> Task:
    return Task(
        id="t_1", session="s", spec=outrider.shell("true"), state=TaskState.QUEUED, priority=5,
        keys=("shell",), label="one", created_at=datetime.fromtimestamp(AT - 10, UTC),
    )  # fmt: skip


def _changed(before: Task, after: Task) -> set[str]:
    return {f for f in Task.model_fields if getattr(before, f) != getattr(after, f)}


def test_start_runs_the_next_attempt_and_starts_its_row() -> None:
    task = _task()
    step = lifecycle.start(task, at=AT)
    assert _changed(task, step.task) == set(step.update) - {"progress", "node"}
    assert (step.task.state, step.task.attempt, step.was) == (TaskState.RUNNING, 1, task.state)
    placed = task.model_copy(update={"node": "n1"})  # the last attempt's node is not this one's
    assert lifecycle.start(placed, at=AT).task.node is None
    assert step.starts_attempt
    assert not step.ends_attempt
    assert step.event == TaskStarted(attempt=1, label="one")
    update, start, event = rows_of(step)
    assert isinstance(update, UpdateTask)
    assert update.fields["ready_at"] is None
    assert start == StartAttempt("t_1", 1, AT)
    assert isinstance(event, AddEvent)
    assert event.type == "task.started"


def test_a_retry_ends_the_attempt_and_waits_its_delay() -> None:
    running = lifecycle.start(_task(), at=AT).task
    error = ErrorInfo(type="exit", message="exit 1")
    step = lifecycle.retry(running, error, delay=2.25, at=AT + 1)
    assert _changed(running, step.task) == set(step.update)
    assert step.ends_attempt
    assert not step.starts_attempt
    assert step.event == TaskRetrying(attempt=1, max_attempts=1, delay=2.25, error=error)
    update, end, _ = rows_of(step)
    assert isinstance(update, UpdateTask)
    assert (update.fields["ready_at"], update.fields["pid"]) == (AT + 3.25, None)
    assert end == EndAttempt("t_1", 1, AT + 1, "retrying", error)


@pytest.mark.parametrize(
    ("result", "preview"),
    [(None, None), ("  ok\n", "ok"), ({"n": 1}, "{'n': 1}"), ("x" * 300, "x" * 199 + "…")],
)
def test_an_end_reports_a_preview_and_how_long_it_ran(result: object, preview: str | None) -> None:
    running = lifecycle.start(_task(), at=AT).task
    step = lifecycle.end(running, TaskState.SUCCEEDED, at=AT + 2.5, result=result, exit_code=0)  # type: ignore[arg-type]
    assert step.event_type == "task.succeeded"
    assert isinstance(step.event, TaskEnded)
    assert (step.event.result_preview, step.event.elapsed, step.event.error) == (preview, 2.5, None)
    assert _changed(running, step.task) <= set(step.update)
    assert [type(op) for op in rows_of(step)] == [UpdateTask, EndAttempt, AddEvent]


def test_a_queued_task_that_ends_has_no_attempt_to_end() -> None:
    task = _task()
    error = ErrorInfo(type="user", message="The task was stopped: cancelled by request.")
    step = lifecycle.end(task, TaskState.CANCELLED, at=AT, error=error)
    assert isinstance(step.event, TaskEnded)
    assert step.event.elapsed is None
    assert step.event.error is not None
    assert step.event.error.message == error.message
    assert [type(op) for op in rows_of(step)] == [UpdateTask, AddEvent]
    with pytest.raises(AssertionError):
        lifecycle.end(task, TaskState.RUNNING, at=AT)


def test_queued_changes_nothing_and_reports_the_task() -> None:
    task = _task()
    step = lifecycle.queued(task, at=AT)
    assert step.task is task
    assert step.update == {}
    (event,) = rows_of(step)
    assert isinstance(event, AddEvent)
    assert event.type == "task.queued"
