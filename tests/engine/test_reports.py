"""Reports of many tasks share one flusher: each task's are stored at most every interval."""

from __future__ import annotations

import contextlib
from datetime import datetime
from typing import TYPE_CHECKING, TypeAlias

import anyio

import outrider

if TYPE_CHECKING:
    from collections.abc import AsyncIterator
    from pathlib import Path

    from anyio.abc import ObjectSendStream
    from anyio.streams.memory import MemoryObjectReceiveStream

    from outrider._types._events import Event
    from outrider.testing import FakeClock

S = "alice"
Stored: TypeAlias = "MemoryObjectReceiveStream[tuple[str, float, datetime]]"


@contextlib.asynccontextmanager
async def _stored_progress(session: outrider.Session) -> AsyncIterator[Stored]:
    """The task, the count and the time of each stored `task.progress` event, as they come."""
    send, stored = anyio.create_memory_object_stream[tuple[str, float, datetime]](10)

    async def watch() -> None:
        event: Event
        async for event in session.events(types=["task.progress"]):
            data = event.data
            assert isinstance(data, outrider.TaskProgress)
            assert event.task_id is not None
            assert data.completed is not None
            await send.send((event.task_id, data.completed, event.at))

    with send, stored:
        async with anyio.create_task_group() as tg:
            tg.start_soon(watch)
            yield stored
            tg.cancel_scope.cancel()


async def test_a_task_due_now_is_stored_at_once_while_another_waits_its_turn(
    db: Path, clock: FakeClock
) -> None:
    feeds: dict[str, ObjectSendStream[float]] = {}
    both = anyio.Event()

    async with outrider.Orchestrator(db, clock=clock) as orch:

        @orch.handler("feed")
        async def feed(ctx: outrider.RunContext, name: str) -> None:
            send, receive = anyio.create_memory_object_stream[float](10)
            feeds[name] = send
            if len(feeds) == 2:
                both.set()
            async with receive:
                async for value in receive:
                    ctx.progress(value)

        session = orch.session(S)
        a, b = [await session.submit(outrider.call("feed", name=n)) for n in "ab"]
        async with _stored_progress(session) as stored:
            with anyio.fail_after(5):
                await both.wait()
                await feeds["a"].send(1)  # never stored before: due at once
                assert (await stored.receive())[:2] == (a.id, 1)
                await feeds["a"].send(2)  # stored 0 s ago: due in an interval
                await feeds["b"].send(1)  # due at once, though the flusher waits for a
                assert (await stored.receive())[:2] == (b.id, 1)
                row = await orch._store.get(a.id)  # its second report waits its turn
                assert row is not None
                assert row.progress == outrider.Progress(completed=1)
                # a running task's get answers from memory: the latest report
                assert (await session.get(a.id)).progress == outrider.Progress(completed=2)
                clock.jump(0.2)
                assert (await stored.receive())[:2] == (a.id, 2)
                for feed_ in feeds.values():
                    await feed_.aclose()
                done = await session.wait([a.id, b.id])
            assert [t.progress for t in done] == [outrider.Progress(completed=c) for c in (2, 1)]


async def test_a_flush_also_takes_the_tasks_due_within_half_an_interval(
    db: Path, clock: FakeClock
) -> None:
    """Tasks out of step fall in step: one commit stores what each task due soon reported."""
    contexts: dict[str, outrider.RunContext] = {}
    both, release = anyio.Event(), anyio.Event()

    async with outrider.Orchestrator(db, clock=clock) as orch:

        @orch.handler("hold")
        async def hold(ctx: outrider.RunContext, name: str) -> None:
            contexts[name] = ctx
            if len(contexts) == 2:
                both.set()
            await release.wait()

        session = orch.session(S)
        a, b = [await session.submit(outrider.call("hold", name=n)) for n in "ab"]
        async with _stored_progress(session) as stored:
            with anyio.fail_after(5):
                await both.wait()
                contexts["a"].progress(1)  # never stored before: stored at once, at 0
                assert (await stored.receive())[:2] == (a.id, 1)
                clock.jump(0.08)
                contexts["b"].progress(1)  # stored at once, at 0.08
                assert (await stored.receive())[:2] == (b.id, 1)
                contexts["a"].progress(2)  # due at 0.2
                contexts["b"].progress(2)  # due at 0.28: within half an interval of 0.2
                clock.jump(0.12)
                first, second = await stored.receive(), await stored.receive()
            assert {first[:2], second[:2]} == {(a.id, 2), (b.id, 2)}
            assert first[2] == second[2]  # one flush, at 0.2
            release.set()
            done = await session.wait([a.id, b.id])
            assert [t.progress for t in done] == [outrider.Progress(completed=2)] * 2
