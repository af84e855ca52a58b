"""Test helpers for code that uses outrider: time, waits, handlers, processes, nodes."""

from __future__ import annotations

from ._clock import FakeClock as FakeClock
from ._nodes import FakeNodes as FakeNodes
from ._processes import task_processes as task_processes
from ._scripted import ScriptedHandler as ScriptedHandler
from ._wait import wait_until as wait_until

__all__ = ("FakeClock", "FakeNodes", "ScriptedHandler", "task_processes", "wait_until")
