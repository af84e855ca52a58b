"""EventBus: fan-out of committed events to live subscribers.

Invariants:
- `publish` is called with events already committed, in `seq` order; each subscriber receives
  the events of its session (or all, for `session=None`) in that order.
- `publish` never blocks: a subscriber whose bounded buffer is full is cut off (its stream
  ends with `lagged` set) and is expected to resync from the store by `seq`.
- `watching(session, task_id)` is true exactly while a subscription that wants output events
  covers that task; every `on_change` callback is called (synchronously) each time the set of
  subscriptions changes, so a runner that reports less finely while nobody watches can switch
  back as soon as someone does.

Cancellation: nothing here awaits except the subscriber's own `receive`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import anyio

from .._logging import logger

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

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
    output: bool = True
    """It watches tasks' output: it follows their `task.output` events live and asks for them as
    they come (a reader that takes output without watching subscribes without it)."""
    task_id: str | None = None
    """It wants only this task's events (None: every task's)."""
    lagged: bool = False

    def covers(self, session: str) -> bool:
        """Whether events of `session` reach it."""
        if self.session is None:
            return True
        return session.startswith(self.session) if self.prefix else session == self.session

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
        self._listeners: list[Callable[[], object]] = []

    def subscribe(
        self,
        session: str | None,
        *,
        prefix: bool = False,
        output: bool = True,
        task_id: str | None = None,
    ) -> Subscription:
        """A new subscription for one session's events (`None`: every session's).

        With `prefix`, for every session whose name starts with `session`. `output` and
        `task_id` say what its reader wants (for `watching`); every event still reaches it.
        """
        send, receive = anyio.create_memory_object_stream["Event"](self._buffer)
        sub = Subscription(
            session=session, prefix=prefix, send=send, receive=receive, bus=self,
            output=output, task_id=task_id,
        )  # fmt: skip
        self._subscribers.add(sub)
        self._changed()
        return sub

    def watching(self, session: str, task_id: str) -> bool:
        """Whether a subscriber follows this task's output live now."""
        return any(
            sub.output and sub.task_id in (None, task_id) and sub.covers(session)
            for sub in self._subscribers
        )

    def on_change(self, callback: Callable[[], object]) -> Callable[[], None]:
        """Call `callback` whenever a subscription starts or ends; returns its removal."""
        self._listeners.append(callback)
        return lambda: self._listeners.remove(callback)

    def _changed(self) -> None:
        for callback in list(self._listeners):
            try:
                callback()
            except Exception:
                logger.exception("a subscription listener raised")

    @property
    def listening(self) -> bool:
        """Whether anyone subscribes (publishers may skip making events otherwise)."""
        return bool(self._subscribers)

    def unsubscribe(self, sub: Subscription) -> None:
        """Forget a subscription."""
        if sub in self._subscribers:
            self._subscribers.remove(sub)
            self._changed()

    def publish(self, events: Iterable[Event]) -> None:
        """Hand committed events to every matching subscriber."""
        for event in events:
            for sub in list(self._subscribers):
                if not sub.covers(event.session):
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
