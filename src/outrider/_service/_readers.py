"""Who reads a session's notices: one delivery cursor and at most one waiter per reader.

A reader is one host window (its MCP connection, its hooks, its plugin) reading a session's
completion notices. The session's acknowledgement cursor is durable and says what reached some
model; a reader's cursor says what reached *this* reader's model, so two windows that share a
named session each receive every notice (at least once each), and the channels of one window
(its tool answers, its woken turns) never repeat a notice to its model.

Invariants:
- A reader's cursor starts at the session's acknowledgement cursor when the reader is first
  seen, and only moves forward; it lives in memory (after a restart every reader starts again
  from the durable cursor: what was acknowledged is never shown again).
- At most one waiter per reader: a newer `wait` ends the older one at once (it reports
  `superseded`), so a host that re-arms its waiter never has two that could both wake it.
- The registry is bounded: the least recently used readers are forgotten first.
"""

from __future__ import annotations

import contextlib
from collections import OrderedDict
from typing import TYPE_CHECKING

import anyio

if TYPE_CHECKING:
    from collections.abc import Iterator

__all__ = ["Readers"]

_Key = tuple[str, str]


class Readers:
    """The readers of every session of one orchestrator (in memory).

    Args:
        capacity: How many readers are remembered at most.
    """

    def __init__(self, *, capacity: int = 10_000) -> None:
        self._capacity = capacity
        self._cursors: OrderedDict[_Key, int] = OrderedDict()
        self._waiters: dict[_Key, anyio.Event] = {}

    def cursor(self, session: str, reader: str) -> int | None:
        """The highest notice seq `reader` received in `session`, or None if it is new."""
        key = (session, reader)
        if key in self._cursors:
            self._cursors.move_to_end(key)
        return self._cursors.get(key)

    def advance(self, session: str, reader: str, seq: int) -> None:
        """`reader` received the notices of `session` up to `seq` (never moves back)."""
        key = (session, reader)
        self._cursors[key] = max(seq, self._cursors.get(key, 0))
        self._cursors.move_to_end(key)
        while len(self._cursors) > self._capacity:
            self._cursors.popitem(last=False)

    @contextlib.contextmanager
    def waiting(self, session: str, reader: str) -> Iterator[anyio.Event]:
        """Register the reader's waiter; the event is set when a newer waiter takes over."""
        key = (session, reader)
        older = self._waiters.get(key)
        if older is not None:
            older.set()
        superseded = anyio.Event()
        self._waiters[key] = superseded
        try:
            yield superseded
        finally:
            if self._waiters.get(key) is superseded:
                del self._waiters[key]
