"""One caller's view of the daemon: a session of a principal, over the Orchestrator.

Both the HTTP API and the MCP server act through a `SessionView`; `outrider.AsyncClient`
offers the same methods over HTTP, so the MCP tools run unchanged in the daemon (Streamable
HTTP) and in `outrider mcp` (stdio, talking to the daemon). Sessions are stored as
`principal/session`, so one principal can never name another's tasks; records leave with the
bare session name.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal, Protocol

from .._errors import StoreUnavailable
from .._models import Event, Notice, Status, SubmitError, SubmitItem, Task
from .._orchestrator import submit_error

if TYPE_CHECKING:
    import builtins
    from collections.abc import AsyncIterator, Mapping, Sequence

    from pydantic import JsonValue

    from .._orchestrator import Orchestrator

__all__ = ["Backend", "SessionView"]


class Backend(Protocol):
    """What the MCP tools need: one session's tasks (a `SessionView` or an `AsyncClient`)."""

    @property
    def session(self) -> str:
        """The session name."""
        ...

    async def submit_many(
        self, items: Sequence[SubmitItem], *, group: str | None = None
    ) -> builtins.list[Task | SubmitError]:
        """Store many tasks, each on its own."""
        ...

    async def get(self, task_id: str) -> Task:
        """One task."""
        ...

    async def list(
        self,
        *,
        states: Sequence[str] | None = None,
        group: str | None = None,
        limit: int | None = None,
    ) -> builtins.list[Task]:
        """The session's tasks."""
        ...

    async def wait(
        self,
        task_ids: Sequence[str],
        *,
        timeout: float | None = None,
        return_when: Literal["all", "any"] = "all",
    ) -> builtins.list[Task]:
        """Wait for tasks to end, at most `timeout` seconds."""
        ...

    async def cancel(self, task_id: str) -> Task:
        """Cancel a task."""
        ...

    async def tail(self, task_id: str, *, lines: int = 50) -> str:
        """The last lines of a task's output."""
        ...

    async def transcript(self, task_id: str) -> JsonValue:
        """An agent task's transcript, or None."""
        ...

    async def notices(self, *, limit: int = 100) -> builtins.list[Notice]:
        """Unacknowledged completion notices."""
        ...

    async def ack_notices(self, up_to: int) -> None:
        """Acknowledge notices up to a seq."""
        ...

    def follow_notices(self, *, after: int = 0) -> AsyncIterator[Notice]:
        """The unacknowledged notices, then each new one as it happens."""
        ...

    async def status(self) -> Status:
        """Load per key and totals."""
        ...


class SessionView:
    """A principal's session on an in-process Orchestrator."""

    def __init__(self, orch: Orchestrator, *, principal: str, session: str) -> None:
        self._orch = orch
        self._name = session
        self._stored = f"{principal}/{session}"

    @property
    def session(self) -> str:
        """The session name (without the principal)."""
        return self._name

    def _out(self, task: Task) -> Task:
        return task.model_copy(update={"session": self._name})

    async def submit(self, item: SubmitItem) -> Task:
        """Store one task; raises like `Orchestrator.submit`."""
        (result,) = await self.submit_many([item])
        if isinstance(result, SubmitError):
            raise submit_error(result, self._orch.status().max_queued)
        return result

    async def submit_many(
        self, items: Sequence[SubmitItem | Mapping[str, object]], *, group: str | None = None
    ) -> builtins.list[Task | SubmitError]:
        """Store many tasks, each validated and stored on its own."""
        results = await self._orch.submit_many(items, session=self._stored, group=group)
        refused = [r for r in results if isinstance(r, SubmitError)]
        if len(refused) == len(results) and refused[0].type == "StoreUnavailable":
            raise StoreUnavailable(refused[0].message)  # nothing stored: the caller retries
        return [self._out(r) if isinstance(r, Task) else r for r in results]

    async def get(self, task_id: str) -> Task:
        """One task of the session."""
        return self._out(await self._orch.get(task_id, session=self._stored))

    async def list(
        self,
        *,
        states: Sequence[str] | None = None,
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
        """Wait for the tasks (see `Orchestrator.wait`)."""
        tasks = await self._orch.wait(
            task_ids, session=self._stored, timeout=timeout, return_when=return_when
        )
        return [self._out(t) for t in tasks]

    async def cancel(self, task_id: str) -> Task:
        """Cancel a task and its children."""
        return self._out(await self._orch.cancel(task_id, session=self._stored))

    async def tail(self, task_id: str, *, lines: int = 50) -> str:
        """The last `lines` lines of the task's output."""
        return await self._orch.tail(task_id, session=self._stored, lines=lines)

    async def transcript(self, task_id: str) -> JsonValue:
        """An agent task's transcript (attempts and messages), or None."""
        return await self._orch.transcript(task_id, session=self._stored)

    async def notices(self, *, limit: int = 100) -> builtins.list[Notice]:
        """Unacknowledged completion notices."""
        return await self._orch.notices(session=self._stored, limit=limit)

    async def ack_notices(self, up_to: int) -> None:
        """Acknowledge notices with `seq <= up_to`."""
        await self._orch.ack_notices(session=self._stored, up_to=up_to)

    def follow_notices(self, *, after: int = 0) -> AsyncIterator[Notice]:
        """The unacknowledged notices, then each new one as it happens (from `seq > after`)."""
        return self._orch.follow_notices(session=self._stored, after=after)

    async def status(self) -> Status:
        """Load per key and totals (no task contents)."""
        return self._orch.status()

    async def events(self, *, after: int = 0, all_sessions: bool = False) -> AsyncIterator[Event]:
        """The session's durable event stream from `seq > after`, then live.

        `all_sessions`: the stream of every session of the principal, each event naming its
        session.
        """
        if not all_sessions:
            async for event in self._orch.events(session=self._stored, after=after):
                yield event.model_copy(update={"session": self._name})
            return
        prefix = self._stored[: -len(self._name)]
        async for event in self._orch.events(session=prefix, after=after, prefix=True):
            yield event.model_copy(update={"session": event.session[len(prefix) :]})
