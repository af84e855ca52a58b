"""The templates and what they are filled with: filters, transcript turns, event lines.

Templates are autoescaped: every text that comes from a task (labels, output, errors, prompts)
is shown as text, never as markup. The pages and the live fragments use the same macros
(`templates/_macros.html`), so a fragment is exactly what a fresh page would show.
"""

from __future__ import annotations

import functools
import json
import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, assert_never

import jinja2
from markupsafe import Markup

from ..._types._events import (
    GroupCompleted,
    TaskEnded,
    TaskOutput,
    TaskOverlap,
    TaskProgress,
    TaskQueued,
    TaskRetrying,
    TaskStarted,
)
from ._view import agent_of, cost_text, duration_text, epoch, model_of, tokens_text

if TYPE_CHECKING:
    from collections.abc import Callable

    from pydantic import JsonValue

    from ..._types._events import Event
    from ._view import Row

__all__ = ["ROWS_KEPT", "Part", "Turn", "event_text", "macro", "page", "row_html", "turns_of"]

_CLIP_PART = 4_000


def _clip(text: object, limit: int = 200) -> str:
    value = " ".join(str(text).split())
    return value if len(value) <= limit else value[: limit - 1] + "…"


def _gist(result: str, kind: str) -> str:
    """A result in one line: a command's last line of output, else the answer's first line."""
    lines = [line for line in result.splitlines() if line.strip()]
    if not lines:
        return ""
    return _clip(lines[-1] if kind == "shell" else lines[0])


def _clock(at: datetime | float | None, seconds: bool = False) -> str:
    if at is None:
        return "—"
    local = datetime.fromtimestamp(at) if isinstance(at, float) else at.astimezone()
    return local.strftime("%H:%M:%S") if seconds else local.strftime("%Y-%m-%d %H:%M:%S")


def _show(value: JsonValue) -> str:
    return value if isinstance(value, str) else json.dumps(value, indent=2, ensure_ascii=False)


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]", "_", text)


_ENV = jinja2.Environment(
    loader=jinja2.PackageLoader(__package__, "templates"),
    autoescape=True,
    undefined=jinja2.StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
    auto_reload=False,
)
_ENV.filters.update(
    dur=duration_text, tokens=tokens_text, cost=cost_text, clip=_clip, clock=_clock,
    epoch=epoch, agent=agent_of, model=model_of, show=_show, slug=_slug, gist=_gist,
)  # fmt: skip


def _register_late() -> None:
    _ENV.filters["event_text"] = event_text
    _ENV.globals["row_html"] = row_html


def page(name: str, **context: object) -> str:
    """A whole page."""
    return _ENV.get_template(name).render(**context)


def macro(name: str) -> Callable[..., str]:
    """A macro of `_macros.html`, to render one fragment."""
    found: Callable[..., str] = getattr(_ENV.get_template("_macros.html").module, name)
    return found


ROWS_KEPT = 8_192
"""Drawn task rows kept for the next page (a few MB at most)."""


@functools.lru_cache(maxsize=ROWS_KEPT)
def row_html(row: Row, base: str) -> Markup:
    """A task's row on the task page, drawn once for each distinct `Row`.

    A `Row` is a frozen value of everything the row shows, so an equal one draws the same:
    an ended task's row never changes, and a page of thousands of ended tasks draws only
    the rows of the tasks that changed since the last page.
    """
    return Markup(macro("row")(row, base))


# -- transcripts ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Part:
    """One part of a turn: what was said, called or answered."""

    kind: str
    """`prompt`, `text`, `call`, `answer`, `retry`, `thinking`, `system`."""
    text: str
    label: str = ""


@dataclass(slots=True)
class Turn:
    """What the agent was told, or one model turn with its usage."""

    title: str
    parts: list[Part] = field(default_factory=list)
    model: str | None = None
    usage: str = ""


def _text_of(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    return text if len(text) <= _CLIP_PART else text[: _CLIP_PART - 1] + "…"


def _request_parts(parts: list[Any]) -> list[Part]:
    found: list[Part] = []
    for part in parts:
        kind = part.get("part_kind") if isinstance(part, dict) else None
        if kind == "system-prompt":
            found.append(Part("system", _text_of(part.get("content", "")), "system"))
        elif kind == "user-prompt":
            found.append(Part("prompt", _text_of(part.get("content", "")), "prompt"))
        elif kind == "tool-return":
            name = str(part.get("tool_name") or "tool")
            found.append(Part("answer", _text_of(part.get("content", "")), f"← {name}"))
        elif kind == "retry-prompt":
            found.append(Part("retry", _text_of(part.get("content", "")), "retry"))
    return found


def _response_parts(parts: list[Any]) -> list[Part]:
    found: list[Part] = []
    for part in parts:
        kind = part.get("part_kind") if isinstance(part, dict) else None
        if kind == "text":
            found.append(Part("text", _text_of(part.get("content", ""))))
        elif kind == "tool-call":
            args = part.get("args")
            shown = args if isinstance(args, str) else json.dumps(args, ensure_ascii=False)
            found.append(Part("call", _text_of(shown), f"→ {part.get('tool_name')}"))
        elif kind == "thinking":
            found.append(Part("thinking", _text_of(part.get("content", "")), "thinking"))
    return found


def _usage_of(message: dict[str, Any]) -> str:
    usage = message.get("usage")
    if not isinstance(usage, dict):
        return ""
    tokens_in, tokens_out = usage.get("input_tokens") or 0, usage.get("output_tokens") or 0
    return f"{tokens_text(int(tokens_in))} in · {tokens_text(int(tokens_out))} out"


def turns_of(transcript: JsonValue) -> list[Turn] | None:
    """An agent transcript as turns (None: the task has no transcript).

    The first turn is what the agent was told; each model answer is a turn with its usage,
    followed by what its tool calls answered.
    """
    if not isinstance(transcript, dict):
        return None
    messages = transcript.get("messages")
    turns: list[Turn] = []
    pending: list[Part] = []
    number = 0
    for message in messages if isinstance(messages, list) else []:
        if not isinstance(message, dict):
            continue
        parts = message.get("parts")
        parts = parts if isinstance(parts, list) else []
        if message.get("kind") == "request":
            pending += _request_parts(parts)
            continue
        if pending and not turns:
            turns.append(Turn("Task", pending))
        elif pending:
            turns[-1].parts += pending
        pending = []
        number += 1
        model = message.get("model_name")
        turns.append(Turn(f"Turn {number}", _response_parts(parts),
                          str(model) if model else None, _usage_of(message)))  # fmt: skip
    if pending:
        if turns:
            turns[-1].parts += pending
        else:
            turns.append(Turn("Task", pending))
    return turns


# -- events --------------------------------------------------------------------------------


def event_text(event: Event) -> str:
    """One line that says what an event holds."""
    match event.data:
        case TaskQueued() as queued:
            label = "" if queued.label is None else f"label {queued.label}, "
            return f"{label}{queued.kind}, priority {queued.priority}, keys {' '.join(queued.keys)}"
        case TaskStarted() as started:
            return f"attempt {started.attempt}"
        case TaskProgress() as progress:
            return _progress_text(progress)
        case TaskOutput() as output:
            return _clip(output.text, 160)
        case TaskRetrying() as retrying:
            return (
                f"attempt {retrying.attempt} failed, again in {retrying.delay:g}s: "
                f"{retrying.error.message}"
            )
        case GroupCompleted() as group:
            counts = {"total": group.total, "succeeded": group.succeeded, "failed": group.failed,
                      "cancelled": group.cancelled, "timed out": group.timed_out}  # fmt: skip
            return ", ".join(f"{k} {v}" for k, v in counts.items() if v)
        case TaskOverlap() as overlap:
            other = overlap.other_label or overlap.other
            shown = ", ".join(overlap.paths[:5]) + (" …" if len(overlap.paths) > 5 else "")
            return f"changed the same files as {other} in {overlap.repo}: {shown}"
        case TaskEnded() as ended:
            if ended.error is not None:
                return f"{ended.error.type}: {ended.error.message}"
            return "" if ended.result_preview is None else _clip(ended.result_preview, 160)
        case _:  # pragma: no cover - every payload model is matched above
            assert_never(event.data)


def _progress_text(progress: TaskProgress) -> str:
    parts = []
    if progress.completed is not None:
        of = "" if progress.total is None else f"/{progress.total:g}"
        parts.append(f"{progress.completed:g}{of}")
    if progress.message:
        parts.append(progress.message)
    if progress.usage is not None:
        parts.append(f"{progress.usage.input_tokens} in / {progress.usage.output_tokens} out")
    return " · ".join(parts)


_register_late()
