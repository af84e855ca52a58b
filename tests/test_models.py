"""Task records name themselves for tables and logs; ids sort by time; the fake clock only
moves forward."""

from __future__ import annotations

from datetime import UTC, datetime

import anyio
import pytest

import outrider
from outrider import Task, TaskState
from outrider._ids import new_task_id
from outrider.testing import FakeClock


def _named(spec: outrider.TaskSpec, label: str | None = None) -> str:
    return Task(
        id="t_1", session="s", spec=spec, state=TaskState.QUEUED, priority=5, keys=("k",),
        label=label, created_at=datetime.now(UTC),
    ).name  # fmt: skip


def test_task_ids_are_unique_and_sort_by_the_millisecond_they_were_made(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    ids = []
    for millis in (0, 1, 1023, 1024, 1_700_000_000_000, 1_700_000_000_001, 2**50 - 1):
        monkeypatch.setattr("time.time_ns", lambda m=millis: m * 1_000_000 + 999_999)
        ids += [new_task_id() for _ in range(3)]
    assert len(set(ids)) == len(ids)
    assert all(len(i) == 20 and i.startswith("t_") for i in ids)
    assert all(set(i[2:]) <= set("0123456789abcdefghjkmnpqrstvwxyz") for i in ids)
    stamps = [i[:12] for i in ids]
    assert stamps == sorted(stamps)
    assert len(set(stamps)) == 7
    assert (stamps[0], stamps[-1]) == ("t_0000000000", "t_zzzzzzzzzz")


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
