"""One Server-Sent Events stream per page: what changed, as HTML fragments by element id.

The stream follows the principal's events from the `seq` the page was rendered at (or the
`Last-Event-ID` a reconnecting page sends), notes which tasks changed, and at most every
`TICK` seconds sends one message of `<hx-partial>` fragments (htmx's out-of-band swaps), its
`id` the last event it covers. So a task's row or output line changes at most four times a
second however fast its output comes, and a page that reconnects (after a pause, a network
drop or a daemon restart) resumes where it was.

A page watches only the task whose output it shows live (`LiveView.watches`): the others'
output reaches it as it comes, a turn at a time for a built-in agent, so an open dashboard
does not make every agent stream its model's answers chunk by chunk (which costs over twice
the CPU).

Every fragment replaces an element by id, or deletes a row before inserting it again, so a
message applied twice changes nothing: a reconnecting page never shows a row twice.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import anyio
from markupsafe import escape
from sse_starlette import ServerSentEvent

from ..._types._errors import TaskNotFound
from ..._types._events import TaskOutput
from ._render import macro

if TYPE_CHECKING:
    from anyio.abc import ObjectSendStream

    from ..._types._api import Tasks
    from ..._types._events import Event

__all__ = ["TICK", "Changes", "LiveView", "follow", "last_line", "partial"]

TICK = 0.25
"""Seconds a stream gathers changes before it sends them: at most 4 updates a second."""
TABS_EVERY = 1.0
"""Seconds between two updates of the session tabs."""
_MOVES = frozenset(
    {"task.queued", "task.started", "task.retrying", "task.succeeded", "task.failed",
     "task.cancelled", "task.timed_out"}
)  # fmt: skip
_ENDS = frozenset({"task.succeeded", "task.failed", "task.cancelled", "task.timed_out"})
_OUTPUT = ("task.output",)


def partial(target: str, html: str, swap: str = "outerHTML") -> str:
    """An htmx 4 partial: `html` swapped into the element `target` (a CSS selector).

    `html` goes in as it is: it must come from a template or be escaped (a task's output is
    text; as markup, htmx would act on the attributes it carries).
    """
    return f'<hx-partial hx-target="{escape(target)}" hx-swap="{swap}">{html}</hx-partial>'


def last_line(text: str) -> str:
    """The last non-empty line of some output (after a carriage return's overwrite)."""
    for line in reversed(text.splitlines()):
        shown = line.rsplit("\r", 1)[-1].strip()
        if shown:
            return shown[:500]
    return ""


@dataclass(slots=True)
class Changes:
    """What happened since the last message, for one page's session."""

    last_seq: int
    changed: set[str] = field(default_factory=set)
    """Tasks whose record changed (state, progress, usage)."""
    lines: dict[str, str] = field(default_factory=dict)
    """Tasks that wrote output: their newest line."""
    ended: set[str] = field(default_factory=set)
    moved: bool = False
    """A task was queued, started, retried or ended: the queue and the running set changed."""
    any: bool = False
    """Anything happened, in any session of the principal."""

    def note(self, event: Event, session: str) -> None:
        """Take one event into account."""
        self.last_seq = max(self.last_seq, event.seq)
        self.any = True
        if event.session != session or event.task_id is None:
            return
        if isinstance(event.data, TaskOutput):
            if line := last_line(event.data.text):
                self.lines[event.task_id] = line
            return
        self.changed.add(event.task_id)
        if event.type in _MOVES:
            self.moved = True
        if event.type in _ENDS:
            self.ended.add(event.task_id)


class LiveView:
    """What a page updates when things change (one subclass per page)."""

    interval = TICK
    """The least time between two messages."""
    idle = 0.0
    """Seconds after which `update` runs with no change (0: never; a timeline's bars grow)."""
    watches: str | None = None
    """The task whose output the page shows as it comes (it watches that task alone)."""

    def __init__(self, tasks: Tasks, session: str) -> None:
        self.tasks = tasks
        self.session = session
        self._tabs_at = 0.0
        self._tabs_due = False

    async def first(self) -> str:
        """What the page leaves to its stream's first message (empty: nothing)."""
        return ""

    async def update(self, changes: Changes) -> str:
        """The fragments for `changes` (empty: nothing to show)."""
        raise NotImplementedError

    def due_in(self) -> float:
        """Seconds until an update is due without any new event (inf: none is)."""
        if self._tabs_due:
            return max(0.0, self._tabs_at + TABS_EVERY - time.monotonic())
        return self.idle or float("inf")

    async def tabs(self, changes: Changes) -> str:
        """The session tabs, after a change, at most every `TABS_EVERY` seconds.

        A change within that time is shown when it is over (`due_in`), so the tabs never
        stay behind.
        """
        self._tabs_due = self._tabs_due or changes.any
        now = time.monotonic()
        if not self._tabs_due or now - self._tabs_at < TABS_EVERY:
            return ""
        self._tabs_at, self._tabs_due = now, False
        summaries = await self.tasks.sessions()
        return partial("#tabs", macro("tabs")(summaries, self.session))


class _Pending:
    """Changes gathered by the reader, taken by the sender."""

    def __init__(self, after: int, session: str) -> None:
        self.session = session
        self.changes = Changes(after)
        self.woken = anyio.Event()

    def note(self, event: Event) -> None:
        self.changes.note(event, self.session)
        self.woken.set()

    def take(self) -> Changes:
        taken, self.changes = self.changes, Changes(self.changes.last_seq)
        self.woken = anyio.Event()
        return taken


async def follow(view: LiveView, after: int, send: ObjectSendStream[ServerSentEvent]) -> None:
    """Send `view`'s updates until cancelled (the client leaves, or the daemon stops).

    Cancellation: the reader and the sender stop together; nothing is left running.
    """
    pending = _Pending(after, view.session)
    async with anyio.create_task_group() as tg:

        async def read() -> None:
            async for event in view.tasks.events(after=after, all_sessions=True, watch=False):
                pending.note(event)
            tg.cancel_scope.cancel()  # the stream ended: the daemon is stopping

        async def watch(task_id: str) -> None:
            """Watch the task (its events come through `read`)."""
            with contextlib.suppress(TaskNotFound):  # deleted meanwhile: nothing to watch
                async for _ in view.tasks.events(after=after, task_id=task_id, types=_OUTPUT):
                    pass

        tg.start_soon(read)
        if view.watches is not None:
            tg.start_soon(watch, view.watches)
        if html := await view.first():
            await send.send(ServerSentEvent(data=html, id=str(after)))
        while True:
            with anyio.move_on_after(view.due_in()):
                await pending.woken.wait()
            await anyio.sleep(view.interval)  # gather what comes meanwhile into one message
            changes = pending.take()
            html = await view.tabs(changes) + await view.update(changes)
            await send.send(ServerSentEvent(data=html or None, id=str(changes.last_seq)))
