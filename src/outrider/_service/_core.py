"""`Core`: the parts of one orchestrator its sessions act on, and the reads they share.

The Orchestrator composes it (store, engine, event bus, clock, runners, handlers, settings);
each `Session` holds it. Reads go to the store (the truth) and are decorated with what only
memory knows: a queued task's place in line and what it waits for. Event streams read the
store from a `seq`, then follow the bus; a subscriber that falls behind is resynced from the
store, so no event is lost or repeated.

Invariants:
- `get` of an unfinished task answers from the engine's record (`LiveTask.task`), on the
  loop, without the store: memory applies a change only once it is committed (write-ahead),
  so the record is the stored row, except that its progress and usage are the latest
  reported (stored within the report interval) and an attempt's node is noted as it is
  queued for the store.
- An ended task is read from the store, where its end is; the last `_ENDED_KEPT` read are
  kept and answered from memory (an ended task's row never changes until a sweep deletes it),
  all forgotten when a sweep starts or ends, and none kept from a read a sweep overlapped.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from .._types._errors import TaskNotFound
from .._types._events import NOTICE_TYPES
from .._types._task import TaskState

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable, Iterable, Mapping

    from .._core._bus import EventBus
    from .._core._clock import Clock
    from .._engine._engine import Engine
    from .._store._store import Store
    from .._types._events import Event
    from .._types._task import Task
    from .._worktrees._manager import Worktrees
    from ..runners._handler import Handler
    from ..runners._protocol import Runner
    from ._readers import Readers
    from ._settings import Settings

__all__ = ["Core"]

_PAGE = 500
"""Events read from the store at a time."""
_ENDED_KEPT = 256
"""Ended tasks kept in memory after a `get` read them (the least recently read go first)."""


@dataclass(eq=False, slots=True)
class Core:
    """What the sessions of one orchestrator act on."""

    store: Store
    engine: Engine
    bus: EventBus
    clock: Clock
    runners: Mapping[str, Runner]
    handlers: Mapping[str, Handler]
    settings: Settings
    check_open: Callable[[str], None]
    """Raises `Closed` (naming the action) unless the orchestrator is open."""
    worktrees: Worktrees
    readers: Readers
    """Who reads each session's notices, and where each reader is (`_readers`)."""
    _ended: OrderedDict[str, Task] = field(default_factory=OrderedDict, init=False)
    """Ended tasks `get` read, least recently read first (see the module docstring)."""
    _ended_sweeps: int = field(default=0, init=False)
    """`engine.sweeps` when `_ended` was last emptied."""

    async def visible(self, task_ids: Iterable[str], session: str) -> dict[str, Task]:
        """The tasks of `session` among `task_ids` (others are left out, like unknown ones)."""
        found = await self.store.get_many(task_ids)
        return {i: t for i, t in found.items() if t.session == session}

    async def get(self, task_id: str, session: str) -> Task:
        """One task of `session`, decorated.

        Raises:
            TaskNotFound: No such task in `session` (the same for another session's id).
        """
        live = self.engine.live.get(task_id)
        task = live.task if live is not None else await self._read_ended(task_id)
        if task is None or task.session != session:
            raise TaskNotFound(task_id)
        return self.decorate([task])[0]

    async def _read_ended(self, task_id: str) -> Task | None:
        """A task that is not unfinished in memory: kept if read lately, else from the store."""
        sweeps = self.engine.sweeps
        if sweeps != self._ended_sweeps:
            self._ended.clear()
            self._ended_sweeps = sweeps
        if (task := self._ended.get(task_id)) is not None:
            self._ended.move_to_end(task_id)
            return task
        task = await self.store.get(task_id)
        if task is not None and task.state.terminal and self.engine.sweeps == sweeps:
            self._ended[task_id] = task  # no sweep overlapped the read
            if len(self._ended) > _ENDED_KEPT:
                self._ended.popitem(last=False)
        return task

    def decorate(self, tasks: list[Task], *, new: bool = False) -> list[Task]:
        """Queued tasks with their `position` and `waiting_for`.

        `new`: the tasks were just submitted, the last of their priority (a single one is
        placed without looking at the rest of the queue).
        """
        engine = self.engine
        queued = {t.id for t in tasks if t.state is TaskState.QUEUED and t.id in engine.live}
        if not queued:
            return tasks
        positions: Mapping[str, int | None]
        if new and len(queued) == 1:
            (only,) = queued
            positions = {only: engine.queue.position_of_newest(only)}
        else:
            positions = engine.queue.positions(queued)
        now = self.clock.now()
        return [
            t.model_copy(update={"position": positions.get(t.id),
                                 "waiting_for": engine.waiting_for(t.id, now)})
            if t.id in queued
            else t
            for t in tasks
        ]  # fmt: skip

    async def events(
        self,
        session: str,
        after: int,
        *,
        follow: bool,
        prefix: bool,
        notices: bool = False,
        task_id: str | None = None,
        types: frozenset[str] | None = None,
        watch: bool = True,
    ) -> AsyncIterator[Event]:
        """The events of `session` (`prefix`: of every session starting so) from `seq > after`.

        `notices`: only the ending events, the ones that make completion notices. `task_id`:
        only that task's events (its session is not checked here); `types`: only these types.
        `watch`: a reader that follows output events live watches their tasks (see `EventBus`);
        without it, it takes their output as it comes.
        """
        last = after
        wanted = None if types is None else sorted(types)
        output = follow and watch and not notices and (types is None or "task.output" in types)
        while True:
            sub = self.bus.subscribe(session, prefix=prefix, output=output, task_id=task_id)
            try:
                while True:
                    batch = await self.store.events(
                        session=session, after=last, limit=_PAGE, prefix=prefix,
                        notices=notices, task_id=task_id, types=wanted,
                    )  # fmt: skip
                    for event in batch:
                        yield event
                        last = event.seq
                    if len(batch) < _PAGE:
                        break
                if not follow:
                    return
                async for event in sub.receive:
                    if event.seq <= last or not _wants(event, notices, task_id, types):
                        continue
                    yield event
                    last = event.seq
                if not sub.lagged:
                    return
            finally:
                sub.close()


def _wants(event: Event, notices: bool, task_id: str | None, types: frozenset[str] | None) -> bool:
    """Whether a live event passes a reader's filter."""
    if notices and event.type not in NOTICE_TYPES:
        return False
    if task_id is not None and event.task_id != task_id:
        return False
    return types is None or event.type in types
