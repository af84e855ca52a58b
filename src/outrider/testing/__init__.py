"""Test helpers for code that uses outrider: virtual time, bounded waits, a scripted handler."""

from __future__ import annotations

from ._clock import FakeClock as FakeClock
from ._scripted import ScriptedHandler as ScriptedHandler
from ._wait import wait_until as wait_until

__all__ = ("FakeClock", "ScriptedHandler", "wait_until")
