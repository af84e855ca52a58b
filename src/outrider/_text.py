"""Text helpers every layer uses (a leaf: it imports no layer)."""

from __future__ import annotations

__all__ = ["clip"]


def clip(text: str, limit: int) -> str:
    """`text`, cut to at most `limit` characters with `…` marking the cut."""
    return text if len(text) <= limit else text[: limit - 1] + "…"
