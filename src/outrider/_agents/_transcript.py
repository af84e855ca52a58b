"""A transcript as text: who said what, which tools were called and what they answered."""

from __future__ import annotations

import json
from typing import Any

from .._text import clip

__all__ = ["render_transcript"]

_ROLES = {"user-prompt": "user", "system-prompt": "system", "text": "assistant"}


def _clip(text: str, limit: int | None) -> str:
    text = text.strip()
    return text if limit is None else clip(text, limit)


def _part_line(part: dict[str, Any], clip: int | None) -> str | None:
    kind = part.get("part_kind")
    if kind in _ROLES:
        return f"{_ROLES[kind]}: {_clip(str(part.get('content', '')), clip)}"
    if kind == "tool-call":
        args = part.get("args")
        shown = args if isinstance(args, str) else json.dumps(args)
        return f"→ {part.get('tool_name')} {_clip(shown, clip)}"
    if kind in ("tool-return", "retry-prompt"):
        content = part.get("content")
        shown = content if isinstance(content, str) else json.dumps(content)
        return f"← {part.get('tool_name') or 'retry'}: {_clip(shown, clip)}"
    return None


def render_transcript(doc: dict[str, Any], *, clip: int | None = 300) -> str:
    """Lines for people and parent agents; `clip` cuts each entry (None: keep all)."""
    attempts = doc.get("attempts") or []
    tried = ", ".join(
        str(a.get("model")) + (f" (failed: {a['error']})" if a.get("error") else "")
        for a in attempts
    )
    lines = [f"transcript of {doc.get('agent')}" + (f" — models: {tried}" if tried else "")]
    for message in doc.get("messages") or []:
        for part in message.get("parts") or []:
            line = _part_line(part, clip)
            if line is not None:
                lines.append(line)
    return "\n".join(lines)
