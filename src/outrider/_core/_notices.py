"""Completion notices, made from a session's stored ending events.

A notice is derived, not stored: the durable state is one cursor per session (the highest
acknowledged event `seq`), so notices survive restarts, and a notice is pending exactly while
its event is past the cursor. When a group's summary is pending, the pending notices of its
tasks are folded into it, so a finished batch reads as one line.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._marker import marker
from .._types._events import GroupCompleted, TaskEnded, TaskOverlap
from .._types._task import Notice, TaskState

if TYPE_CHECKING:
    from collections.abc import Sequence

    from .._types._events import Event

__all__ = ["MARKS", "fold_notices", "notice_of", "notices_block", "notices_from_events"]

MARKS = {
    TaskState.SUCCEEDED: "✓",
    TaskState.FAILED: "✗",
    TaskState.CANCELLED: "⊘",
    TaskState.TIMED_OUT: "⏱",
    TaskState.RUNNING: "…",
    TaskState.QUEUED: "·",
}


def _text(value: str | None, limit: int) -> str | None:
    if not value or not value.strip():
        return None
    value = " ".join(value.split())
    return value if len(value) <= limit else value[: limit - 1] + "…"


def _task_notice(event: Event, ended: TaskEnded) -> Notice:
    state = ended.state
    label = _text(ended.label, 80)
    description = _text(ended.description, 120)
    message = _text(ended.error.message, 200) if ended.error is not None else None
    preview = _text(ended.result_preview, 200) if state is TaskState.SUCCEEDED else message
    parts = [f"{event.task_id} {MARKS[state]}"]
    if label:
        parts.append(label)
    if state is not TaskState.SUCCEEDED:
        code = ended.exit_code
        parts.append(f"({state}" + (f", exit {code})" if code is not None else ")"))
    line = " ".join(parts)
    if description:
        line += f" — {description!r}"
    if preview:
        line += f": {preview}"
    return Notice(
        seq=event.seq, kind="task", task_id=event.task_id, group=event.group, state=state,
        label=label, description=description, exit_code=ended.exit_code, preview=preview,
        text=line,
    )  # fmt: skip


def _group_notice(event: Event, summary: GroupCompleted) -> Notice:
    by_state = {s: getattr(summary, s.value) for s in TaskState if s.terminal}
    counts = {"total": summary.total, **{str(s): n for s, n in by_state.items()}}
    ended = ", ".join(f"{n} {MARKS[s]}" for s, n in by_state.items() if n)
    line = f"group {event.group!r} finished: {summary.total} tasks ({ended or 'none'})"
    failed = [t for t in summary.tasks if t.state is not TaskState.SUCCEEDED]
    if failed:
        shown = ", ".join(f"{t.id} {t.label or ''}".strip() for t in failed[:5])
        more = f" and {len(failed) - 5} more" if len(failed) > 5 else ""
        line += f"; not succeeded: {shown}{more}"
    return Notice(seq=event.seq, kind="group", group=event.group, counts=counts, text=line)


def _overlap_notice(event: Event, overlap: TaskOverlap) -> Notice:
    who = f"{overlap.other} {overlap.other_label}" if overlap.other_label else overlap.other
    label = f" {overlap.label}" if overlap.label else ""
    shown = ", ".join(overlap.paths[:5])
    more = f" and {len(overlap.paths) - 5} more" if len(overlap.paths) > 5 else ""
    line = (
        f"{event.task_id}{label} ⚠ changes the same files as {who}: {shown}{more} (each in "
        "its own worktree; whichever is merged second will meet the other's changes)"
    )
    return Notice(
        seq=event.seq, kind="overlap", task_id=event.task_id, group=event.group,
        label=_text(overlap.label, 80), text=line,
    )  # fmt: skip


def notice_of(event: Event) -> Notice:
    """The notice of one ending event (a task's or a group's) or overlap warning."""
    data = event.data
    if isinstance(data, GroupCompleted):
        return _group_notice(event, data)
    if isinstance(data, TaskOverlap):
        return _overlap_notice(event, data)
    assert isinstance(data, TaskEnded), f"{event.type} makes no notice"
    return _task_notice(event, data)


def notices_from_events(events: Sequence[Event]) -> list[Notice]:
    """The notices for pending ending events, in order, a group's folding its tasks'."""
    return fold_notices([notice_of(e) for e in events])


def fold_notices(notices: Sequence[Notice]) -> list[Notice]:
    """Pending notices as they read best: a group's summary replaces its tasks' notices."""
    summarised = {n.group for n in notices if n.kind == "group"}
    return [n for n in notices if n.kind == "group" or n.group not in summarised]


def notices_block(notices: Sequence[Notice]) -> str:
    """The notices as a model reads them: a head line, one line each with its marker, a hint.

    Every channel (a tool answer, a woken turn, context added to a prompt) shows this text, so
    the model reads the same words in every host.
    """
    if not notices:
        return ""
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
    body = "\n".join(f"- {n.text} {marker(n.seq)}" for n in notices)
    return f"[outrider] {', '.join(head)}:\n{body}\n(get_task_result with a task id for details)"
