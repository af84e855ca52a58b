"""Orchestrator: the one public entry point of the engine.

It validates input, scopes every operation to the caller's `session`, and maps calls onto the
`Engine` (memory) and the `Store` (truth). It owns the task group in which the store writer,
the engine and every task run.
"""

from __future__ import annotations

import contextlib
import functools
import json
import random
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime
from enum import Enum
from typing import TYPE_CHECKING, Literal, TypeVar, final

import anyio
import anyio.to_thread
from pydantic import JsonValue, ValidationError

from .._core._bus import EventBus
from .._core._clock import Clock, SystemClock
from .._core._notices import notice_of, notices_from_events
from .._core._queue import ReadyQueue
from .._engine._engine import Engine, NewTask
from .._engine._resources import ResourceGate
from .._ids import new_task_id
from .._logging import configure_from_env
from .._paths import data_dir
from .._store._logs import TaskLog, transcript_path
from .._store._sqlite import NOTICE_EVENT_TYPES, Committed, SetNoticeCursor
from .._store._store import Store
from .._types._api import submit_error, submit_item, task_outcome
from .._types._errors import (
    Closed,
    QueueFull,
    TaskNotFound,
    UserError,
    user_error,
)
from .._types._task import (
    MAX_PAYLOAD_BYTES,
    MAX_SEQ,
    Event,
    KeyStatus,
    Notice,
    Status,
    SubmitError,
    SubmitItem,
    Task,
    TaskSpec,
    TaskState,
)
from ..runners._cli_agent import CliAgentRunner
from ..runners._handler import Handler, HandlerRunner, Isolation
from ..runners._pool import WorkerPool
from ..runners._shell import ShellRunner
from ._readers import Readers
from ._session import Session

if TYPE_CHECKING:
    import builtins
    import os
    from contextlib import AsyncExitStack
    from pathlib import Path
    from types import TracebackType

    from anyio.abc import TaskGroup

    from .._store._sqlite import SQLiteBackend
    from ..runners._protocol import Runner

__all__ = ["Orchestrator"]

F = TypeVar("F", bound=Callable[..., object])
Callback = Callable[[Task], object]
_DAY = 86_400.0
_NEW_TASK = Task.model_construct(state=TaskState.QUEUED)
"""The defaults of a new task's record; each submit copies it with its own fields (a copy is
several times cheaper than `model_construct`, which works out every default again)."""


class _State(Enum):
    NEW = "new"
    OPEN = "open"
    CLOSING = "closing"
    CLOSED = "closed"


def default_db_path() -> Path:
    """The per-user store: `outrider.db` in the data dir (`$OUTRIDER_HOME`, else XDG)."""
    return data_dir() / "outrider.db"


def _read_events(
    backend: SQLiteBackend, *, session: str | None, after: int, prefix: bool, notices: bool
) -> list[Event]:
    return backend.events(session=session, after=after, limit=500, prefix=prefix, notices=notices)


@final
class Orchestrator:
    """Runs tasks in the background under limits, durably; scoped by session.

    Use as `async with Orchestrator(db=...) as orch:`. Every method takes the caller's
    `session`; a task of another session is reported as not found. `session=None` is the
    admin view (every session) and is for the embedding program only, never a remote caller.

    Args:
        db: The SQLite file (default: the per-user data dir); `":memory:"` for a throwaway one.
        max_running: Tasks running at once, over all keys.
        limits: Per-key concurrency limits (e.g. `{"shell": 4}`).
        default_limit: The limit of a key not in `limits`.
        max_queued: Unfinished tasks not yet running that may be stored; beyond, `QueueFull`.
        retention: Seconds finished tasks, their events and logs are kept.
        shutdown_grace: Seconds `aclose` lets running tasks finish before stopping them.
        default_timeout: The `timeout` of a task submitted without one (None: no limit).
        default_ttl: The `ttl` of a task submitted without one (None: no limit).
        min_free_memory_mb: Process-backed tasks wait while less memory than this is free.
        max_cpu_percent: Process-backed tasks wait while CPU use is above this.
        retry_backoff: The first retry's delay in seconds (doubling, with jitter).
        process_workers: Size of the worker-process pool for `isolation="process"` handlers.
        runners: Extra runners by kind, added to (or replacing) the built-in `shell`,
            `handler` and `cli_agent`.
        clock: The time source (tests inject `outrider.testing.FakeClock`).
        rng: Randomness for retry jitter.
    """

    def __init__(
        self,
        db: str | os.PathLike[str] | None = None,
        *,
        max_running: int = 64,
        limits: Mapping[str, int] | None = None,
        default_limit: int = 3,
        max_queued: int = 10_000,
        retention: float = 7 * _DAY,
        shutdown_grace: float = 5.0,
        default_timeout: float | None = None,
        default_ttl: float | None = None,
        min_free_memory_mb: float | None = None,
        max_cpu_percent: float | None = None,
        retry_backoff: float = 1.0,
        process_workers: int | None = None,
        runners: Sequence[Runner] = (),
        clock: Clock | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self._check_config(
            max_running, limits, default_limit, max_queued, retention, default_timeout, default_ttl
        )
        configure_from_env()
        self._db = str(db) if db is not None else str(default_db_path())
        self._shutdown_grace = shutdown_grace
        self._default_timeout = default_timeout
        self._default_ttl = default_ttl
        self._clock: Clock = clock or SystemClock()
        self._bus = EventBus()
        self._readers = Readers()
        """The notice readers of every session (`Session.notices(reader=…)`)."""
        self._store = Store(self._db, on_commit=self._publish)
        self._handlers: dict[str, Handler] = {}
        self._process_workers = process_workers
        self._pool: WorkerPool | None = None
        all_runners: list[Runner] = [
            ShellRunner(),
            HandlerRunner(self._handlers, self._get_pool),
            CliAgentRunner(),
        ]
        all_runners.extend(runners)
        self._runners: dict[str, Runner] = {r.kind: r for r in all_runners}
        for runner in runners:
            attach = getattr(runner, "attach", None)
            if callable(attach):
                attach(self)
        self._engine = Engine(
            self._store,
            runners=self._runners,
            clock=self._clock,
            queue=ReadyQueue(max_running=max_running, limits=limits, default_limit=default_limit),
            max_queued=max_queued,
            retention=retention,
            resources=ResourceGate(
                min_free_memory_mb=min_free_memory_mb, max_cpu_percent=max_cpu_percent
            ),
            retry_backoff=retry_backoff,
            rng=rng or random.Random(),
        )
        self._engine.handler_available = self._handlers.__contains__
        self._state = _State.NEW
        self._stack: AsyncExitStack | None = None
        self._tg: TaskGroup | None = None

    @staticmethod
    def _check_config(
        max_running: int,
        limits: Mapping[str, int] | None,
        default_limit: int,
        max_queued: int,
        retention: float,
        default_timeout: float | None,
        default_ttl: float | None,
    ) -> None:
        if max_running < 1:
            raise UserError(
                f"`max_running` must be at least 1, not {max_running!r}.", field="max_running"
            )
        if default_limit < 1:
            raise UserError(
                f"`default_limit` must be at least 1, not {default_limit!r}.", field="default_limit"
            )
        if max_queued < 1:
            raise UserError(
                f"`max_queued` must be at least 1, not {max_queued!r}.", field="max_queued"
            )
        for name, value in (("default_timeout", default_timeout), ("default_ttl", default_ttl)):
            if value is not None and value <= 0:
                raise UserError(
                    f"`{name}` must be positive seconds or None, not {value!r}.", field=name
                )
        if retention <= 0:
            raise UserError(
                f"`retention` must be positive seconds, not {retention!r}.", field="retention"
            )
        for key, limit in (limits or {}).items():
            Orchestrator._check_limit(key, limit)

    @staticmethod
    def _check_limit(key: str, limit: int) -> None:
        if not key:
            raise UserError(
                f"A limit's key must be a non-empty string, not {key!r}.", field="limits"
            )
        value: object = limit  # callers may pass anything at run time
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise UserError(
                f"The limit of key {key!r} must be a whole number of at least 1, not {limit!r}.",
                field=f"limits.{key}",
            )

    # -- lifecycle ------------------------------------------------------------------------

    async def __aenter__(self) -> Orchestrator:
        if self._state is not _State.NEW:
            raise Closed(
                f"Cannot open an `Orchestrator` that is {self._state.value}; create a new one."
            )
        async with contextlib.AsyncExitStack() as stack:
            await self._store.open()
            stack.push_async_callback(self._store.aclose)
            await anyio.to_thread.run_sync(self._engine.load, self._store.backend)
            self._tg = await stack.enter_async_context(anyio.create_task_group())
            await self._tg.start(self._store.run)
            await self._tg.start(self._engine.run)
            self._stack = stack.pop_all()
        self._state = _State.OPEN
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Shut down gracefully, then close the store.

        Stops admitting, lets running tasks finish for `shutdown_grace` seconds, then stops the
        rest (recorded `interrupted`, or queued again if attempts remain).

        Cancellation: shielded; returns once everything is stopped and stored.
        """
        if self._state is not _State.OPEN:
            return
        self._state = _State.CLOSING
        with anyio.CancelScope(shield=True):
            await self._engine.shutdown(self._shutdown_grace)
            self._store.stop()
            if self._pool is not None:
                await self._pool.aclose()
            for runner in self._runners.values():
                close = getattr(runner, "aclose", None)
                if callable(close):
                    await close()
            self._bus.close()
        assert self._stack is not None
        try:
            await self._stack.aclose()  # waits for the store writer to drain, then closes it
        finally:
            self._state = _State.CLOSED

    def session(self, name: str, *, owner: str | None = None, admin: bool = True) -> Session:
        """One session's tasks (`Tasks`): `orch.session("me").submit(...)`.

        Args:
            name: The session name.
            owner: The principal it belongs to (the daemon's callers); stored as `owner/name`.
            admin: Whether it may change limits (`set_limit`).
        """
        return Session(self, name, owner=owner, admin=admin)

    def _get_pool(self) -> WorkerPool:
        if self._pool is None:
            self._pool = WorkerPool(max_workers=self._process_workers)
        return self._pool

    def _check_open(self, action: str) -> None:
        if self._state is _State.OPEN:
            return
        hint = {
            _State.NEW: "enter it first (`async with Orchestrator(...) as orch:`)",
            _State.CLOSING: "it is shutting down",
            _State.CLOSED: "it is closed; open a new one",
        }[self._state]
        raise Closed(f"Cannot {action} with an `Orchestrator` that is {self._state.value}: {hint}.")

    # -- handlers -------------------------------------------------------------------------

    def handler(self, name: str, *, isolation: Isolation = "thread") -> Callable[[F], F]:
        """Register the decorated function as the handler `name`.

        The handler is called as `fn(ctx, **params)`; `async def` handlers run on the event
        loop, plain ones in a thread (or a worker process with `isolation="process"`).
        """

        def register(fn: F) -> F:
            self.register_handler(name, fn, isolation=isolation)
            return fn

        return register

    def register_handler(
        self, name: str, fn: Callable[..., object], *, isolation: Isolation = "thread"
    ) -> None:
        """Register `fn` as the handler `name` (see `handler`)."""
        if not name or len(name) > 200:
            raise UserError(f"A handler name must be 1-200 characters, not {name!r}.", field="name")
        if isolation not in ("thread", "process"):
            raise UserError(
                f"`isolation` must be 'thread' or 'process', not {isolation!r}.", field="isolation"
            )
        self._handlers[name] = Handler(name=name, fn=fn, isolation=isolation)
        self._engine.release_held(name)

    def _publish(self, committed: list[Committed]) -> None:
        """Hand committed events to live subscribers (made into records only if there are any)."""
        if committed and self._bus.listening:
            self._bus.publish([c.event() for c in committed])

    # -- submitting -----------------------------------------------------------------------

    async def submit(
        self,
        spec: TaskSpec,
        *,
        session: str,
        priority: int = 5,
        keys: Sequence[str] | None = None,
        timeout: float | None = None,
        ttl: float | None = None,
        stall_timeout: float | None = None,
        max_attempts: int = 1,
        label: str | None = None,
        description: str | None = None,
        group: str | None = None,
        parent: str | None = None,
        depends_on: Sequence[str] = (),
        on_progress: Callback | None = None,
        on_done: Callback | None = None,
    ) -> Task:
        """Store a task and queue it; returns its record at once (state `queued`).

        Args:
            spec: What to run: `outrider.shell(...)` or `outrider.call(...)`.
            session: The owner; only this session can see or touch the task.
            priority: 0-10, 10 first; FIFO within a priority.
            keys: Concurrency keys (default from the kind: `shell`, `handler:<name>`).
            timeout: Seconds one attempt may run.
            ttl: Seconds since submission after which the task ends `timed_out`.
            stall_timeout: Seconds a running task may go without output or progress.
            max_attempts: Attempts for failures the runner marks retryable.
            label: A short name for tables and notices.
            description: What the task is for (carried into its completion event).
            group: A batch name; `group.completed` summarises it when its last task ends.
            parent: The task that spawned this one; cancelling the parent cancels it.
            depends_on: Tasks of this session that must succeed before this one starts.
            on_progress: Called with the task after each stored progress report.
            on_done: Called with the task once it ended.

        Raises:
            UserError: Invalid input; the message names the field. Nothing was stored.
            QueueFull: `max_queued` tasks are waiting already. Nothing was stored.

        Cancellation: the store write and queueing are shielded; once it is written, the task
        is queued even if the caller is cancelled.
        """
        self._check_open("submit tasks")
        item = submit_item(spec, {
            "priority": priority, "keys": keys, "timeout": timeout, "ttl": ttl,
            "stall_timeout": stall_timeout, "max_attempts": max_attempts, "label": label,
            "description": description, "group": group, "parent": parent,
            "depends_on": depends_on,
        })  # fmt: skip
        (result,) = await self.submit_items(
            [item], session=session, on_progress=on_progress, on_done=on_done
        )
        if isinstance(result, SubmitError):
            raise submit_error(result, self._engine.max_queued)
        return result

    async def submit_many(
        self,
        items: Iterable[SubmitItem | JsonValue],
        *,
        session: str,
        group: str | None = None,
    ) -> list[Task | SubmitError]:
        """Store many tasks; each item is validated and stored on its own.

        Args:
            items: `SubmitItem`s, or dicts of the same fields (`{"spec": {...}, "priority": 7}`).
            session: The owner of every task.
            group: A batch name applied to items that name none.

        Returns:
            One entry per item, in order: the stored `Task`, or a `SubmitError` naming the item
            and field. Bad items never stop good ones.
        """
        self._check_open("submit tasks")
        parsed: list[SubmitItem | SubmitError] = []
        for index, raw in enumerate(items):
            try:
                item = raw if isinstance(raw, SubmitItem) else SubmitItem.model_validate(raw)
                if group is not None and item.group is None:
                    item = item.model_copy(update={"group": group})
                parsed.append(item)
            except ValidationError as exc:
                err = user_error(exc.errors(), subject=f"item {index}")
                parsed.append(SubmitError(index=index, field=err.field, message=str(err)))
        return await self.submit_items(parsed, session=session)

    async def submit_items(
        self,
        items: Sequence[SubmitItem | SubmitError],
        *,
        session: str,
        on_progress: Callback | None = None,
        on_done: Callback | None = None,
        retry_of: Mapping[int, str] | None = None,
    ) -> list[Task | SubmitError]:
        """Store validated items (errors pass through with their index); see `submit_many`.

        `retry_of` links the item at an index to the ended task it submits again.
        """
        if not session:
            raise UserError(
                f"`session` must be a non-empty string, not {session!r}.", field="session"
            )
        results: list[Task | SubmitError | None] = [None] * len(items)
        refs = {r for it in items if isinstance(it, SubmitItem)
                for r in (*it.depends_on, *((it.parent,) if it.parent else ()))}  # fmt: skip
        known = await self._visible_many(refs, session) if refs else {}
        room = self._engine.max_queued - self._engine.queued_count
        new: list[NewTask] = []
        slots: list[int] = []
        doomed: dict[str, str] = {}
        created_at = datetime.fromtimestamp(self._clock.wall(), UTC)
        for index, item in enumerate(items):
            if isinstance(item, SubmitError):
                results[index] = item.model_copy(update={"index": index})
                continue
            spec_json = item.spec.model_dump_json()  # stored as it is, serialised once
            problem = self._check_item(item, spec_json, known)
            if problem is not None:
                results[index] = problem.model_copy(update={"index": index})
                continue
            if room <= 0:
                results[index] = SubmitError(
                    index=index, field=None, message=str(QueueFull(self._engine.max_queued)),
                    type="QueueFull",
                )  # fmt: skip
                continue
            room -= 1
            runner = self._runners[item.spec.kind]
            task = _NEW_TASK.model_copy(  # every field was validated in `item`
                update={
                    "id": new_task_id(), "session": session, "created_at": created_at,
                    "spec": item.spec, "priority": item.priority,
                    "keys": item.keys or runner.default_keys(item.spec), "label": item.label,
                    "description": item.description, "group": item.group,
                    "parent": item.parent, "depends_on": item.depends_on,
                    "timeout": item.timeout if item.timeout is not None
                    else self._default_timeout,
                    "ttl": item.ttl if item.ttl is not None else self._default_ttl,
                    "stall_timeout": item.stall_timeout, "max_attempts": item.max_attempts,
                    "retry_of": (retry_of or {}).get(index),
                }
            )  # fmt: skip
            failed_dep = next(
                (d for d in item.depends_on
                 if known[d].state.terminal and known[d].state is not TaskState.SUCCEEDED),
                None,
            )  # fmt: skip
            if failed_dep is not None:
                doomed[task.id] = f"its dependency {failed_dep} ended {known[failed_dep].state}"
            new.append(NewTask(task, spec_json, on_progress=on_progress, on_done=on_done))
            slots.append(index)
        if new:
            stored = await self._engine.submit(new)
            for index, outcome in zip(slots, stored, strict=True):
                results[index] = (
                    outcome
                    if isinstance(outcome, Task)
                    else SubmitError(
                        index=index,
                        field=None,
                        message=str(outcome),
                        type=type(outcome).__name__,
                    )
                )
        for task_id, message in doomed.items():
            await self._engine.cancel(task_id, "dependency", message)
        final = [r for r in results if r is not None]
        assert len(final) == len(items)
        if doomed:
            refreshed = await self._store.read(lambda b: b.get_many(doomed))
            final = [refreshed.get(r.id, r) if isinstance(r, Task) else r for r in final]
        placed = iter(self._decorate([r for r in final if isinstance(r, Task)], new=True))
        return [next(placed) if isinstance(r, Task) else r for r in final]

    def _check_item(
        self, item: SubmitItem, spec_json: str, known: Mapping[str, Task]
    ) -> SubmitError | None:
        spec = item.spec
        if len(spec_json.encode()) > MAX_PAYLOAD_BYTES:
            return SubmitError(
                index=0, field="spec",
                message=f"Invalid `spec`: it is larger than {MAX_PAYLOAD_BYTES} bytes as JSON; "
                "pass large inputs as files and their paths.",
            )  # fmt: skip
        if spec.kind not in self._runners:
            return SubmitError(
                index=0, field="spec.kind", message=f"Invalid `spec.kind`: unknown {spec.kind!r}."
            )
        if spec.kind == "handler" and spec.handler not in self._handlers:
            names = ", ".join(sorted(self._handlers)) or "none are registered"
            return SubmitError(
                index=0, field="spec.handler",
                message=f"Invalid `spec.handler`: unknown handler {spec.handler!r}; "
                f"registered: {names}.",
            )  # fmt: skip
        for dep in item.depends_on:
            if dep not in known:
                return SubmitError(
                    index=0, field="depends_on",
                    message=f"Invalid `depends_on`: no task {dep!r} in this session.",
                )  # fmt: skip
        if item.parent is not None and item.parent not in known:
            return SubmitError(
                index=0, field="parent",
                message=f"Invalid `parent`: no task {item.parent!r} in this session.",
            )  # fmt: skip
        return None

    # -- reading --------------------------------------------------------------------------

    async def _visible_many(self, task_ids: Iterable[str], session: str | None) -> dict[str, Task]:
        ids = list(task_ids)
        found = await self._store.read(lambda b: b.get_many(ids))
        return {i: t for i, t in found.items() if session is None or t.session == session}

    def _decorate(self, tasks: list[Task], *, new: bool = False) -> list[Task]:
        """Queued tasks with their `position` and `waiting_for`.

        `new`: the tasks were just submitted, the last of their priority (a single one is
        placed without looking at the rest of the queue).
        """
        engine = self._engine
        queued = {t.id for t in tasks if t.state is TaskState.QUEUED and t.id in engine.live}
        if not queued:
            return tasks
        positions: Mapping[str, int | None]
        if new and len(queued) == 1:
            (only,) = queued
            positions = {only: engine.queue.position_of_newest(only)}
        else:
            positions = engine.queue.positions(queued)
        now = self._clock.now()
        return [
            t.model_copy(update={"position": positions.get(t.id),
                                 "waiting_for": engine.waiting_for(t.id, now)})
            if t.state is TaskState.QUEUED and t.id in engine.live
            else t
            for t in tasks
        ]  # fmt: skip

    async def get(self, task_id: str, *, session: str | None) -> Task:
        """The task's current record.

        Raises:
            TaskNotFound: No such task in `session` (the same for another session's id).
        """
        self._check_open("read tasks")
        task = await self._store.read(lambda b: b.get(task_id))
        if task is None or (session is not None and task.session != session):
            raise TaskNotFound(task_id)
        return self._decorate([task])[0]

    async def list(
        self,
        *,
        session: str | None,
        states: Iterable[TaskState | str] | None = None,
        group: str | None = None,
        limit: int | None = None,
    ) -> builtins.list[Task]:
        """The session's tasks in submission order, optionally filtered by state and group."""
        self._check_open("list tasks")
        wanted = None
        if states is not None:
            try:
                wanted = [str(TaskState(s)) for s in states]
            except ValueError:
                allowed = ", ".join(s.value for s in TaskState)
                raise UserError(
                    f"Invalid `states`: {list(states)!r}; allowed: {allowed}.", field="states"
                ) from None
        tasks = await self._store.read(
            lambda b: b.query(session=session, states=wanted, group=group, limit=limit)
        )
        return self._decorate(tasks)

    async def wait(
        self,
        task_ids: Sequence[str],
        *,
        session: str | None,
        timeout: float | None = None,
        return_when: Literal["all", "any"] = "all",
    ) -> builtins.list[Task]:
        """Wait until all (or any) of the tasks ended, or `timeout` seconds passed.

        Returns:
            The tasks' records in the order asked; on timeout some may still be unfinished.

        Raises:
            TaskNotFound: An id is not a task of `session`.

        Cancellation: safe; nothing changes when the wait is cancelled.
        """
        self._check_open("wait for tasks")
        if return_when not in ("all", "any"):
            raise UserError(
                f"`return_when` must be 'all' or 'any', not {return_when!r}.", field="return_when"
            )
        ids = list(dict.fromkeys(task_ids))
        # Unfinished tasks are known in memory; only the others are looked up in the store.
        pending = {
            i: live
            for i in ids
            if (live := self._engine.live.get(i)) is not None
            and (session is None or live.task.session == session)
        }
        found = await self._visible_many([i for i in ids if i not in pending], session)
        for task_id in ids:
            if task_id not in found and task_id not in pending:
                raise TaskNotFound(task_id)
        with anyio.move_on_after(timeout):
            if return_when == "all":
                for live in pending.values():
                    if not live.finished:  # a finished one needs no event and no checkpoint
                        await live.done.wait()
            elif pending and len(pending) == len(ids):
                async with anyio.create_task_group() as tg:
                    for live in pending.values():
                        tg.start_soon(self._first_done, live.done, tg.cancel_scope)
        # A finished task's record in memory is the one its end stored.
        found.update({i: live.task for i, live in pending.items() if live.finished})
        if still := [i for i in ids if i not in found]:
            found.update(await self._visible_many(still, session))
        return self._decorate([found[i] for i in ids if i in found])

    @staticmethod
    async def _first_done(done: anyio.Event, scope: anyio.CancelScope) -> None:
        await done.wait()
        scope.cancel()

    async def result(
        self, task_id: str, *, session: str | None, timeout: float | None = None
    ) -> JsonValue:
        """Wait for the task and return its result.

        Raises:
            TaskFailed: It failed. TaskCancelled: it was cancelled. TaskTimedOut: it timed out.
            TimeoutError: `timeout` passed first.
        """
        (task,) = await self.wait([task_id], session=session, timeout=timeout)
        return task_outcome(task, timeout)

    async def tail(self, task_id: str, *, session: str | None, lines: int = 50) -> str:
        """The last `lines` lines of the task's output (also while it runs)."""
        await self.get(task_id, session=session)
        log_dir = self._store.log_dir
        return await anyio.to_thread.run_sync(lambda: TaskLog.read(log_dir, task_id, lines=lines))

    async def transcript(self, task_id: str, *, session: str | None) -> JsonValue:
        """An agent task's transcript (model, attempts, messages), or None if it has none.

        Raises:
            TaskNotFound: No such task in `session`.
        """
        await self.get(task_id, session=session)
        path = transcript_path(self._store.log_dir, task_id)

        def read() -> JsonValue:
            try:
                return json.loads(path.read_bytes())  # type: ignore[no-any-return]
            except FileNotFoundError:
                return None

        return await anyio.to_thread.run_sync(read)

    def status(self) -> Status:
        """Counts per state, and per key: running, limit and queued."""
        engine = self._engine
        queue = engine.queue
        running = engine.running_count
        queued = engine.queued_count
        states = {s: engine.terminal_counts.get(s, 0) for s in TaskState}
        states[TaskState.RUNNING] = running + engine.recovering_count
        states[TaskState.QUEUED] = queued
        keys = {
            key: KeyStatus(
                running=queue.running_on(key), limit=queue.limit(key), queued=queue.queued_on(key)
            )
            for key in sorted(queue.known_keys())
        }
        return Status(
            states=states,
            keys=keys,
            running=running,
            max_running=queue.max_running,
            queued=queued,
            max_queued=engine.max_queued,
            held=engine.resources.held(self._clock.now()),
            recovering=engine.recovering_count,
            store_error=self._store.write_problem,
        )

    def set_limit(self, key: str, limit: int) -> None:
        """Change a key's concurrency limit; takes effect at once for new starts."""
        self._check_limit(key, limit)
        self._engine.queue.set_limit(key, limit)
        self._engine.wake()

    # -- stopping -------------------------------------------------------------------------

    async def cancel(self, task_id: str, *, session: str | None) -> Task:
        """Cancel a task and the tasks whose `parent` it is; idempotent.

        A queued task ends `cancelled` at once; a running one is stopped (a shell command's
        process group gets SIGTERM, then SIGKILL after its grace period) and this returns once
        it has ended. An ended task is returned as it is.

        Raises:
            TaskNotFound: No such task in `session`.
        """
        task = await self.get(task_id, session=session)
        if not task.state.terminal or task.id in self._engine.live:
            await self._engine.cancel(task.id, "user", "cancelled by request")
        return await self.get(task_id, session=session)

    async def retry(self, task_id: str, *, session: str) -> Task:
        """Submit an ended task of `session` again, as a new task whose `retry_of` names it.

        The new task has the old one's spec and options, but no `depends_on` (those tasks have
        ended): it runs as soon as its keys allow.

        Raises:
            TaskNotFound: No such task in `session`.
            UserError: The task has not ended yet.
        """
        old = await self.get(task_id, session=session)
        if not old.state.terminal:
            raise UserError(
                f"Task {task_id!r} is {old.state}; only an ended task can be retried "
                "(cancel it first, or wait for it).",
                field="task_id",
            )
        item = SubmitItem(
            spec=old.spec, priority=old.priority, keys=old.keys, timeout=old.timeout,
            ttl=old.ttl, stall_timeout=old.stall_timeout, max_attempts=old.max_attempts,
            label=old.label, description=old.description, group=old.group, parent=old.parent,
        )  # fmt: skip
        (result,) = await self.submit_items([item], session=session, retry_of={0: old.id})
        if isinstance(result, SubmitError):
            raise submit_error(result, self._engine.max_queued)
        return result

    async def cancel_session(self, session: str) -> builtins.list[Task]:
        """Cancel every unfinished task of `session`; returns them as they ended."""
        self._check_open("cancel tasks")
        ids = [i for i, live in self._engine.live.items() if live.task.session == session]
        async with anyio.create_task_group() as tg:
            for task_id in ids:
                tg.start_soon(self._engine.cancel, task_id, "user", "its session was cancelled")
        found = await self._visible_many(ids, session)
        return [found[i] for i in ids if i in found]

    async def sweep(self) -> int:
        """Delete finished tasks older than `retention` now; returns how many."""
        self._check_open("sweep")
        return await self._engine.sweep()

    # -- notices --------------------------------------------------------------------------

    async def notices(
        self, *, session: str, limit: int = 100, after: int | None = None
    ) -> builtins.list[Notice]:
        """The session's completion notices not yet acknowledged, oldest first.

        Reading does not acknowledge: pass the last notice's `seq` to `ack_notices` once the
        notices reached their reader. Unacknowledged notices survive restarts. With `after`,
        the notices with `seq > after` instead, acknowledged or not (a reader's view).
        """
        self._check_open("read notices")
        if limit < 1:
            raise UserError(f"`limit` must be at least 1, not {limit!r}.", field="limit")
        if after is None:
            events = await self._store.read(lambda b: b.notice_events(session, limit))
        else:
            events = await self._store.read(
                lambda b: b.events(session=session, after=after, limit=limit, notices=True)
            )
        return notices_from_events(events)

    async def notice_cursor(self, *, session: str) -> int:
        """The highest acknowledged notice `seq` of the session (0 if none)."""
        self._check_open("read notices")
        return await self._store.read(lambda b: b.notice_cursor(session))

    async def ack_notices(self, *, session: str, up_to: int) -> None:
        """Acknowledge the session's notices with `seq <= up_to`; idempotent."""
        self._check_open("acknowledge notices")
        if not 0 <= up_to <= MAX_SEQ:
            raise UserError(
                f"`up_to` must be a seq (0 to {MAX_SEQ}), not {up_to!r}.", field="up_to"
            )
        await self._store.commit([SetNoticeCursor(session, up_to)])

    # -- events ---------------------------------------------------------------------------

    def events(
        self, *, session: str | None, after: int = 0, follow: bool = True, prefix: bool = False
    ) -> AsyncIterator[Event]:
        """The durable event stream of `session`, from `seq > after`, then live.

        Resumable: pass the last `seq` seen as `after`. With `follow=False` it ends after the
        stored events. A consumer that falls behind is resynced from the store; no event is
        lost or repeated. With `prefix=True` it is the stream of every session whose name
        starts with `session` (a trusted caller's view of several sessions).
        """
        self._check_open("read events")
        return self._events(session, after, follow, prefix)

    async def follow_notices(self, *, session: str, after: int = 0) -> AsyncIterator[Notice]:
        """The session's completion notices as they happen, oldest first.

        First the unacknowledged ones, then each new one; resume by passing the last `seq`
        seen as `after`. A consumer folds a group's task notices into its summary itself
        (`Notice.group`); nothing is acknowledged by reading.
        """
        self._check_open("read notices")
        cursor = await self._store.read(lambda b: b.notice_cursor(session))
        async for event in self._events(session, max(after, cursor), True, False, notices=True):
            yield notice_of(event)

    async def _events(
        self, session: str | None, after: int, follow: bool, prefix: bool, *, notices: bool = False
    ) -> AsyncIterator[Event]:
        last = after
        read = functools.partial(_read_events, session=session, prefix=prefix, notices=notices)
        while True:
            sub = self._bus.subscribe(session, prefix=prefix)
            try:
                while True:
                    batch = await self._store.read(functools.partial(read, after=last))
                    for event in batch:
                        yield event
                        last = event.seq
                    if len(batch) < 500:
                        break
                if not follow:
                    return
                async for event in sub.receive:
                    if event.seq <= last or (notices and event.type not in NOTICE_EVENT_TYPES):
                        continue
                    yield event
                    last = event.seq
                if not sub.lagged:
                    return
            finally:
                sub.close()
