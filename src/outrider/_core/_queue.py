"""ReadyQueue: which queued tasks may start now. Pure and synchronous.

Invariants:
- A task is in at most one of *queued* and *running*.
- For every key, the number of running tasks holding it never exceeds its limit, and the
  number of running tasks never exceeds `max_running`: `pop_ready` only starts a task when
  the global cap and every one of its keys have room. (A limit lowered at run time lets the
  running count stay above the new limit until tasks finish; nothing new starts meanwhile.)
- Order: among the tasks that may start, the highest priority starts first, and within a
  priority the lowest `seq` (submission order). A task blocked on a full key never delays a
  task whose keys have room (no head-of-line blocking).
- A slot is taken by `pop_ready` and given back by `release`, exactly once; a second release
  of the same task is a bug and fails an assertion.

Design: queued tasks are grouped in *lanes*, one per distinct (keys, uses_processes); each lane
is a heap ordered by (-priority, seq). `pop_ready` repeatedly takes the best head among the
lanes whose keys all have room, so one call costs O(started x lanes x log n). Removal is lazy:
a heap item whose entry is no longer the queued one for its id is skipped. Tasks with a
`ready_deadline` in the future (a retry's backoff) wait in a separate heap until it passes.
Each key also keeps its queued tasks' (-priority, seq) in a sorted list, so a task's place in
line is a binary search per key, however long the queue.
"""

from __future__ import annotations

import heapq
import itertools
from bisect import bisect_left, insort
from collections import Counter
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Collection, Mapping

__all__ = ["Entry", "ReadyQueue"]

_LaneKey = tuple[tuple[str, ...], bool]


@dataclass(slots=True, eq=False)
class Entry:
    """A task as the queue sees it."""

    task_id: str
    priority: int
    seq: int
    keys: tuple[str, ...]
    uses_processes: bool = False
    ready_deadline: float | None = None
    """Monotonic instant before which the task may not start (a retry's backoff)."""


_HeapItem = tuple[int, int, int, Entry]


class ReadyQueue:
    """Priority queue with a global cap and per-key concurrency limits."""

    def __init__(
        self,
        *,
        max_running: int,
        limits: Mapping[str, int] | None = None,
        default_limit: int = 3,
    ) -> None:
        assert max_running >= 1
        assert default_limit >= 1
        self.max_running = max_running
        self.default_limit = default_limit
        self._limits: dict[str, int] = dict(limits or {})
        self._queued: dict[str, Entry] = {}
        self._running: dict[str, Entry] = {}
        self._lanes: dict[_LaneKey, list[_HeapItem]] = {}
        self._delayed: list[tuple[float, int, Entry]] = []
        self._running_per_key: Counter[str] = Counter()
        self._queued_per_key: Counter[str] = Counter()
        self._queued_per_priority: dict[str, Counter[int]] = {}
        """Queued tasks per key and priority (for the place in line of a new task)."""
        self._line: dict[str, list[tuple[int, int]]] = {}
        """Each key's queued tasks as (-priority, seq), sorted: the order they start in."""
        self._with_processes = 0
        self._counter = itertools.count()

    # -- limits ---------------------------------------------------------------------------

    def limit(self, key: str) -> int:
        """The concurrency limit of `key`."""
        return self._limits.get(key, self.default_limit)

    def set_limit(self, key: str, limit: int) -> None:
        """Change the limit of `key`; takes effect at the next `pop_ready`."""
        assert limit >= 1
        self._limits[key] = limit

    # -- membership -----------------------------------------------------------------------

    def __contains__(self, task_id: object) -> bool:
        return task_id in self._queued or task_id in self._running

    def is_queued(self, task_id: str) -> bool:
        """Whether the task waits in the queue."""
        return task_id in self._queued

    def is_running(self, task_id: str) -> bool:
        """Whether the task holds its slots."""
        return task_id in self._running

    @property
    def queued_count(self) -> int:
        """Tasks waiting in the queue."""
        return len(self._queued)

    @property
    def running_count(self) -> int:
        """Tasks holding slots."""
        return len(self._running)

    @property
    def queued_with_processes(self) -> int:
        """Queued tasks whose runs start processes (the ones a resource hold keeps waiting)."""
        return self._with_processes

    # -- transitions ----------------------------------------------------------------------

    def push(self, entry: Entry) -> None:
        """Queue a task; its keys must be non-empty and it must not be queued or running."""
        assert entry.keys, "a task holds at least one key"
        assert entry.task_id not in self, f"{entry.task_id} is already in the queue"
        self._queued[entry.task_id] = entry
        self._count_queued(entry, 1)
        if entry.ready_deadline is not None:
            heapq.heappush(self._delayed, (entry.ready_deadline, next(self._counter), entry))
        else:
            self._to_lane(entry)

    def remove(self, task_id: str) -> Entry | None:
        """Take a queued task out of the queue; returns its entry, or None if it is not queued."""
        entry = self._queued.pop(task_id, None)
        if entry is not None:
            self._count_queued(entry, -1)
        return entry

    def pop_ready(self, now: float, *, allow_processes: bool = True) -> list[Entry]:
        """Take every task that may start now and give it its slots.

        Args:
            now: The current monotonic time (for retry backoffs).
            allow_processes: False holds back tasks that start processes.

        Returns:
            The started entries, in start order.
        """
        self._promote_delayed(now)
        started: list[Entry] = []
        while len(self._running) < self.max_running:
            best: list[_HeapItem] | None = None
            for lane_key, heap in list(self._lanes.items()):
                if not self._clean_head(lane_key, heap):
                    continue
                keys, uses_processes = lane_key
                if uses_processes and not allow_processes:
                    continue
                if not self._has_room(keys):
                    continue
                if best is None or heap[0] < best[0]:
                    best = heap
            if best is None:
                break
            entry = heapq.heappop(best)[3]
            del self._queued[entry.task_id]
            self._count_queued(entry, -1)
            self._running[entry.task_id] = entry
            self._running_per_key.update(entry.keys)
            started.append(entry)
        return started

    def release(self, task_id: str) -> Entry:
        """Give back a running task's slots. Called exactly once per start."""
        entry = self._running.pop(task_id, None)
        assert entry is not None, f"{task_id} holds no slot (released twice?)"
        self._running_per_key.subtract(entry.keys)
        return entry

    # -- views ----------------------------------------------------------------------------

    def next_deadline(self) -> float | None:
        """The earliest retry backoff still pending, if any."""
        while (
            self._delayed
            and self._queued.get(self._delayed[0][2].task_id) is not (self._delayed[0][2])
        ):
            heapq.heappop(self._delayed)
        return self._delayed[0][0] if self._delayed else None

    def running_on(self, key: str) -> int:
        """Running tasks holding `key`."""
        return self._running_per_key[key]

    def queued_on(self, key: str) -> int:
        """Queued tasks holding `key`."""
        return self._queued_per_key[key]

    def known_keys(self) -> set[str]:
        """Every key with a limit set, or held by a task so far."""
        return set(self._limits) | set(self._running_per_key) | set(self._queued_per_key)

    def positions(self, task_ids: Collection[str] | None = None) -> dict[str, int]:
        """Each queued task's place in line: 1 + the tasks ahead of it on its most crowded key.

        With `task_ids`, only those (the ones queued), each in O(keys x log n), so reading a
        page of tasks stays cheap however long the queue is. Without, the whole queue's, by
        sorting it.
        """
        if task_ids is not None:
            return {i: self._position(e) for i in task_ids if (e := self._queued.get(i))}
        ahead: Counter[str] = Counter()
        result: dict[str, int] = {}
        for entry in sorted(self._queued.values(), key=lambda e: (-e.priority, e.seq)):
            result[entry.task_id] = 1 + max(ahead[k] for k in entry.keys)
            ahead.update(entry.keys)
        return result

    def position_of_newest(self, task_id: str) -> int | None:
        """The place in line of a task queued after every other of its priority, in O(keys).

        Exact for a task just submitted (its `seq` is the highest); None if it is not queued.
        """
        entry = self._queued.get(task_id)
        if entry is None:
            return None
        return max(
            sum(n for priority, n in self._queued_per_priority[k].items()
                if priority >= entry.priority)
            for k in entry.keys
        )  # fmt: skip

    def _position(self, entry: Entry) -> int:
        mark = (-entry.priority, entry.seq)
        return 1 + max(bisect_left(self._line[k], mark) for k in entry.keys)

    def blocker(self, task_id: str, now: float) -> str | None:
        """Why a queued task cannot start right now, in words (None if only its turn)."""
        entry = self._queued.get(task_id)
        if entry is None:
            return None
        if entry.ready_deadline is not None and entry.ready_deadline > now:
            return f"retry backoff ({entry.ready_deadline - now:.1f}s left)"
        if len(self._running) >= self.max_running:
            return f"the global limit ({len(self._running)}/{self.max_running} running)"
        full = [k for k in entry.keys if self._running_per_key[k] >= self.limit(k)]
        if full:
            return ", ".join(
                f"key {k!r} ({self._running_per_key[k]}/{self.limit(k)} running)" for k in full
            )
        return None

    # -- internals ------------------------------------------------------------------------

    def _count_queued(self, entry: Entry, delta: int) -> None:
        self._with_processes += delta if entry.uses_processes else 0
        if delta > 0:
            self._queued_per_key.update(entry.keys)
        else:
            self._queued_per_key.subtract(entry.keys)
        mark = (-entry.priority, entry.seq)
        for key in entry.keys:
            self._queued_per_priority.setdefault(key, Counter())[entry.priority] += delta
            line = self._line.setdefault(key, [])
            if delta > 0:
                insort(line, mark)
            else:
                del line[bisect_left(line, mark)]
                if not line:
                    del self._line[key]

    def _has_room(self, keys: tuple[str, ...]) -> bool:
        return all(self._running_per_key[k] < self.limit(k) for k in keys)

    def _to_lane(self, entry: Entry) -> None:
        lane = self._lanes.setdefault((entry.keys, entry.uses_processes), [])
        heapq.heappush(lane, (-entry.priority, entry.seq, next(self._counter), entry))

    def _clean_head(self, lane_key: _LaneKey, heap: list[_HeapItem]) -> bool:
        while heap and self._queued.get(heap[0][3].task_id) is not heap[0][3]:
            heapq.heappop(heap)
        if not heap:
            del self._lanes[lane_key]
            return False
        return True

    def _promote_delayed(self, now: float) -> None:
        while self._delayed and self._delayed[0][0] <= now:
            entry = heapq.heappop(self._delayed)[2]
            if self._queued.get(entry.task_id) is entry:
                entry.ready_deadline = None
                self._to_lane(entry)
