"""Engine: owns every unfinished task in memory and drives it to exactly one end.

The engine is the composition of its parts, each in its own module and each holding the
engine to reach the others: `Admission` (registration, dependencies, held handlers),
`Dispatcher` (slots, starts, timers), `Runs` (the run boundary and the one way a task ends),
`Reports` (progress, output, usage), `Recovery` (the start from the store) and the
`TaskContext` runners are given. The engine itself keeps what they share and the verbs the
service calls: submit, stop, cancel, ended, sweep, run and shutdown.

Invariants:
- Write-ahead: every state change is committed to the store first, then memory is updated,
  then the committed events are published (by the store, in `seq` order). A crash between the
  steps loses nothing: the store is the truth and recovery starts from it.
- Each unfinished task has one `LiveTask` record in `live`, from its registration to its
  stored end.
- A stop records why (`user`, `parent`, `dependency`, `timeout`, `ttl`, `stall`,
  `shutdown`) before it acts, and what it does depends only on the task's `Phase`. A stop that
  arrives while a retry is being stored ends the task instead of letting it run again; one
  that arrives while its start is being stored ends it before its work begins.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any

import anyio
import anyio.to_thread

from .._asynclib import pin_async_library
from .._core import _lifecycle as lifecycle
from .._logging import logger
from .._store._logs import TaskLog
from .._store._sqlite import Change, InsertTask, rows_of
from .._types._errors import Closed, StoreUnavailable
from .._types._task import Task, TaskSpec, TaskState
from ._admission import Admission
from ._dispatch import Dispatcher
from ._live import Callback, LiveTask, NewTask, Phase, StopReason
from ._recovery import Recovery
from ._reports import Reports
from ._runs import Runs

if TYPE_CHECKING:
    import random
    from collections.abc import Awaitable, Mapping

    from anyio.abc import TaskGroup, TaskStatus

    from .._core._clock import Clock
    from .._core._queue import ReadyQueue
    from .._store._sqlite import SQLiteBackend
    from .._store._store import Results, Store
    from ..runners._protocol import Runner
    from ._resources import ResourceGate

__all__ = ["Callback", "Engine", "LiveTask", "NewTask", "StopReason"]

SubmitChild = Callable[[Task, TaskSpec, "str | None", "float | None"], "Awaitable[Task]"]
"""Stores a child of a running task: (parent, spec, label, timeout) -> the queued child."""


LeftoversOn = Callable[[str, list[str], float], "Awaitable[bool]"]
"""Asks a node to stop what attempts left there: (node, markers, grace) -> whether it could."""


async def _no_nodes(node: str, markers: list[str], grace_period: float) -> bool:
    return False


async def _no_children(
    parent: Task, spec: TaskSpec, label: str | None, timeout: float | None
) -> Task:
    raise RuntimeError("this engine starts no child tasks")


class Engine:
    """The scheduler and executor of one orchestrator (see the module docstring)."""

    def __init__(
        self,
        store: Store,
        *,
        runners: Mapping[str, Runner],
        clock: Clock,
        queue: ReadyQueue,
        max_queued: int,
        retention: float,
        resources: ResourceGate,
        retry_backoff: float,
        rng: random.Random,
    ) -> None:
        self.store = store
        self.runners = runners
        self.clock = clock
        self.queue = queue
        self.max_queued = max_queued
        self.retention = retention
        self.resources = resources
        self.retry_backoff = retry_backoff
        self.rng = rng
        self.live: dict[str, LiveTask] = {}
        self.sweeps = 0
        """Counts the starts and ends of sweeps: what was read of ended tasks while it changed
        may be gone from the store (so memory of them is dropped)."""
        self.terminal_counts: Counter[TaskState] = Counter()
        self.admitting = False
        self.handler_available: Callable[[str], bool] = lambda name: True
        self.submit_child: SubmitChild = _no_children
        self._seq = 0
        self._tg: TaskGroup | None = None
        self.admission = Admission(self)
        self.dispatcher = Dispatcher(self)
        self.runs = Runs(self)
        self.reports = Reports(self)
        self.recovery = Recovery(self)
        self.watching: Callable[[str, str], bool] = lambda session, task_id: False
        """Whether someone follows a task's output live: (session, task id) -> bool (the
        orchestrator's event bus)."""
        self.leftovers_on: LeftoversOn = _no_nodes
        """How a recovery asks a cluster node to stop what attempts left there (the
        orchestrator's executors'; by default no node is reached)."""

    # -- start-up and shutdown ------------------------------------------------------------

    def load(self, backend: SQLiteBackend) -> None:
        """Recover from the store (sync, before `run`): find leftovers, rebuild the queue."""
        self.recovery.load(backend)

    def restore_seq(self, seq: int) -> None:
        """The highest submission number stored (at load)."""
        self._seq = seq

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Run the dispatcher, the sweeper and every task until `shutdown`."""
        pin_async_library()  # for the dispatcher, the sweeper and what they start
        async with anyio.create_task_group() as tg:
            self._tg = tg
            self.admitting = True
            await self.recovery.start(tg)
            tg.start_soon(self.dispatcher.loop)
            tg.start_soon(self._sweep_loop)
            task_status.started()

    async def shutdown(self, grace: float) -> None:
        """Stop admitting; let running tasks finish for `grace` s; stop the rest; end `run`.

        Cancellation: shielded and bounded by the runners' own grace periods.
        """
        self.admitting = False
        with anyio.CancelScope(shield=True):
            if self.recovery.count:  # its tasks are settled before the store closes
                await self.recovery.wait()
            with anyio.move_on_after(grace):
                await self.dispatcher.wait_idle()
            for live in list(self.live.values()):
                if live.holds_slot:
                    self.stop(live, "shutdown", "the orchestrator shut down")
            with anyio.move_on_after(60):
                await self.dispatcher.wait_idle()
            for live, ended, change in list(self.runs.unstored.values()):  # a last try each
                await self.runs.commit_end(live, ended, change)
        if self._tg is not None:
            self._tg.cancel_scope.cancel()

    def start_soon(
        self, fn: Callable[..., Coroutine[Any, Any, None]], *args: object, name: str | None = None
    ) -> anyio.TaskHandle[None] | None:
        """Start `fn(*args)` in the engine's task group; None if the group has ended.

        The group ends early only when its owner cancelled it; the caller tidies up after.
        """
        if self._tg is None:
            return None
        try:
            return self._tg.start_soon(fn, *args, name=name)
        except RuntimeError:
            return None

    # -- what the service asks ------------------------------------------------------------

    @property
    def running_count(self) -> int:
        """Tasks holding a slot (started and not yet released)."""
        return self.dispatcher.running_count

    @property
    def recovering_count(self) -> int:
        """Tasks found running at start whose leftover processes are being stopped."""
        return self.recovery.count

    @property
    def queued_count(self) -> int:
        """Unfinished tasks that are not running."""
        return len(self.live) - self.running_count - self.recovering_count

    def next_seq(self) -> int:
        """The submission number of the next task."""
        self._seq += 1
        return self._seq

    def wake(self) -> None:
        """Make the dispatcher look again (a changed limit)."""
        self.dispatcher.wake()

    def release_held(self, handler: str) -> None:
        """A handler was registered: queue the tasks that waited for it."""
        self.admission.release_held(handler)

    def waiting_for(self, task_id: str, now: float) -> str | None:
        """Why a queued task waits, in words."""
        return self.admission.waiting_for(task_id, now)

    async def submit(self, items: list[NewTask]) -> list[Task | Exception]:
        """Store new tasks (one independent change each) and queue them.

        Cancellation: the tasks are queued right after their commit, by the store, even if the
        caller is cancelled meanwhile, so memory always matches the store.
        """
        if not self.admitting:
            raise Closed("Cannot submit tasks to an `Orchestrator` that is not running.")
        now = self.clock.wall()
        changes: list[Change] = []
        seqs: list[int] = []
        for item in items:
            seq = self.next_seq()
            seqs.append(seq)
            task = item.task
            changes.append([InsertTask(task, seq, item.spec_json),
                            *rows_of(lifecycle.queued(task, at=now))])  # fmt: skip

        def queue(results: Results) -> None:
            debug = logger.isEnabledFor(logging.DEBUG)
            for item, seq, result in zip(items, seqs, results, strict=True):
                if not isinstance(result, Exception):
                    live = self.admission.register(item.task, seq, item.on_progress, item.on_done)
                    self.admission.link_deps(live)
                    self.admission.admit(live)
                    if debug:
                        logger.debug("%s queued (%s)", item.task.id, item.task.name)

        results = await self.store.commit_many(changes, then=queue)
        return [r if isinstance(r, Exception) else item.task
                for item, r in zip(items, results, strict=True)]  # fmt: skip

    def stop(self, live: LiveTask, reason: StopReason, message: str) -> None:
        """Record why a task stops, then stop it by what it is doing now."""
        if live.stop_reason is not None or live.phase >= Phase.ENDING:
            return
        live.stop_reason = reason
        live.stop_message = message
        match live.phase:
            case Phase.WAITING | Phase.QUEUED:
                self.admission.withdraw(live)
                if self.start_soon(self.runs.end_stopped, live, reason) is None:
                    logger.error("%s: left as stored: the orchestrator stopped", live.task_id)
            case Phase.RUNNING | Phase.LENDING | Phase.RECLAIMING:
                assert live.handle is not None
                live.handle.cancel()
            case _:  # STARTING: it will not run; RECOVERING: settled with this reason
                pass

    async def ended(self, task_id: str) -> Task:
        """The record of a task once it ended (it must be unfinished or just ended)."""
        live = self.live.get(task_id)
        if live is not None:
            await live.done.wait()
            return live.task
        (task,) = (await self.store.get_many([task_id])).values()
        return task

    async def cancel(self, task_id: str, reason: StopReason, message: str) -> None:
        """Stop a task and the tasks it spawned; returns once they have ended."""
        live = self.live.get(task_id)
        for child in list(self.admission.children.get(task_id, ())):
            await self.cancel(child, "parent", f"its parent {task_id} was cancelled")
        if live is None:
            return
        self.stop(live, reason, message)
        await live.settled.wait()
        error = live.end_error
        if not live.finished and error is not None:
            if isinstance(error, Closed):
                raise Closed(str(error)) from error
            raise StoreUnavailable(
                f"{error} Task {task_id!r} was stopped; its end is stored as soon as the store "
                "can write."
            ) from error

    # -- retention ------------------------------------------------------------------------

    async def _sweep_loop(self) -> None:
        while True:
            await self.sweep()
            await self.clock.sleep_until(self.clock.now() + min(3600.0, self.retention))

    async def sweep(self) -> int:
        """Delete tasks, events and logs older than `retention`; unfinished tasks stay."""
        self.sweeps += 1
        try:
            ids = await self.store.sweep(self.clock.wall() - self.retention)
        finally:
            self.sweeps += 1
        if ids:
            counts = await self.store.state_counts()
            self.terminal_counts = Counter(
                {TaskState(s): n for s, n in counts.items() if TaskState(s).terminal}
            )
            log_dir = self.store.log_dir
            await anyio.to_thread.run_sync(lambda: [TaskLog.remove(log_dir, i) for i in ids])
            logger.info("swept %d finished tasks", len(ids))
        return len(ids)
