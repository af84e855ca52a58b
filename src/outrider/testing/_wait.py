"""A bounded poll, for observations across processes only."""

from __future__ import annotations

from typing import TYPE_CHECKING

import anyio

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

__all__ = ["wait_until"]


async def wait_until(
    predicate: Callable[[], bool | Awaitable[bool]], *, timeout: float = 5.0, interval: float = 0.01
) -> None:
    """Return once `predicate()` is true; raise `TimeoutError` after `timeout` seconds.

    Use it only where no event can be awaited (another process's state); inside one process,
    wait on an event instead.
    """
    with anyio.fail_after(timeout):
        while True:
            value = predicate()
            if not isinstance(value, bool):
                value = await value
            if value:
                return
            await anyio.sleep(interval)
