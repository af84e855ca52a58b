"""The dispatcher: hands out slots, starts tasks once their start is stored, fires timers.

Invariants:
- One loop: fire the timers that are due, pop the ready tasks the limits allow, then sleep
  until the earliest deadline or a `wake()`. `wake()` is cheap and idempotent; a wake that
  comes while the loop is looking makes it look again before it sleeps.
- A slot taken by `ReadyQueue.pop_ready` is released exactly once (`release`), whatever ends
  the run; a runner's abandoned thread keeps it until the thread returns.
- A task runs only once its start is committed (write-ahead). A start the store refused
  leaves the task queued there and here, offered a slot again after `_START_RETRY` seconds.
- Timers (`ttl`, `timeout`, `stall`) live in one heap and are read through the `Clock`; a
  timer that no longer matches its task's deadline is dropped when it comes due.
"""

from __future__ import annotations

import heapq
import itertools
import logging
from typing import TYPE_CHECKING, Literal

import anyio

from .._core import _lifecycle as lifecycle
from .._core._queue import Entry
from .._logging import logger
from .._store._sqlite import rows_of

if TYPE_CHECKING:
    from .._store._store import Results
    from ._engine import Engine
    from ._live import LiveTask

__all__ = ["Dispatcher"]

TimerKind = Literal["ttl", "timeout", "stall"]

_RESOURCE_RECHECK = 1.0
_START_RETRY = 1.0
"""Seconds before a task whose start the store refused is offered a slot again."""


class Dispatcher:
    """Starts queued tasks as slots free up (see the module docstring)."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._timers: list[tuple[float, int, str, TimerKind]] = []
        self._counter = itertools.count()
        self._sleep_scope: anyio.CancelScope | None = None
        self._dirty = True
        self._idle = anyio.Event()
        self.running_count = 0
        """Tasks holding a slot (started and not yet released)."""

    def wake(self) -> None:
        """Make the dispatcher look again (new task, freed slot, changed limit)."""
        if self._dirty:
            return  # it will look before it sleeps; its sleep, if any, is cancelled already
        self._dirty = True
        if self._sleep_scope is not None:
            self._sleep_scope.cancel()

    def add_timer(self, deadline: float, task_id: str, kind: TimerKind) -> None:
        heapq.heappush(self._timers, (deadline, next(self._counter), task_id, kind))
        if self._timers[0][0] == deadline:
            self.wake()

    async def wait_idle(self) -> None:
        """Return once no task holds a slot."""
        while self.running_count:
            self._idle = anyio.Event()
            await self._idle.wait()

    async def loop(self) -> None:
        engine = self._engine
        while True:
            self._dirty = False
            now = engine.clock.now()
            self._fire_timers(now)
            held = engine.resources.held(now)
            if engine.admitting:
                started = engine.queue.pop_ready(now, allow_processes=held is None)
                if started:
                    await self._start(started)
            if self._dirty:
                await anyio.lowlevel.checkpoint()
                continue
            deadline = self._next_deadline(held is not None, now)
            with anyio.CancelScope() as scope:
                self._sleep_scope = scope
                if self._woken():
                    scope.cancel()
                if deadline is None:
                    await anyio.sleep_forever()
                else:
                    await engine.clock.sleep_until(deadline)
            self._sleep_scope = None

    def _woken(self) -> bool:
        # `wake()` may run between the checks above and here (from a callback).
        return self._dirty

    def _next_deadline(self, held: bool, now: float) -> float | None:
        queue = self._engine.queue
        candidates = [d for d in (queue.next_deadline(),) if d is not None]
        if self._timers:
            candidates.append(self._timers[0][0])
        if held and queue.queued_with_processes:
            candidates.append(now + _RESOURCE_RECHECK)
        return min(candidates, default=None)

    def _fire_timers(self, now: float) -> None:
        engine = self._engine
        while self._timers and self._timers[0][0] <= now:
            deadline, _, task_id, kind = heapq.heappop(self._timers)
            live = engine.live.get(task_id)
            if live is None or live.stop_reason is not None:
                continue
            task = live.task
            if kind == "ttl" and live.ttl_deadline == deadline:
                engine.stop(live, "ttl", f"its ttl of {task.ttl:g}s since submission expired")
            elif kind == "timeout" and live.holds_slot and live.run_deadline == deadline:
                engine.stop(live, "timeout", f"it ran longer than its timeout of {task.timeout:g}s")
            elif kind == "stall" and live.holds_slot and task.stall_timeout is not None:
                quiet_until = live.last_activity + task.stall_timeout
                if quiet_until > now:
                    self.add_timer(quiet_until, task_id, "stall")
                    continue
                message = (f"it gave no output or progress for {task.stall_timeout:g}s "
                           "(`stall_timeout`)")  # fmt: skip
                engine.stop(live, "stall", message)

    async def _start(self, entries: list[Entry]) -> None:
        """Commit the starts of tasks given slots; each runs once its start is committed.

        The dispatcher does not wait for the commit: the store runs `_started` right after it,
        so slots freed meanwhile are handed out and their starts join the same batch.
        """
        engine = self._engine
        now_wall = engine.clock.wall()
        lives = [engine.live[e.task_id] for e in entries]
        for live in [live for live in lives if live.resume_queued]:
            self._resume(live)
        lives = [live for live in lives if not live.holds_slot]
        if not lives:
            return
        steps = [lifecycle.start(live.task, at=now_wall) for live in lives]
        for live in lives:
            live.holds_slot = True
            self.running_count += 1
        changes = [rows_of(step) for step in steps]

        def started(results: Results) -> None:
            self._started(lives, steps, results)

        await engine.store.commit_then(changes, started, wait=False)

    def _started(
        self, lives: list[LiveTask], steps: list[lifecycle.Transition], results: Results
    ) -> None:
        """Starts were committed (or could not be): run each task, or queue it again."""
        engine = self._engine
        now = engine.clock.now()
        for live, step, result in zip(lives, steps, results, strict=True):
            if isinstance(result, Exception):  # it stays queued in the store
                self._not_started(live, result)
                continue
            live.task = step.task
            live.last_activity = now
            if live.task.timeout is not None:
                live.run_deadline = now + live.task.timeout
                self.add_timer(live.run_deadline, live.task_id, "timeout")
            if live.task.stall_timeout is not None:
                self.add_timer(now + live.task.stall_timeout, live.task_id, "stall")
            if logger.isEnabledFor(logging.INFO):
                logger.info("%s started (%s: %s)", live.task_id, live.task.kind, live.task.name)
            live.handle = engine.start_soon(engine.runs.run, live, name=live.task_id)
            if live.handle is None:
                logger.error("%s: left as stored: the orchestrator stopped", live.task_id)
                self.release(live)

    def _not_started(self, live: LiveTask, error: Exception) -> None:
        engine = self._engine
        self.release(live)
        reason = live.stop_reason
        if reason is None or reason == "shutdown":  # offer it a slot again soon
            logger.error("%s could not start (trying again in %gs): %s",
                         live.task_id, _START_RETRY, error)  # fmt: skip
            engine.admission.admit(live, delay=_START_RETRY)
        else:  # stopped while its start was being stored: it ends unrun
            logger.error("%s could not start: %s", live.task_id, error)
            if engine.start_soon(engine.runs.end_stopped, live, reason) is None:
                logger.error("%s: left as stored: the orchestrator stopped", live.task_id)

    def release(self, live: LiveTask) -> None:
        """Give back the task's slot, if it holds one and no abandoned thread still needs it."""
        if live.holds_slot and live.abandoned is not None and not live.abandoned.is_set():
            if not live.release_pending:  # its thread still runs: the slot is its until it ends
                live.release_pending = True
                if self._engine.start_soon(self._release_after, live, live.abandoned) is None:
                    logger.error("%s: its slot is held: the orchestrator stopped", live.task_id)
            return
        if live.holds_slot:
            live.holds_slot = False
            self.running_count -= 1
            if not live.slot_lent:
                self._engine.queue.release(live.task_id)
            elif live.resume_queued:
                self._engine.queue.remove(live.task_id)
            self.wake()
            if not self.running_count:
                self._idle.set()

    async def _release_after(self, live: LiveTask, ended: anyio.Event) -> None:
        await ended.wait()
        logger.warning("%s: its abandoned thread ended; its slot is free", live.task_id)
        live.abandoned = None
        self.release(live)

    def lend_slot(self, live: LiveTask) -> None:
        """A running task waits for tasks it started: give its queue slots to others."""
        live.waiters += 1
        if live.waiters == 1 and live.holds_slot and not live.slot_lent:
            live.slot_lent = True
            live.slot_back = anyio.Event()
            self._engine.queue.release(live.task_id)
            self.wake()

    async def take_slot_back(self, live: LiveTask) -> None:
        """The last wait of a task ended: queue it for its slots, first in its priority.

        Cancellation: safe; a slot request left queued is withdrawn when the task ends.
        """
        live.waiters -= 1
        if live.waiters or not live.slot_lent:
            return
        if not live.resume_queued and live.holds_slot:
            live.resume_queued = True
            self._engine.queue.push(
                Entry(
                    task_id=live.task_id,
                    priority=live.task.priority,
                    seq=-1,
                    keys=live.task.keys,
                    uses_processes=False,
                )
            )
            self.wake()
        assert live.slot_back is not None
        await live.slot_back.wait()

    def _resume(self, live: LiveTask) -> None:
        live.slot_lent = False
        live.resume_queued = False
        assert live.slot_back is not None
        live.slot_back.set()
