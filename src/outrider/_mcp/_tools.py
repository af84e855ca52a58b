"""The MCP tools, written once over `Tasks` (the daemon's sessions; hosts reach them at `/mcp`).

Conventions every tool follows:
- Work is queued, never refused at a limit; the answer says "queued, position N".
- Blocking waits last at most `max_wait` seconds (default 50, below opencode's 60 s tool
  timeout and Claude Code's 2 min), then answer "still running — call … again", never an error.
- Every answer ends with the notices its reader (the host window) has not received; an answer
  that carried them acknowledges them (they reached the model) before it is sent. Answers
  given at once to one reader (a host may run a turn's tool calls in parallel) take and
  acknowledge them one after another, reading them again first: each notice is carried once;
  other readers' answers do not wait for them. While a tool
  waits, each finished task is a progress notification (when the host sent a progress token).
- What the model reads is the same in every host: the text content, and `structuredContent`
  whose `answer` field is that same text (Claude Code shows the model only the structured
  content), beside the facts as fields (`task`, `tasks`, `notices`, …).
- An error is one answer with `isError`: a sentence saying what is wrong and how to fix it.
"""

from __future__ import annotations

import contextlib
import warnings
import weakref
from dataclasses import dataclass
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
from .._core._notices import notices_block
from .._ids import new_task_id
from .._types._errors import OutriderError, TaskNotFound, UserError, user_error
from .._types._task import Notice, ShellSpec, SubmitItem, Task, TaskState
from .._types._worktrees import MergeHow  # noqa: TC001  # the MCP SDK reads tool annotations
from ._format import task_detail, task_line, tasks_table

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Mapping, Sequence

    from mcp.server.mcpserver import MCPServer

    from .._agents._definitions import AgentDefinition
    from .._types._api import Tasks

__all__ = ["NOTICES_PER_ANSWER", "READ_ONLY", "TOOL_DESCRIPTIONS", "Caller", "Tools"]

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
    "list_tasks": (
        "Your newest tasks (this session; limit, default 50), one line each; filter by status."
    ),
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
        spec=ShellSpec(command=work.command, cwd=_where(work.cwd, cwd)), priority=work.priority,
        timeout=work.timeout, label=work.label or _label(work.command),
        description=work.description or work.prompt, group=group,
    )  # fmt: skip


def _where(given: str | None, host: str | None) -> str | None:
    """Where work runs: its `cwd` (a relative one within the host's directory), else the host's."""
    if given is None or host is None:
        return given or host
    return str(Path(host, given))


def _agent_item(
    work: WorkItem, *, agents: Mapping[str, AgentDefinition], group: str | None, cwd: str | None
) -> SubmitItem:
    assert work.agent is not None
    try:
        spec, agent = agent_spec(agents, work.agent, work.prompt, cwd=_where(work.cwd, cwd))
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


READ_ONLY = {
    "get_task_result", "list_tasks", "wait_tasks", "check_background", "list_background",
    "agents_status", "agents_wait",
}  # fmt: skip
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


@dataclass(frozen=True, slots=True)
class Caller:
    """Who calls a tool: their session, the window reading its notices, and their directory."""

    tasks: Tasks
    reader: str | None = None
    """The host window reading the session's notices (None: the session's own cursor)."""
    cwd: str | None = None
    """The host's project directory: where work runs unless it names a `cwd` (None: the
    daemon's)."""


class Tools:
    """Registers outrider's tools on an MCP server.

    Args:
        resolve: Who calls, from a request (`Caller`); raises `UserError` to refuse it.
        max_wait: The longest a tool call blocks, in seconds.
        agents: The sub-agents `delegate_task` may name: fixed, or a catalog read from the
            directory the work is delegated from (its `cwd`, else the caller's) at each call.
    """

    def __init__(
        self,
        resolve: Callable[[Context], Awaitable[Caller]],
        *,
        max_wait: float = 50.0,
        agents: Mapping[str, AgentDefinition] | AgentCatalog | None = None,
    ) -> None:
        self._resolve = resolve
        self._max_wait = max_wait
        self._agents = agents if isinstance(agents, AgentCatalog) else dict(agents or {})
        self._carrying: weakref.WeakValueDictionary[tuple[str, str | None], anyio.Lock] = (
            weakref.WeakValueDictionary()
        )
        """A lock per notice reader (session and window), while an answer holds or awaits it:
        held while an answer takes the reader's notices and acknowledges them, so answers
        given at once (a host may run a turn's tool calls in parallel) never carry the same
        notice, and other readers' answers do not wait."""

    async def _item(self, caller: Caller, work: WorkItem, group: str | None) -> SubmitItem:
        """The submit item of `work`, its agent looked up where the work is delegated from."""
        agents: Mapping[str, AgentDefinition] = {}
        if not isinstance(self._agents, AgentCatalog):
            agents = self._agents
        elif work.agent is not None:
            where = _where(work.cwd, caller.cwd)
            load = self._agents.load
            agents = (await anyio.to_thread.run_sync(load, Path(where) if where else None)).agents
        return _submit_item(work, agents=agents, group=group, cwd=caller.cwd)

    def register(self, server: MCPServer[Any], names: Sequence[str]) -> None:
        """Add the tools in `names` to `server`."""
        read_only = ToolAnnotations(read_only_hint=True, open_world_hint=False)
        for name in names:
            server.add_tool(
                getattr(self, name), name=name, description=TOOL_DESCRIPTIONS[name],
                annotations=read_only if name in READ_ONLY else None, structured_output=False,
            )  # fmt: skip

    # -- answering ----------------------------------------------------------------------

    async def _answer(
        self,
        caller: Caller,
        text: str,
        data: dict[str, Any],
        pending: list[Notice],
        *,
        error: bool = False,
    ) -> CallToolResult:
        if pending:
            async with self._turn_of(caller):
                text = await self._carry(caller, text, data, pending)
        return CallToolResult(
            content=[TextContent(type="text", text=text)],
            structured_content={"answer": text, **data},
            is_error=error,
        )

    def _turn_of(self, caller: Caller) -> anyio.Lock:
        """The lock of `caller`'s notice reader (it goes once no answer holds or awaits it)."""
        key = (caller.tasks.session, caller.reader)
        lock = self._carrying.get(key)
        if lock is None:
            lock = self._carrying[key] = anyio.Lock()
        return lock

    async def _carry(
        self, caller: Caller, text: str, data: dict[str, Any], pending: list[Notice]
    ) -> str:
        """`text` with the reader's notices, acknowledged (hold the reader's `_turn_of`).

        They are read again here: an answer given meanwhile may have carried some of those
        `pending` (which stand if they cannot be read). A notice whose task's end the answer
        already shows is acknowledged without being added.
        """
        with contextlib.suppress(OutriderError):
            pending = await caller.tasks.notices(limit=NOTICES_PER_ANSWER, reader=caller.reader)
        shown = _ended_ids(data)
        fresh = [n for n in pending if n.task_id is None or n.task_id not in shown]
        if fresh:
            text += "\n\n" + notices_block(fresh)
            data["notices"] = [n.model_dump(mode="json") for n in fresh]
        if pending:  # the answer carries them to the model: acknowledged before it is sent
            up_to = max(n.seq for n in pending)
            with contextlib.suppress(OutriderError):  # not acknowledged: delivered again
                await caller.tasks.ack_notices(up_to, reader=caller.reader)
        return text

    async def _run(
        self, ctx: Context, body: Callable[[Caller], Awaitable[tuple[str, dict[str, Any]]]]
    ) -> CallToolResult:
        try:
            caller = await self._resolve(ctx)
        except UserError as exc:
            return error_answer(str(exc))
        pending: list[Notice] = []

        async def fetch() -> None:
            # Best effort: the work's own answer says what is wrong if the store is not there.
            with contextlib.suppress(OutriderError):
                pending[:] = await caller.tasks.notices(
                    limit=NOTICES_PER_ANSWER, reader=caller.reader
                )

        started = anyio.current_time()
        error = False
        async with anyio.create_task_group() as tg:  # the notices are read beside the work
            tg.start_soon(fetch)
            try:
                text, data = await body(caller)
            except (_Answer, OutriderError) as exc:
                text, error = _refusal(exc), True
                data = {"error": text}
        if anyio.current_time() - started > _REFRESH_AFTER:
            await fetch()  # a call that took a while carries what finished meanwhile
        return await self._answer(caller, text, data, pending, error=error)

    def _cap(self, seconds: float | None) -> float:
        return self._max_wait if seconds is None else max(0.0, min(seconds, self._max_wait))

    async def _wait(
        self,
        ctx: Context,
        tasks: Tasks,
        task_ids: Sequence[str],
        *,
        mode: Literal["all", "any"],
        timeout: float,
    ) -> list[Task]:
        """Wait like `Tasks.wait`, telling the host about each task that ends meanwhile."""
        ids = list(dict.fromkeys(task_ids))
        pending = {t.id for t in await tasks.wait(ids, timeout=0) if not t.state.terminal}
        done = len(ids) - len(pending)
        if pending and timeout > 0:
            await ctx.report_progress(done, len(ids), f"waiting for {len(pending)} task(s)")
        with anyio.move_on_after(timeout):
            while pending and not (mode == "any" and done):
                for task in await tasks.wait(sorted(pending), return_when="any"):
                    if task.state.terminal and task.id in pending:
                        pending.discard(task.id)
                        done += 1
                        await _notify(ctx, task, done, len(ids))
        return await tasks.wait(ids, timeout=0)

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

        async def body(caller: Caller) -> tuple[str, dict[str, Any]]:
            backend = caller.tasks
            item = await self._item(caller, work, None)
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
        async def body(caller: Caller) -> tuple[str, dict[str, Any]]:
            backend = caller.tasks
            (task,) = await self._wait(ctx, backend, [task_id], mode="all", timeout=self._cap(wait))
            return await _result_text(backend, task, full=full)

        return await self._run(ctx, body)

    async def list_tasks(
        self, ctx: Context, status: StatusFilter = "all", limit: Limit = 50
    ) -> CallToolResult:
        async def body(caller: Caller) -> tuple[str, dict[str, Any]]:
            backend = caller.tasks
            # One more than shown, to tell whether there are older ones: a session's whole
            # history (thousands of tasks) is never read to show a page of it.
            tasks = await backend.list(states=_states(status), limit=limit + 1)
            shown = tasks[-limit:]
            more = len(tasks) > len(shown)
            text = tasks_table(shown)
            if more:
                text = f"(the newest {len(shown)}; older ones are not shown)\n" + text
            return text, {"tasks": [_task_data(t) for t in shown], "more": more}

        return await self._run(ctx, body)

    async def cancel_task(self, ctx: Context, task_id: str) -> CallToolResult:
        async def body(caller: Caller) -> tuple[str, dict[str, Any]]:
            backend = caller.tasks
            task = await backend.cancel(task_id)
            return task_line(task), {"task": _task_data(task)}

        return await self._run(ctx, body)

    async def retry_task(self, ctx: Context, task_id: str) -> CallToolResult:
        async def body(caller: Caller) -> tuple[str, dict[str, Any]]:
            backend = caller.tasks
            task = await backend.retry(task_id)
            return f"{_queued_text(task)}\n(retry of {task_id})", {"task": _task_data(task)}

        return await self._run(ctx, body)

    async def merge_task(
        self, ctx: Context, task_id: str, how: MergeHow = "apply"
    ) -> CallToolResult:
        async def body(caller: Caller) -> tuple[str, dict[str, Any]]:
            backend = caller.tasks
            done = await backend.merge_task(task_id, how=how)
            if not done.merged and done.how != "patch":
                raise _Answer(done.message)
            return done.message, {"merge": done.model_dump(mode="json")}

        return await self._run(ctx, body)

    async def discard_task(self, ctx: Context, task_id: str) -> CallToolResult:
        async def body(caller: Caller) -> tuple[str, dict[str, Any]]:
            backend = caller.tasks
            worktree = await backend.discard_task(task_id)
            text = f"Discarded {worktree.branch}; its changes stay in {worktree.patch}."
            return text, {"worktree": worktree.model_dump(mode="json")}

        return await self._run(ctx, body)

    async def wait_tasks(
        self, ctx: Context, task_ids: TaskIds, mode: Mode = "all", timeout: WaitSeconds = 50
    ) -> CallToolResult:
        async def body(caller: Caller) -> tuple[str, dict[str, Any]]:
            backend = caller.tasks
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
        async def body(caller: Caller) -> tuple[str, dict[str, Any]]:
            backend = caller.tasks
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
        async def body(caller: Caller) -> tuple[str, dict[str, Any]]:
            backend = caller.tasks
            batch = group or f"batch-{new_task_id()[2:12].lower()}"
            items: list[SubmitItem] = []
            refused: dict[int, str] = {}
            for index, raw in enumerate(tasks):
                try:
                    work = WorkItem.model_validate(raw)
                    items.append(await self._item(caller, work, batch))
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

        async def body(caller: Caller) -> tuple[str, dict[str, Any]]:
            backend = caller.tasks
            found = await backend.wait(ids, timeout=0)
            return tasks_table(found), {"tasks": [_task_data(t) for t in found]}

        return await self._run(ctx, body)

    async def agents_wait(
        self, ctx: Context, task_ids: TaskIds, mode: Mode = "all", timeout: WaitSeconds = 50
    ) -> CallToolResult:
        return await self.wait_tasks(ctx, task_ids, mode=mode, timeout=timeout)

    async def ack_notices(self, ctx: Context, up_to: Annotated[int, Field(ge=0)]) -> CallToolResult:
        async def body(caller: Caller) -> tuple[str, dict[str, Any]]:
            backend = caller.tasks
            await backend.ack_notices(up_to, reader=caller.reader)
            return f"acknowledged notices up to {up_to}", {"up_to": up_to}

        return await self._run(ctx, body)


def error_answer(message: str) -> CallToolResult:
    """An error answer for the model: the message as text and as `structuredContent.answer`."""
    return CallToolResult(
        content=[TextContent(type="text", text=message)],
        structured_content={"answer": message, "error": message},
        is_error=True,
    )


def _refusal(exc: Exception) -> str:
    """What the model reads when a tool's work was refused, with the tool that helps."""
    if isinstance(exc, TaskNotFound):
        return f"No task {exc.task_id!r} in this session; list_tasks shows its tasks' ids."
    return str(exc)


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
