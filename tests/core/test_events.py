"""EventBus: per-session fan-out in order; a slow subscriber is cut off, never waited for."""

from __future__ import annotations

from datetime import UTC, datetime

import anyio
import pytest

from outrider._core._bus import EventBus
from outrider._types._events import Event, TaskQueued

_QUEUED = TaskQueued(kind="shell", priority=5, keys=["shell"])


def _event(seq: int, session: str) -> Event:
    return Event(seq=seq, at=datetime.now(UTC), type="task.queued", session=session, data=_QUEUED)


async def _drain(receive: anyio.abc.ObjectReceiveStream[Event]) -> list[int]:
    return [event.seq async for event in receive]


async def test_each_subscriber_gets_its_sessions_events_in_order() -> None:
    bus = EventBus(buffer=10)
    alice, everyone = bus.subscribe("alice"), bus.subscribe(None)
    bus.publish([_event(1, "alice"), _event(2, "bob"), _event(3, "alice")])
    bus.close()
    assert await _drain(alice.receive) == [1, 3]
    assert await _drain(everyone.receive) == [1, 2, 3]
    assert not alice.lagged
    alice.close()
    everyone.close()


async def test_a_full_subscriber_is_cut_off_and_told_to_resync() -> None:
    bus = EventBus(buffer=2)
    slow, fine = bus.subscribe("alice"), bus.subscribe("bob")
    bus.publish([_event(n, "alice") for n in range(1, 5)])  # never blocks
    bus.publish([_event(9, "bob")])
    assert slow.lagged
    assert await _drain(slow.receive) == [1, 2]
    slow.close()
    fine.close()
    with pytest.raises(anyio.ClosedResourceError):
        await fine.receive.receive()


async def test_a_subscriber_that_went_away_is_forgotten() -> None:
    bus = EventBus()
    gone = bus.subscribe(None)
    gone.receive.close()
    bus.publish([_event(1, "alice")])
    assert gone not in bus._subscribers
    gone.close()


def test_watching_follows_the_subscriptions_that_want_output() -> None:
    bus = EventBus()
    changes: list[bool] = []
    remove = bus.on_change(lambda: changes.append(bus.watching("team-a", "t1")))
    assert not bus.watching("team-a", "t1")
    notices = bus.subscribe(None, output=False)  # a waiter for notices watches nothing
    other_task = bus.subscribe("team-a", task_id="t2")
    other_session = bus.subscribe("team-b")
    assert changes == [False, False, False]
    by_prefix = bus.subscribe("team", prefix=True)
    assert bus.watching("team-a", "t1")
    by_prefix.close()
    this_task = bus.subscribe("team-a", task_id="t1")
    this_task.close()
    remove()
    unreported = bus.subscribe("team-a")  # no longer reported
    assert changes == [False, False, False, True, False, True, False]
    for sub in (notices, other_task, other_session, unreported):
        sub.close()


def test_a_listener_that_raises_is_logged_and_the_rest_still_run(
    caplog: pytest.LogCaptureFixture,
) -> None:
    bus = EventBus()
    called: list[int] = []

    def broken() -> None:
        raise RuntimeError("boom")

    bus.on_change(broken)
    bus.on_change(lambda: called.append(1))
    bus.subscribe(None).close()
    assert called == [1, 1]
    assert "a subscription listener raised" in caplog.text
