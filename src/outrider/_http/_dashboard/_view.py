"""What the dashboard shows, worked out from records: pure functions, no I/O.

- A task's group on the task page: Needs attention (it failed or timed out after the session
  last acknowledged its completion notices), Running, Queued, or Done (`group_of`).
- The delegation forest: tasks nested under their `parent`, trees gathered by `group`, each
  tree with what it spent and, for an agent tree, what its budget has left (`forest`).
- Per concurrency key: its load and the tasks queued on it, first to start first (`key_rows`).
- The command line that submits the same task again (`cli_line`).
"""

from __future__ import annotations

import json
import shlex
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Literal

from ..._logging import format_duration
from ..._types._task import AgentSpec, CliAgentSpec, HandlerSpec, ShellSpec, TaskState

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping, Sequence

    from pydantic import JsonValue

    from ..._types._task import KeyStatus, Status, Task

__all__ = [
    "FAILURES",
    "GROUPS",
    "Row",
    "row_of",
    "Budget",
    "Group",
    "KeyRow",
    "Node",
    "TreeGroup",
    "budget_of",
    "cli_line",
    "cost_text",
    "duration_text",
    "forest",
    "group_of",
    "grouped",
    "key_rows",
    "model_of",
    "agent_of",
    "tokens_text",
]

Group = Literal["attention", "running", "queued", "done"]
GROUPS: tuple[tuple[Group, str], ...] = (
    ("attention", "Needs attention"),
    ("running", "Running"),
    ("queued", "Queued"),
    ("done", "Done"),
)
FAILURES = ("task.failed", "task.timed_out")
"""The events of the ends that need attention until they are acknowledged."""
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def group_of(task: Task, attention: set[str]) -> Group:
    """Where the task is listed on the task page."""
    if task.state is TaskState.RUNNING:
        return "running"
    if task.state is TaskState.QUEUED:
        return "queued"
    return "attention" if task.id in attention else "done"


def _newest(task: Task) -> datetime:
    return task.finished_at or task.started_at or task.created_at


def grouped(tasks: Iterable[Task], attention: set[str]) -> dict[Group, list[Task]]:
    """The tasks by group, each in the order it is shown.

    Running: newest start first; Queued: next to start first; the others: newest end first.
    """
    groups: dict[Group, list[Task]] = {name: [] for name, _ in GROUPS}
    for task in tasks:
        groups[group_of(task, attention)].append(task)
    groups["running"].sort(key=lambda t: t.started_at or t.created_at, reverse=True)
    groups["queued"].sort(key=lambda t: (t.position is None, t.position or 0, t.created_at))
    for name in ("attention", "done"):
        groups[name].sort(key=_newest, reverse=True)
    return groups


def agent_of(task: Task) -> str | None:
    """The sub-agent a task runs as, if any."""
    spec = task.spec
    if isinstance(spec, AgentSpec):
        return spec.agent
    if isinstance(spec, CliAgentSpec):
        return spec.agent or spec.cli
    if isinstance(spec, HandlerSpec):
        return spec.handler
    return None


def model_of(task: Task) -> str | None:
    """The model an agent task runs on: its spec's, else its `model:` key's."""
    spec = task.spec
    if isinstance(spec, AgentSpec | CliAgentSpec) and spec.model:
        return spec.model
    return next((k.removeprefix("model:") for k in task.keys if k.startswith("model:")), None)


def tokens_text(count: int) -> str:
    """`950`, `12.4k`, `3.1M`."""
    if count < 1000:
        return str(count)
    if count < 1_000_000:
        return f"{count / 1000:.1f}k"
    return f"{count / 1_000_000:.1f}M"


def cost_text(cost: float | None) -> str:
    """`$0.0187`, `$1.24`, or empty when unknown."""
    if cost is None:
        return ""
    return f"${cost:.4f}" if cost < 1 else f"${cost:,.2f}"


def duration_text(seconds: float | None) -> str:
    """A short duration, or empty."""
    return "" if seconds is None else format_duration(seconds)


# -- a task's row -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Row:
    """What a task's row shows, worked out once (a page may show thousands)."""

    id: str
    group: Group
    state: str
    name: str
    attempt: int
    kind: str
    agent: str | None
    model: str | None
    elapsed: str
    since: float | None
    """When it started, while it runs (the page's script ticks its elapsed time from it)."""
    progress: tuple[float, float | None, str] | None
    """Completed, total and message, while it has not ended."""
    position: int | None
    note: str
    failed: bool
    """`note` is its error."""
    tokens: int | None
    usage: str
    cost: str
    ended: bool


def _note(task: Task, group: Group, line: str) -> str:
    if group == "queued":
        return task.waiting_for or "queued"
    if task.error is not None and task.state.terminal:
        return task.error.message
    if task.state is TaskState.SUCCEEDED and isinstance(task.result, str):
        lines = [text for text in task.result.splitlines() if text.strip()]
        if lines:
            shown = lines[-1] if task.kind == "shell" else lines[0]
            return shown if len(shown) <= 200 else shown[:199] + "…"
    return line


def row_of(task: Task, group: Group, line: str = "") -> Row:
    """A task's row on the task page (`line`: its newest output line, while it runs)."""
    usage, progress = task.usage, task.progress
    running = task.state is TaskState.RUNNING
    return Row(
        id=task.id, group=group, state=task.state.value, name=task.label or task.name,
        attempt=task.attempt, kind=task.kind.replace("_", " "), agent=agent_of(task),
        model=model_of(task), elapsed=duration_text(task.elapsed),
        since=epoch(task.started_at) if running and task.started_at else None,
        progress=None if progress is None or task.state.terminal
        else (progress.completed, progress.total, progress.message or ""),
        position=task.position if group == "queued" else None,
        note=_note(task, group, line), failed=task.error is not None and task.state.terminal,
        tokens=None if usage is None else usage.input_tokens + usage.output_tokens,
        usage="" if usage is None
        else f"{usage.input_tokens} in, {usage.output_tokens} out, {usage.requests} requests",
        cost="" if usage is None else cost_text(usage.cost), ended=task.state.terminal,
    )  # fmt: skip


# -- the delegation forest ---------------------------------------------------------------


@dataclass(slots=True)
class Node:
    """A task and the tasks it started."""

    task: Task
    depth: int = 0
    children: list[Node] = field(default_factory=list)

    def walk(self) -> Iterable[Node]:
        """This node, then its descendants, depth first."""
        yield self
        for child in self.children:
            yield from child.walk()


@dataclass(frozen=True, slots=True)
class Budget:
    """What a delegation tree may spend, has spent, and has left (None: no such budget)."""

    tokens: int | None
    cost: float | None
    spent_tokens: int
    spent_cost: float

    @property
    def tokens_left(self) -> int | None:
        """Tokens it may still spend."""
        return None if self.tokens is None else max(0, self.tokens - self.spent_tokens)

    @property
    def cost_left(self) -> float | None:
        """Dollars it may still spend."""
        return None if self.cost is None else max(0.0, self.cost - self.spent_cost)


@dataclass(slots=True)
class TreeGroup:
    """The trees of one batch (`group`; None: tasks of no batch)."""

    group: str | None
    roots: list[Node]
    spent_tokens: int = 0
    spent_cost: float = 0.0


def forest(tasks: Sequence[Task]) -> list[TreeGroup]:
    """Tasks nested under their parents; trees by batch, the newest batch first."""
    nodes = {t.id: Node(t) for t in tasks}
    roots: list[Node] = []
    for node in nodes.values():
        parent = nodes.get(node.task.parent or "")
        (parent.children if parent is not None else roots).append(node)
    for root in roots:
        stack = [root]
        while stack:
            node = stack.pop()
            for child in node.children:
                child.depth = node.depth + 1
                stack.append(child)
    groups: dict[str | None, TreeGroup] = {}
    for root in roots:
        found = groups.setdefault(root.task.group, TreeGroup(root.task.group, []))
        found.roots.append(root)
        for node in root.walk():
            usage = node.task.usage
            if usage is not None:
                found.spent_tokens += usage.input_tokens + usage.output_tokens
                found.spent_cost += usage.cost or 0.0
    return sorted(groups.values(), key=lambda g: max(r.task.created_at for r in g.roots),
                  reverse=True)  # fmt: skip


def budget_of(root: Node, transcript: JsonValue) -> Budget | None:
    """A tree's budget, from its root agent's transcript (`budget`), and what it spent."""
    if not isinstance(transcript, dict):
        return None
    given = transcript.get("budget")
    if not isinstance(given, dict):
        return None
    tokens, cost = given.get("tokens"), given.get("cost")
    if not isinstance(tokens, int) and not isinstance(cost, int | float):
        return None
    spent_tokens, spent_cost = 0, 0.0
    for node in root.walk():
        if (usage := node.task.usage) is not None:
            spent_tokens += usage.input_tokens + usage.output_tokens
            spent_cost += usage.cost or 0.0
    return Budget(
        tokens if isinstance(tokens, int) else None,
        float(cost) if isinstance(cost, int | float) else None,
        spent_tokens,
        spent_cost,
    )


# -- keys ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class KeyRow:
    """One concurrency key: its load and the tasks queued on it, next to start first."""

    key: str
    load: KeyStatus
    queued: list[Task]


def key_rows(status: Status, queued: Iterable[Task], *, show: int = 5) -> list[KeyRow]:
    """Every known key, busiest first, with at most `show` of its queued tasks."""
    waiting: dict[str, list[Task]] = {}
    for task in sorted(queued, key=lambda t: (t.position is None, t.position or 0)):
        for key in task.keys:
            waiting.setdefault(key, []).append(task)
    rows = [KeyRow(k, load, waiting.get(k, [])[:show]) for k, load in status.keys.items()]
    rows.sort(key=lambda r: (-(r.load.running + r.load.queued), r.key))
    return rows


# -- the command line -----------------------------------------------------------------------


def _options(task: Task, default_keys: Mapping[str, tuple[str, ...]]) -> list[str]:
    words = [f"--session {shlex.quote(task.session)}"] if task.session != "default" else []
    for flag, value in (
        ("--label", task.label), ("--description", task.description), ("--group", task.group),
        ("--timeout", task.timeout), ("--ttl", task.ttl), ("--stall-timeout", task.stall_timeout),
    ):  # fmt: skip
        if value is not None:
            words.append(f"{flag} {shlex.quote(str(value))}")
    if task.priority != 5:
        words.append(f"--priority {task.priority}")
    if task.max_attempts != 1:
        words.append(f"--max-attempts {task.max_attempts}")
    if task.keys != default_keys.get(task.kind, task.keys):
        words += [f"--key {shlex.quote(k)}" for k in task.keys]
    return words


def cli_line(task: Task) -> str:
    """An `outrider submit` line that submits the same work with the same options."""
    spec = task.spec
    default = {"shell": ("shell",), "handler": (f"handler:{agent_of(task)}",)}
    words = ["outrider submit", *_options(task, default)]
    if isinstance(spec, ShellSpec):
        if spec.cwd:
            words.append(f"--cwd {shlex.quote(spec.cwd)}")
        words += [f"--env {shlex.quote(f'{k}={v}')}" for k, v in spec.env.items()]
        if isinstance(spec.command, str):
            return " ".join([*words, shlex.quote(spec.command)])
        return " ".join([*words, "--", shlex.join(spec.command)])
    if isinstance(spec, HandlerSpec):
        params = shlex.quote(_json(spec.params))
        return " ".join([*words, f"--handler {shlex.quote(spec.handler)} --params {params}"])
    if isinstance(spec, AgentSpec) or spec.agent:
        workspace = spec.workspace if isinstance(spec, AgentSpec) else spec.cwd
        name = spec.agent or ""
        if workspace:
            words.append(f"--cwd {shlex.quote(workspace)}")
        if spec.model:
            words.append(f"--model {shlex.quote(spec.model)}")
        return " ".join([*words, f"--agent {shlex.quote(name)}", shlex.quote(spec.prompt)])
    return f"outrider retry {task.id}" + (f" --session {shlex.quote(task.session)}"
                                          if task.session != "default" else "")  # fmt: skip


def _json(value: object) -> str:
    return json.dumps(value, separators=(",", ":"))


def epoch(at: datetime | None) -> float:
    """Seconds since the epoch (0 for None)."""
    return 0.0 if at is None else (at - _EPOCH).total_seconds()
