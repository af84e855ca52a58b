"""Concise text for tool results: what a model needs to act, and no more."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._core._notices import MARKS
from .._logging import format_duration
from .._text import clip
from .._types._task import TaskState

if TYPE_CHECKING:
    from collections.abc import Sequence

    from .._types._task import Notice, Task

__all__ = ["notices_block", "task_detail", "task_line", "tasks_table"]


def _clip(text: str | None, limit: int) -> str:
    if not text:
        return ""
    return clip(" ".join(text.split()), limit)


def task_line(task: Task) -> str:
    """`t_… ✓ succeeded 1.2s build — 'Implement X'` (queued: position and why)."""
    parts = [task.id, MARKS[task.state], str(task.state)]
    if task.state is TaskState.QUEUED:
        if task.position is not None:
            parts.append(f"#{task.position}")
        if task.waiting_for:
            parts.append(f"({task.waiting_for})")
    elif task.elapsed is not None:
        parts.append(format_duration(task.elapsed))
    if task.exit_code not in (None, 0):
        parts.append(f"exit {task.exit_code}")
    if task.label:
        parts.append(task.label)
    line = " ".join(parts)
    if task.description:
        line += f" — {_clip(task.description, 80)!r}"
    return line


def tasks_table(tasks: Sequence[Task]) -> str:
    """One line per task, or a note that there are none."""
    return "\n".join(task_line(t) for t in tasks) if tasks else "no tasks"


def task_detail(task: Task, *, output: str | None, full: bool) -> str:
    """Key: value lines about one task; the result in full only when asked."""
    lines = [task_line(task)]
    if task.state is TaskState.SUCCEEDED and task.result is not None:
        text = task.result if isinstance(task.result, str) else repr(task.result)
        if not full and len(text) > 2000:
            text = text[-2000:]
            lines.append("result (last 2000 chars; full=true for all):")
        else:
            lines.append("result:")
        lines.append(text.rstrip() or "(empty)")
    if task.error is not None:
        lines.append(f"error: {task.error.message}")
        if full and task.error.detail:
            lines.append(task.error.detail.rstrip())
    if output and (task.state is not TaskState.SUCCEEDED or full):
        lines.append("output (last lines):")
        lines.append(output.rstrip())
    if task.usage is not None and (task.usage.input_tokens or task.usage.output_tokens):
        lines.append(f"tokens: {task.usage.input_tokens} in, {task.usage.output_tokens} out")
    return "\n".join(lines)


def notices_block(notices: Sequence[Notice]) -> str:
    """The appended lines announcing finished work."""
    count = sum(1 for n in notices if n.kind == "task")
    groups = sum(1 for n in notices if n.kind == "group")
    overlaps = len(notices) - count - groups
    head = []
    if count:
        head.append(f"{count} task{'s' if count != 1 else ''} finished")
    if groups:
        head.append(f"{groups} batch{'es' if groups != 1 else ''} finished")
    if overlaps:
        head.append(f"{overlaps} overlap warning{'s' if overlaps != 1 else ''}")
    body = "\n".join(f"- {n.text}" for n in notices)
    return f"[outrider] {', '.join(head)}:\n{body}\n(get_task_result ID for details)"
