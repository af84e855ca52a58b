"""Engine: owns every unfinished task in memory and drives it to exactly one end.

This module is larger than most because the task lifecycle is one piece of logic: admission,
start, timers, the run itself, and the single path by which a task ends (`_end`) all share the
same in-memory state, and splitting them would spread each invariant over several files.

Invariants:
- Write-ahead: every state change is committed to the store first, then memory is updated,
  then the committed events are published (by the store, in `seq` order). A crash between the
  steps loses nothing: the store is the truth and recovery starts from it.
- Each unfinished task has one `LiveTask` record. A task ends exactly once, through `_end`, which
  removes the record, releases its slot if it holds one, sets its `done` event, resolves the
  tasks that depend on it and, when it was the last unfinished task of its group, commits the
  `group.completed` summary.
- A slot taken by `ReadyQueue.pop_ready` is released exactly once, in a `finally`, whatever ends
  the run: success, failure, our cancellation, or an external one. `_end` releases it before
  committing the end (the work is over, so the next task may start meanwhile; a slot is not a
  report), and marks the task `ending`, after which nothing can stop it a second time.
- Every timer (run `timeout`, `ttl`, `stall_timeout`, a retry's backoff, resource re-checks) is
  read through the injected `Clock`; the dispatcher sleeps until the earliest one or a wake-up.

Cancellation: to stop a running task we first record why (`user`, `parent`, `dependency`,
`timeout`, `ttl`, `stall`, `shutdown`) and then cancel the `TaskHandle` of the task running
it; the outcome is decided from that record, never from the exception. A cancellation we did
not issue (the host cancelling the whole task group) ends the task as interrupted, recorded
under a shield, and then propagates. A stop that arrives while a retry is being stored ends the
task instead of letting it run again; one that arrives while its start is being stored ends it
before its work begins (at once, if the store refused that start). Terminal writes run shielded.
"""

from __future__ import annotations

import functools
import heapq
import inspect
import itertools
import logging
import threading
import traceback
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import anyio
import anyio.from_thread
import anyio.to_thread
import psutil

from .._asynclib import pin_async_library
from .._core import _lifecycle as lifecycle
from .._core._queue import Entry, ReadyQueue
from .._logging import format_duration, logger
from .._store._logs import TaskLog, transcript_path, write_atomically
from .._store._sqlite import (
    AddEvent,
    AddGroupSummary,
    Change,
    InsertTask,
    UpdateTask,
    rows_of,
)
from .._types._errors import Closed, StoreError, StoreUnavailable
from .._types._events import (
    GroupCompleted,
    TaskOutput,
    TaskProgress,
)
from .._types._task import ErrorInfo, Progress, Task, TaskSpec, TaskState, Usage
from ..runners._procs import Leftovers, marker, stop_leftovers
from ..runners._protocol import RunFailure, RunOutcome

if TYPE_CHECKING:
    import random
    from collections.abc import Iterable, Mapping

    from anyio.abc import TaskGroup, TaskStatus
    from pydantic import JsonValue

    from .._core._clock import Clock
    from .._store._sqlite import Committed, SQLiteBackend, UnfinishedTask
    from .._store._store import Results, Store
    from ..runners._protocol import Runner
    from ._resources import ResourceGate

__all__ = ["Engine", "LiveTask", "NewTask", "StopReason"]

StopReason = Literal["user", "parent", "dependency", "timeout", "ttl", "stall", "shutdown"]
Callback = Callable[[Task], object]
_TimerKind = Literal["ttl", "timeout", "stall"]

_OUTPUT_TAIL_BYTES = 4096
_FLUSH_INTERVAL = 0.2
_RESOURCE_RECHECK = 1.0
_RECOVERY_GRACE = 5.0
"""The grace period of a dead outrider's leftovers whose task names none."""
_START_RETRY = 1.0
"""Seconds before a task whose start the store refused is offered a slot again."""
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


@dataclass(frozen=True, slots=True)
class NewTask:
    """A validated task to store, with the program's callbacks."""

    task: Task
    spec_json: str
    """The task's spec as JSON, as it is stored."""
    on_progress: Callback | None = None
    on_done: Callback | None = None


@dataclass(eq=False, slots=True)
class LiveTask:
    task: Task
    seq: int
    runner: Runner
    pending_deps: set[str] = field(default_factory=set)
    ttl_deadline: float | None = None
    on_progress: Callback | None = None
    on_done: Callback | None = None
    ending: bool = False
    """`_end` has begun: the task can no longer be stopped."""
    recovering: bool = False
    """Found running at start: the processes it left are being stopped before it is settled."""
    finished: bool = False
    _done: anyio.Event | None = None
    end_error: Exception | None = None
    """Why its end could not be stored yet (it is tried again until it is)."""
    end_tries: int = 0
    _settled: anyio.Event | None = None
    handle: anyio.TaskHandle[None] | None = None
    """The task running it; cancelling the handle stops the run."""
    holds_slot: bool = False
    abandoned: anyio.Event | None = None
    """Work the runner could not stop (a thread) runs on until this is set; the slot waits."""
    release_pending: bool = False
    slot_lent: bool = False
    """Its queue slots are given back while it waits for tasks it started."""
    resume_queued: bool = False
    waiters: int = 0
    slot_back: anyio.Event | None = None
    stop_reason: StopReason | None = None
    stop_message: str | None = None
    run_deadline: float | None = None
    last_activity: float = 0.0
    log: TaskLog | None = None
    log_failed: bool = False
    output_tail: bytearray = field(default_factory=bytearray)
    output_dirty: bool = False
    progress_dirty: bool = False
    flush_scheduled: bool = False
    last_flush: float = float("-inf")

    @property
    def task_id(self) -> str:
        return self.task.id

    @property
    def done(self) -> anyio.Event:
        """Set once the task ended and its end is stored (made on first use: most never are)."""
        if self._done is None:
            self._done = anyio.Event()
            if self.finished:
                self._done.set()
        return self._done

    @property
    def settled(self) -> anyio.Event:
        """Set once its end is stored, or the store refused it (see `end_error`)."""
        if self._settled is None:
            self._settled = anyio.Event()
            if self.finished or self.end_error is not None:
                self._settled.set()
        return self._settled

    def finish(self) -> None:
        self.finished = True
        if self._done is not None:
            self._done.set()
        if self._settled is not None:
            self._settled.set()


SubmitChild = Callable[[Task, TaskSpec, str | None, float | None], Awaitable[Task]]
"""Stores a child of a running task: (parent, spec, label, timeout) -> the queued child."""


async def _no_children(
    parent: Task, spec: TaskSpec, label: str | None, timeout: float | None
) -> Task:
    raise RuntimeError("this engine starts no child tasks")


class _Context:
    """The `RunContext` the engine gives a runner; safe to call from worker threads."""

    def __init__(self, engine: Engine, live: LiveTask) -> None:
        self._engine = engine
        self._live = live
        self._loop_thread = threading.get_ident()
        error = live.task.error  # the previous attempt's, until this one ends
        self._resuming = error is not None and error.type == "interrupted"

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

    def _on_loop(self, fn: Callable[[], None]) -> None:
        if threading.get_ident() == self._loop_thread:
            fn()
        else:
            anyio.from_thread.run_sync(fn)

    def progress(
        self, completed: float, total: float | None = None, message: str | None = None
    ) -> None:
        value = Progress(completed=completed, total=total, message=message)
        self._on_loop(lambda: self._engine.note_progress(self._live, value))

    def output(self, data: bytes | str) -> None:
        raw = data.encode() if isinstance(data, str) else bytes(data)
        self._on_loop(lambda: self._engine.note_output(self._live, raw))

    def usage(self, usage: Usage) -> None:
        self._on_loop(lambda: self._engine.note_usage(self._live, usage))

    @property
    def session(self) -> str:
        return self._live.task.session

    @asynccontextmanager
    async def _waiting(self) -> AsyncIterator[None]:
        self._engine.lend_slot(self._live)
        try:
            yield
        finally:
            await self._engine.take_slot_back(self._live)

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
        path = transcript_path(self._engine.store.log_dir, self.task_id)
        await anyio.to_thread.run_sync(write_atomically, path, data)

    async def load_transcript(self) -> bytes | None:
        path = transcript_path(self._engine.store.log_dir, self.task_id)

        def read() -> bytes | None:
            try:
                return path.read_bytes()
            except FileNotFoundError:
                return None

        return await anyio.to_thread.run_sync(read)

    def abandon(self, ended: anyio.Event) -> None:
        self._live.abandoned = ended

    async def track_process(self, pid: int) -> None:
        try:
            created: float | None = psutil.Process(pid).create_time()
        except psutil.Error:
            created = None
        with anyio.CancelScope(shield=True):
            await self._engine.store.commit(
                [UpdateTask(self.task_id, {"pid": pid, "pid_created": created})]
            )


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
        self._rng = rng
        self.live: dict[str, LiveTask] = {}
        self.terminal_counts: Counter[TaskState] = Counter()
        self._children: dict[str, set[str]] = {}
        self._dependents: dict[str, set[str]] = {}
        self._held: dict[str, set[str]] = {}  # handler name -> task ids waiting for it
        self._group_active: Counter[tuple[str, str]] = Counter()
        self._timers: list[tuple[float, int, str, _TimerKind]] = []
        self._counter = itertools.count()
        self._seq = 0
        self._tg: TaskGroup | None = None
        self._sleep_scope: anyio.CancelScope | None = None
        self._dirty = True
        self._admitting = False
        self.running_count = 0
        """Tasks holding a slot (started and not yet released)."""
        self._idle = anyio.Event()
        self._recovered: list[LiveTask] = []
        self._leftovers: list[tuple[LiveTask, Leftovers]] = []
        self.recovering_count = 0
        """Tasks found running at start whose leftover processes are being stopped."""
        self._recovery_done = anyio.Event()
        self._unstored: dict[str, tuple[LiveTask, Task, Change]] = {}
        """Ends the store refused, by task id; each is committed again until it is stored."""
        self.handler_available: Callable[[str], bool] = lambda name: True
        self.submit_child: SubmitChild = _no_children

    # -- start-up and shutdown ------------------------------------------------------------

    def load(self, backend: SQLiteBackend) -> None:
        """Recover from the store (sync, before `run`): kill leftovers, rebuild the queue."""
        unfinished = backend.unfinished()
        for state, count in backend.state_counts().items():
            if TaskState(state).terminal:
                self.terminal_counts[TaskState(state)] = count
        self._seq = backend.max_seq()
        ids = {u.task.id for u in unfinished}
        external = {d for u in unfinished for d in u.task.depends_on if d not in ids}
        done_deps = backend.get_many(external)
        for item in unfinished:
            self._load_one(item, ids, done_deps)

    def _load_one(self, item: UnfinishedTask, ids: set[str], done_deps: Mapping[str, Task]) -> None:
        task = item.task
        live = self._register(task, item.seq, None, None)
        if task.state is TaskState.RUNNING:
            live.recovering = True
            self.recovering_count += 1
            grace = getattr(task.spec, "grace_period", _RECOVERY_GRACE)
            leftovers = Leftovers(marker(task.id, task.attempt), item.pid, item.pid_created, grace)
            self._leftovers.append((live, leftovers))
            return
        failed = [d for d in task.depends_on if d in done_deps and done_deps[d].state.terminal
                  and done_deps[d].state is not TaskState.SUCCEEDED]  # fmt: skip
        live.pending_deps = {d for d in task.depends_on if d in ids}
        if failed:
            live.stop_reason = "dependency"
            live.stop_message = f"dependency {failed[0]} ended {done_deps[failed[0]].state}"
            self._recovered.append(live)
            return
        self._link_deps(live)
        delay = None if item.ready_at is None else max(0.0, item.ready_at - self.clock.wall())
        self._admit(live, delay=delay)

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Run the dispatcher, the sweeper and every task until `stop`."""
        pin_async_library()  # for the dispatcher, the sweeper and what they start
        async with anyio.create_task_group() as tg:
            self._tg = tg
            self._admitting = True
            for live in self._recovered:  # settled before the orchestrator is reported open
                await self._settle_recovered(live)
            self._recovered = []
            if self._leftovers:
                tg.start_soon(self._recover, self._leftovers)
                self._leftovers = []
            tg.start_soon(self._dispatch_loop)
            tg.start_soon(self._sweep_loop)
            task_status.started()

    async def shutdown(self, grace: float) -> None:
        """Stop admitting; let running tasks finish for `grace` s; stop the rest; end `run`.

        Cancellation: shielded and bounded by the runners' own grace periods.
        """
        self._admitting = False
        with anyio.CancelScope(shield=True):
            if self.recovering_count:  # its tasks are settled before the store closes
                await self._recovery_done.wait()
            with anyio.move_on_after(grace):
                await self._wait_idle()
            for live in list(self.live.values()):
                if live.holds_slot:
                    self._stop(live, "shutdown", "the orchestrator shut down")
            with anyio.move_on_after(60):
                await self._wait_idle()
            for live, ended, change in list(self._unstored.values()):  # a last try each
                await self._commit_end(live, ended, change)
        if self._tg is not None:
            self._tg.cancel_scope.cancel()

    async def _wait_idle(self) -> None:
        while self.running_count:
            self._idle = anyio.Event()
            await self._idle.wait()

    # -- admission ------------------------------------------------------------------------

    async def _recover(self, items: list[tuple[LiveTask, Leftovers]]) -> None:
        """Stop what tasks found running at start left, all at once; then settle each.

        A task is retried (or fails `interrupted`) only once every process of its last attempt
        is gone, so an attempt never runs beside its predecessor. Shielded: the tasks are
        settled even if the orchestrator shuts down meanwhile.
        """
        with anyio.CancelScope(shield=True):
            try:
                await anyio.to_thread.run_sync(stop_leftovers, [left for _, left in items])
            except Exception:  # settle them anyway: a task must not stay `running` forever
                logger.exception("stopping the processes left by a dead outrider failed")
            for live, _ in items:
                live.recovering = False
                self.recovering_count -= 1
                await self._settle_recovered(live)
            self._recovery_done.set()

    @property
    def queued_count(self) -> int:
        """Unfinished tasks that are not running."""
        return len(self.live) - self.running_count - self.recovering_count

    def next_seq(self) -> int:
        """The submission number of the next task."""
        self._seq += 1
        return self._seq

    async def submit(self, items: list[NewTask]) -> list[Task | Exception]:
        """Store new tasks (one independent change each) and queue them.

        Cancellation: the tasks are queued right after their commit, by the store, even if the
        caller is cancelled meanwhile, so memory always matches the store.
        """
        if not self._admitting:
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
                    live = self._register(item.task, seq, item.on_progress, item.on_done)
                    self._link_deps(live)
                    self._admit(live)
                    if debug:
                        logger.debug("%s queued (%s)", item.task.id, item.task.name)

        results = await self.store.commit_many(changes, then=queue)
        return [r if isinstance(r, Exception) else item.task
                for item, r in zip(items, results, strict=True)]  # fmt: skip

    def _register(
        self, task: Task, seq: int, on_progress: Callback | None, on_done: Callback | None
    ) -> LiveTask:
        live = LiveTask(
            task=task,
            seq=seq,
            runner=self.runners[task.kind],
            on_progress=on_progress,
            on_done=on_done,
        )
        self.live[task.id] = live
        if task.parent is not None:
            self._children.setdefault(task.parent, set()).add(task.id)
        if task.group is not None:
            self._group_active[(task.session, task.group)] += 1
        if task.ttl is not None:
            remaining = task.created_at.timestamp() + task.ttl - self.clock.wall()
            live.ttl_deadline = self.clock.now() + remaining
            self._add_timer(live.ttl_deadline, task.id, "ttl")
        return live

    def _link_deps(self, live: LiveTask) -> None:
        for dep in list(live.task.depends_on):
            dep_live = self.live.get(dep)
            if dep_live is None:
                live.pending_deps.discard(dep)  # ended already; submit checked it succeeded
            else:
                live.pending_deps.add(dep)
                self._dependents.setdefault(dep, set()).add(live.task_id)

    def _admit(self, live: LiveTask, *, delay: float | None = None) -> None:
        """Put a task whose dependencies are met in the ready queue (or hold it)."""
        if live.pending_deps:
            return
        spec = live.task.spec
        if spec.kind == "handler" and not self.handler_available(spec.handler):
            self._held.setdefault(spec.handler, set()).add(live.task_id)
            return
        self.queue.push(
            Entry(
                task_id=live.task_id,
                priority=live.task.priority,
                seq=live.seq,
                keys=live.task.keys,
                uses_processes=live.runner.uses_processes,
                ready_deadline=None if not delay else self.clock.now() + delay,
            )
        )
        self.wake()

    def release_held(self, handler: str) -> None:
        """A handler was registered: queue the tasks that waited for it."""
        for task_id in self._held.pop(handler, set()):
            live = self.live.get(task_id)
            if live is not None:
                self._admit(live)

    def waiting_for(self, task_id: str, now: float) -> str | None:
        """Why a queued task waits, in words."""
        live = self.live.get(task_id)
        if live is None or live.holds_slot:
            return None
        if live.pending_deps:
            return "dependencies: " + ", ".join(sorted(live.pending_deps))
        spec = live.task.spec
        if spec.kind == "handler" and live.task_id in self._held.get(spec.handler, ()):
            return f"handler {spec.handler!r} to be registered"
        blocker = self.queue.blocker(task_id, now)
        if blocker is None and live.runner.uses_processes:
            blocker = self.resources.held(now)
        return blocker or "its turn"

    # -- dispatch -------------------------------------------------------------------------

    def wake(self) -> None:
        """Make the dispatcher look again (new task, freed slot, changed limit)."""
        if self._dirty:
            return  # it will look before it sleeps; its sleep, if any, is cancelled already
        self._dirty = True
        if self._sleep_scope is not None:
            self._sleep_scope.cancel()

    def _add_timer(self, deadline: float, task_id: str, kind: _TimerKind) -> None:
        heapq.heappush(self._timers, (deadline, next(self._counter), task_id, kind))
        if self._timers[0][0] == deadline:
            self.wake()

    async def _dispatch_loop(self) -> None:
        while True:
            self._dirty = False
            now = self.clock.now()
            self._fire_timers(now)
            held = self.resources.held(now)
            if self._admitting:
                started = self.queue.pop_ready(now, allow_processes=held is None)
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
                    await self.clock.sleep_until(deadline)
            self._sleep_scope = None

    def _woken(self) -> bool:
        # `wake()` may run between the checks above and here (from a callback).
        return self._dirty

    def _next_deadline(self, held: bool, now: float) -> float | None:
        candidates = [d for d in (self.queue.next_deadline(),) if d is not None]
        if self._timers:
            candidates.append(self._timers[0][0])
        if held and any(e.uses_processes for e in self.queue.queued_entries()):
            candidates.append(now + _RESOURCE_RECHECK)
        return min(candidates, default=None)

    def _fire_timers(self, now: float) -> None:
        while self._timers and self._timers[0][0] <= now:
            deadline, _, task_id, kind = heapq.heappop(self._timers)
            live = self.live.get(task_id)
            if live is None or live.stop_reason is not None:
                continue
            task = live.task
            if kind == "ttl" and live.ttl_deadline == deadline:
                self._stop(live, "ttl", f"its ttl of {task.ttl:g}s since submission expired")
            elif kind == "timeout" and live.holds_slot and live.run_deadline == deadline:
                self._stop(live, "timeout", f"it ran longer than its timeout of {task.timeout:g}s")
            elif kind == "stall" and live.holds_slot and task.stall_timeout is not None:
                quiet_until = live.last_activity + task.stall_timeout
                if quiet_until <= now:
                    self._stop(
                        live,
                        "stall",
                        f"it gave no output or progress for {task.stall_timeout:g}s "
                        "(`stall_timeout`)",
                    )
                else:
                    self._add_timer(quiet_until, task_id, "stall")

    async def _start(self, entries: list[Entry]) -> None:
        """Commit the starts of tasks given slots; each runs once its start is committed.

        The dispatcher does not wait for the commit: the store runs `_started` right after it,
        so slots freed meanwhile are handed out and their starts join the same batch.
        """
        now_wall = self.clock.wall()
        lives = [self.live[e.task_id] for e in entries]
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

        await self.store.commit_then(changes, started, wait=False)

    def _started(
        self, lives: list[LiveTask], steps: list[lifecycle.Transition], results: Results
    ) -> None:
        """Starts were committed (or could not be): run each task, or queue it again."""
        now = self.clock.now()
        for live, step, result in zip(lives, steps, results, strict=True):
            if isinstance(result, Exception):  # it stays queued in the store
                self._release(live)
                reason = live.stop_reason
                if reason is None or reason == "shutdown":  # offer it a slot again soon
                    logger.error("%s could not start (trying again in %gs): %s",
                                 live.task_id, _START_RETRY, result)  # fmt: skip
                    self._admit(live, delay=_START_RETRY)
                else:  # stopped while its start was being stored: it ends unrun
                    logger.error("%s could not start: %s", live.task_id, result)
                    if self._start_soon(self._end_stopped, live, reason) is None:
                        logger.error("%s: left as stored: the orchestrator stopped", live.task_id)
                continue
            live.task = step.task
            live.last_activity = now
            if live.task.timeout is not None:
                live.run_deadline = now + live.task.timeout
                self._add_timer(live.run_deadline, live.task_id, "timeout")
            if live.task.stall_timeout is not None:
                self._add_timer(now + live.task.stall_timeout, live.task_id, "stall")
            if logger.isEnabledFor(logging.INFO):
                logger.info("%s started (%s: %s)", live.task_id, live.task.kind, live.task.name)
            live.handle = self._start_soon(self._run, live, name=live.task_id)
            if live.handle is None:
                logger.error("%s: left as stored: the orchestrator stopped", live.task_id)
                self._release(live)

    def _start_soon(
        self, fn: Callable[..., Coroutine[Any, Any, None]], *args: object, name: str | None = None
    ) -> anyio.TaskHandle[None] | None:
        """Start `fn(*args)` in the engine's task group; None if the group has ended.

        The group ends early only when its owner cancelled it; the caller tidies up after.
        """
        try:
            assert self._tg is not None
            return self._tg.start_soon(fn, *args, name=name)
        except RuntimeError:
            return None

    def _release(self, live: LiveTask) -> None:
        if live.holds_slot and live.abandoned is not None and not live.abandoned.is_set():
            if not live.release_pending:  # its thread still runs: the slot is its until it ends
                live.release_pending = True
                if self._start_soon(self._release_after, live, live.abandoned) is None:
                    logger.error("%s: its slot is held: the orchestrator stopped", live.task_id)
            return
        if live.holds_slot:
            live.holds_slot = False
            self.running_count -= 1
            if not live.slot_lent:
                self.queue.release(live.task_id)
            elif live.resume_queued:
                self.queue.remove(live.task_id)
            self.wake()
            if not self.running_count:
                self._idle.set()

    async def _release_after(self, live: LiveTask, ended: anyio.Event) -> None:
        await ended.wait()
        logger.warning("%s: its abandoned thread ended; its slot is free", live.task_id)
        live.abandoned = None
        self._release(live)

    def lend_slot(self, live: LiveTask) -> None:
        """A running task waits for tasks it started: give its queue slots to others."""
        live.waiters += 1
        if live.waiters == 1 and live.holds_slot and not live.slot_lent:
            live.slot_lent = True
            live.slot_back = anyio.Event()
            self.queue.release(live.task_id)
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
            self.queue.push(
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

    # -- running --------------------------------------------------------------------------

    async def _run(self, live: LiveTask) -> None:
        outcome: RunOutcome | None = None
        failure: Exception | None = None
        try:
            try:
                if live.stop_reason is None:
                    outcome = await live.runner.run(live.task.spec, _Context(self, live))
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
            self._release(live)
            if live.log is not None:
                live.log.close()
                live.log = None

    async def _settle(
        self, live: LiveTask, outcome: RunOutcome | None, failure: Exception | None
    ) -> None:
        reason = live.stop_reason
        task = live.task
        if reason is not None and outcome is None:
            await self._end_stopped(live, reason)
        elif failure is not None:
            error, exit_code, retryable = self._error_of(failure)
            if retryable and task.attempt < task.max_attempts and self._admitting:
                await self._retry(live, error)
            else:
                await self._end(
                    live, TaskState.FAILED, error=error, exit_code=exit_code, wait=False
                )
        else:
            assert outcome is not None
            await self._end(live, TaskState.SUCCEEDED, result=outcome.result,
                            exit_code=outcome.exit_code, wait=False)  # fmt: skip

    async def _end_stopped(self, live: LiveTask, reason: StopReason) -> None:
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

    def _error_of(self, failure: Exception) -> tuple[ErrorInfo, int | None, bool]:
        if isinstance(failure, RunFailure):
            info = ErrorInfo(type=failure.type, message=failure.message, detail=failure.detail)
            return info, failure.exit_code, failure.retryable
        detail = "".join(traceback.format_exception(failure, limit=-8))[-8000:]
        info = ErrorInfo(type=type(failure).__name__, message=str(failure), detail=detail)
        return info, None, False

    async def _settle_recovered(self, live: LiveTask) -> None:
        reason = live.stop_reason or "shutdown"
        if reason == "shutdown":
            live.stop_message = "the outrider process running it stopped"
        await self._end_stopped(live, reason)

    def _stop(self, live: LiveTask, reason: StopReason, message: str) -> None:
        """Record why a task stops, then stop it (queued: at once; running: cancel its scope)."""
        if live.stop_reason is not None or live.ending:
            return
        live.stop_reason = reason
        live.stop_message = message
        if live.recovering:  # it is settled by `_recover`, with this reason
            return
        if live.holds_slot:
            if live.handle is not None:  # else its start is being committed: it will not run
                live.handle.cancel()
            return
        self.queue.remove(live.task_id)
        spec = live.task.spec
        if spec.kind == "handler":
            self._held.get(spec.handler, set()).discard(live.task_id)
        assert self._tg is not None
        self._tg.start_soon(self._end_stopped, live, reason)

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
        for child in list(self._children.get(task_id, ())):
            await self.cancel(child, "parent", f"its parent {task_id} was cancelled")
        if live is None:
            return
        self._stop(live, reason, message)
        await live.settled.wait()
        error = live.end_error
        if not live.finished and error is not None:
            if isinstance(error, Closed):
                raise Closed(str(error)) from error
            raise StoreUnavailable(
                f"{error} Task {task_id!r} was stopped; its end is stored as soon as the store "
                "can write."
            ) from error

    # -- reports from runners -------------------------------------------------------------

    def note_progress(self, live: LiveTask, value: Progress) -> None:
        """A runner reported progress."""
        if live.task_id not in self.live:
            return
        live.task = live.task.model_copy(update={"progress": value})
        live.last_activity = self.clock.now()
        live.progress_dirty = True
        self._schedule_flush(live)

    def note_output(self, live: LiveTask, data: bytes) -> None:
        """A runner produced output."""
        if live.task_id not in self.live:
            return
        if live.log is None:  # opened on first output: most handler tasks write none
            live.log = TaskLog(self.store.log_dir, live.task_id)
        try:
            live.log.write(data)
        except OSError as exc:  # a full disk: the events still carry the output
            if not live.log_failed:
                logger.error("%s: its output log cannot be written: %s", live.task_id, exc)
            live.log_failed = True
        live.output_tail += data
        if len(live.output_tail) > _OUTPUT_TAIL_BYTES:
            del live.output_tail[: len(live.output_tail) - _OUTPUT_TAIL_BYTES]
        live.last_activity = self.clock.now()
        live.output_dirty = True
        self._schedule_flush(live)

    def note_usage(self, live: LiveTask, usage: Usage) -> None:
        """A runner reported usage."""
        live.task = live.task.model_copy(update={"usage": usage})
        live.progress_dirty = True
        self._schedule_flush(live)

    def _schedule_flush(self, live: LiveTask) -> None:
        if not live.flush_scheduled and self._tg is not None and live.task_id in self.live:
            live.flush_scheduled = True
            self._tg.start_soon(self._flush, live)

    def _pending_reports(self, live: LiveTask, now_wall: float) -> Change:
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

    async def _flush(self, live: LiveTask) -> None:
        try:
            next_at = live.last_flush + _FLUSH_INTERVAL
            if next_at > self.clock.now():
                await self.clock.sleep_until(next_at)
        finally:
            live.flush_scheduled = False
        if live.task_id not in self.live:
            return
        live.last_flush = self.clock.now()
        had_progress = live.progress_dirty
        change = self._pending_reports(live, self.clock.wall())
        if not change:
            return
        with anyio.CancelScope(shield=True):
            try:
                await self.store.commit(change)
            except (StoreError, Closed) as exc:
                logger.warning("%s: a progress report was not stored: %s", live.task_id, exc)
                return
        if had_progress:
            self._callback(live.on_progress, live.task)

    # -- ending ---------------------------------------------------------------------------

    async def _retry(self, live: LiveTask, error: ErrorInfo, *, delay: float | None = None) -> None:
        task = live.task
        if delay is None:
            base = self.retry_backoff * 2 ** (task.attempt - 1)
            delay = min(base, 300.0) * self._rng.uniform(0.5, 1.5)
        now_wall = self.clock.wall()
        step = lifecycle.retry(task, error, delay=delay, at=now_wall)
        change: Change = [*self._pending_reports(live, now_wall), *rows_of(step)]
        stopped_before = live.stop_reason is not None
        with anyio.CancelScope(shield=True):
            if not await self._commit_until_stored(task.id, change):
                return  # the store closed: left `running` there, and recovered at the next start
        self._release(live)
        live.task = step.task
        live.run_deadline = None
        live.handle = None
        late = None if stopped_before else live.stop_reason
        if late is not None and late != "shutdown":
            # Stopped while the retry was being stored: it ends now instead of running again.
            await self._end_stopped(live, late)
            return
        live.stop_reason = live.stop_message = None
        logger.info("%s retrying in %s: %s", task.id, format_duration(delay), error.message)
        self._admit(live, delay=delay)

    async def _commit_until_stored(self, task_id: str, change: Change) -> bool:
        """Commit `change`, again after a pause while the store refuses it; False if it closed."""
        delay = _STORE_RETRY
        while True:
            try:
                await self.store.commit(change)
            except Closed:
                logger.error("%s: left as stored: the store closed", task_id)
                return False
            except StoreError as exc:
                logger.error("%s: a change could not be stored; trying again in %gs: %s",
                             task_id, delay, exc)  # fmt: skip
                await self.clock.sleep_until(self.clock.now() + delay)
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
        now_wall = self.clock.wall()
        step = lifecycle.end(
            task, state, at=now_wall, result=result, error=error, exit_code=exit_code
        )
        change: Change = [*self._pending_reports(live, now_wall), *rows_of(step)]
        if task.group is not None and self._group_done(task.session, task.group):
            # Its last task: the summary is stored with this end, or not at all.
            change.append(AddGroupSummary(task.session, task.group, now_wall))
        # The work is over: its slot goes to the next task while the end is committed.
        live.ending = True
        self._release(live)
        await self._commit_end(live, step.task, change, wait=wait)

    async def _commit_end(
        self, live: LiveTask, ended: Task, change: Change, *, wait: bool = True, delay: float = 0.0
    ) -> None:
        if delay:
            await self.clock.sleep_until(self.clock.now() + delay)

        def after(results: Results) -> None:
            self._ended(live, ended, change, results[0])

        await self.store.commit_then([change], after, wait=wait)

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
            self._unstored.pop(ended.id, None)
        del self.live[ended.id]
        self.terminal_counts[ended.state] += 1
        live.task = ended
        self._log_end(ended, ended.error)
        self._callback(live.on_done, ended)
        if ended.parent is not None:
            siblings = self._children.get(ended.parent)
            if siblings is not None:
                siblings.discard(ended.id)
                if not siblings:
                    del self._children[ended.parent]
        self._resolve_dependents(ended)
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
        self._unstored[ended.id] = (live, ended, change)
        live.settled.set()  # a canceller learns the store's problem at once
        delay = min(_STORE_RETRY * 2 ** (live.end_tries - 1), _STORE_RETRY_MAX)
        again = functools.partial(self._commit_end, live, ended, change, delay=delay)
        if self._start_soon(again) is None:
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

    def _resolve_dependents(self, task: Task) -> None:
        for dependent_id in self._dependents.pop(task.id, set()):
            dependent = self.live.get(dependent_id)
            if dependent is None:
                continue
            if task.state is TaskState.SUCCEEDED:
                dependent.pending_deps.discard(task.id)
                if not dependent.pending_deps and dependent.stop_reason is None:
                    self._admit(dependent)
            else:
                self._stop(dependent, "dependency", f"its dependency {task.id} ended {task.state}")

    def _group_done(self, session: str, group: str) -> bool:
        """One task of a group ended; true when it was the group's last unfinished one."""
        key = (session, group)
        self._group_active[key] -= 1
        if self._group_active[key] > 0:
            return False
        del self._group_active[key]
        return True

    def _callback(self, fn: Callback | None, task: Task) -> None:
        if fn is None:
            return
        try:
            result = fn(task)
            if inspect.isawaitable(result) and self._tg is not None:
                self._tg.start_soon(self._await_callback, result)
        except Exception:
            logger.exception("%s: a callback raised", task.id)

    @staticmethod
    async def _await_callback(awaitable: object) -> None:
        try:
            await awaitable  # type: ignore[misc]  # checked with inspect.isawaitable
        except Exception:
            logger.exception("an async callback raised")

    # -- retention ------------------------------------------------------------------------

    async def _sweep_loop(self) -> None:
        while True:
            await self.sweep()
            await self.clock.sleep_until(self.clock.now() + min(3600.0, self.retention))

    async def sweep(self) -> int:
        """Delete tasks, events and logs older than `retention`; unfinished tasks stay."""
        ids = await self.store.sweep(self.clock.wall() - self.retention)
        if ids:
            counts = await self.store.state_counts()
            self.terminal_counts = Counter(
                {TaskState(s): n for s, n in counts.items() if TaskState(s).terminal}
            )
            log_dir = self.store.log_dir
            await anyio.to_thread.run_sync(lambda: [TaskLog.remove(log_dir, i) for i in ids])
            logger.info("swept %d finished tasks", len(ids))
        return len(ids)

    def iter_live(self) -> Iterable[LiveTask]:
        """The unfinished tasks."""
        return self.live.values()
