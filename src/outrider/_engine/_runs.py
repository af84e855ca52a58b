"""The run boundary: run a task, then retry it or end it — the one way a task ends.

Invariants:
- Write-ahead: a retry or an end is committed first; memory follows in the store's follow-up
  (`_ended`), which runs whatever happens to the caller, then the events are published.
- A task ends exactly once, through `_end`: it is marked `ending` (no stop can reach it after),
  its slot is released before the end is committed (the work is over), and `_ended` removes
  its record, counts it, calls its `on_done`, lets its dependents go on or stop and sets `done`.
- The outcome of a stopped run is decided from the recorded stop reason, never from the
  exception. A cancellation we did not issue (the owner of the orchestrator cancelled) ends
  the task as interrupted, recorded under a shield, and then propagates.
- An end the store refused is committed again, with a growing pause, until it is stored;
  until then the task is unfinished in memory as in the store and `settled` tells cancellers.
"""

from __future__ import annotations

import functools
import logging
from typing import TYPE_CHECKING

import anyio

from .._core import _lifecycle as lifecycle
from .._logging import format_duration, logger
from .._store._sqlite import AddGroupSummary, Change, rows_of
from .._types._errors import Closed, StoreError
from .._types._events import GroupCompleted
from .._types._task import ErrorInfo, Task, TaskState
from ..runners._protocol import RunOutcome, failure_of
from ._context import TaskContext

if TYPE_CHECKING:
    from pydantic import JsonValue

    from .._store._sqlite import Committed
    from .._store._store import Results
    from ._engine import Engine
    from ._live import LiveTask, StopReason

__all__ = ["Runs"]

_STORE_RETRY = 0.5
_STORE_RETRY_MAX = 10.0
"""An end (or retry) the store refused is stored again after 0.5 s, doubling up to 10 s."""
_STOP_STATE: dict[StopReason, TaskState] = {
    "user": TaskState.CANCELLED,
    "parent": TaskState.CANCELLED,
    "dependency": TaskState.CANCELLED,
    "timeout": TaskState.TIMED_OUT,
    "ttl": TaskState.TIMED_OUT,
    "stall": TaskState.TIMED_OUT,
    "shutdown": TaskState.FAILED,
}


class Runs:
    """Runs tasks and ends them (see the module docstring)."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self.unstored: dict[str, tuple[LiveTask, Task, Change]] = {}
        """Ends the store refused, by task id; each is committed again until it is stored."""

    async def run(self, live: LiveTask) -> None:
        outcome: RunOutcome | None = None
        failure: Exception | None = None
        try:
            try:
                if live.stop_reason is None:
                    outcome = await live.runner.run(live.task.spec, TaskContext(self._engine, live))
            except Exception as exc:  # the task boundary: a failure is data
                failure = exc
            except anyio.get_cancelled_exc_class():
                # `_stop` cancelled this task's handle (its reason is recorded), or the
                # orchestrator's owner was cancelled. Either way the task ends and is recorded
                # before the cancellation goes on (the handle's own scope absorbs ours).
                with anyio.CancelScope(shield=True):
                    if live.stop_reason is None:
                        live.stop_reason = "shutdown"
                        live.stop_message = "its orchestrator's owner was cancelled"
                    await self._settle(live, None, None)
                raise
            await self._settle(live, outcome, failure)
        finally:
            self._engine.dispatcher.release(live)
            if live.log is not None:
                live.log.close()
                live.log = None

    async def _settle(
        self, live: LiveTask, outcome: RunOutcome | None, failure: Exception | None
    ) -> None:
        reason = live.stop_reason
        task = live.task
        if reason is not None and outcome is None:
            await self.end_stopped(live, reason)
        elif failure is not None:
            error, exit_code, retryable = self._error_of(failure)
            if retryable and task.attempt < task.max_attempts and self._engine.admitting:
                await self._retry(live, error)
            else:
                await self._end(
                    live, TaskState.FAILED, error=error, exit_code=exit_code, wait=False
                )
        else:
            assert outcome is not None
            await self._end(live, TaskState.SUCCEEDED, result=outcome.result,
                            exit_code=outcome.exit_code, wait=False)  # fmt: skip

    async def end_stopped(self, live: LiveTask, reason: StopReason) -> None:
        # Shielded: this may start in a task group already cancelled with its owner, and the
        # stopped task must still end (cancellers wait for it).
        with anyio.CancelScope(shield=True):
            await self._end_stopped_now(live, reason)

    async def _end_stopped_now(self, live: LiveTask, reason: StopReason) -> None:
        message = live.stop_message or reason
        task = live.task
        if live.abandoned is not None and not live.abandoned.is_set():
            message += (
                "; its thread could not be stopped and was abandoned (it keeps the task's slot "
                "until it returns, and what it returns is discarded)"
            )
            if reason == "shutdown":  # no retry beside a thread that still runs
                text = f"The task was interrupted: {message}."
                await self._end(
                    live, TaskState.FAILED, error=ErrorInfo(type="interrupted", message=text)
                )
                return
        if reason == "shutdown":
            if task.attempt < task.max_attempts:
                await self._retry(live, ErrorInfo(type="interrupted", message=message), delay=0.0)
                return
            error = ErrorInfo(
                type="interrupted",
                message=f"The task was interrupted ({message}) on its last attempt "
                f"({task.attempt} of {task.max_attempts}).",
            )
            await self._end(live, TaskState.FAILED, error=error)
            return
        error = ErrorInfo(type=reason, message=f"The task was stopped: {message}.")
        await self._end(live, _STOP_STATE[reason], error=error)

    def _error_of(self, exc: Exception) -> tuple[ErrorInfo, int | None, bool]:
        failure = failure_of(exc)
        info = ErrorInfo(type=failure.type, message=failure.message, detail=failure.detail)
        return info, failure.exit_code, failure.retryable

    async def _retry(self, live: LiveTask, error: ErrorInfo, *, delay: float | None = None) -> None:
        task = live.task
        if delay is None:
            base = self._engine.retry_backoff * 2 ** (task.attempt - 1)
            delay = min(base, 300.0) * self._engine.rng.uniform(0.5, 1.5)
        now_wall = self._engine.clock.wall()
        step = lifecycle.retry(task, error, delay=delay, at=now_wall)
        change: Change = [*self._engine.reports.pending(live, now_wall), *rows_of(step)]
        stopped_before = live.stop_reason is not None
        with anyio.CancelScope(shield=True):
            if not await self._commit_until_stored(task.id, change):
                return  # the store closed: left `running` there, and recovered at the next start
        self._engine.dispatcher.release(live)
        live.task = step.task
        live.run_deadline = None
        live.handle = None
        late = None if stopped_before else live.stop_reason
        if late is not None and late != "shutdown":
            # Stopped while the retry was being stored: it ends now instead of running again.
            await self.end_stopped(live, late)
            return
        live.stop_reason = live.stop_message = None
        logger.info("%s retrying in %s: %s", task.id, format_duration(delay), error.message)
        self._engine.admission.admit(live, delay=delay)

    async def _commit_until_stored(self, task_id: str, change: Change) -> bool:
        """Commit `change`, again after a pause while the store refuses it; False if it closed."""
        delay = _STORE_RETRY
        while True:
            try:
                await self._engine.store.commit(change)
            except Closed:
                logger.error("%s: left as stored: the store closed", task_id)
                return False
            except StoreError as exc:
                logger.error("%s: a change could not be stored; trying again in %gs: %s",
                             task_id, delay, exc)  # fmt: skip
                await self._engine.clock.sleep_until(self._engine.clock.now() + delay)
                delay = min(delay * 2, _STORE_RETRY_MAX)
            else:
                return True

    async def _end(
        self,
        live: LiveTask,
        state: TaskState,
        *,
        result: JsonValue = None,
        error: ErrorInfo | None = None,
        exit_code: int | None = None,
        wait: bool = True,
    ) -> None:
        """The one way a task ends: commit it, then `_ended` updates memory and follows up.

        The store runs `_ended` right after the commit, whatever happens to this caller, so
        nothing here needs a shield. `wait=False` returns once the end is queued for the
        writer (a run's own task has nothing left to do; waiters are woken by `_ended`).
        """
        task = live.task
        now_wall = self._engine.clock.wall()
        step = lifecycle.end(
            task, state, at=now_wall, result=result, error=error, exit_code=exit_code
        )
        change: Change = [*self._engine.reports.pending(live, now_wall), *rows_of(step)]
        if task.group is not None and self._engine.admission.group_done(task.session, task.group):
            # Its last task: the summary is stored with this end, or not at all.
            change.append(AddGroupSummary(task.session, task.group, now_wall))
        # The work is over: its slot goes to the next task while the end is committed.
        live.ending = True
        self._engine.dispatcher.release(live)
        await self.commit_end(live, step.task, change, wait=wait)

    async def commit_end(
        self, live: LiveTask, ended: Task, change: Change, *, wait: bool = True, delay: float = 0.0
    ) -> None:
        if delay:
            await self._engine.clock.sleep_until(self._engine.clock.now() + delay)

        def after(results: Results) -> None:
            self._ended(live, ended, change, results[0])

        await self._engine.store.commit_then([change], after, wait=wait)

    def _ended(
        self, live: LiveTask, ended: Task, change: Change, stored: list[Committed] | Exception
    ) -> None:
        """A task's end is committed (or could not be): memory and follow-ups, in that order.

        An end the store refused is committed again later, until it is stored; until then the
        task is unfinished in memory as in the store, and nothing reports its end.
        """
        if isinstance(stored, Exception):
            self._end_not_stored(live, ended, change, stored)
            return
        if live.end_error is not None:
            logger.warning("%s: its end (%s) is stored now", ended.id, ended.state)
            live.end_error = None
            self.unstored.pop(ended.id, None)
        engine = self._engine
        del engine.live[ended.id]
        engine.terminal_counts[ended.state] += 1
        live.task = ended
        self._log_end(ended, ended.error)
        engine.reports.call(live.on_done, ended)
        engine.admission.ended(ended)
        for event in stored:
            if event.op.type == "group.completed":
                summary = event.op.data
                assert isinstance(summary, GroupCompleted)
                logger.info("group %s completed: %s tasks", summary.group, summary.total)
        live.finish()  # last: waiters see the task's end (and its group's summary) stored

    def _end_not_stored(
        self, live: LiveTask, ended: Task, change: Change, error: Exception
    ) -> None:
        live.end_tries += 1
        if live.end_error is None:
            logger.error("%s: its end (%s) could not be stored; trying again until it is: %s",
                         ended.id, ended.state, error)  # fmt: skip
        live.end_error = error
        self.unstored[ended.id] = (live, ended, change)
        live.settled.set()  # a canceller learns the store's problem at once
        delay = min(_STORE_RETRY * 2 ** (live.end_tries - 1), _STORE_RETRY_MAX)
        again = functools.partial(self.commit_end, live, ended, change, delay=delay)
        if self._engine.start_soon(again) is None:
            logger.error("%s: left as stored: the orchestrator stopped", ended.id)

    def _log_end(self, task: Task, error: ErrorInfo | None) -> None:
        if not logger.isEnabledFor(logging.INFO):
            return
        elapsed = task.elapsed
        took = f" ({format_duration(elapsed)})" if elapsed is not None else ""
        if task.state is TaskState.SUCCEEDED:
            logger.info("%s succeeded%s", task.id, took)
        elif task.state is TaskState.TIMED_OUT:
            logger.info("%s timed out%s: %s", task.id, took, error.message if error else "")
        else:
            logger.info("%s %s%s: %s", task.id, task.state, took, error.message if error else "")
