"""Resource-aware admission: hold process-backed tasks while memory is short or CPU is busy.

Readings come from psutil and are taken at most once per `interval` seconds, so asking is
cheap; `cpu_percent` is the average over the time since the previous reading.
"""

from __future__ import annotations

import psutil

__all__ = ["ResourceGate"]


class ResourceGate:
    """Says whether process-backed tasks may start now, and if not, why."""

    def __init__(
        self,
        *,
        min_free_memory_mb: float | None = None,
        max_cpu_percent: float | None = None,
        interval: float = 1.0,
    ) -> None:
        self.min_free_memory_mb = min_free_memory_mb
        self.max_cpu_percent = max_cpu_percent
        self.interval = interval
        self._checked_at: float | None = None
        self._reason: str | None = None
        if max_cpu_percent is not None:
            psutil.cpu_percent(None)  # start the first measuring window

    @property
    def enabled(self) -> bool:
        """Whether any floor or ceiling is set."""
        return self.min_free_memory_mb is not None or self.max_cpu_percent is not None

    def held(self, now: float) -> str | None:
        """Why process-backed tasks must wait, or None when they may start."""
        if not self.enabled:
            return None
        if self._checked_at is not None and now - self._checked_at < self.interval:
            return self._reason
        self._checked_at = now
        self._reason = None
        if self.min_free_memory_mb is not None:
            free_mb = psutil.virtual_memory().available / 2**20
            if free_mb < self.min_free_memory_mb:
                self._reason = (
                    f"low memory: {free_mb:.0f} MiB free, below the floor of "
                    f"{self.min_free_memory_mb:.0f} MiB (`min_free_memory_mb`)"
                )
                return self._reason
        if self.max_cpu_percent is not None:
            load = psutil.cpu_percent(None)
            if load > self.max_cpu_percent:
                self._reason = (
                    f"high CPU load: {load:.0f}%, above the ceiling of "
                    f"{self.max_cpu_percent:.0f}% (`max_cpu_percent`)"
                )
        return self._reason
