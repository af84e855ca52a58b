"""Test helpers for code that uses outrider: virtual time and bounded waits."""

from __future__ import annotations

from ._clock import FakeClock as FakeClock
from ._wait import wait_until as wait_until

__all__ = ("FakeClock", "wait_until")
