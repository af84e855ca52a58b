"""Telling anyio once, per task, that outrider runs on asyncio."""

from __future__ import annotations

try:
    import sniffio
except ImportError:  # pragma: no cover - then anyio finds its library cheaply by itself
    sniffio = None  # type: ignore[assignment]  # checked before use

__all__ = ["pin_async_library"]


def pin_async_library() -> None:
    """Pin the async library in the current task's context, for it and the tasks it starts.

    anyio asks sniffio which async library runs each time it makes a cancel scope or an event,
    and sniffio finds asyncio by looking up the current task; pinning the answer (as `anyio.run`
    does) saves that lookup. Call it first thing in a long-lived task of outrider's own: the
    context is that task's copy, so the host's is left as it was.
    """
    if sniffio is not None:
        sniffio.current_async_library_cvar.set(sniffio.current_async_library())
