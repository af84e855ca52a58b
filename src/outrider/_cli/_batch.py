"""Batch files: a TOML list of tasks, validated, submitted as one group and watched live."""

from __future__ import annotations

import json
import tomllib
from typing import TYPE_CHECKING, Annotated

import anyio
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

import outrider
from outrider import Task, TaskState

from .._logging import format_duration
from .._models import Int, Number, ShellSpec, SubmitItem

if TYPE_CHECKING:
    from pathlib import Path

__all__ = ["Batch", "BatchError", "load_batch", "run_batch"]

_STYLE = {
    TaskState.QUEUED: "dim",
    TaskState.RUNNING: "bold cyan",
    TaskState.SUCCEEDED: "green",
    TaskState.FAILED: "bold red",
    TaskState.CANCELLED: "yellow",
    TaskState.TIMED_OUT: "magenta",
}
_MARK = {
    TaskState.QUEUED: "·",
    TaskState.RUNNING: "▶",
    TaskState.SUCCEEDED: "✓",
    TaskState.FAILED: "✗",
    TaskState.CANCELLED: "⊘",
    TaskState.TIMED_OUT: "⏱",
}


class BatchError(Exception):
    """A batch file is invalid; the message names the field."""


class BatchTask(BaseModel):
    """One `[[task]]` of a batch file (checked again as a `SubmitItem` once loaded)."""

    model_config = ConfigDict(extra="forbid")
    label: str = Field(min_length=1, max_length=200)
    command: str | list[str] | None = None
    handler: str | None = None
    params: dict[str, object] = Field(default_factory=dict)
    cwd: str | None = None
    env: dict[str, str] = Field(default_factory=dict)
    priority: Int = Field(default=5, ge=0, le=10)
    keys: list[Annotated[str, Field(min_length=1)]] | None = None
    timeout: Number | None = Field(default=None, gt=0)
    ttl: Number | None = Field(default=None, gt=0)
    max_attempts: Int = Field(default=1, ge=1, le=100)
    depends_on: list[str] = Field(default_factory=list)
    description: str | None = None

    def submit_item(self) -> SubmitItem:
        """The task as it is submitted (`depends_on` left out: labels become ids then).

        Raises:
            ValidationError: A field the submit would refuse.
        """
        return SubmitItem(
            spec=ShellSpec(command=self.command if self.command is not None else "", cwd=self.cwd,
                           env=self.env),
            priority=self.priority, keys=tuple(self.keys) if self.keys is not None else None,
            timeout=self.timeout, ttl=self.ttl, max_attempts=self.max_attempts,
            label=self.label, description=self.description,
        )  # fmt: skip

    @model_validator(mode="after")
    def _one_kind(self) -> BatchTask:
        if self.handler is not None:
            raise ValueError(
                "`handler` tasks need a program that registers the handler; the CLI runs "
                "shell commands only (give `command`)"
            )
        if self.command is None:
            raise ValueError("give `command` (a shell string or an argv list)")
        return self


class Batch(BaseModel):
    """A whole batch file."""

    model_config = ConfigDict(extra="forbid")
    limits: dict[Annotated[str, Field(min_length=1, max_length=200)], Int] = Field(
        default_factory=dict
    )
    task: list[BatchTask] = Field(min_length=1)

    @model_validator(mode="after")
    def _check(self) -> Batch:
        seen: set[str] = set()
        for index, item in enumerate(self.task):
            if item.label in seen:
                raise ValueError(f"task[{index}].label {item.label!r} is used twice")
            for dep in item.depends_on:
                if dep not in seen:
                    raise ValueError(
                        f"task[{index}].depends_on names {dep!r}, which is not the label of an "
                        "earlier task"
                    )
            seen.add(item.label)
        for key, limit in self.limits.items():
            if limit < 1:
                raise ValueError(f"limits.{key} must be at least 1, not {limit}")
        return self


def load_batch(path: Path) -> Batch:
    """Read and validate a batch file; relative `cwd`s are resolved against its folder.

    Raises:
        BatchError: The file is missing, not TOML, or a field is invalid.
    """
    try:
        data = tomllib.loads(path.read_bytes().decode())
    except OSError as exc:
        raise BatchError(f"Cannot read {str(path)!r}: {exc.strerror}.") from None
    except UnicodeDecodeError as exc:
        raise BatchError(
            f"{path}: byte {exc.object[exc.start]:#04x} at position {exc.start} is not UTF-8; "
            "save the file as UTF-8."
        ) from None
    except tomllib.TOMLDecodeError as exc:
        raise BatchError(f"{path}: not valid TOML: {exc}.") from None
    try:
        batch = Batch.model_validate(data)
    except ValidationError as exc:
        raise BatchError(f"{path}: {_problem(exc)}") from None
    base = path.resolve().parent
    for index, item in enumerate(batch.task):
        item.cwd = str(base / (item.cwd or "."))
        try:
            item.submit_item()
        except ValidationError as exc:
            raise BatchError(f"{path}: {_problem(exc, f'task.{index}.')}") from None
    return batch


def _problem(exc: ValidationError, prefix: str = "") -> str:
    """`where: what.` of a validation error's first problem."""
    first = exc.errors()[0]
    where = prefix + ".".join(str(p) for p in first["loc"])
    message = first["msg"].removeprefix("Value error, ")
    got = first.get("input")
    shown = "" if isinstance(got, dict | list) or got is None else f" (got {_clip(repr(got))})"
    return f"{where.rstrip('.') or 'file'}: {message}{shown}."


def _clip(text: str, limit: int = 80) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _row(table: Table, task: Task, last_line: str) -> None:
    state = Text(f"{_MARK[task.state]} {task.state}", style=_STYLE[task.state])
    elapsed = task.elapsed
    detail = last_line
    if task.state is TaskState.QUEUED:
        detail = f"#{task.position} · waits for {task.waiting_for}" if task.position else "queued"
    elif task.error is not None and task.state.terminal:
        detail = task.error.message
    progress = ""
    if task.progress is not None and task.progress.total:
        progress = f"{task.progress.completed:g}/{task.progress.total:g}"
    table.add_row(
        task.label or task.id,
        str(task.priority),
        state,
        format_duration(elapsed) if elapsed is not None else "",
        progress,
        Text(detail[-70:], overflow="ellipsis", no_wrap=True),
    )


async def _view(orch: outrider.Orchestrator, session: str, group: str) -> Group:
    tasks = await orch.list(session=session, group=group)
    status = orch.status()
    table = Table(box=None, pad_edge=False, header_style="bold")
    for column in ("task", "prio", "state", "elapsed", "progress", "output"):
        table.add_column(column)
    for task in tasks:
        last = ""
        if task.state is TaskState.RUNNING:
            last = (await orch.tail(task.id, session=session, lines=1)).strip()
        _row(table, task, last)
    keys = "  ".join(f"{k} {v.running}/{v.limit}" for k, v in status.keys.items())
    header = Text.assemble(
        ("outrider ", "bold"),
        f"running {status.running}/{status.max_running} · queued {status.queued} · keys: {keys}",
    )
    return Group(header, table)


def _summary(tasks: list[Task]) -> Table:
    table = Table(title="summary", header_style="bold")
    for column in ("task", "state", "exit", "duration"):
        table.add_column(column)
    for task in tasks:
        elapsed = task.elapsed
        table.add_row(
            task.label or task.id,
            Text(f"{_MARK[task.state]} {task.state}", style=_STYLE[task.state]),
            "" if task.exit_code is None else str(task.exit_code),
            format_duration(elapsed) if elapsed is not None else "-",
        )
    return table


async def run_batch(
    batch: Batch,
    *,
    db: Path,
    session: str,
    console: Console,
    as_json: bool,
    group: str = "batch",
    max_running: int = 8,
) -> list[Task]:
    """Submit the batch as one group, show it live until every task ends, return the records.

    Cancellation: cancelling the caller stops every task (the orchestrator shuts down).
    """
    limits = {k: v for k, v in batch.limits.items() if k != "max_running"}
    max_running = batch.limits.get("max_running", max_running)
    async with outrider.Orchestrator(
        db, limits=limits, max_running=max_running, shutdown_grace=0.0
    ) as orch:
        ids: dict[str, str] = {}
        try:
            for item in batch.task:
                submitted = item.submit_item()
                task = await orch.submit(
                    submitted.spec, session=session, priority=submitted.priority,
                    keys=submitted.keys, timeout=submitted.timeout, ttl=submitted.ttl,
                    max_attempts=submitted.max_attempts, label=submitted.label,
                    description=submitted.description, group=group,
                    depends_on=[ids[d] for d in item.depends_on],
                )  # fmt: skip
                ids[item.label] = task.id
            if as_json:
                return await orch.wait(list(ids.values()), session=session)
            with Live(console=console, refresh_per_second=8, transient=False) as live:
                done = False
                while not done:
                    live.update(await _view(orch, session, group))
                    with anyio.move_on_after(0.25):
                        await orch.wait(list(ids.values()), session=session)
                        done = True
                live.update(await _view(orch, session, group))
            tasks = await orch.list(session=session, group=group)
            console.print()
            console.print(_summary(tasks))
            return tasks
        except BaseException:
            with anyio.CancelScope(shield=True):
                await orch.cancel_session(session)
            raise


def to_json(tasks: list[Task]) -> str:
    """One JSON document with every task's record."""
    return json.dumps({"tasks": [t.model_dump(mode="json") for t in tasks]}, indent=2)
