"""The dashboard's pages: each renders itself whole, and the fragments of what changed.

A screen reads everything through the session's `Tasks`, like any other interface. The whole
page and the live fragments come from the same macros, so an update shows exactly what a
reload would.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Literal

import anyio
from markupsafe import escape

from ..._types._task import TaskState
from ._live import Changes, LiveView, last_line, partial
from ._render import macro, page, row_html, turns_of
from ._timeline import LIFECYCLE, Bar, bars_of, chrome_trace, layout, still_running
from ._view import FAILURES, GROUPS, budget_of, cli_line, forest, grouped, key_rows, row_of

if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence

    from pydantic import JsonValue

    from ..._types._api import Tasks
    from ..._types._task import SessionSummary
    from ._view import Group, Row

__all__ = ["KeysScreen", "Screen", "TaskScreen", "TasksScreen", "TimelineScreen", "TreeScreen"]

LISTED = 2_000
"""The most ended tasks the task page lists (the newest; every unfinished one is listed)."""
QUEUED_SHOWN = 500
"""The most queued tasks the task page lists (next to start first)."""
TIMELINE_TASKS = 500
OUTPUT_LINES = 200
STATIC = "/ui/static"
_UNFINISHED = (TaskState.QUEUED.value, TaskState.RUNNING.value)
_DETAIL_EVENTS = (*LIFECYCLE, "task.progress")


class Screen(LiveView):
    """A page of one session: `render` it whole, `update` what changed."""

    view = "tasks"
    template = "tasks.html"

    def __init__(self, tasks: Tasks, session: str) -> None:
        super().__init__(tasks, session)
        self.base = f"/ui/s/{session}"

    def live_url(self, after: int) -> str:
        """Where the page's stream starts: right after what the page shows."""
        return f"{self.base}/live?view={self.view}&after={after}"

    async def context(self) -> dict[str, object]:
        """What the page's own template needs."""
        return {}

    async def render(self) -> str:
        """The whole page."""
        summaries = await self.tasks.sessions()  # read first: the stream starts after these
        after = max((s.last_seq for s in summaries), default=0)
        own = await self.context()
        return page(
            self.template, session=self.session, sessions=summaries, view=self.view,
            base=self.base, static=STATIC, live=self.live_url(after), **own,
        )  # fmt: skip

    def summary(self, summaries: Iterable[SessionSummary]) -> SessionSummary | None:
        """This session's summary among the principal's."""
        return next((s for s in summaries if s.session == self.session), None)


async def _gather_tails(tasks: Tasks, ids: Sequence[str], lines: dict[str, str]) -> None:
    """The last output line of each task in `ids` not yet in `lines` (read in parallel)."""

    async def one(task_id: str) -> None:
        lines[task_id] = last_line(await tasks.tail(task_id, lines=1))

    async with anyio.create_task_group() as tg:
        for task_id in ids:
            if task_id not in lines:
                tg.start_soon(one, task_id)


class TasksScreen(Screen):
    """The session's tasks in four groups: Needs attention, Running, Queued, Done."""

    def __init__(self, tasks: Tasks, session: str) -> None:
        super().__init__(tasks, session)
        self.lines: dict[str, str] = {}
        """The newest output line of running tasks, as the stream saw it."""
        self.attention: set[str] = set()

    @staticmethod
    def _counts(summary: SessionSummary | None) -> dict[Group, int]:
        if summary is None:
            return {"attention": 0, "running": 0, "queued": 0, "done": 0}
        states = summary.states
        ended = sum(n for s, n in states.items() if s.terminal)
        return {
            "attention": summary.unseen_failures, "running": states[TaskState.RUNNING],
            "queued": states[TaskState.QUEUED], "done": ended - summary.unseen_failures,
        }  # fmt: skip

    async def _unfinished(self, *, tails: bool = True) -> tuple[list[Row], list[Row], int]:
        """The rows of the running tasks and of the first `QUEUED_SHOWN` queued ones.

        Also how many more are queued. `tails`: read the last output line of running tasks
        the stream has not seen write yet (a page leaves that to its stream's first message).
        """
        found = grouped(await self.tasks.list(states=_UNFINISHED), set())
        running, queued = found["running"], found["queued"]
        if tails:
            await _gather_tails(self.tasks, [t.id for t in running], self.lines)
        return (
            [row_of(t, "running", self.lines.get(t.id, "")) for t in running],
            [row_of(t, "queued") for t in queued[:QUEUED_SHOWN]],
            max(0, len(queued) - QUEUED_SHOWN),
        )

    async def _attention(self) -> set[str]:
        """Tasks that failed or timed out since the session last acknowledged its notices."""
        oldest = await self.tasks.notices(limit=1)  # the first notice not acknowledged
        if not oldest:
            return set()
        failed = self.tasks.events(after=oldest[0].seq - 1, follow=False, types=FAILURES)
        return {e.task_id async for e in failed if e.task_id is not None}

    async def context(self) -> dict[str, object]:
        running, queued, more = await self._unfinished(tails=False)
        recent = await self.tasks.list(limit=LISTED)
        self.attention = await self._attention()
        ended = grouped([t for t in recent if t.state.terminal], self.attention)
        groups: dict[Group, list[Row]] = {
            "attention": [row_of(t, "attention") for t in ended["attention"]],
            "running": running, "queued": queued,
            "done": [row_of(t, "done") for t in ended["done"]],
        }  # fmt: skip
        counts = self._counts(self.summary(await self.tasks.sessions()))
        shown = len(groups["done"]) + len(groups["attention"])
        total = counts["done"] + counts["attention"]
        return {
            "groups": groups, "groups_meta": GROUPS, "counts": counts,
            "more": {"queued": more},
            "shown_text": f"the newest {shown:,} of {total:,} ended tasks" if total > shown else "",
        }  # fmt: skip

    async def first(self) -> str:
        """The last output line of each running task, read once the page is shown."""
        running = await self.tasks.list(states=[TaskState.RUNNING.value])
        await _gather_tails(self.tasks, [t.id for t in running], self.lines)
        return "".join(partial(f"#o-{t.id}", escape(self.lines[t.id]), "innerHTML")
                       for t in running if self.lines.get(t.id))  # fmt: skip

    async def update(self, changes: Changes) -> str:
        html = [await self.tabs(changes)]
        for task_id, line in changes.lines.items():
            self.lines[task_id] = line
        if changes.moved:
            html.append(await self._moved(changes))
        else:
            html.append(await self._rows(changes.changed - changes.ended))
        lines = set(changes.lines) - changes.changed
        if lines and not changes.moved:
            html += [partial(f"#o-{i}", escape(self.lines[i]), "innerHTML") for i in sorted(lines)]
        return "".join(html)

    async def _rows(self, ids: set[str]) -> str:
        """Running tasks whose progress or usage changed: their rows again."""
        if not ids:
            return ""
        row = macro("row")
        found = await self.tasks.wait(sorted(ids), timeout=0)
        return "".join(
            partial(f"#t-{t.id}", row(row_of(t, "running", self.lines.get(t.id, "")), self.base))
            for t in found
            if t.state is TaskState.RUNNING
        )

    async def _moved(self, changes: Changes) -> str:
        """The running and queued groups again, and each ended task on top of its group."""
        body, count = macro("body"), macro("count")
        running, queued, more = await self._unfinished()
        html = [
            partial("#g-running", body("running", running, self.base)),
            partial("#g-queued", body("queued", queued, self.base, more)),
        ]
        ended = [t for t in await self.tasks.wait(sorted(changes.ended), timeout=0)
                 if t.state.terminal]  # fmt: skip
        if any(t.state in (TaskState.FAILED, TaskState.TIMED_OUT) for t in ended):
            self.attention = await self._attention()
        for task in sorted(ended, key=lambda t: t.finished_at or t.created_at):
            group: Group = "attention" if task.id in self.attention else "done"
            html += [
                partial(f"#t-{task.id}", "", "delete"),
                partial(f"#g-{group} > tr.empty", "", "delete"),
                partial(f"#g-{group}", row_html(row_of(task, group), self.base), "afterbegin"),
            ]
            self.lines.pop(task.id, None)
        counts = self._counts(self.summary(await self.tasks.sessions()))
        html += [partial(f"#n-{g}", count(g, n)) for g, n in counts.items()]
        return "".join(html)


class TreeScreen(Screen):
    """The delegation forest of the session, each agent tree with its budget."""

    view = "tree"
    template = "tree.html"
    interval = 1.0

    async def context(self) -> dict[str, object]:
        tasks = await self.tasks.list(limit=LISTED)
        groups = forest(tasks)
        budgets = {}
        for group in groups:
            for root in group.roots:
                if root.task.kind == "agent" and root.children:
                    transcript: JsonValue = await self.tasks.transcript(root.task.id)
                    budgets[root.task.id] = budget_of(root, transcript)
        return {"forest": groups, "budgets": budgets}

    async def update(self, changes: Changes) -> str:
        html = await self.tabs(changes)
        if changes.changed:
            found = await self.context()
            html += partial("#tree", macro("tree")(found["forest"], self.base, found["budgets"]))
        return html


class KeysScreen(Screen):
    """Per concurrency key: running, limit, queued, and what its queue waits for."""

    view = "keys"
    template = "keys.html"
    interval = 1.0
    idle = 2.0  # keys are shared with other sessions and principals, whose events are not seen

    async def context(self) -> dict[str, object]:
        status = await self.tasks.status()
        queued = await self.tasks.list(states=["queued"])
        return {"status": status, "rows": key_rows(status, queued)}

    async def update(self, changes: Changes) -> str:
        found = await self.context()
        return await self.tabs(changes) + partial(
            "#keys", macro("keys")(found["status"], found["rows"], self.base)
        )


class TimelineScreen(Screen):
    """Queued and running time of the newest tasks, lane by key or by tree."""

    view = "timeline"
    template = "timeline.html"
    interval = 2.0

    def __init__(self, tasks: Tasks, session: str, by: Literal["key", "tree"] = "key") -> None:
        super().__init__(tasks, session)
        self.by: Literal["key", "tree"] = by
        self.idle = 0.0

    def live_url(self, after: int) -> str:
        return super().live_url(after) + f"&by={self.by}"

    async def bars(self) -> tuple[list[Bar], int]:
        """The bars of the newest tasks, and how many tasks there are.

        Only the events from the oldest task shown on are read (a task's events come after its
        `task.queued`), not the session's whole history.
        """
        shown = await self.tasks.list(limit=TIMELINE_TASKS)
        after = 0
        if shown:
            first = self.tasks.events(follow=False, task_id=shown[0].id, types=LIFECYCLE[:1])
            after = next(iter([e.seq - 1 async for e in first]), 0)
        read = self.tasks.events(after=after, follow=False, types=LIFECYCLE)
        events = [e async for e in read]
        bars = bars_of(shown, events, now=time.time())
        summary = self.summary(await self.tasks.sessions())
        total = sum(summary.states.values()) if summary else len(shown)
        self.idle = 2.0 if still_running(bars) else 0.0
        return bars, total

    async def context(self) -> dict[str, object]:
        bars, total = await self.bars()
        shown = len({b.task.id for b in bars})
        return {"layout": layout(bars, by=self.by), "by": self.by, "total": total, "shown": shown}

    async def update(self, changes: Changes) -> str:
        found = await self.context()
        drawn = macro("timeline")(found["layout"], self.base, found["total"], found["shown"])
        return await self.tabs(changes) + partial("#timeline", drawn)

    async def trace(self) -> dict[str, JsonValue]:
        """The Chrome trace of the same bars."""
        bars, _ = await self.bars()
        return chrome_trace(bars, session=self.session, by=self.by)


class TaskScreen(Screen):
    """One task: its record, output, transcript and events, and its command line."""

    view = "task"
    template = "task.html"

    def __init__(self, tasks: Tasks, session: str, task_id: str) -> None:
        super().__init__(tasks, session)
        self.task_id = task_id
        self.watches = task_id  # its output on the page as it comes, chunk by chunk

    def live_url(self, after: int) -> str:
        return super().live_url(after) + f"&task={self.task_id}"

    async def context(self) -> dict[str, object]:
        task = await self.tasks.get(self.task_id)
        events = [e async for e in self.tasks.events(follow=False, task_id=task.id,
                                                      types=_DETAIL_EVENTS)]  # fmt: skip
        turns = turns_of(await self.tasks.transcript(task.id)) if task.kind == "agent" else None
        return {
            "task": task, "cli": cli_line(task), "lines": OUTPUT_LINES, "events": events[-200:],
            "output": await self.tasks.tail(task.id, lines=OUTPUT_LINES), "turns": turns,
        }  # fmt: skip

    async def update(self, changes: Changes) -> str:
        html = [await self.tabs(changes)]
        if self.task_id in changes.lines or self.task_id in changes.changed:
            text = await self.tasks.tail(self.task_id, lines=OUTPUT_LINES)
            task = await self.tasks.get(self.task_id)
            html.append(partial("#output", macro("output")(text, task)))
        if self.task_id in changes.changed:
            found = await self.context()
            html.append(partial("#head", macro("head")(found["task"], self.base, "")))
            html.append(partial("#events", macro("events")(found["events"])))
            if found["turns"] is not None:
                html.append(partial("#transcript", macro("transcript")(found["turns"])))
        return "".join(html)
