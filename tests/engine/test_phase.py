"""A live task's phase is read from its fields: each combination the engine makes, named."""

from __future__ import annotations

from datetime import UTC, datetime

import anyio
import pytest

import outrider
from outrider._engine._live import LiveTask, Phase
from outrider._types._task import Task, TaskState
from outrider.runners._shell import ShellRunner

_TASK = Task(id="t_1", session="s", spec=outrider.shell("true"), state=TaskState.QUEUED,
             priority=5, keys=("shell",), created_at=datetime.now(UTC))  # fmt: skip


def _live(**fields: object) -> LiveTask:
    live = LiveTask(task=_TASK, seq=1, runner=ShellRunner())
    for name, value in fields.items():
        setattr(live, name, value)
    return live


class _Handle:
    """Stands for the task running it (only its presence matters here)."""


@pytest.mark.parametrize(
    ("fields", "phase"),
    [
        ({}, Phase.QUEUED),
        ({"pending_deps": {"t_0"}}, Phase.WAITING),
        ({"held_for": "build"}, Phase.WAITING),
        ({"holds_slot": True}, Phase.STARTING),
        ({"holds_slot": True, "handle": _Handle()}, Phase.RUNNING),
        ({"holds_slot": True, "handle": _Handle(), "slot_lent": True}, Phase.LENDING),
        (
            {"holds_slot": True, "handle": _Handle(), "slot_lent": True, "resume_queued": True},
            Phase.RECLAIMING,
        ),
        ({"recovering": True}, Phase.RECOVERING),
        ({"holds_slot": True, "handle": _Handle(), "ending": True}, Phase.ENDING),
        ({"ending": True, "finished": True}, Phase.ENDED),
    ],
)
def test_phase_is_read_from_the_fields(fields: dict[str, object], phase: Phase) -> None:
    assert _live(**fields).phase is phase


def test_phases_are_ordered_as_a_task_lives() -> None:
    order = [Phase.WAITING, Phase.QUEUED, Phase.STARTING, Phase.RUNNING, Phase.ENDING, Phase.ENDED]
    assert order == sorted(order)
    assert max(Phase) is Phase.ENDED


async def test_done_and_settled_made_after_the_end_are_set_at_once() -> None:
    live = _live()
    live.finish()
    with anyio.fail_after(1):
        await live.done.wait()
        await live.settled.wait()
    assert live.phase is Phase.ENDED
