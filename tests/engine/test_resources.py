"""Resource-aware admission: process-backed tasks wait while memory is short or CPU is busy."""

from __future__ import annotations

from typing import TYPE_CHECKING

import psutil

import outrider
from outrider import TaskState
from outrider._engine._resources import ResourceGate

if TYPE_CHECKING:
    from pathlib import Path

S = "alice"
MORE_THAN_THE_MACHINE = psutil.virtual_memory().total / 2**20 * 4


def test_a_gate_without_floors_never_holds() -> None:
    gate = ResourceGate()
    assert not gate.enabled
    assert gate.held(0.0) is None


def test_low_memory_holds_and_says_why_and_the_reading_is_reused_within_the_interval() -> None:
    gate = ResourceGate(min_free_memory_mb=MORE_THAN_THE_MACHINE, interval=10.0)
    reason = gate.held(100.0)
    assert reason is not None
    assert "low memory" in reason
    assert "`min_free_memory_mb`" in reason
    gate.min_free_memory_mb = 1.0  # a new floor is read only after the interval
    assert gate.held(105.0) == reason
    assert gate.held(110.0) is None


def test_busy_cpu_holds_and_says_why() -> None:
    gate = ResourceGate(max_cpu_percent=-1.0, interval=0.0)
    reason = gate.held(1.0)
    assert reason is not None
    assert "high CPU load" in reason
    assert "`max_cpu_percent`" in reason
    relaxed = ResourceGate(min_free_memory_mb=1.0, max_cpu_percent=1000.0, interval=0.0)
    assert relaxed.held(1.0) is None


async def test_shell_tasks_wait_while_memory_is_short_but_handlers_run(tmp_path: Path) -> None:
    async with outrider.Orchestrator(
        tmp_path / "o.db", outrider.Settings(min_free_memory_mb=MORE_THAN_THE_MACHINE)
    ) as orch:

        @orch.handler("ping")
        async def ping(ctx: outrider.RunContext) -> str:
            return "pong"

        shell = await orch.session(S).submit(outrider.shell("true"))
        handler = await orch.session(S).submit(outrider.call("ping"))
        (done,) = await orch.session(S).wait([handler.id], timeout=10)
        assert done.state is TaskState.SUCCEEDED
        waiting = await orch.session(S).get(shell.id)
        assert waiting.state is TaskState.QUEUED
        assert waiting.waiting_for is not None
        assert "low memory" in waiting.waiting_for
        status = orch.status()
        assert status.held is not None
        assert "low memory" in status.held
        cancelled = await orch.session(S).cancel(shell.id)
        assert cancelled.state is TaskState.CANCELLED
