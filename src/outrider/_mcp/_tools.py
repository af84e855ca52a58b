"""The MCP tools, written once over `Tasks` (a `Session` in the daemon, the client over stdio).

Conventions every tool follows:
- Work is queued, never refused at a limit; the answer says "queued, position N".
- Blocking waits last at most `max_wait` seconds (default 50, below opencode's 60 s tool
  timeout and Claude Code's 2 min), then answer "still running — call again", never an error.
- Every answer ends with the caller's unacknowledged completion notices; returning them
  acknowledges them. While a tool waits, each finished task is a progress notification (when
  the host sent a progress token) and a logging notification.
- Text is short; `structuredContent` carries the same facts for clients that read it.
"""

from __future__ import annotations

import contextlib
import math
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

import anyio
from mcp.server.mcpserver import Context  # noqa: TC002  # the SDK reads tool signatures at run time
from mcp.shared.exceptions import MCPDeprecationWarning
from mcp_types import CallToolResult, TextContent, ToolAnnotations
from pydantic import BaseModel, Field, ValidationError, WithJsonSchema

from .._agents._definitions import AgentCatalog
from .._agents._delegation import agent_spec
from .._agents._transcript import render_transcript
from .._core._notices import fold_notices
from .._ids import new_task_id
from .._types._errors import OutriderError, UserError, user_error
from .._types._task import Notice, ShellSpec, SubmitItem, Task, TaskState
from .._types._worktrees import MergeHow  # noqa: TC001  # the MCP SDK reads tool annotations
from ._format import notices_block, task_detail, task_line, tasks_table

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Mapping, Sequence

    from mcp.server.mcpserver import MCPServer

    from .._agents._definitions import AgentDefinition
    from .._types._api import Tasks

__all__ = ["NOTICES_PER_ANSWER", "TOOL_DESCRIPTIONS", "NoticeFeed", "Tools"]

_DELEGATE = """Hand work to a background worker and keep going; returns a task id at once.

Use it for anything slow or parallel: test suites, builds, long commands, and (when agents are
configured) sub-agent work. Results arrive later: every outrider tool answer lists tasks that
finished since your last call ("[outrider] 2 tasks finished: …"), or call get_task_result /
wait_tasks. Give a `description` of what it is for: it comes back with the result.
background=false waits (up to ~50 s) and returns the result, or "still running" with the id.
Shell work: set `command`. Agent work: set `agent` and `prompt`."""

TOOL_DESCRIPTIONS = {
    "delegate_task": _DELEGATE,
    "get_task_result": (
        "The outcome of a task: state, result (last 2000 chars unless full=true), error and "
        "output tail. wait=N waits up to N seconds (max ~50) for it to finish first."
    ),
    "list_tasks": "Your tasks (this session), one line each; filter by status.",
    "cancel_task": "Stop a task (its whole process tree) and the tasks it started.",
    "retry_task": (
        "Run an ended task again as a new task (same work and options); returns the new id."
    ),
    "merge_task": (
        "Bring a finished writing task's work (made in its own git worktree) into your "
        "checkout. how: apply (change your files, nothing staged; default), squash (one "
        "commit), cherry-pick (its commits), patch (only write a .patch). On conflicts nothing "
        "is changed, the paths are named, and its branch, worktree and .patch are kept."
    ),
    "discard_task": (
        "Throw away a finished writing task's work: its worktree and branch are removed (a "
        ".patch of it is kept)."
    ),
    "wait_tasks": (
        "Wait until all (or any) of the given tasks finish, up to `timeout` seconds (max ~50); "
        "then returns each task's line. If some are still running it says so: call again."
    ),
    "run_background": (
        "Run a shell command in the background; returns its id at once. Check it with "
        "check_background, stop it with kill_background. You are told when it finishes."
    ),
    "check_background": "Status and the last `lines` lines of output of a background command.",
    "list_background": "Your background commands and their status.",
    "kill_background": "Stop a background command (its whole process tree).",
    "agents_start": (
        "Start many tasks in one call (each item shell `command` or `agent`+`prompt`); each item "
        "succeeds or fails on its own. They form one batch: one summary notice when all end."
    ),
    "agents_status": "Status of several tasks (default: all of yours not yet finished).",
    "agents_wait": "Same as wait_tasks: wait for several tasks, up to `timeout` seconds.",
    "ack_notices": (
        "Acknowledge completion notices up to `up_to` (a notice seq) without another call; "
        "notices are acknowledged automatically once an answer carried them."
    ),
}


_REFRESH_AFTER = 0.5
"""Seconds after which a call reads the notices again before answering."""
NOTICES_PER_ANSWER = 50
"""The most notices one answer carries; the rest come with the next ones."""
_FOLLOW_RETRY = 1.0
"""Seconds between attempts to reopen the bridge's notice stream."""


class WorkItem(BaseModel):
    """One unit of work for agents_start."""

    command: str | None = Field(default=None, description="Shell command to run.")
    agent: str | None = Field(default=None, description="Sub-agent name (agent work).")
    prompt: str | None = Field(default=None, description="Instructions for the sub-agent.")
    description: str | None = Field(default=None, description="What it is for.")
    label: str | None = Field(default=None, description="A short name.")
    cwd: str | None = None
    timeout: float | None = Field(default=None, gt=0)
    priority: int = Field(default=5, ge=0, le=10)


class _Answer(Exception):
    """Ends a tool early with an error answer for the model."""


def _submit_item(
    work: WorkItem,
    *,
    agents: Mapping[str, AgentDefinition],
    group: str | None,
    cwd: str | None = None,
) -> SubmitItem:
    if work.agent is not None:
        return _agent_item(work, agents=agents, group=group, cwd=cwd)
    if not work.command or not work.command.strip():
        raise _Answer("Give `command` (shell work) or `agent` and `prompt` (agent work).")
    return SubmitItem(
        spec=ShellSpec(command=work.command, cwd=work.cwd), priority=work.priority,
        timeout=work.timeout, label=work.label or _label(work.command),
        description=work.description or work.prompt, group=group,
    )  # fmt: skip


def _agent_item(
    work: WorkItem, *, agents: Mapping[str, AgentDefinition], group: str | None, cwd: str | None
) -> SubmitItem:
    assert work.agent is not None
    try:
        spec, agent = agent_spec(agents, work.agent, work.prompt, cwd=work.cwd or cwd)
    except UserError as exc:
        hint = " Use `command` for shell work." if exc.field == "agent" else ""
        raise _Answer(f"{exc}{hint}") from None
    return SubmitItem(
        spec=spec, priority=work.priority, timeout=work.timeout or agent.timeout,
        label=work.label or agent.name, description=work.description or work.prompt,
        group=group,
    )  # fmt: skip


def _label(command: str) -> str:
    first = command.strip().split("\n", 1)[0]
    return first if len(first) <= 40 else first[:39] + "…"


Description = Annotated[str, Field(description="What the work is for; comes back with its result.")]
Command = Annotated[str | None, Field(description="Shell command (shell work).")]
Agent = Annotated[str | None, Field(description="Sub-agent name (agent work).")]
Prompt = Annotated[str | None, Field(description="Instructions for the sub-agent.")]
Background = Annotated[
    bool, Field(description="true: return the id at once; false: wait for the result.")
]
Label = Annotated[str | None, Field(description="A short name for lists.")]
Timeout = Annotated[float | None, Field(gt=0, description="Seconds it may run.")]
Priority = Annotated[int, Field(ge=0, le=10, description="0-10, 10 first.")]
WaitSeconds = Annotated[float, Field(ge=0, description="Seconds to wait (max ~50).")]
Full = Annotated[bool, Field(description="The whole result, error detail and output.")]
Mode = Annotated[Literal["all", "any"], Field(description="Return when all or any finished.")]
Cwd = Annotated[str | None, Field(description="Working directory (default: the daemon's).")]
Limit = Annotated[int, Field(ge=1, le=500)]
Lines = Annotated[int, Field(ge=1, le=1000)]
TaskIds = Annotated[list[str], Field(min_length=1, max_length=500)]
WorkItems = Annotated[
    list[Annotated[dict[str, Any], WithJsonSchema(WorkItem.model_json_schema())]],
    Field(min_length=1, max_length=200),
]
"""Validated item by item in the tool, so one bad item fails alone."""
Group = Annotated[str | None, Field(description="Batch name (default: generated).")]
StatusFilter = Annotated[
    Literal["active", "queued", "running", "succeeded", "failed", "cancelled", "timed_out", "all"],
    Field(description="active = queued or running."),
]


def _task_data(task: Task) -> dict[str, Any]:
    return task.model_dump(
        mode="json",
        include={
            "id",
            "state",
            "label",
            "description",
            "exit_code",
            "position",
            "waiting_for",
            "created_at",
            "started_at",
            "finished_at",
            "retry_of",
        },
    )


class NoticeFeed:
    """The stdio bridge's notices: one session's, followed from the daemon as they happen.

    Instead of reading the notices with every call, the bridge keeps a stream open
    (`follow_notices`) and an answer carries what arrived. What an answer carried is never
    shown again by this bridge; it is acknowledged beside a later call's work at most once per
    `ack_every` seconds, and by `flush` on the way out. If the bridge dies before, those notices
    are delivered again (at least once).
    """

    def __init__(self, *, ack_every: float = 1.0) -> None:
        self._ack_every = ack_every
        self._pending: list[Notice] = []
        self._last = 0
        """The highest notice seq received."""
        self._answered = 0
        """The highest notice seq an answer carried."""
        self._acked = 0
        """The highest notice seq acknowledged to the daemon."""
        self._acked_at = -math.inf

    async def follow(self, backend: Tasks) -> None:
        """Receive the session's notices until cancelled (reconnecting after a failure)."""
        while True:
            with contextlib.suppress(OutriderError):
                async for notice in backend.follow_notices(after=self._last):
                    self._last = max(self._last, notice.seq)
                    if notice.seq > self._answered:
                        self._pending.append(notice)
            await anyio.sleep(_FOLLOW_RETRY)  # the daemon went away or restarts

    def pending(self) -> list[Notice]:
        """What the next answer should carry (the oldest `NOTICES_PER_ANSWER`)."""
        return fold_notices(self._pending[:NOTICES_PER_ANSWER])

    def carried(self, notices: Sequence[Notice]) -> None:
        """An answer carried `notices`: never show them (or anything before) again."""
        if notices:
            self._answered = max(self._answered, max(n.seq for n in notices))
            self._pending = [n for n in self._pending if n.seq > self._answered]

    def acknowledged(self, up_to: int) -> None:
        """The caller acknowledged the notices up to `up_to` itself."""
        self.carried([n for n in self._pending if n.seq <= up_to])
        self._answered = self._acked = max(self._answered, up_to)

    async def flush(self, backend: Tasks, *, now: bool = False) -> None:
        """Acknowledge what answers carried: at once if `now`, else if one is due."""
        up_to = self._answered
        due = anyio.current_time() - self._acked_at >= self._ack_every
        if up_to > self._acked and (now or due):
            self._acked_at = anyio.current_time()
            await backend.ack_notices(up_to)
            self._acked = max(self._acked, up_to)


class Tools:
    """Registers outrider's tools on an MCP server.

    Args:
        resolve: The caller's backend (session) for a request.
        max_wait: The longest a tool call blocks, in seconds.
        agents: The sub-agents `delegate_task` may name: fixed, or a catalog read from the
            directory the work is delegated from (its `cwd`, else `cwd` here) at each call.
        cwd: The directory work is delegated from when it names none (the host's, for the
            stdio bridge; None: the daemon's).
        feed: For one session over a remote backend (the stdio bridge): the notices come from
            this feed (run `feed.follow`) instead of a read with each call. Without a feed,
            each call reads the session's notices beside its work and acknowledges what its
            answer carried before answering.
    """

    def __init__(
        self,
        resolve: Callable[[Context], Awaitable[Tasks]],
        *,
        max_wait: float = 50.0,
        agents: Mapping[str, AgentDefinition] | AgentCatalog | None = None,
        feed: NoticeFeed | None = None,
        cwd: str | None = None,
    ) -> None:
        self._resolve = resolve
        self._max_wait = max_wait
        self._agents = agents if isinstance(agents, AgentCatalog) else dict(agents or {})
        self._feed = feed
        self._cwd = cwd

    async def _item(self, work: WorkItem, group: str | None) -> SubmitItem:
        """The submit item of `work`, its agent looked up where the work is delegated from."""
        agents: Mapping[str, AgentDefinition] = {}
        if not isinstance(self._agents, AgentCatalog):
            agents = self._agents
        elif work.agent is not None:
            where = work.cwd or self._cwd
            load = self._agents.load
            agents = (await anyio.to_thread.run_sync(load, Path(where) if where else None)).agents
        return _submit_item(work, agents=agents, group=group, cwd=self._cwd)

    def register(self, server: MCPServer[Any], names: Sequence[str]) -> None:
        """Add the tools in `names` to `server`."""
        read_only = ToolAnnotations(read_only_hint=True, open_world_hint=False)
        for name in names:
            fn = getattr(self, name)
            annotations = (
                read_only
                if name
                in {
                    "get_task_result",
                    "list_tasks",
                    "wait_tasks",
                    "check_background",
                    "list_background",
                    "agents_status",
                    "agents_wait",
                }
                else None
            )
            server.add_tool(
                fn, name=name, description=TOOL_DESCRIPTIONS[name], annotations=annotations,
                structured_output=False,
            )  # fmt: skip

    # -- answering ----------------------------------------------------------------------

    async def _answer(
        self,
        backend: Tasks,
        text: str,
        data: dict[str, Any],
        pending: list[Notice],
        *,
        error: bool = False,
    ) -> CallToolResult:
        shown = _ended_ids(data)
        fresh = [n for n in pending if n.task_id is None or n.task_id not in shown]
        if fresh:
            text += "\n\n" + notices_block(fresh)
            data["notices"] = [n.model_dump(mode="json") for n in fresh]
        result = CallToolResult(
            content=[TextContent(type="text", text=text)], structured_content=data, is_error=error
        )
        if self._feed is not None:
            self._feed.carried(pending)
        elif pending:
            await backend.ack_notices(pending[-1].seq)
        return result

    async def _run(
        self, ctx: Context, body: Callable[[Tasks], Awaitable[tuple[str, dict[str, Any]]]]
    ) -> CallToolResult:
        backend = await self._resolve(ctx)
        feed = self._feed
        pending: list[Notice] = []

        async def fetch() -> None:
            # Best effort: the work's own answer says what is wrong if the daemon is not there.
            with contextlib.suppress(OutriderError):
                pending[:] = await backend.notices(limit=NOTICES_PER_ANSWER)

        async def send_acks() -> None:
            assert feed is not None
            with contextlib.suppress(OutriderError):  # sent again with a later call
                await feed.flush(backend)

        started = anyio.current_time()
        error = False
        # Beside the work: the bridge's due acknowledgement, or the read of the notices (a
        # call that took a while reads them again so it carries what finished meanwhile).
        async with anyio.create_task_group() as tg:
            tg.start_soon(fetch if feed is None else send_acks)
            try:
                text, data = await body(backend)
            except (_Answer, OutriderError) as exc:
                text, data, error = str(exc), {"error": str(exc)}, True
        if feed is not None:
            pending = feed.pending()
        elif anyio.current_time() - started > _REFRESH_AFTER:
            await fetch()
        return await self._answer(backend, text, data, pending, error=error)

    def _cap(self, seconds: float | None) -> float:
        return self._max_wait if seconds is None else max(0.0, min(seconds, self._max_wait))

    async def _wait(
        self,
        ctx: Context,
        backend: Tasks,
        task_ids: Sequence[str],
        *,
        mode: Literal["all", "any"],
        timeout: float,
    ) -> list[Task]:
        """Wait like `Tasks.wait`, telling the host about each task that ends meanwhile."""
        ids = list(dict.fromkeys(task_ids))
        tasks = await backend.wait(ids, timeout=0)
        pending = {t.id for t in tasks if not t.state.terminal}
        done = len(ids) - len(pending)
        if pending and timeout > 0:
            await ctx.report_progress(done, len(ids), f"waiting for {len(pending)} task(s)")
        with anyio.move_on_after(timeout):
            while pending and not (mode == "any" and done):
                for task in await backend.wait(sorted(pending), return_when="any"):
                    if task.state.terminal and task.id in pending:
                        pending.discard(task.id)
                        done += 1
                        await _notify(ctx, task, done, len(ids))
        return await backend.wait(ids, timeout=0)

    # -- tools --------------------------------------------------------------------------

    async def delegate_task(
        self,
        ctx: Context,
        description: Description,
        command: Command = None,
        agent: Agent = None,
        prompt: Prompt = None,
        background: Background = True,
        label: Label = None,
        cwd: Cwd = None,
        timeout: Timeout = None,
        priority: Priority = 5,
    ) -> CallToolResult:
        work = WorkItem(
            command=command, agent=agent, prompt=prompt, description=description, label=label,
            cwd=cwd, timeout=timeout, priority=priority,
        )  # fmt: skip

        async def body(backend: Tasks) -> tuple[str, dict[str, Any]]:
            item = await self._item(work, None)
            (stored,) = await backend.submit_many([item])
            if not isinstance(stored, Task):
                raise _Answer(stored.message)
            if background:
                return _queued_text(stored), {"task": _task_data(stored)}
            (task,) = await self._wait(
                ctx, backend, [stored.id], mode="all", timeout=self._max_wait
            )
            return await _result_text(backend, task, full=False)

        return await self._run(ctx, body)

    async def get_task_result(
        self, ctx: Context, task_id: str, wait: WaitSeconds = 0, full: Full = False
    ) -> CallToolResult:
        async def body(backend: Tasks) -> tuple[str, dict[str, Any]]:
            (task,) = await self._wait(ctx, backend, [task_id], mode="all", timeout=self._cap(wait))
            return await _result_text(backend, task, full=full)

        return await self._run(ctx, body)

    async def list_tasks(
        self, ctx: Context, status: StatusFilter = "all", limit: Limit = 50
    ) -> CallToolResult:
        async def body(backend: Tasks) -> tuple[str, dict[str, Any]]:
            tasks = await backend.list(states=_states(status))
            shown = tasks[-limit:]
            text = tasks_table(shown)
            if len(tasks) > len(shown):
                text = f"(last {len(shown)} of {len(tasks)})\n" + text
            return text, {"tasks": [_task_data(t) for t in shown], "total": len(tasks)}

        return await self._run(ctx, body)

    async def cancel_task(self, ctx: Context, task_id: str) -> CallToolResult:
        async def body(backend: Tasks) -> tuple[str, dict[str, Any]]:
            task = await backend.cancel(task_id)
            return task_line(task), {"task": _task_data(task)}

        return await self._run(ctx, body)

    async def retry_task(self, ctx: Context, task_id: str) -> CallToolResult:
        async def body(backend: Tasks) -> tuple[str, dict[str, Any]]:
            task = await backend.retry(task_id)
            return f"{_queued_text(task)}\n(retry of {task_id})", {"task": _task_data(task)}

        return await self._run(ctx, body)

    async def merge_task(
        self, ctx: Context, task_id: str, how: MergeHow = "apply"
    ) -> CallToolResult:
        async def body(backend: Tasks) -> tuple[str, dict[str, Any]]:
            done = await backend.merge_task(task_id, how=how)
            if not done.merged and done.how != "patch":
                raise _Answer(done.message)
            return done.message, {"merge": done.model_dump(mode="json")}

        return await self._run(ctx, body)

    async def discard_task(self, ctx: Context, task_id: str) -> CallToolResult:
        async def body(backend: Tasks) -> tuple[str, dict[str, Any]]:
            worktree = await backend.discard_task(task_id)
            text = f"Discarded {worktree.branch}; its changes stay in {worktree.patch}."
            return text, {"worktree": worktree.model_dump(mode="json")}

        return await self._run(ctx, body)

    async def wait_tasks(
        self, ctx: Context, task_ids: TaskIds, mode: Mode = "all", timeout: WaitSeconds = 50
    ) -> CallToolResult:
        async def body(backend: Tasks) -> tuple[str, dict[str, Any]]:
            tasks = await self._wait(ctx, backend, task_ids, mode=mode, timeout=self._cap(timeout))
            running = [t.id for t in tasks if not t.state.terminal]
            text = tasks_table(tasks)
            if running and (mode == "all" or len(running) == len(tasks)):
                text += f"\nstill running: {', '.join(running)} — call wait_tasks again."
            return text, {"tasks": [_task_data(t) for t in tasks], "still_running": running}

        return await self._run(ctx, body)

    async def run_background(
        self,
        ctx: Context,
        command: str,
        cwd: Cwd = None,
        timeout: Timeout = None,
        label: Label = None,
    ) -> CallToolResult:
        return await self.delegate_task(
            ctx, description=label or _label(command), command=command, label=label, cwd=cwd,
            timeout=timeout,
        )  # fmt: skip

    async def check_background(
        self, ctx: Context, task_id: str, lines: Lines = 20
    ) -> CallToolResult:
        async def body(backend: Tasks) -> tuple[str, dict[str, Any]]:
            task = await backend.get(task_id)
            output = await backend.tail(task_id, lines=lines)
            text = task_line(task) + ("\n" + output.rstrip() if output.strip() else "")
            return text, {"task": _task_data(task), "output": output}

        return await self._run(ctx, body)

    async def list_background(self, ctx: Context) -> CallToolResult:
        return await self.list_tasks(ctx, status="all")

    async def kill_background(self, ctx: Context, task_id: str) -> CallToolResult:
        return await self.cancel_task(ctx, task_id)

    async def agents_start(
        self, ctx: Context, tasks: WorkItems, group: Group = None
    ) -> CallToolResult:
        async def body(backend: Tasks) -> tuple[str, dict[str, Any]]:
            batch = group or f"batch-{new_task_id()[2:12].lower()}"
            items: list[SubmitItem] = []
            refused: dict[int, str] = {}
            for index, raw in enumerate(tasks):
                try:
                    work = WorkItem.model_validate(raw)
                    items.append(await self._item(work, batch))
                except ValidationError as exc:
                    refused[index] = str(user_error(exc.errors()))
                except _Answer as exc:
                    refused[index] = str(exc)
            stored = iter(await backend.submit_many(items) if items else [])
            lines: list[str] = []
            data: list[dict[str, Any]] = []
            for index in range(len(tasks)):
                outcome = refused.get(index) or next(stored)
                if isinstance(outcome, Task):
                    lines.append(f"{index}: {task_line(outcome)}")
                    data.append({"index": index, "task": _task_data(outcome)})
                else:
                    message = outcome if isinstance(outcome, str) else outcome.message
                    lines.append(f"{index}: not started — {message}")
                    data.append({"index": index, "error": message})
            lines.append(f"batch {batch!r}: one summary notice when all have finished.")
            return "\n".join(lines), {"group": batch, "items": data}

        return await self._run(ctx, body)

    async def agents_status(
        self, ctx: Context, task_ids: list[str] | None = None
    ) -> CallToolResult:
        if not task_ids:
            return await self.list_tasks(ctx, status="active")
        ids = task_ids

        async def body(backend: Tasks) -> tuple[str, dict[str, Any]]:
            found = await backend.wait(ids, timeout=0)
            return tasks_table(found), {"tasks": [_task_data(t) for t in found]}

        return await self._run(ctx, body)

    async def agents_wait(
        self, ctx: Context, task_ids: TaskIds, mode: Mode = "all", timeout: WaitSeconds = 50
    ) -> CallToolResult:
        return await self.wait_tasks(ctx, task_ids, mode=mode, timeout=timeout)

    async def ack_notices(self, ctx: Context, up_to: Annotated[int, Field(ge=0)]) -> CallToolResult:
        async def body(backend: Tasks) -> tuple[str, dict[str, Any]]:
            await backend.ack_notices(up_to)
            if self._feed is not None:
                self._feed.acknowledged(up_to)
            return f"acknowledged notices up to {up_to}", {"up_to": up_to}

        return await self._run(ctx, body)


def _ended_ids(data: dict[str, Any]) -> set[str]:
    """Ids of ended tasks an answer already shows (their notices would repeat it)."""
    tasks = [data["task"]] if isinstance(data.get("task"), dict) else []
    tasks += [t for t in data.get("tasks", ()) if isinstance(t, dict)]
    terminal = {str(s) for s in TaskState if s.terminal}
    return {str(t["id"]) for t in tasks if t.get("state") in terminal}


def _states(status: str) -> list[str] | None:
    if status == "all":
        return None
    if status == "active":
        return [TaskState.QUEUED, TaskState.RUNNING]
    return [status]


def _queued_text(task: Task) -> str:
    where = f"queued, position {task.position}" if task.position else "queued"
    if task.waiting_for:
        where += f" ({task.waiting_for})"
    return (
        f"{task.id} {where}: {task.label or ''}\n"
        "Keep working; you will see a notice when it finishes, or call "
        f"get_task_result({task.id!r})."
    )


async def _result_text(backend: Tasks, task: Task, *, full: bool) -> tuple[str, dict[str, Any]]:
    data = {"task": _task_data(task)}
    if not task.state.terminal:
        last = await backend.tail(task.id, lines=5)
        text = (
            f"{task_line(task)}\nstill running — call get_task_result({task.id!r}, wait=50) again."
        )
        if last.strip():
            text += "\nlast output:\n" + last.rstrip()
        return text, data
    output: str | None = None
    if full or task.state is not TaskState.SUCCEEDED:
        output = await backend.tail(task.id, lines=200 if full else 20)
    data["task"]["result"] = task.result
    if task.error is not None:
        data["task"]["error"] = task.error.model_dump(mode="json")
    text = task_detail(task, output=output, full=full)
    if full and task.kind == "agent":
        transcript = await backend.transcript(task.id)
        if isinstance(transcript, dict):
            data["transcript"] = transcript
            text += "\n" + render_transcript(transcript)
    return text, data


async def _notify(ctx: Context, task: Task, done: int, total: int) -> None:
    """Progress (if the host asked for it) and a log line for a task that ended."""
    line = task_line(task)
    await ctx.report_progress(done, total, line)
    with warnings.catch_warnings():
        # MCP logging is deprecated by the 2026-07-28 revision (SEP-2577) but is still how
        # current hosts show server messages; send it while they read it.
        warnings.simplefilter("ignore", MCPDeprecationWarning)
        await ctx.session.send_log_message(
            level="info", data=f"finished: {line}", logger="outrider",
            related_request_id=ctx.request_id,
        )  # fmt: skip
