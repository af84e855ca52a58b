"""FakeClock: virtual time for deterministic tests (after trio's `MockClock`)."""

from __future__ import annotations

import heapq
import itertools
from typing import final

import anyio
import anyio.lowlevel

__all__ = ["FakeClock"]


@final
class FakeClock:
    """A `Clock` whose time moves only when the test calls `jump`.

    `now()` starts at `start` and `wall()` at `wall_start`; both advance together.
    """

    def __init__(self, *, start: float = 0.0, wall_start: float = 1_800_000_000.0) -> None:
        self._now = start
        self._wall_offset = wall_start - start
        self._sleepers: list[tuple[float, int, anyio.Event]] = []
        self._counter = itertools.count()

    def now(self) -> float:
        """Virtual monotonic seconds."""
        return self._now

    def wall(self) -> float:
        """Virtual UTC epoch seconds."""
        return self._now + self._wall_offset

    async def sleep_until(self, deadline: float) -> None:
        """Sleep until virtual time reaches `deadline`."""
        if deadline <= self._now:
            await anyio.lowlevel.checkpoint()
            return
        event = anyio.Event()
        heapq.heappush(self._sleepers, (deadline, next(self._counter), event))
        await event.wait()

    def jump(self, seconds: float) -> None:
        """Advance virtual time and wake every sleeper whose deadline has passed."""
        if seconds < 0:
            raise ValueError(f"time cannot go back ({seconds!r} s)")
        self._now += seconds
        while self._sleepers and self._sleepers[0][0] <= self._now:
            heapq.heappop(self._sleepers)[2].set()

    @property
    def next_deadline(self) -> float | None:
        """The earliest deadline a sleeper waits for, if any."""
        return self._sleepers[0][0] if self._sleepers else None
