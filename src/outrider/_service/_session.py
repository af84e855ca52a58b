"""`Session`: one session's tasks on an in-process Orchestrator (the `Tasks` protocol).

A session belongs to an owner: the embedding program (no owner) or, in the daemon, the principal
whose token was verified. Tasks are stored under `owner/name`, so one owner can never name
another's tasks, and records and events leave with the bare session name. A task of another
session is reported exactly like an unknown one.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Literal, final, get_args

import anyio
import anyio.to_thread

from .._core._notices import notice_of, notices_block, notices_from_events
from .._store._logs import TaskLog
from .._store._sqlite import SetNoticeCursor
from .._store._transcripts import read_transcript, transcript_path
from .._types._api import check_session_name, submit_error, submit_item, task_outcome
from .._types._errors import NotAllowed, StoreUnavailable, TaskNotFound, UserError
from .._types._events import EventType
from .._types._task import MAX_SEQ, NoticeWait, SubmitError, SubmitItem, Task, TaskState
from .._types._worktrees import MERGE_HOWS
from ._submit import parse_items, submit_items

if TYPE_CHECKING:
    import builtins
    from collections.abc import AsyncIterator, Iterable, Sequence

    from pydantic import JsonValue
    from typing_extensions import Unpack

    from .._engine._live import LiveTask
    from .._types._api import SubmitOptions
    from .._types._events import Event
    from .._types._task import KeyStatus, Notice, SessionSummary, Status, TaskSpec
    from .._types._worktrees import MergeHow, MergeResult, Worktree
    from ._core import Core
    from ._orchestrator import Orchestrator

__all__ = ["Session"]

Callback = Callable[[Task], object]

_EVENT_TYPES = frozenset(get_args(EventType))


@final
class Session:
    """One session of an Orchestrator; made by `Orchestrator.session(name)`.

    Args:
        orch: The orchestrator.
        core: What its sessions act on.
        name: The session name the caller sees.
        owner: The principal it belongs to (the daemon's callers), or None (the embedding program).
        admin: Whether `set_limit` may change the orchestrator's limits.
    """

    def __init__(
        self,
        orch: Orchestrator,
        core: Core,
        name: str,
        *,
        owner: str | None = None,
        admin: bool = True,
    ) -> None:
        if not name:
            raise UserError(f"A session name must be non-empty, not {name!r}.", field="session")
        self._orch = orch
        self._core = core
        self._name = name
        self._stored = name if owner is None else f"{owner}/{name}"
        self._admin = admin

    @property
    def session(self) -> str:
        """The session name (without its owner)."""
        return self._name

    def _out(self, task: Task) -> Task:
        if self._stored == self._name:
            return task
        return task.model_copy(update={"session": self._name})

    # -- submitting -----------------------------------------------------------------------

    async def submit(
        self,
        spec: TaskSpec,
        /,
        *,
        on_progress: Callback | None = None,
        on_done: Callback | None = None,
        **options: Unpack[SubmitOptions],
    ) -> Task:
        """Store one task and queue it; see `Tasks.submit`.

        `on_progress` is called with the task after each stored progress report, `on_done`
        once it ended (in process only).

        Cancellation: once stored, the task is queued even if the caller is cancelled.
        """
        item = submit_item(spec, options)
        (result,) = await submit_items(
            self._core, [item], session=self._stored, on_progress=on_progress, on_done=on_done
        )
        if isinstance(result, SubmitError):
            raise submit_error(result, self._core.engine.max_queued)
        return self._out(result)

    async def submit_many(
        self,
        items: Iterable[SubmitItem | JsonValue],
        /,
        *,
        group: str | None = None,
    ) -> builtins.list[Task | SubmitError]:
        """Store many tasks, each validated and stored on its own; see `Tasks.submit_many`."""
        parsed = parse_items(items, group)
        results = await submit_items(self._core, parsed, session=self._stored)
        refused = [r for r in results if isinstance(r, SubmitError)]
        if refused and len(refused) == len(results) and refused[0].type == "StoreUnavailable":
            raise StoreUnavailable(refused[0].message)  # nothing stored: the caller retries
        return [self._out(r) if isinstance(r, Task) else r for r in results]

    async def run(
        self, spec: TaskSpec, /, *, wait: float | None = None, **options: Unpack[SubmitOptions]
    ) -> JsonValue:
        """Submit and wait for the result; see `Tasks.run`."""
        task = await self.submit(spec, **options)
        return await self.result(task.id, timeout=wait)

    async def retry(self, task_id: str) -> Task:
        """Submit an ended task again, as a new task whose `retry_of` names it.

        The new task has the old one's spec and options, but no `depends_on` (those tasks have
        ended): it runs as soon as its keys allow.
        """
        old = await self.get(task_id)
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
        (result,) = await submit_items(
            self._core, [item], session=self._stored, retry_of={0: old.id}
        )
        if isinstance(result, SubmitError):
            raise submit_error(result, self._core.engine.max_queued)
        return self._out(result)

    # -- worktrees ------------------------------------------------------------------------

    async def worktrees(self) -> list[Worktree]:
        """The worktrees of the session's writing tasks, oldest first."""
        self._core.check_open("list worktrees")
        return [self._out_worktree(w) for w in await self._core.worktrees.list(self._stored)]

    async def prune_worktrees(self) -> list[Worktree]:
        """Apply the cleanup rules to the session's worktrees now (see `Tasks`)."""
        swept = await self._orch.sweep_worktrees(self._stored)
        return [self._out_worktree(w) for w in swept]

    async def merge_task(self, task_id: str, *, how: MergeHow = "apply") -> MergeResult:
        """Bring an ended task's work into its parent's checkout (see `Tasks.merge_task`)."""
        self._core.check_open("merge tasks")
        if how not in MERGE_HOWS:
            raise UserError(
                f"`how` must be one of {', '.join(MERGE_HOWS)}, not {how!r}.", field="how"
            )
        task = await self.get(task_id)
        result = await self._core.worktrees.merge(task_id, self._stored, how, task.name)
        if result.worktree is None:
            return result
        return result.model_copy(update={"worktree": self._out_worktree(result.worktree)})

    async def discard_task(self, task_id: str) -> Worktree:
        """Give up an ended task's work (see `Tasks.discard_task`)."""
        self._core.check_open("discard tasks")
        await self.get(task_id)
        return self._out_worktree(await self._core.worktrees.discard(task_id, self._stored))

    def _out_worktree(self, worktree: Worktree) -> Worktree:
        if self._stored == self._name:
            return worktree
        return worktree.model_copy(update={"session": self._name})

    # -- reading --------------------------------------------------------------------------

    async def get(self, task_id: str) -> Task:
        """One task of the session."""
        self._core.check_open("read tasks")
        return self._out(await self._core.get(task_id, self._stored))

    async def list(
        self,
        *,
        states: Iterable[str] | None = None,
        group: str | None = None,
        limit: int | None = None,
    ) -> builtins.list[Task]:
        """The session's tasks in submission order, filtered."""
        self._core.check_open("list tasks")
        wanted = None
        if states is not None:
            try:
                wanted = [str(TaskState(s)) for s in states]
            except ValueError:
                allowed = ", ".join(s.value for s in TaskState)
                raise UserError(
                    f"Invalid `states`: {list(states)!r}; allowed: {allowed}.", field="states"
                ) from None
        tasks = await self._core.store.query(
            session=self._stored, states=wanted, group=group, limit=limit
        )
        return [self._out(t) for t in self._core.decorate(tasks)]

    async def wait(
        self,
        task_ids: Sequence[str],
        *,
        timeout: float | None = None,
        return_when: Literal["all", "any"] = "all",
    ) -> builtins.list[Task]:
        """The tasks once all (or any) ended, or as they are after `timeout` seconds.

        Raises:
            TaskNotFound: An id is not a task of this session.

        Cancellation: safe; nothing changes when the wait is cancelled.
        """
        core = self._core
        core.check_open("wait for tasks")
        if return_when not in ("all", "any"):
            raise UserError(
                f"`return_when` must be 'all' or 'any', not {return_when!r}.", field="return_when"
            )
        ids = list(dict.fromkeys(task_ids))
        # Unfinished tasks are known in memory; only the others are looked up in the store.
        pending = {
            i: live
            for i in ids
            if (live := core.engine.live.get(i)) is not None and live.task.session == self._stored
        }
        found = await core.visible([i for i in ids if i not in pending], self._stored)
        if missing := [i for i in ids if i not in found and i not in pending]:
            raise TaskNotFound(missing[0])
        with anyio.move_on_after(timeout):
            await _until_done(pending.values(), ids, return_when)
        # A finished task's record in memory is the one its end stored.
        found.update({i: live.task for i, live in pending.items() if live.finished})
        if still := [i for i in ids if i not in found]:
            found.update(await core.visible(still, self._stored))
        return [self._out(t) for t in core.decorate([found[i] for i in ids if i in found])]

    async def result(self, task_id: str, *, timeout: float | None = None) -> JsonValue:
        """Wait for the task and return its result; see `Tasks.result`."""
        (task,) = await self.wait([task_id], timeout=timeout)
        return task_outcome(task, timeout)

    async def tail(self, task_id: str, *, lines: int = 50) -> str:
        """The last `lines` lines of the task's output (also while it runs)."""
        live = self._core.engine.live.get(task_id)
        if live is None or live.task.session != self._stored:
            await self.get(task_id)  # an unfinished task is known in memory
        log_dir = self._core.store.log_dir
        return await anyio.to_thread.run_sync(lambda: TaskLog.read(log_dir, task_id, lines=lines))

    async def transcript(self, task_id: str) -> JsonValue:
        """An agent task's transcript (models tried, every message), or None."""
        await self.get(task_id)
        path = transcript_path(self._core.store.log_dir, task_id)

        def read() -> JsonValue:
            data = read_transcript(path)
            return None if data is None else json.loads(data)

        return await anyio.to_thread.run_sync(read)

    async def status(self) -> Status:
        """The orchestrator's load (no task contents)."""
        return self._orch.status()

    async def set_limit(self, key: str, limit: int) -> KeyStatus:
        """Change a key's concurrency limit, for every session; see `Tasks.set_limit`."""
        if not self._admin:
            raise NotAllowed("Only the daemon's owner (the local token) may change limits.")
        self._orch.set_limit(key, limit)
        return self._orch.status().keys[key]

    # -- stopping -------------------------------------------------------------------------

    async def cancel(self, task_id: str) -> Task:
        """Cancel a task and the tasks whose `parent` it is; idempotent.

        A queued task ends `cancelled` at once; a running one is stopped (a shell command's
        process group gets SIGTERM, then SIGKILL after its grace period) and this returns once
        it has ended. An ended task is returned as it is.
        """
        task = await self.get(task_id)
        if not task.state.terminal or task.id in self._core.engine.live:
            await self._core.engine.cancel(task.id, "user", "cancelled by request")
        return await self.get(task_id)

    async def cancel_all(self) -> builtins.list[Task]:
        """Cancel every unfinished task of the session; returns them as they ended."""
        return [self._out(t) for t in await self._orch.cancel_session(self._stored)]

    # -- notices and events ---------------------------------------------------------------

    async def notices(
        self, *, limit: int = 100, reader: str | None = None
    ) -> builtins.list[Notice]:
        """The completion notices not yet acknowledged (or not yet received by `reader`).

        Reading does not acknowledge: pass the last notice's `seq` to `ack_notices` once the
        notices reached their reader. Unacknowledged notices survive restarts. With `reader`,
        the notices after that reader's cursor (see `_readers`).
        """
        self._core.check_open("read notices")
        if limit < 1:
            raise UserError(f"`limit` must be at least 1, not {limit!r}.", field="limit")
        store = self._core.store
        if reader is None:
            return notices_from_events(await store.notice_events(self._stored, limit))
        after = await self._reader_cursor(check_session_name(reader, field="reader"))
        events = await store.events(
            session=self._stored, after=after, limit=limit, prefix=False, notices=True
        )
        return notices_from_events(events)

    async def ack_notices(self, up_to: int, *, reader: str | None = None) -> None:
        """Acknowledge the notices with `seq <= up_to` (also as received by `reader`)."""
        self._core.check_open("acknowledge notices")
        if not 0 <= up_to <= MAX_SEQ:
            raise UserError(
                f"`up_to` must be a seq (0 to {MAX_SEQ}), not {up_to!r}.", field="up_to"
            )
        if reader is not None:
            check_session_name(reader, field="reader")
        await self._core.store.commit([SetNoticeCursor(self._stored, up_to)])
        if reader is not None:
            stored = await self._core.store.notice_cursor(self._stored)  # capped by the store
            self._core.readers.advance(self._stored, reader, min(up_to, stored))

    async def next_notices(self, *, timeout: float, reader: str | None = None) -> NoticeWait:
        """The next notices for `reader`, waiting up to `timeout` s; see `Tasks.next_notices`."""
        key = "" if reader is None else check_session_name(reader, field="reader")
        with self._core.readers.waiting(self._stored, key) as superseded:
            found = await self.notices(reader=reader)
            if not found and timeout > 0:
                with anyio.move_on_after(timeout):
                    async with anyio.create_task_group() as tg:
                        tg.start_soon(_cancel_when, superseded, tg.cancel_scope)
                        after = 0 if reader is None else await self._reader_cursor(reader)
                        async for _ in self.follow_notices(after=after):
                            break
                        tg.cancel_scope.cancel()
                if superseded.is_set():
                    return NoticeWait(notices=[], superseded=True)
                found = await self.notices(reader=reader)
        return NoticeWait(notices=found, text=notices_block(found), superseded=superseded.is_set())

    async def _reader_cursor(self, reader: str) -> int:
        """Where `reader` is: the session's acknowledgement cursor when first seen."""
        readers = self._core.readers
        cursor = readers.cursor(self._stored, reader)
        if cursor is None:
            cursor = await self._core.store.notice_cursor(self._stored)
            readers.advance(self._stored, reader, cursor)
        return cursor

    async def follow_notices(self, *, after: int = 0) -> AsyncIterator[Notice]:
        """The unacknowledged notices, then each new one as it happens (from `seq > after`).

        A consumer folds a group's task notices into its summary itself (`Notice.group`);
        nothing is acknowledged by reading.
        """
        self._core.check_open("read notices")
        cursor = await self._core.store.notice_cursor(self._stored)
        start = max(after, cursor)
        async for event in self._core.events(
            self._stored, start, follow=True, prefix=False, notices=True
        ):
            yield notice_of(event)

    async def events(
        self,
        *,
        after: int = 0,
        follow: bool = True,
        all_sessions: bool = False,
        task_id: str | None = None,
        types: Iterable[str] | None = None,
        watch: bool = True,
    ) -> AsyncIterator[Event]:
        """The session's durable event stream from `seq > after`, then live (if `follow`).

        `all_sessions`: every session of the same owner, each event naming its session.
        `task_id`: only that task's events; `types`: only events of these types. `watch`: see
        `Tasks.events`.

        Raises:
            TaskNotFound: `task_id` is not a task of this session.
            UserError: `types` names an unknown event type.
        """
        self._core.check_open("read events")
        wanted = None if types is None else _event_types(types)
        if task_id is not None:
            await self.get(task_id)  # another session's task is not found
        prefix = self._stored[: len(self._stored) - len(self._name)]
        async for event in self._core.events(
            prefix if all_sessions else self._stored, after, follow=follow,
            prefix=all_sessions, task_id=task_id, types=wanted, watch=watch,
        ):  # fmt: skip
            if prefix:
                event = event.model_copy(update={"session": event.session[len(prefix) :]})
            yield event

    async def sessions(self) -> builtins.list[SessionSummary]:
        """Every session of this one's owner, with its tasks per state; see `Tasks.sessions`."""
        self._core.check_open("list sessions")
        owner = self._stored[: len(self._stored) - len(self._name) - 1] or None
        summaries = await self._core.store.session_summaries(owner)
        if owner is None:
            return summaries
        cut = len(owner) + 1
        return [s.model_copy(update={"session": s.session[cut:]}) for s in summaries]


def _event_types(types: Iterable[str]) -> frozenset[str]:
    """The event types asked for, checked against the known ones."""
    wanted = frozenset(types)
    if unknown := sorted(wanted - _EVENT_TYPES):
        raise UserError(
            f"Invalid `types`: {unknown!r} are no event types; use "
            f"{', '.join(sorted(_EVENT_TYPES))}.",
            field="types",
        )
    return wanted


async def _until_done(pending: Iterable[LiveTask], ids: Sequence[str], mode: str) -> None:
    """Return once every one (`all`) or the first (`any`) of the pending tasks ended."""
    lives = list(pending)
    if mode == "all":
        for live in lives:
            if not live.finished:  # a finished one needs no event and no checkpoint
                await live.done.wait()
    elif lives and len(lives) == len(ids):
        async with anyio.create_task_group() as tg:
            for live in lives:
                tg.start_soon(_first_done, live.done, tg.cancel_scope)


async def _first_done(done: anyio.Event, scope: anyio.CancelScope) -> None:
    await done.wait()
    scope.cancel()


async def _cancel_when(event: anyio.Event, scope: anyio.CancelScope) -> None:
    await event.wait()
    scope.cancel()
