from __future__ import annotations

import contextlib
import logging
import sqlite3
import threading
from typing import TYPE_CHECKING

import anyio
import pytest

import outrider
from outrider import TaskState
from outrider._types._events import GroupCompleted
from outrider.testing import ScriptedHandler

if TYPE_CHECKING:
    from pathlib import Path

    from outrider.testing import FakeClock

S = "alice"


async def until_running(orch: outrider.Orchestrator, task_id: str) -> None:
    """Wait for the durable `task.started` event of a task."""
    with anyio.fail_after(5):
        async for event in orch.session(S).events():
            if event.task_id == task_id and event.type == "task.started":
                return


async def open_and_cancel_while_storing(
    orch: outrider.Orchestrator, gates: ScriptedHandler, name: str, task_id: str
) -> None:
    """Let gate `name` finish its run, and cancel the task while what follows is being stored."""
    # Hold the store's writer (white box) so the write after the run stays in flight.
    writer = orch._store._write_limiter
    await writer.acquire()
    gates.opened[name].set()
    await anyio.wait_all_tasks_blocked()
    async with anyio.create_task_group() as tg:
        tg.start_soon(orch.session(S).cancel, task_id)
        await anyio.wait_all_tasks_blocked()  # the cancel waits for the write under way
        writer.release()


def refuse_starts(conn: sqlite3.Connection) -> None:
    """Make SQLite refuse to store the start of tasks labelled `refused` (as a full disk would)."""
    conn.execute(
        "CREATE TRIGGER refuse BEFORE UPDATE OF state ON tasks "
        "WHEN NEW.state = 'running' AND NEW.label = 'refused' "
        "BEGIN SELECT RAISE(ABORT, 'refused by the test'); END"
    )


async def test_dependencies_run_after_success(orch: outrider.Orchestrator) -> None:
    gates = ScriptedHandler(orch)
    build = await orch.session(S).submit(outrider.call("gate", name="build"))
    test = await orch.session(S).submit(outrider.call("gate", name="test"), depends_on=[build.id])
    waiting = await orch.session(S).get(test.id)
    assert waiting.waiting_for == f"dependencies: {build.id}"
    await gates.wait_started("build")
    assert "test" not in gates.order
    gates.open("build", "test")
    (done,) = await orch.session(S).wait([test.id], timeout=5)
    assert done.state is TaskState.SUCCEEDED
    assert gates.order == ["build", "test"]


async def test_dependent_is_cancelled_when_dependency_fails(orch: outrider.Orchestrator) -> None:
    gates = ScriptedHandler(orch)
    build = await orch.session(S).submit(outrider.call("gate", name="build", result="raise"))
    test = await orch.session(S).submit(outrider.call("gate", name="test"), depends_on=[build.id])
    deploy = await orch.session(S).submit(
        outrider.call("gate", name="deploy"), depends_on=[test.id]
    )
    gates.open("build")
    done = await orch.session(S).wait([build.id, test.id, deploy.id], timeout=5)
    assert [t.state for t in done] == [TaskState.FAILED, TaskState.CANCELLED, TaskState.CANCELLED]
    assert done[1].error is not None
    assert build.id in done[1].error.message
    assert done[2].error is not None
    assert test.id in done[2].error.message
    late = await orch.session(S).submit(outrider.call("gate", name="late"), depends_on=[build.id])
    assert late.state is TaskState.CANCELLED
    assert gates.order == ["build"]


async def test_cancel_queued_and_running_and_idempotent(db: Path) -> None:
    async with outrider.Orchestrator(db, outrider.Settings(limits={"handler:gate": 1})) as orch:
        gates = ScriptedHandler(orch)
        running = await orch.session(S).submit(outrider.call("gate", name="r"))
        queued = await orch.session(S).submit(outrider.call("gate", name="q"))
        await gates.wait_started("r")
        q = await orch.session(S).cancel(queued.id)
        assert q.state is TaskState.CANCELLED
        r = await orch.session(S).cancel(running.id)
        assert r.state is TaskState.CANCELLED
        assert gates.cancelled == ["r"]
        again = await orch.session(S).cancel(running.id)
        assert again.state is TaskState.CANCELLED
        assert again.finished_at == r.finished_at
        assert orch.status().keys["handler:gate"].running == 0
        types = [
            e.type async for e in orch.session(S).events(follow=False) if e.task_id == running.id
        ]
        assert types == ["task.queued", "task.started", "task.cancelled"]


async def test_a_cancel_that_arrives_while_the_end_is_being_stored_changes_nothing(
    orch: outrider.Orchestrator,
) -> None:
    gates = ScriptedHandler(orch)
    task = await orch.session(S).submit(outrider.call("gate", name="a"))
    await gates.wait_started("a")
    await open_and_cancel_while_storing(orch, gates, "a", task.id)
    (done,) = await orch.session(S).wait([task.id], timeout=5)
    assert done.state is TaskState.SUCCEEDED
    assert gates.cancelled == []
    types = [e.type async for e in orch.session(S).events(follow=False) if e.task_id == task.id]
    assert types == ["task.queued", "task.started", "task.succeeded"]


async def test_a_cancel_that_arrives_while_the_start_is_being_stored_ends_the_task_unrun(
    db: Path,
) -> None:
    async with outrider.Orchestrator(db, outrider.Settings(limits={"handler:gate": 1})) as orch:
        gates = ScriptedHandler(orch)
        first = await orch.session(S).submit(outrider.call("gate", name="first"))
        await gates.wait_started("first")
        second = await orch.session(S).submit(outrider.call("gate", name="second"))
        # `first` ends and hands its slot to `second`, whose start waits for the held writer.
        await open_and_cancel_while_storing(orch, gates, "first", second.id)
        done = await orch.session(S).wait([first.id, second.id], timeout=5)
        assert [t.state for t in done] == [TaskState.SUCCEEDED, TaskState.CANCELLED]
        assert gates.order == ["first"]
        types = [e.type async for e in orch.session(S).events(follow=False)
                 if e.task_id == second.id]  # fmt: skip
        assert types == ["task.queued", "task.started", "task.cancelled"]
        assert orch.status().running == 0


async def test_cancelling_a_parent_cancels_its_children(orch: outrider.Orchestrator) -> None:
    gates = ScriptedHandler(orch)
    parent = await orch.session(S).submit(outrider.call("gate", name="parent"))
    child = await orch.session(S).submit(outrider.call("gate", name="child"), parent=parent.id)
    grandchild = await orch.session(S).submit(
        outrider.call("gate", name="grandchild"), parent=child.id
    )
    await gates.wait_started("parent", "child", "grandchild")
    await orch.session(S).cancel(parent.id)
    done = await orch.session(S).wait([parent.id, child.id, grandchild.id], timeout=5)
    assert {t.state for t in done} == {TaskState.CANCELLED}
    assert sorted(gates.cancelled) == ["child", "grandchild", "parent"]


async def test_cancel_session(orch: outrider.Orchestrator) -> None:
    gates = ScriptedHandler(orch)
    mine = [await orch.session(S).submit(outrider.call("gate", name=f"m{i}")) for i in range(3)]
    other = await orch.session("bob").submit(outrider.call("gate", name="other"))
    ended = await orch.cancel_session(S)
    assert {t.state for t in ended} == {TaskState.CANCELLED}
    assert {t.id for t in ended} == {t.id for t in mine}
    assert (await orch.session("bob").get(other.id)).state is not TaskState.CANCELLED
    gates.open("other")


async def test_timeout_stops_the_work(db: Path, clock: FakeClock) -> None:
    async with outrider.Orchestrator(db, clock=clock) as orch:
        gates = ScriptedHandler(orch)
        task = await orch.session(S).submit(outrider.call("gate", name="slow"), timeout=10)
        await gates.wait_started("slow")
        await until_running(orch, task.id)
        clock.jump(9.5)
        await anyio.wait_all_tasks_blocked()
        assert (await orch.session(S).get(task.id)).state is TaskState.RUNNING
        clock.jump(0.5)
        (done,) = await orch.session(S).wait([task.id], timeout=5)
        assert done.state is TaskState.TIMED_OUT
        assert done.error is not None
        assert done.error.type == "timeout"
        assert "timeout of 10s" in done.error.message
        assert done.elapsed == 10.0
        assert gates.cancelled == ["slow"]
        assert orch.status().running == 0


async def test_a_thread_that_outlives_its_timeout_keeps_its_slot_until_it_returns(
    db: Path,
) -> None:
    """A limit of 1 never runs two bodies: the next task waits for the abandoned thread."""
    release = threading.Event()
    bodies: list[str] = []
    inside = 0
    most = 0

    def slow(ctx: outrider.RunContext, name: str) -> str:
        nonlocal inside, most
        inside += 1
        most = max(most, inside)
        bodies.append(name)
        release.wait(30)
        inside -= 1
        return name

    async with outrider.Orchestrator(db, outrider.Settings(limits={"handler:slow": 1})) as orch:
        orch.register_handler("slow", slow)
        first = await orch.session(S).submit(outrider.call("slow", name="a"), timeout=0.2)
        second = await orch.session(S).submit(outrider.call("slow", name="b"))
        (timed_out,) = await orch.session(S).wait([first.id], timeout=10)
        assert timed_out.state is TaskState.TIMED_OUT
        assert timed_out.error is not None
        assert "abandoned" in timed_out.error.message
        await anyio.wait_all_tasks_blocked()
        assert (await orch.session(S).get(second.id)).state is TaskState.QUEUED
        assert orch.status().keys["handler:slow"].running == 1  # the abandoned thread's
        release.set()
        (done,) = await orch.session(S).wait([second.id], timeout=10)
        assert done.result == "b"
    assert most == 1
    assert bodies == ["a", "b"]


async def test_ttl_expires_a_queued_task(db: Path, clock: FakeClock) -> None:
    async with outrider.Orchestrator(
        db, outrider.Settings(limits={"handler:gate": 1}), clock=clock
    ) as orch:
        gates = ScriptedHandler(orch)
        await orch.session(S).submit(outrider.call("gate", name="busy"))
        await gates.wait_started("busy")
        waiting = await orch.session(S).submit(outrider.call("gate", name="late"), ttl=30)
        clock.jump(30)
        (done,) = await orch.session(S).wait([waiting.id], timeout=5)
        assert done.state is TaskState.TIMED_OUT
        assert done.error is not None
        assert done.error.type == "ttl"
        assert done.started_at is None
        gates.open("busy")
        assert "late" not in gates.order


async def test_stall_timeout(db: Path, clock: FakeClock) -> None:
    async with outrider.Orchestrator(db, clock=clock) as orch:
        beat = anyio.Event()

        @orch.handler("chatty")
        async def chatty(ctx: outrider.RunContext) -> None:
            ctx.output("tick\n")
            beat.set()
            await anyio.sleep_forever()

        task = await orch.session(S).submit(outrider.call("chatty"), stall_timeout=5)
        with anyio.fail_after(5):
            await beat.wait()
        clock.jump(4)
        await anyio.wait_all_tasks_blocked()
        assert (await orch.session(S).get(task.id)).state is TaskState.RUNNING
        clock.jump(1)
        (done,) = await orch.session(S).wait([task.id], timeout=5)
        assert done.state is TaskState.TIMED_OUT
        assert done.error is not None
        assert done.error.type == "stall"


async def test_retries_with_backoff_record_each_attempt(db: Path, clock: FakeClock) -> None:
    import random

    async with outrider.Orchestrator(
        db, outrider.Settings(retry_backoff=2.0), clock=clock, rng=random.Random(1)
    ) as orch:
        calls: list[int] = []

        @orch.handler("flaky")
        async def flaky(ctx: outrider.RunContext) -> str:
            calls.append(ctx.attempt)
            if ctx.attempt < 3:
                raise ConnectionError(f"attempt {ctx.attempt}")
            return "finally"

        task = await orch.session(S).submit(outrider.call("flaky"), max_attempts=3)
        retries: list[outrider.Event] = []
        with anyio.fail_after(5):
            async for event in orch.session(S).events():
                if event.type == "task.retrying":
                    retries.append(event)
                    delay = event.data.delay
                    assert isinstance(delay, float)
                    await anyio.wait_all_tasks_blocked()  # the backoff timer is armed
                    clock.jump(delay)
                if event.type == "task.succeeded":
                    break
        assert calls == [1, 2, 3]
        assert [e.data.attempt for e in retries] == [1, 2]
        delays = [e.data.delay for e in retries]
        assert 1.0 <= delays[0] <= 3.0
        assert 2.0 <= delays[1] <= 6.0
        done = await orch.session(S).get(task.id)
        assert done.state is TaskState.SUCCEEDED
        assert done.attempt == 3


async def test_group_completed_once_even_when_last_is_cancelled(
    orch: outrider.Orchestrator,
) -> None:
    gates = ScriptedHandler(orch)
    results = await orch.session(S).submit_many(
        [outrider.SubmitItem(spec=outrider.call("gate", name=n)) for n in ("a", "b", "c")],
        group="g1",
    )
    ids = [r.id for r in results if isinstance(r, outrider.Task)]
    await gates.wait_started("a", "b", "c")
    gates.open("a")
    gates.opened["b"].set()  # succeeds
    await orch.session(S).wait(ids[:2], timeout=5)
    await orch.session(S).cancel(ids[2])
    summaries = [
        e async for e in orch.session(S).events(follow=False) if e.type == "group.completed"
    ]
    assert len(summaries) == 1
    data = summaries[0].data
    assert isinstance(data, GroupCompleted)
    assert data.total == 3
    assert data.succeeded == 2
    assert data.cancelled == 1
    assert summaries[0].group == "g1"


async def test_events_are_resumable_by_seq(orch: outrider.Orchestrator) -> None:
    @orch.handler("noop")
    async def noop(ctx: outrider.RunContext) -> None:
        return None

    task = await orch.session(S).submit(outrider.call("noop"))
    await orch.session(S).wait([task.id], timeout=5)
    everything = [e async for e in orch.session(S).events(follow=False)]
    assert [e.type for e in everything] == ["task.queued", "task.started", "task.succeeded"]
    seqs = [e.seq for e in everything]
    assert seqs == sorted(seqs)
    rest = [e async for e in orch.session(S).events(after=seqs[0], follow=False)]
    assert rest == everything[1:]


async def test_live_events_follow_in_order(orch: outrider.Orchestrator) -> None:
    @orch.handler("noop")
    async def noop(ctx: outrider.RunContext) -> None:
        return None

    received: list[outrider.Event] = []
    async with anyio.create_task_group() as tg:

        async def consume() -> None:
            async for event in orch.session(S).events():
                received.append(event)
                if sum(e.type == "task.succeeded" for e in received) == 20:
                    tg.cancel_scope.cancel()

        tg.start_soon(consume)
        with anyio.fail_after(10):
            for _ in range(20):
                await orch.session(S).submit(outrider.call("noop"))
    seqs = [e.seq for e in received]
    assert seqs == sorted(set(seqs))
    assert len(received) == 60


async def test_handler_registered_after_restart_picks_up_queued_tasks(db: Path) -> None:
    async with outrider.Orchestrator(
        db, outrider.Settings(limits={"handler:gate": 1}, shutdown_grace=0.01)
    ) as orch:
        gates = ScriptedHandler(orch)
        await orch.session(S).submit(outrider.call("gate", name="first"))
        await gates.wait_started("first")
        queued = await orch.session(S).submit(outrider.call("gate", name="second"))
    # `first` was interrupted at shutdown; `second` stays queued in the store.
    async with outrider.Orchestrator(db) as orch:
        held = await orch.session(S).get(queued.id)
        assert held.state is TaskState.QUEUED
        assert held.waiting_for == "handler 'gate' to be registered"
        gates = ScriptedHandler(orch)
        gates.open("second")
        (done,) = await orch.session(S).wait([queued.id], timeout=5)
        assert done.state is TaskState.SUCCEEDED


async def test_second_orchestrator_on_the_same_db_is_refused(db: Path) -> None:
    async with outrider.Orchestrator(db):
        with pytest.raises(outrider.StoreError, match="in use by another outrider process"):
            async with outrider.Orchestrator(db):
                pass


async def test_retention_sweeps_finished_tasks_only(db: Path, clock: FakeClock) -> None:
    async with outrider.Orchestrator(db, outrider.Settings(retention=100), clock=clock) as orch:
        gates = ScriptedHandler(orch)
        old = await orch.session(S).submit(outrider.call("gate", name="old"))
        gates.open("old")
        await orch.session(S).wait([old.id], timeout=5)
        for _ in range(2):  # read from the store, then kept in memory
            assert (await orch.session(S).get(old.id)).state is TaskState.SUCCEEDED
        unfinished = await orch.session(S).submit(outrider.call("gate", name="long"))
        await gates.wait_started("long")
        clock.jump(101)
        assert await orch.sweep() == 1
        with pytest.raises(outrider.TaskNotFound):
            await orch.session(S).get(old.id)
        assert (await orch.session(S).get(unfinished.id)).state is TaskState.RUNNING
        gates.open("long")


async def test_shutdown_interrupts_running_tasks(db: Path) -> None:
    async with outrider.Orchestrator(db, outrider.Settings(shutdown_grace=0.01)) as orch:
        gates = ScriptedHandler(orch)
        once = await orch.session(S).submit(outrider.call("gate", name="once"))
        twice = await orch.session(S).submit(outrider.call("gate", name="twice"), max_attempts=2)
        await gates.wait_started("once", "twice")
    async with outrider.Orchestrator(db) as orch:
        done = await orch.session(S).get(once.id)
        assert done.state is TaskState.FAILED
        assert done.error is not None
        assert done.error.type == "interrupted"
        again = await orch.session(S).get(twice.id)
        assert again.state is TaskState.QUEUED
        assert again.attempt == 1


async def test_a_cancel_that_arrives_while_a_retry_is_being_stored_ends_the_task(
    orch: outrider.Orchestrator,
) -> None:
    gates = ScriptedHandler(orch)
    task = await orch.session(S).submit(
        outrider.call("gate", name="a", result="raise"), max_attempts=3
    )
    await gates.wait_started("a")
    await open_and_cancel_while_storing(orch, gates, "a", task.id)
    (done,) = await orch.session(S).wait([task.id], timeout=5)
    assert done.state is TaskState.CANCELLED
    assert done.attempt == 1
    assert gates.order == ["a"]
    types = [e.type async for e in orch.session(S).events(follow=False) if e.task_id == task.id]
    assert types == ["task.queued", "task.started", "task.retrying", "task.cancelled"]


async def test_a_start_the_store_refuses_leaves_the_task_queued_and_is_tried_again(
    db: Path, clock: FakeClock
) -> None:
    refusals: list[str] = []
    refused = anyio.Event()

    class Refusals(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if "could not start" in record.getMessage():
                refusals.append(record.getMessage())
                refused.set()

    handler = Refusals()
    logging.getLogger("outrider").addHandler(handler)
    with contextlib.closing(sqlite3.connect(db)) as other:
        try:
            async with outrider.Orchestrator(db, clock=clock) as orch:
                gates = ScriptedHandler(orch)
                refuse_starts(other)
                gate = outrider.call("gate", name="r")
                task = await orch.session(S).submit(gate, label="refused")
                with anyio.fail_after(5):
                    await refused.wait()
                second = await orch.session(S).submit(outrider.call("gate", name="second"))
                await gates.wait_started("second")  # the refused start holds no slot
                held = await orch.session(S).get(task.id)
                assert (held.state, held.attempt, held.started_at) == (TaskState.QUEUED, 0, None)
                assert "refused by the test" in refusals[0]
                assert len(refusals) == 1  # not tried again at once, over and over
                assert gates.order == ["second"]
                other.execute("DROP TRIGGER refuse")
                clock.jump(1)
                await gates.wait_started("r")
                gates.open("r", "second")
                done = await orch.session(S).wait([task.id, second.id], timeout=5)
        finally:
            logging.getLogger("outrider").removeHandler(handler)
    assert [(t.state, t.attempt) for t in done] == [(TaskState.SUCCEEDED, 1)] * 2


async def test_a_task_cancelled_while_its_refused_start_is_stored_ends_unrun(
    db: Path, clock: FakeClock
) -> None:
    with contextlib.closing(sqlite3.connect(db)) as other:
        async with outrider.Orchestrator(
            db, outrider.Settings(limits={"handler:gate": 1}), clock=clock
        ) as orch:
            gates = ScriptedHandler(orch)
            first = await orch.session(S).submit(outrider.call("gate", name="first"))
            await gates.wait_started("first")
            refuse_starts(other)
            gate = outrider.call("gate", name="second")
            second = await orch.session(S).submit(gate, label="refused")
            # `first` ends and hands its slot to `second`, whose start is refused while the
            # cancel waits; the cancel returns without the clock moving (no retry pause).
            with anyio.fail_after(5):
                await open_and_cancel_while_storing(orch, gates, "first", second.id)
            done = await orch.session(S).wait([first.id, second.id], timeout=5)
    assert [t.state for t in done] == [TaskState.SUCCEEDED, TaskState.CANCELLED]
    assert (done[1].attempt, done[1].started_at) == (0, None)
    assert gates.order == ["first"]
