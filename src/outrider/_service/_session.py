"""`Session`: one session's tasks on an in-process Orchestrator (the `Tasks` protocol).

A session belongs to an owner: the embedding program (no owner) or, in the daemon, the principal
whose token was verified. Tasks are stored under `owner/name`, so one owner can never name
another's tasks, and records and events leave with the bare session name.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Literal, final

import anyio

from .._core._notices import notices_block
from .._types._api import check_session_name, submit_error, submit_item
from .._types._errors import NotAllowed, StoreUnavailable, UserError
from .._types._task import NoticeWait, SubmitError, SubmitItem, Task

if TYPE_CHECKING:
    import builtins
    from collections.abc import AsyncIterator, Iterable, Sequence

    from pydantic import JsonValue
    from typing_extensions import Unpack

    from .._types._api import SubmitOptions
    from .._types._task import Event, KeyStatus, Notice, Status, TaskSpec
    from ._orchestrator import Orchestrator

__all__ = ["Session"]

Callback = Callable[[Task], object]


@final
class Session:
    """One session of an Orchestrator; made by `Orchestrator.session(name)`.

    Args:
        orch: The orchestrator.
        name: The session name the caller sees.
        owner: The principal it belongs to (the daemon's callers), or None (the embedding program).
        admin: Whether `set_limit` may change the orchestrator's limits.
    """

    def __init__(
        self, orch: Orchestrator, name: str, *, owner: str | None = None, admin: bool = True
    ) -> None:
        if not name:
            raise UserError(f"A session name must be non-empty, not {name!r}.", field="session")
        self._orch = orch
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
        """
        item = submit_item(spec, options)
        (result,) = await self._orch.submit_items(
            [item], session=self._stored, on_progress=on_progress, on_done=on_done
        )
        if isinstance(result, SubmitError):
            raise submit_error(result, self._orch.status().max_queued)
        return self._out(result)

    async def submit_many(
        self,
        items: Iterable[SubmitItem | JsonValue],
        /,
        *,
        group: str | None = None,
    ) -> builtins.list[Task | SubmitError]:
        """Store many tasks, each validated and stored on its own; see `Tasks.submit_many`."""
        results = await self._orch.submit_many(items, session=self._stored, group=group)
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
        """Submit an ended task again as a new task; see `Tasks.retry`."""
        return self._out(await self._orch.retry(task_id, session=self._stored))

    # -- reading --------------------------------------------------------------------------

    async def get(self, task_id: str) -> Task:
        """One task of the session."""
        return self._out(await self._orch.get(task_id, session=self._stored))

    async def list(
        self,
        *,
        states: Iterable[str] | None = None,
        group: str | None = None,
        limit: int | None = None,
    ) -> builtins.list[Task]:
        """The session's tasks in submission order."""
        tasks = await self._orch.list(session=self._stored, states=states, group=group, limit=limit)
        return [self._out(t) for t in tasks]

    async def wait(
        self,
        task_ids: Sequence[str],
        *,
        timeout: float | None = None,
        return_when: Literal["all", "any"] = "all",
    ) -> builtins.list[Task]:
        """Wait for the tasks; see `Tasks.wait`."""
        tasks = await self._orch.wait(
            task_ids, session=self._stored, timeout=timeout, return_when=return_when
        )
        return [self._out(t) for t in tasks]

    async def result(self, task_id: str, *, timeout: float | None = None) -> JsonValue:
        """Wait for the task and return its result; see `Tasks.result`."""
        return await self._orch.result(task_id, session=self._stored, timeout=timeout)

    async def tail(self, task_id: str, *, lines: int = 50) -> str:
        """The last `lines` lines of the task's output."""
        return await self._orch.tail(task_id, session=self._stored, lines=lines)

    async def transcript(self, task_id: str) -> JsonValue:
        """An agent task's transcript, or None."""
        return await self._orch.transcript(task_id, session=self._stored)

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
        """Cancel a task and its children; returns it once it ended."""
        return self._out(await self._orch.cancel(task_id, session=self._stored))

    async def cancel_all(self) -> builtins.list[Task]:
        """Cancel every unfinished task of the session; returns them as they ended."""
        return [self._out(t) for t in await self._orch.cancel_session(self._stored)]

    # -- notices and events ---------------------------------------------------------------

    async def notices(
        self, *, limit: int = 100, reader: str | None = None
    ) -> builtins.list[Notice]:
        """Notices not yet acknowledged, or not yet received by `reader`; see `Tasks.notices`."""
        if reader is None:
            return await self._orch.notices(session=self._stored, limit=limit)
        after = await self._reader_cursor(check_session_name(reader, field="reader"))
        return await self._orch.notices(session=self._stored, limit=limit, after=after)

    async def ack_notices(self, up_to: int, *, reader: str | None = None) -> None:
        """Acknowledge notices with `seq <= up_to` (also as received by `reader`)."""
        if reader is not None:
            check_session_name(reader, field="reader")
        await self._orch.ack_notices(session=self._stored, up_to=up_to)
        if reader is not None:
            stored = await self._orch.notice_cursor(session=self._stored)  # capped by the store
            self._orch._readers.advance(self._stored, reader, min(up_to, stored))

    async def next_notices(self, *, timeout: float, reader: str | None = None) -> NoticeWait:
        """The next notices for `reader`, waiting up to `timeout` s; see `Tasks.next_notices`."""
        key = "" if reader is None else check_session_name(reader, field="reader")
        with self._orch._readers.waiting(self._stored, key) as superseded:
            found = await self.notices(reader=reader)
            if not found and timeout > 0:
                with anyio.move_on_after(timeout):
                    async with anyio.create_task_group() as tg:
                        tg.start_soon(_cancel_when, superseded, tg.cancel_scope)
                        after = 0 if reader is None else await self._reader_cursor(reader)
                        async for _ in self._orch.follow_notices(session=self._stored, after=after):
                            break
                        tg.cancel_scope.cancel()
                if superseded.is_set():
                    return NoticeWait(notices=[], superseded=True)
                found = await self.notices(reader=reader)
        return NoticeWait(notices=found, text=notices_block(found), superseded=superseded.is_set())

    async def _reader_cursor(self, reader: str) -> int:
        """Where `reader` is: the session's acknowledgement cursor when first seen."""
        readers = self._orch._readers
        cursor = readers.cursor(self._stored, reader)
        if cursor is None:
            cursor = await self._orch.notice_cursor(session=self._stored)
            readers.advance(self._stored, reader, cursor)
        return cursor

    def follow_notices(self, *, after: int = 0) -> AsyncIterator[Notice]:
        """The unacknowledged notices, then each new one as it happens."""
        return self._orch.follow_notices(session=self._stored, after=after)

    async def events(
        self, *, after: int = 0, follow: bool = True, all_sessions: bool = False
    ) -> AsyncIterator[Event]:
        """The session's durable event stream from `seq > after`, then live (if `follow`)."""
        if not all_sessions:
            async for event in self._orch.events(session=self._stored, after=after, follow=follow):
                yield (
                    event
                    if self._stored == self._name
                    else event.model_copy(update={"session": self._name})
                )
            return
        prefix = self._stored[: len(self._stored) - len(self._name)]
        async for event in self._orch.events(
            session=prefix, after=after, follow=follow, prefix=True
        ):
            yield event.model_copy(update={"session": event.session[len(prefix) :]})


async def _cancel_when(event: anyio.Event, scope: anyio.CancelScope) -> None:
    await event.wait()
    scope.cancel()
