"""Task records name themselves for tables and logs; the fake clock only moves forward."""

from __future__ import annotations

from datetime import UTC, datetime

import anyio
import pytest

import outrider
from outrider import Task, TaskState
from outrider.testing import FakeClock


def _named(spec: outrider.TaskSpec, label: str | None = None) -> str:
    return Task(
        id="t_1", session="s", spec=spec, state=TaskState.QUEUED, priority=5, keys=("k",),
        label=label, created_at=datetime.now(UTC),
    ).name  # fmt: skip


def test_a_task_is_named_by_its_label_else_by_what_it_runs() -> None:
    assert _named(outrider.shell("make build"), label="build") == "build"
    assert _named(outrider.shell("make build")) == "make build"
    assert _named(outrider.shell(["pytest", "-q"])) == "pytest -q"
    assert _named(outrider.call("research")) == "research"
    assert _named(outrider.cli_agent("claude", "Fix the bug\nin detail")) == "claude: Fix the bug"
    named = _named(outrider.cli_agent("opencode", "Review", agent="inspector"))
    assert named == "inspector: Review"
    assert _named(outrider.agent("builder", "x" * 100 + "\nmore")) == "builder: " + "x" * 60


async def test_the_fake_clock_wakes_sleepers_in_deadline_order_and_never_goes_back() -> None:
    clock = FakeClock(start=10.0, wall_start=1_000.0)
    assert FakeClock().next_deadline is None
    woke: list[float] = []

    async def sleeper(until: float) -> None:
        await clock.sleep_until(until)
        woke.append(until)

    async with anyio.create_task_group() as tg:
        tg.start_soon(sleeper, 12.0)
        tg.start_soon(sleeper, 11.0)
        await anyio.wait_all_tasks_blocked()
        assert clock.next_deadline == 11.0
        await clock.sleep_until(5.0)  # already passed: returns at once
        clock.jump(1.5)
        await anyio.wait_all_tasks_blocked()
        assert woke == [11.0]
        clock.jump(1.0)
    assert woke == [11.0, 12.0]
    assert clock.wall() == 1_002.5
    with pytest.raises(ValueError, match="cannot go back"):
        clock.jump(-1)
