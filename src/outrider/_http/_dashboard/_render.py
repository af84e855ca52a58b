"""The templates and what they are filled with: filters, transcript turns, event lines.

Templates are autoescaped: every text that comes from a task (labels, output, errors, prompts)
is shown as text, never as markup. The pages and the live fragments use the same macros
(`templates/_macros.html`), so a fragment is exactly what a fresh page would show.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

import jinja2

from ._view import agent_of, cost_text, duration_text, epoch, model_of, tokens_text

if TYPE_CHECKING:
    from collections.abc import Callable

    from pydantic import JsonValue

    from ..._types._task import Event

__all__ = ["Part", "Turn", "event_text", "macro", "page", "turns_of"]

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


def _register_event_text() -> None:
    _ENV.filters["event_text"] = event_text


def page(name: str, **context: object) -> str:
    """A whole page."""
    return _ENV.get_template(name).render(**context)


def macro(name: str) -> Callable[..., str]:
    """A macro of `_macros.html`, to render one fragment."""
    found: Callable[..., str] = getattr(_ENV.get_template("_macros.html").module, name)
    return found


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
    data = event.data
    match event.type:
        case "task.queued":
            return ", ".join(f"{k} {v}" for k, v in data.items() if v not in (None, [], ""))[:200]
        case "task.started":
            return f"attempt {data.get('attempt')}"
        case "task.progress":
            usage = data.get("usage")
            parts = []
            completed, total = data.get("completed"), data.get("total")
            if isinstance(completed, int | float):
                of = f"/{total:g}" if isinstance(total, int | float) else ""
                parts.append(f"{completed:g}{of}")
            if data.get("message"):
                parts.append(str(data["message"]))
            if isinstance(usage, dict):
                tokens_in, tokens_out = usage.get("input_tokens", 0), usage.get("output_tokens", 0)
                parts.append(f"{tokens_in} in / {tokens_out} out")
            return " · ".join(parts)
        case "task.output":
            return _clip(data.get("text", ""), 160)
        case "task.retrying":
            error = data.get("error")
            message = error.get("message") if isinstance(error, dict) else ""
            return f"attempt {data.get('attempt')} failed, again in {data.get('delay')}s: {message}"
        case "group.completed":
            return ", ".join(f"{k} {v}" for k, v in data.items() if isinstance(v, int))
        case _:
            error = data.get("error")
            if isinstance(error, dict):
                return f"{error.get('type')}: {error.get('message')}"
            preview = data.get("result_preview")
            return "" if preview is None else _clip(preview, 160)


_register_event_text()
