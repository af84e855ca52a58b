"""Time, injected: the engine reads every instant through a `Clock`.

`now()` is monotonic seconds (deadlines end in `_deadline`); `wall()` is UTC epoch seconds
(stored timestamps, and TTLs that must survive a restart). `sleep_until()` returns at or
after the deadline, or earlier when cancelled. `outrider.testing.FakeClock` implements the
same protocol with virtual time.
"""

from __future__ import annotations

import time
from typing import Protocol

import anyio

__all__ = ["Clock", "SystemClock"]


class Clock(Protocol):
    """A source of time for the engine."""

    def now(self) -> float:
        """Monotonic seconds."""
        ...

    def wall(self) -> float:
        """UTC epoch seconds."""
        ...

    async def sleep_until(self, deadline: float) -> None:
        """Sleep until `now() >= deadline`. Cancellation: returns early by raising."""
        ...


class SystemClock:
    """The real clock."""

    def now(self) -> float:
        """Monotonic seconds."""
        return time.monotonic()

    def wall(self) -> float:
        """UTC epoch seconds."""
        return time.time()

    async def sleep_until(self, deadline: float) -> None:
        """Sleep until the monotonic `deadline`."""
        await anyio.sleep(max(0.0, deadline - time.monotonic()))
