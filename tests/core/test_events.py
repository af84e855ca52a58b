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
