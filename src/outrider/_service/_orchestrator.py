"""Orchestrator: the one public entry point of the engine, and its composition root.

It composes the store (truth), the engine (memory), the event bus and the runners, owns the
task group in which the store writer, the engine and every task run, and offers what spans
sessions: handlers, limits, the load, retention. One session's tasks are reached through
`orch.session(name)` (`Session`, the `Tasks` protocol); a task of another session is reported
as not found.
"""

from __future__ import annotations

import contextlib
import random
from collections.abc import Callable, Mapping, Sequence
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar, final

import anyio
import anyio.to_thread

from .._core._bus import EventBus
from .._core._clock import Clock, SystemClock
from .._core._queue import ReadyQueue
from .._engine._engine import Engine
from .._engine._resources import ResourceGate
from .._executors._nodes import NodePool
from .._executors._protocol import Executed
from .._logging import configure_from_env, logger
from .._paths import data_dir
from .._store._store import Store
from .._types._api import submit_error, submit_item
from .._types._errors import Closed, OutriderError, UserError
from .._types._task import KeyStatus, NodeStatus, Status, SubmitError, TaskState
from .._worktrees._cleanup import reconcile, sweep
from .._worktrees._manager import Worktrees
from .._worktrees._runner import Isolating
from ..runners._cli_agent import CliAgentRunner
from ..runners._handler import Handler, HandlerRunner, Isolation
from ..runners._open_files import allow_open_files
from ..runners._protocol import WritingRunner
from ..runners._shell import ShellRunner
from ._core import Core
from ._readers import Readers
from ._session import Session
from ._settings import Settings
from ._submit import submit_items

if TYPE_CHECKING:
    import builtins
    import os
    from contextlib import AsyncExitStack
    from types import TracebackType

    from anyio.abc import TaskGroup

    from .._executors._protocol import Executor
    from .._store._sqlite import Committed
    from .._types._task import Task, TaskSpec
    from .._types._worktrees import Worktree
    from ..runners._protocol import Runner

__all__ = ["Orchestrator", "default_db_path"]

F = TypeVar("F", bound=Callable[..., object])


class _State(Enum):
    NEW = "new"
    OPEN = "open"
    CLOSING = "closing"
    CLOSED = "closed"


_SWEEP_EVERY = 3600.0
"""Seconds between sweeps of the worktrees."""


def default_db_path() -> Path:
    """The per-user store: `outrider.db` in the data dir (`$OUTRIDER_HOME`, else XDG)."""
    return data_dir() / "outrider.db"


@final
class Orchestrator:
    """Runs tasks in the background under limits, durably; scoped by session.

    Use as `async with Orchestrator(db, Settings(...)) as orch:`, then
    `orch.session("me").submit(...)`.

    Args:
        db: The SQLite file (default: the per-user data dir); `":memory:"` for a throwaway one.
        settings: Limits, bounds and timeouts (default: `Settings()`).
        runners: Extra runners by kind, added to (or replacing) the built-in `shell`,
            `handler` and `cli_agent`.
        executors: Where the attempts of a kind run, by kind (default: on this event loop;
            e.g. a `WorkerPool` for `agent` tasks). Each is opened with the orchestrator.
        clock: The time source (tests inject `outrider.testing.FakeClock`).
        rng: Randomness for retry jitter.
    """

    def __init__(
        self,
        db: str | os.PathLike[str] | None = None,
        settings: Settings | None = None,
        *,
        runners: Sequence[Runner] = (),
        executors: Mapping[str, Executor] | None = None,
        clock: Clock | None = None,
        rng: random.Random | None = None,
    ) -> None:
        configure_from_env()
        self.settings = settings = settings or Settings()
        self._db = str(db) if db is not None else str(default_db_path())
        self._clock: Clock = clock or SystemClock()
        self._bus = EventBus()
        self._store = Store(self._db, on_commit=self._publish)
        self._handlers: dict[str, Handler] = {}
        all_runners: list[Runner] = [
            ShellRunner(),
            HandlerRunner(self._handlers, workers=settings.process_workers),
            CliAgentRunner(),
            *runners,
        ]
        root = Path(settings.worktrees_dir) if settings.worktrees_dir else data_dir() / "worktrees"
        self._worktrees = Worktrees(
            self._store, root=root, configured=settings.isolation, wall=self._clock.wall,
            setup=settings.worktree_setup,
        )  # fmt: skip
        self._executors = dict(executors or {})
        executed = [Executed(r, self._executors[r.kind]) if r.kind in self._executors else r
                    for r in all_runners]  # fmt: skip
        self._runners: dict[str, Runner] = {
            r.kind: Isolating(r, self._worktrees) if isinstance(r, WritingRunner) else r
            for r in executed
        }
        self._engine = Engine(
            self._store,
            runners=self._runners,
            clock=self._clock,
            queue=ReadyQueue(
                max_running=settings.max_running, limits=settings.limits,
                default_limit=settings.default_limit,
            ),
            max_queued=settings.max_queued,
            retention=settings.retention,
            resources=ResourceGate(
                min_free_memory_mb=settings.min_free_memory_mb,
                max_cpu_percent=settings.max_cpu_percent,
            ),
            retry_backoff=settings.retry_backoff,
            rng=rng or random.Random(),
        )  # fmt: skip
        self._engine.handler_available = self._handlers.__contains__
        self._engine.watching = self._bus.watching
        self._engine.submit_child = self._submit_child
        if self._node_pools():
            self._engine.leftovers_on = self._leftovers_on
        self._core = Core(
            store=self._store, engine=self._engine, bus=self._bus, clock=self._clock,
            runners=self._runners, handlers=self._handlers, settings=settings,
            check_open=self._check_open, worktrees=self._worktrees, readers=Readers(),
        )  # fmt: skip
        self._operator_keys: set[str] = set(settings.limits)
        """Keys whose limit the operator set (`Settings.limits`, `set_limit`)."""
        self._state = _State.NEW
        self._sweeper = anyio.CancelScope()
        self._stack: AsyncExitStack | None = None
        self._tg: TaskGroup | None = None

    # -- lifecycle ------------------------------------------------------------------------

    async def __aenter__(self) -> Orchestrator:
        if self._state is not _State.NEW:
            raise Closed(
                f"Cannot open an `Orchestrator` that is {self._state.value}; create a new one."
            )
        allow_open_files()  # a few per running task: hundreds at once pass the usual 1,024
        async with contextlib.AsyncExitStack() as stack:
            await self._store.open()
            stack.push_async_callback(self._store.aclose)
            for runner in self._runners.values():  # left after the task group: after every run
                await stack.enter_async_context(runner.lifespan(self))
            for executor in {id(e): e for e in self._executors.values()}.values():
                await stack.enter_async_context(executor.lifespan(self))
            await anyio.to_thread.run_sync(self._engine.load, self._store.backend)
            self._ask_recovered_keys()
            self._tg = await stack.enter_async_context(anyio.create_task_group())
            await self._tg.start(self._store.run)
            await reconcile(self._worktrees)  # before a recovered task may run in one
            await self._tg.start(self._engine.run)
            self._tg.start_soon(self._sweep_worktrees_loop)
            self._stack = stack.pop_all()
        self._state = _State.OPEN
        return self

    def _ask_recovered_keys(self) -> None:
        """Ask the runners for the keys of the unfinished tasks the store held, as a submit does.

        So a runner sets those keys' limits (a model's concurrency, an agent's `limit`) before
        any of the tasks is offered a slot. Once per kind and set of keys.
        """
        asked: set[tuple[str, tuple[str, ...]]] = set()
        for live in self._engine.live.values():
            task = live.task
            runner = self._runners.get(task.spec.kind)
            if runner is None or (task.spec.kind, task.keys) in asked:
                continue
            asked.add((task.spec.kind, task.keys))
            try:
                runner.required_keys(task.spec)
            except Exception:  # a task it cannot read still runs (or fails) on its own
                logger.exception("%s: its runner could not say its keys", task.id)

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
            await self._engine.shutdown(self.settings.shutdown_grace)
            self._sweeper.cancel()
            self._store.stop()
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
        return Session(self, self._core, name, owner=owner, admin=admin)

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

    async def _submit_child(
        self, parent: Task, spec: TaskSpec, label: str | None, timeout: float | None
    ) -> Task:
        """Store a child of a running task, first in its priority (`RunContext.spawn`).

        Raises:
            UserError, QueueFull, StoreError: It was refused (nothing was stored).
        """
        item = submit_item(
            spec, {"parent": parent.id, "priority": 10, "timeout": timeout, "label": label}
        )
        (result,) = await submit_items(self._core, [item], session=parent.session)
        if isinstance(result, SubmitError):
            raise submit_error(result, self._engine.max_queued)
        return result

    def _publish(self, committed: list[Committed]) -> None:
        """Hand committed events to live subscribers (made into records only if there are any)."""
        if committed and self._bus.listening:
            self._bus.publish([c.event() for c in committed])

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
            nodes=self._nodes(),
        )

    def _node_pools(self) -> list[NodePool]:
        pools = {id(e): e for e in self._executors.values() if isinstance(e, NodePool)}
        return list(pools.values())

    def _nodes(self) -> list[NodeStatus]:
        return [
            NodeStatus(
                node_id=node.node_id, address=node.address, slots=node.slots, running=running,
                alive=node.alive, labels=dict(node.labels),
            )
            for pool in self._node_pools() for node, running in pool.nodes()
        ]  # fmt: skip

    async def _leftovers_on(self, node: str, markers: list[str], grace_period: float) -> bool:
        """A recovery asks the node pool that reaches `node` (see `Engine.leftovers_on`)."""
        for pool in self._node_pools():
            if await pool.stop_leftovers(node, markers, grace_period):
                return True
        return False

    def set_limit(self, key: str, limit: int) -> None:
        """Change a key's concurrency limit; takes effect at once for new starts.

        The key's limit is then the operator's, as one in `Settings.limits` is: what runners
        suggest for it (`suggest_limit`) no longer moves it.

        Raises:
            UserError: An empty key, or a limit that is not a whole number of at least 1.
        """
        _check_limit(key, limit)
        self._operator_keys.add(key)
        self._engine.queue.set_limit(key, limit)
        self._engine.wake()

    def suggest_limit(self, key: str, limit: int) -> None:
        """A runner's limit for `key` (`RunnerHost`), unless the operator set the key's limit.

        An agent's `limit`, a provider's `limit`, a model's concurrency as its provider
        throttles and recovers.
        """
        if key in self._operator_keys:
            return
        _check_limit(key, limit)
        self._engine.queue.set_limit(key, limit)
        self._engine.wake()

    def on_watch_change(self, callback: Callable[[], object]) -> Callable[[], None]:
        """Call `callback` whenever a live subscription starts or ends (`RunnerHost`)."""
        return self._bus.on_change(callback)

    # -- across sessions -----------------------------------------------------------------

    async def cancel_session(self, session: str) -> builtins.list[Task]:
        """Cancel every unfinished task of `session`; returns them as they ended."""
        self._check_open("cancel tasks")
        ids = [i for i, live in self._engine.live.items() if live.task.session == session]
        async with anyio.create_task_group() as tg:
            for task_id in ids:
                tg.start_soon(self._engine.cancel, task_id, "user", "its session was cancelled")
        found = await self._core.visible(ids, session)
        return [found[i] for i in ids if i in found]

    async def sweep(self) -> int:
        """Delete finished tasks older than `retention` now; returns how many."""
        self._check_open("sweep")
        return await self._engine.sweep()

    async def sweep_worktrees(self, session: str | None = None) -> builtins.list[Worktree]:
        """Apply the worktree cleanup rules now (see `docs/worktrees.md`); the ones changed."""
        self._check_open("sweep worktrees")
        return await sweep(
            self._worktrees, now=self._clock.wall(), retention=self.settings.worktree_retention,
            session=session,
        )  # fmt: skip

    async def _sweep_worktrees_loop(self) -> None:
        with self._sweeper:
            while True:
                try:
                    await self.sweep_worktrees()
                except OutriderError as exc:  # the store cannot write now: the next round will
                    logger.warning("the worktree sweep stopped: %s", exc)
                await self._clock.sleep_until(self._clock.now() + _SWEEP_EVERY)


def _check_limit(key: str, limit: int) -> None:
    if not key:
        raise UserError(f"A limit's key must be a non-empty string, not {key!r}.", field="key")
    value: object = limit  # callers may pass anything at run time
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise UserError(
            f"The limit of key {key!r} must be a whole number of at least 1, not {limit!r}.",
            field=f"limits.{key}",
        )
