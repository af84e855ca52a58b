"""Admission: what a task waits for before it may take a slot, and the ready queue's entries.

Invariants:
- A registered task is in exactly one of: waiting for dependencies (`pending_deps`), waiting
  for its handler (`held_for`), in the ready queue, or holding a slot.
- A dependency that ends `succeeded` is crossed off its dependents' lists; one that ends any
  other way stops them (`dependency`). A task whose last dependency is crossed off is queued.
- The tasks of a group are counted while unfinished; the end of the last one is told so
  (`group_done`), once.
- A task's children are known while both are unfinished, so stopping it stops them.
"""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING

from .._core._queue import Entry
from .._types._task import TaskState
from ._live import LiveTask

if TYPE_CHECKING:
    from .._types._task import Task
    from ._engine import Engine
    from ._live import Callback

__all__ = ["Admission"]


class Admission:
    """Registers tasks and queues them once nothing but a slot is missing."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self.children: dict[str, set[str]] = {}
        self._dependents: dict[str, set[str]] = {}
        self._held: dict[str, set[str]] = {}  # handler name -> task ids waiting for it
        self._group_active: Counter[tuple[str, str]] = Counter()

    def register(
        self, task: Task, seq: int, on_progress: Callback | None, on_done: Callback | None
    ) -> LiveTask:
        """Make the record of an unfinished task (with its ttl's timer)."""
        engine = self._engine
        live = LiveTask(task=task, seq=seq, runner=engine.runners[task.kind],
                        on_progress=on_progress, on_done=on_done)  # fmt: skip
        engine.live[task.id] = live
        if task.parent is not None:
            self.children.setdefault(task.parent, set()).add(task.id)
        if task.group is not None:
            self._group_active[(task.session, task.group)] += 1
        if task.ttl is not None:
            remaining = task.created_at.timestamp() + task.ttl - engine.clock.wall()
            live.ttl_deadline = engine.clock.now() + remaining
            engine.dispatcher.add_timer(live.ttl_deadline, task.id, "ttl")
        return live

    def link_deps(self, live: LiveTask) -> None:
        """Note which of its dependencies are still unfinished."""
        for dep in list(live.task.depends_on):
            if dep not in self._engine.live:
                live.pending_deps.discard(dep)  # ended already; submit checked it succeeded
            else:
                live.pending_deps.add(dep)
                self._dependents.setdefault(dep, set()).add(live.task_id)

    def admit(self, live: LiveTask, *, delay: float | None = None) -> None:
        """Put a task whose dependencies are met in the ready queue (or hold it)."""
        if live.pending_deps:
            return
        engine = self._engine
        spec = live.task.spec
        if spec.kind == "handler" and not engine.handler_available(spec.handler):
            live.held_for = spec.handler
            self._held.setdefault(spec.handler, set()).add(live.task_id)
            return
        engine.queue.push(
            Entry(
                task_id=live.task_id,
                priority=live.task.priority,
                seq=live.seq,
                keys=live.task.keys,
                uses_processes=live.runner.uses_processes,
                ready_deadline=None if not delay else engine.clock.now() + delay,
            )
        )
        engine.dispatcher.wake()

    def withdraw(self, live: LiveTask) -> None:
        """A waiting or queued task is stopped: it waits no more."""
        self._engine.queue.remove(live.task_id)
        if live.held_for is not None:
            self._held.get(live.held_for, set()).discard(live.task_id)
            live.held_for = None

    def release_held(self, handler: str) -> None:
        """A handler was registered: queue the tasks that waited for it."""
        for task_id in self._held.pop(handler, set()):
            live = self._engine.live.get(task_id)
            if live is not None:
                live.held_for = None
                self.admit(live)

    def waiting_for(self, task_id: str, now: float) -> str | None:
        """Why a queued task waits, in words."""
        engine = self._engine
        live = engine.live.get(task_id)
        if live is None or live.holds_slot:
            return None
        if live.pending_deps:
            return "dependencies: " + ", ".join(sorted(live.pending_deps))
        if live.held_for is not None:
            return f"handler {live.held_for!r} to be registered"
        blocker = engine.queue.blocker(task_id, now)
        if blocker is None and live.runner.uses_processes:
            blocker = engine.resources.held(now)
        return blocker or "its turn"

    def group_done(self, session: str, group: str) -> bool:
        """One task of a group ends; true when it was the group's last unfinished one."""
        key = (session, group)
        self._group_active[key] -= 1
        if self._group_active[key] > 0:
            return False
        del self._group_active[key]
        return True

    def ended(self, task: Task) -> None:
        """A task's end is stored: forget it as a child; its dependents go on or stop."""
        if task.parent is not None:
            siblings = self.children.get(task.parent)
            if siblings is not None:
                siblings.discard(task.id)
                if not siblings:
                    del self.children[task.parent]
        engine = self._engine
        for dependent_id in self._dependents.pop(task.id, set()):
            dependent = engine.live.get(dependent_id)
            if dependent is None:
                continue
            if task.state is TaskState.SUCCEEDED:
                dependent.pending_deps.discard(task.id)
                if not dependent.pending_deps and dependent.stop_reason is None:
                    self.admit(dependent)
            else:
                engine.stop(dependent, "dependency", f"its dependency {task.id} ended {task.state}")
