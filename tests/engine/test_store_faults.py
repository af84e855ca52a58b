"""The store's promises under faults: a full disk, a refused write, an acknowledgement too far."""

from __future__ import annotations

import contextlib
import sqlite3
from typing import TYPE_CHECKING

import pytest

import outrider
from outrider import StoreUnavailable, TaskState
from outrider.testing import wait_until

from ..conftest import fill

if TYPE_CHECKING:
    from pathlib import Path

S = "alice"


async def running(orch: outrider.Orchestrator, task_id: str) -> bool:
    return (await orch.session(S).get(task_id)).state is TaskState.RUNNING


async def test_an_end_the_full_disk_refuses_is_stored_once_it_has_room(small_disk: Path) -> None:
    db = small_disk / "o.db"
    async with outrider.Orchestrator(db, outrider.Settings(shutdown_grace=0.1)) as orch:
        task = await orch.session(S).submit(outrider.shell("sleep 60", grace_period=0.1))
        await wait_until(lambda: running(orch, task.id), timeout=10)
        filler = fill(small_disk)
        with pytest.raises(StoreUnavailable) as refused:
            await orch.session(S).cancel(task.id)
        assert f"the disk is full at {db}" in str(refused.value)
        assert orch.status().store_error is not None
        assert await running(orch, task.id)  # memory and store agree: no end is reported
        assert orch.status().states[TaskState.CANCELLED] == 0
        assert await orch.session(S).notices() == []
        with pytest.raises(StoreUnavailable):
            await orch.session(S).submit(outrider.shell("true"))
        filler.unlink()
        (done,) = await orch.session(S).wait([task.id], timeout=20)
        assert done.state is TaskState.CANCELLED
        assert orch.status().states[TaskState.CANCELLED] == 1
        assert orch.status().store_error is None
        assert [n.task_id for n in await orch.session(S).notices()] == [task.id]
    async with outrider.Orchestrator(db) as orch:
        assert (await orch.session(S).get(task.id)).state is TaskState.CANCELLED


async def test_a_groups_summary_is_stored_with_its_last_end(db: Path) -> None:
    async with outrider.Orchestrator(db, outrider.Settings(shutdown_grace=0.1)) as orch:
        with contextlib.closing(sqlite3.connect(db)) as conn:
            conn.execute(
                "CREATE TRIGGER no_summary BEFORE INSERT ON events "
                "WHEN NEW.type = 'group.completed' "
                "BEGIN SELECT RAISE(ABORT, 'refused by the test'); END"
            )
            conn.commit()
            ids = [(await orch.session(S).submit(outrider.shell("true"), group="g")).id
                   for _ in range(2)]  # fmt: skip

            async def one_ended() -> bool:
                tasks = await orch.session(S).list(group="g")
                return any(t.state.terminal for t in tasks)

            await wait_until(one_ended, timeout=10)
            conn.execute("DROP TRIGGER no_summary")
            conn.commit()
        await orch.session(S).wait(ids, timeout=20)
    async with outrider.Orchestrator(db) as orch:  # what a crash right now would leave
        events = [e async for e in orch.session(S).events(follow=False)]
    summaries = [e for e in events if e.type == "group.completed"]
    assert len(summaries) == 1
    assert summaries[0].data.succeeded == 2
    last_end = max(e.seq for e in events if e.type == "task.succeeded")
    assert summaries[0].seq == last_end + 1  # committed with the last end


async def test_acknowledging_past_the_last_notice_hides_no_later_one(
    orch: outrider.Orchestrator,
) -> None:
    first = await orch.session(S).submit(outrider.shell("true"))
    await orch.session(S).wait([first.id], timeout=10)
    await orch.session(S).ack_notices(up_to=2**63 - 1)
    assert await orch.session(S).notices() == []
    later = await orch.session(S).submit(outrider.shell("true"))
    await orch.session(S).wait([later.id], timeout=10)
    assert [n.task_id for n in await orch.session(S).notices()] == [later.id]


@pytest.mark.parametrize("reason", ["full", "io", "readonly", "other"])
def test_a_refused_write_names_the_disk_when_the_disk_is_to_blame(reason: str) -> None:
    from outrider._store._sqlite import write_error

    code = {
        "full": sqlite3.SQLITE_FULL,
        "io": sqlite3.SQLITE_IOERR_WRITE,
        "readonly": sqlite3.SQLITE_READONLY,
        "other": sqlite3.SQLITE_CONSTRAINT,
    }[reason]
    exc = sqlite3.OperationalError("boom")
    exc.sqlite_errorcode = code  # type: ignore[attr-defined]  # as sqlite3 sets it
    error = write_error(exc, "/x/o.db")
    assert isinstance(error, StoreUnavailable) is (reason != "other")
    assert ("at /x/o.db" in str(error)) is (reason != "other")
    assert error.__cause__ is exc
