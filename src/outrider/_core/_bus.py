"""EventBus: fan-out of committed events to live subscribers.

Invariants:
- `publish` is called with events already committed, in `seq` order; each subscriber receives
  the events of its session (or all, for `session=None`) in that order.
- `publish` never blocks: a subscriber whose bounded buffer is full is cut off (its stream
  ends with `lagged` set) and is expected to resync from the store by `seq`.

Cancellation: nothing here awaits except the subscriber's own `receive`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import anyio

if TYPE_CHECKING:
    from collections.abc import Iterable

    from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

    from outrider._types._events import Event

__all__ = ["EventBus", "Subscription"]


@dataclass(eq=False, slots=True)
class Subscription:
    """A live feed of events; iterate `receive`, and `close()` when done."""

    session: str | None
    prefix: bool
    """`session` is a prefix: every session whose name starts with it."""
    send: MemoryObjectSendStream[Event]
    receive: MemoryObjectReceiveStream[Event]
    bus: EventBus = field(repr=False)
    lagged: bool = False

    def close(self) -> None:
        """Stop receiving."""
        self.bus.unsubscribe(self)
        self.send.close()
        self.receive.close()


class EventBus:
    """Delivers committed events to subscribers without ever blocking the publisher."""

    def __init__(self, *, buffer: int = 1000) -> None:
        self._buffer = buffer
        self._subscribers: set[Subscription] = set()

    def subscribe(self, session: str | None, *, prefix: bool = False) -> Subscription:
        """A new subscription for one session's events (`None`: every session's).

        With `prefix`, for every session whose name starts with `session`.
        """
        send, receive = anyio.create_memory_object_stream["Event"](self._buffer)
        sub = Subscription(session=session, prefix=prefix, send=send, receive=receive, bus=self)
        self._subscribers.add(sub)
        return sub

    @property
    def listening(self) -> bool:
        """Whether anyone subscribes (publishers may skip making events otherwise)."""
        return bool(self._subscribers)

    def unsubscribe(self, sub: Subscription) -> None:
        """Forget a subscription."""
        self._subscribers.discard(sub)

    def publish(self, events: Iterable[Event]) -> None:
        """Hand committed events to every matching subscriber."""
        for event in events:
            for sub in list(self._subscribers):
                if sub.session is not None and not (
                    event.session.startswith(sub.session)
                    if sub.prefix
                    else event.session == sub.session
                ):
                    continue
                try:
                    sub.send.send_nowait(event)
                except anyio.WouldBlock:
                    sub.lagged = True
                    self.unsubscribe(sub)
                    sub.send.close()
                except (anyio.BrokenResourceError, anyio.ClosedResourceError):
                    self.unsubscribe(sub)

    def close(self) -> None:
        """End every subscription."""
        for sub in list(self._subscribers):
            self.unsubscribe(sub)
            sub.send.close()
