"""The `RunContext` the engine gives a runner: reports, child tasks, transcripts, processes.

Invariants:
- Safe to call from the runner's worker threads: reports are handed to the event loop.
- A child started with `spawn` is stopped with its parent's run, and while the parent waits
  for it the parent's slots are lent to others (`Dispatcher.lend_slot`).
"""

from __future__ import annotations

from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

import anyio
import anyio.to_thread

from .._asynclib import OnLoop
from .._logging import logger
from .._store._logs import TaskLog
from .._store._sqlite import Change, PlaceAttempt, UpdateTask
from .._store._transcripts import TranscriptWriter, read_transcript, transcript_path
from .._types._task import Progress, Task, TaskSpec, Usage
from ..runners._procs import leader_created

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from .._store._store import Results
    from ._engine import Engine
    from ._live import LiveTask

__all__ = ["TaskContext"]


class TaskContext:
    """The `RunContext` the engine gives a runner; safe to call from worker threads."""

    def __init__(self, engine: Engine, live: LiveTask) -> None:
        self._engine = engine
        self._live = live
        self._on_loop = OnLoop()
        error = live.task.error  # the previous attempt's, until this one ends
        self._resuming = error is not None and error.type == "interrupted"
        self._transcript: TranscriptWriter | None = None
        """Made at the first save: most tasks save none."""

    @property
    def task_id(self) -> str:
        return self._live.task_id

    @property
    def attempt(self) -> int:
        return self._live.task.attempt

    @property
    def resuming(self) -> bool:
        return self._resuming

    @property
    def cancel_requested(self) -> bool:
        return self._live.stop_reason is not None

    def progress(
        self, completed: float, total: float | None = None, message: str | None = None
    ) -> None:
        value = Progress(completed=completed, total=total, message=message)
        self._on_loop(lambda: self._engine.reports.note_progress(self._live, value))

    def output(self, data: bytes | str) -> None:
        raw = data.encode() if isinstance(data, str) else bytes(data)
        self._on_loop(lambda: self._engine.reports.note_output(self._live, raw))

    def usage(self, usage: Usage) -> None:
        self._on_loop(lambda: self._engine.reports.note_usage(self._live, usage))

    @property
    def session(self) -> str:
        return self._live.task.session

    @property
    def watched(self) -> bool:
        task = self._live.task
        return task.stall_timeout is not None or self._engine.watching(task.session, task.id)

    @asynccontextmanager
    async def _waiting(self) -> AsyncIterator[None]:
        self._engine.dispatcher.lend_slot(self._live)
        try:
            yield
        finally:
            await self._engine.dispatcher.take_slot_back(self._live)

    async def spawn(
        self, spec: TaskSpec, /, *, label: str | None = None, timeout: float | None = None
    ) -> Task:
        engine = self._engine
        child = await engine.submit_child(self._live.task, spec, label, timeout)
        try:
            async with self._waiting():
                return await engine.ended(child.id)
        except BaseException:  # this run is stopped: so is the child (cancel is idempotent)
            with anyio.CancelScope(shield=True):
                await engine.cancel(child.id, "parent", f"its parent {self.task_id} was stopped")
            raise

    async def tail(self, task_id: str, *, lines: int = 50) -> str:
        log_dir = self._engine.store.log_dir
        return await anyio.to_thread.run_sync(lambda: TaskLog.read(log_dir, task_id, lines=lines))

    async def save_transcript(self, data: bytes) -> None:
        writer = self._transcript
        if writer is None:
            path = transcript_path(self._engine.store.log_dir, self.task_id)
            writer = self._transcript = TranscriptWriter(path)
        if writer.cheap(len(data)):  # one small append: less than a thread's hand-off
            writer.save(data)
        else:  # a new file renamed into place, or a large write: not on the loop
            await anyio.to_thread.run_sync(writer.save, data)

    async def load_transcript(self) -> bytes | None:
        path = transcript_path(self._engine.store.log_dir, self.task_id)
        return await anyio.to_thread.run_sync(read_transcript, path)

    def abandon(self, ended: anyio.Event) -> None:
        self._live.abandoned = ended

    async def track_process(self, pid: int) -> None:
        created = leader_created(pid)
        await self._record([UpdateTask(self.task_id, {"pid": pid, "pid_created": created})])

    @property
    def keys(self) -> tuple[str, ...]:
        return self._live.task.keys

    async def placed_on(self, node: str) -> None:
        live = self._live
        live.task = live.task.model_copy(update={"node": node})
        await self._record([PlaceAttempt(self.task_id, self.attempt, node)])

    async def track_remote_process(self, node: str, pid: int, created: float | None) -> None:
        fields = {"pid": pid, "pid_created": created, "node": node}
        await self._record([UpdateTask(self.task_id, fields)])

    async def _record(self, change: Change) -> None:
        # Queued, not awaited: it is committed with the next batch, ahead of the task's end.
        # Should the store refuse it, a later start still finds the processes by their marker.
        await self._engine.store.commit_then([change], self._recorded, wait=False)

    def _recorded(self, results: Results) -> None:
        (result,) = results
        if isinstance(result, Exception):
            logger.warning("%s: where it runs could not be recorded: %s", self.task_id, result)
