"""Reports from running tasks: progress, output and usage, stored in batches.

Invariants:
- A report updates the task's record in memory at once; it is stored at most every
  `_FLUSH_INTERVAL` seconds per task, as one change with its `task.progress` / `task.output`
  events, or with the task's retry or end (`pending`), whichever comes first: no report
  is lost and none is stored twice.
- Output goes to the task's log file as it comes; the events carry only its last
  `_OUTPUT_TAIL_BYTES` (a full disk loses the log, not the events).
- A report for a task that already ended is ignored.
"""

from __future__ import annotations

import inspect
from typing import TYPE_CHECKING

import anyio

from .._logging import logger
from .._store._logs import TaskLog
from .._store._sqlite import AddEvent, Change, UpdateTask
from .._types._errors import Closed, StoreError
from .._types._events import TaskOutput, TaskProgress

if TYPE_CHECKING:
    from .._types._task import Progress, Task, Usage
    from ._engine import Engine
    from ._live import Callback, LiveTask

__all__ = ["Reports"]

_OUTPUT_TAIL_BYTES = 4096
_FLUSH_INTERVAL = 0.2


class Reports:
    """Takes runners' reports and stores them (see the module docstring)."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def note_progress(self, live: LiveTask, value: Progress) -> None:
        """A runner reported progress."""
        if live.task_id not in self._engine.live:
            return
        live.task = live.task.model_copy(update={"progress": value})
        live.last_activity = self._engine.clock.now()
        live.progress_dirty = True
        self._schedule_flush(live)

    def note_output(self, live: LiveTask, data: bytes) -> None:
        """A runner produced output."""
        if live.task_id not in self._engine.live:
            return
        if live.log is None:  # opened on first output: most handler tasks write none
            live.log = TaskLog(self._engine.store.log_dir, live.task_id)
        try:
            live.log.write(data)
        except OSError as exc:  # a full disk: the events still carry the output
            if not live.log_failed:
                logger.error("%s: its output log cannot be written: %s", live.task_id, exc)
            live.log_failed = True
        live.output_tail += data
        if len(live.output_tail) > _OUTPUT_TAIL_BYTES:
            del live.output_tail[: len(live.output_tail) - _OUTPUT_TAIL_BYTES]
        live.last_activity = self._engine.clock.now()
        live.output_dirty = True
        self._schedule_flush(live)

    def note_usage(self, live: LiveTask, usage: Usage) -> None:
        """A runner reported usage."""
        live.task = live.task.model_copy(update={"usage": usage})
        live.progress_dirty = True
        self._schedule_flush(live)

    def pending(self, live: LiveTask, now_wall: float) -> Change:
        """The reports not stored yet, as rows to store (and, from now, as stored)."""
        task = live.task
        change: Change = []
        if live.progress_dirty:
            live.progress_dirty = False
            change.append(UpdateTask(task.id, {"progress": task.progress, "usage": task.usage}))
            progress = task.progress
            data = TaskProgress.model_construct(
                completed=progress.completed if progress else None,
                total=progress.total if progress else None,
                message=progress.message if progress else None, usage=task.usage,
            )  # fmt: skip
            change.append(
                AddEvent("task.progress", task.session, now_wall, task.id, task.group, data)
            )
        if live.output_dirty:
            live.output_dirty = False
            text = live.output_tail.decode(errors="replace")
            live.output_tail.clear()
            total = live.log.total_bytes if live.log is not None else 0
            output = TaskOutput.model_construct(text=text, total_bytes=total)
            change.append(
                AddEvent("task.output", task.session, now_wall, task.id, task.group, output)
            )
        return change

    def call(self, fn: Callback | None, task: Task) -> None:
        """Call a program's callback; an async one runs in the engine's group; errors are logged."""
        if fn is None:
            return
        try:
            result = fn(task)
            if inspect.isawaitable(result):
                self._engine.start_soon(_await_callback, result)
        except Exception:
            logger.exception("%s: a callback raised", task.id)

    def _schedule_flush(self, live: LiveTask) -> None:
        if not live.flush_scheduled and live.task_id in self._engine.live:
            live.flush_scheduled = self._engine.start_soon(self._flush, live) is not None

    async def _flush(self, live: LiveTask) -> None:
        clock = self._engine.clock
        try:
            next_at = live.last_flush + _FLUSH_INTERVAL
            if next_at > clock.now():
                await clock.sleep_until(next_at)
        finally:
            live.flush_scheduled = False
        if live.task_id not in self._engine.live:
            return
        live.last_flush = clock.now()
        had_progress = live.progress_dirty
        change = self.pending(live, clock.wall())
        if not change:
            return
        with anyio.CancelScope(shield=True):
            try:
                await self._engine.store.commit(change)
            except (StoreError, Closed) as exc:
                logger.warning("%s: a progress report was not stored: %s", live.task_id, exc)
                return
        if had_progress:
            self.call(live.on_progress, live.task)


async def _await_callback(awaitable: object) -> None:
    try:
        await awaitable  # type: ignore[misc]  # checked with inspect.isawaitable
    except Exception:
        logger.exception("an async callback raised")
