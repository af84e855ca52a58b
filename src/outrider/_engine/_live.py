"""The engine's record of one unfinished task, and the phase it is in.

Invariants:
- One `LiveTask` per unfinished task, from its registration to its stored end (`finish`).
- `phase` is derived from the record's fields, never stored beside them, so it cannot drift:
  the engine decides what a stop does by the phase (`Engine.stop`), not by decoding flags.
- `done` and `settled` are made on first use (most tasks are never waited for) and are set,
  if already made, by `finish`.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

import anyio

if TYPE_CHECKING:
    from .._store._logs import TaskLog
    from .._types._task import Task
    from ..runners._protocol import Runner

__all__ = ["Callback", "LiveTask", "NewTask", "Phase", "StopReason"]

StopReason = Literal["user", "parent", "dependency", "timeout", "ttl", "stall", "shutdown"]
Callback = Callable[["Task"], object]


class Phase(enum.IntEnum):
    """Where an unfinished task is in its life, in order."""

    WAITING = 0
    """For its dependencies, or for its handler to be registered."""
    QUEUED = 1
    """In the ready queue, for a slot (or for its retry's backoff)."""
    STARTING = 2
    """Given a slot; its start is being stored, and it runs once it is."""
    RUNNING = 3
    LENDING = 4
    """Running, with its slots lent to others while it waits for tasks it started."""
    RECLAIMING = 5
    """Running, queued to take its slots back."""
    RECOVERING = 6
    """Found running at start: the processes it left are being stopped before it is settled."""
    ENDING = 7
    """Its end is being stored: it can no longer be stopped."""
    ENDED = 8


@dataclass(frozen=True, slots=True)
class NewTask:
    """A validated task to store, with the program's callbacks."""

    task: Task
    spec_json: str
    """The task's spec as JSON, as it is stored."""
    on_progress: Callback | None = None
    on_done: Callback | None = None


@dataclass(eq=False, slots=True)
class LiveTask:
    task: Task
    seq: int
    runner: Runner
    pending_deps: set[str] = field(default_factory=set)
    held_for: str | None = None
    """The handler it waits to be registered."""
    ttl_deadline: float | None = None
    on_progress: Callback | None = None
    on_done: Callback | None = None
    ending: bool = False
    recovering: bool = False
    finished: bool = False
    _done: anyio.Event | None = None
    end_error: Exception | None = None
    """Why its end could not be stored yet (it is tried again until it is)."""
    end_tries: int = 0
    _settled: anyio.Event | None = None
    handle: anyio.TaskHandle[None] | None = None
    """The task running it; cancelling the handle stops the run."""
    holds_slot: bool = False
    abandoned: anyio.Event | None = None
    """Work the runner could not stop (a thread) runs on until this is set; the slot waits."""
    release_pending: bool = False
    slot_lent: bool = False
    resume_queued: bool = False
    waiters: int = 0
    slot_back: anyio.Event | None = None
    stop_reason: StopReason | None = None
    stop_message: str | None = None
    run_deadline: float | None = None
    last_activity: float = 0.0
    log: TaskLog | None = None
    log_failed: bool = False
    output_tail: bytearray = field(default_factory=bytearray)
    output_dirty: bool = False
    progress_dirty: bool = False
    flush_scheduled: bool = False
    last_flush: float = float("-inf")

    @property
    def task_id(self) -> str:
        return self.task.id

    @property
    def phase(self) -> Phase:
        """The phase its fields say it is in (see `Phase`)."""
        if self.finished:
            return Phase.ENDED
        if self.ending:
            return Phase.ENDING
        if self.recovering:
            return Phase.RECOVERING
        if self.holds_slot:
            if self.handle is None:
                return Phase.STARTING
            if self.resume_queued:
                return Phase.RECLAIMING
            return Phase.LENDING if self.slot_lent else Phase.RUNNING
        if self.pending_deps or self.held_for is not None:
            return Phase.WAITING
        return Phase.QUEUED

    @property
    def done(self) -> anyio.Event:
        """Set once the task ended and its end is stored (made on first use: most never are)."""
        if self._done is None:
            self._done = anyio.Event()
            if self.finished:
                self._done.set()
        return self._done

    @property
    def settled(self) -> anyio.Event:
        """Set once its end is stored, or the store refused it (see `end_error`)."""
        if self._settled is None:
            self._settled = anyio.Event()
            if self.finished or self.end_error is not None:
                self._settled.set()
        return self._settled

    def finish(self) -> None:
        self.finished = True
        if self._done is not None:
            self._done.set()
        if self._settled is not None:
            self._settled.set()
