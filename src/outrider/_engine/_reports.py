"""Reports from running tasks: progress, output and usage, stored in batches.

Invariants:
- A report updates the task's record in memory at once; it is stored within
  `_FLUSH_INTERVAL` seconds of the task's last store, as one change with its `task.progress` /
  `task.output` events, or with the task's retry or end (`pending`), whichever comes first: no
  report is lost and none is stored twice.
- One flusher stores the reports of every task that is due, all in one commit (each task's
  change succeeds or fails alone). It runs while any task has reports to store. When it wakes
  for the first task due, it also takes every task due within the next half interval (stored
  early, never late; at most twice per interval per task): tasks that report out of step
  (hundreds of agents each streaming on its own clock) fall into step, and share one commit
  per interval instead of costing one each.
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
from .._types._errors import Closed
from .._types._events import TaskOutput, TaskProgress

if TYPE_CHECKING:
    from .._types._task import Progress, Task, Usage
    from ._engine import Engine
    from ._live import Callback, LiveTask

__all__ = ["Reports"]

_OUTPUT_TAIL_BYTES = 4096
_FLUSH_INTERVAL = 0.1
"""Seconds between two stores of a task's reports: a follower sees its output at most this
late (beyond its runner's own batching). At 0.2 s, watched agents' events were twice as late
at 100 agents on 2 cores, for no CPU the benchmarks could tell (docs/PERFORMANCE.md)."""


class Reports:
    """Takes runners' reports and stores them (see the module docstring)."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._due: dict[str, LiveTask] = {}
        """Tasks with reports to store, by id."""
        self._flusher: anyio.CancelScope | None = None
        """The flusher's sleep while it runs: cancelled to wake it early (None when it stops)."""
        self._next_at = float("inf")
        """When the flusher wakes next."""

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
        if live.flush_scheduled or live.task_id not in self._engine.live:
            return
        live.flush_scheduled = True
        self._due[live.task_id] = live
        if self._flusher is None:
            self._flusher = anyio.CancelScope()
            if self._engine.start_soon(self._flush_loop, self._flusher) is None:
                self._flusher = None  # the engine is shutting down: its runs store the rest
                del self._due[live.task_id]
                live.flush_scheduled = False
        elif live.last_flush + _FLUSH_INTERVAL < self._next_at:
            self._flusher.cancel()  # due before the flusher wakes: wake it now

    async def _flush_loop(self, scope: anyio.CancelScope) -> None:
        """Store the reports of every task that is due, until none has reports to store."""
        clock = self._engine.clock
        try:
            while self._due:
                self._next_at = min(live.last_flush for live in self._due.values())
                self._next_at += _FLUSH_INTERVAL
                if self._next_at > clock.now():
                    with scope:
                        await clock.sleep_until(self._next_at)
                    scope = self._flusher = anyio.CancelScope()
                    continue
                await self._flush(self._take_due(clock.now()))
        finally:
            self._flusher = None
            self._next_at = float("inf")

    def _take_due(self, now: float) -> list[LiveTask]:
        """The tasks due by `now` or in half an interval, taken off the list of those due."""
        by = now + _FLUSH_INTERVAL / 2  # the ones due soon too: they fall in step
        due = [live for live in self._due.values() if live.last_flush + _FLUSH_INTERVAL <= by]
        for live in due:
            del self._due[live.task_id]
            live.flush_scheduled = False
            live.last_flush = now
        return due

    async def _flush(self, due: list[LiveTask]) -> None:
        """Store what `due` tasks reported, in one commit; their progress callbacks run after."""
        now_wall = self._engine.clock.wall()
        flushed: list[tuple[LiveTask, bool]] = []
        changes: list[Change] = []
        for live in due:
            if live.task_id not in self._engine.live:
                continue
            had_progress = live.progress_dirty
            if change := self.pending(live, now_wall):
                flushed.append((live, had_progress))
                changes.append(change)
        if not changes:
            return
        with anyio.CancelScope(shield=True):
            try:
                results = await self._engine.store.commit_many(changes)
            except Closed as exc:
                results = [exc] * len(changes)
        for (live, had_progress), result in zip(flushed, results, strict=True):
            if isinstance(result, Exception):
                logger.warning("%s: a progress report was not stored: %s", live.task_id, result)
            elif had_progress:
                self.call(live.on_progress, live.task)


async def _await_callback(awaitable: object) -> None:
    try:
        await awaitable  # type: ignore[misc]  # checked with inspect.isawaitable
    except Exception:
        logger.exception("an async callback raised")
