"""Recovery: rebuild the engine's memory from the store when an orchestrator starts.

Invariants:
- Every unfinished task in the store gets its record back; queued ones are queued again
  (a retry keeps its backoff), those whose dependency failed meanwhile end `cancelled`.
- A task found `running` ran in a dead outrider: every process of its last attempt (found by
  its marker, process group and session, leader gone or not) is stopped first, and only then
  is it retried or failed `interrupted`, so an attempt never runs beside its predecessor.
- Shutdown waits for recovery to settle those tasks before the store closes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import anyio
import anyio.to_thread

from .._logging import logger
from .._types._task import TaskState
from ..runners._procs import Leftovers, marker, stop_leftovers

if TYPE_CHECKING:
    from collections.abc import Mapping

    from anyio.abc import TaskGroup

    from .._store._sqlite import SQLiteBackend, UnfinishedTask
    from .._types._task import Task
    from ._engine import Engine
    from ._live import LiveTask

__all__ = ["Recovery"]

_RECOVERY_GRACE = 5.0
"""The grace period of a dead outrider's leftovers whose task names none."""
_NODE_TIMEOUT = 60.0
"""Seconds beyond the grace period a node has to say it stopped what an attempt left."""


class Recovery:
    """Loads the unfinished tasks and settles those a dead outrider was running."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._stopped: list[LiveTask] = []
        self._leftovers: list[tuple[LiveTask, Leftovers]] = []
        self.count = 0
        """Tasks found running at start whose leftover processes are being stopped."""
        self._done = anyio.Event()

    def load(self, backend: SQLiteBackend) -> None:
        """Recover from the store (sync, before `run`): find leftovers, rebuild the queue."""
        engine = self._engine
        unfinished = backend.unfinished()
        for state, count in backend.state_counts().items():
            if TaskState(state).terminal:
                engine.terminal_counts[TaskState(state)] = count
        engine.restore_seq(backend.max_seq())
        ids = {u.task.id for u in unfinished}
        external = {d for u in unfinished for d in u.task.depends_on if d not in ids}
        done_deps = backend.get_many(external)
        for item in unfinished:
            self._load_one(item, ids, done_deps)

    def _load_one(self, item: UnfinishedTask, ids: set[str], done_deps: Mapping[str, Task]) -> None:
        engine = self._engine
        task = item.task
        live = engine.admission.register(task, item.seq, None, None)
        if task.state is TaskState.RUNNING:
            live.recovering = True
            self.count += 1
            grace = getattr(task.spec, "grace_period", _RECOVERY_GRACE)
            # A pid recorded on a node of a cluster is that machine's, never one of this
            # machine's: the node is asked to stop what the attempt left there (`_recover`).
            pid, created = (item.pid, item.pid_created) if task.node is None else (None, None)
            leftovers = Leftovers(marker(task.id, task.attempt), pid, created, grace)
            self._leftovers.append((live, leftovers))
            return
        failed = [d for d in task.depends_on if d in done_deps and done_deps[d].state.terminal
                  and done_deps[d].state is not TaskState.SUCCEEDED]  # fmt: skip
        live.pending_deps = {d for d in task.depends_on if d in ids}
        if failed:
            live.stop_reason = "dependency"
            live.stop_message = f"dependency {failed[0]} ended {done_deps[failed[0]].state}"
            self._stopped.append(live)
            return
        engine.admission.link_deps(live)
        delay = None if item.ready_at is None else max(0.0, item.ready_at - engine.clock.wall())
        engine.admission.admit(live, delay=delay)

    async def start(self, tg: TaskGroup) -> None:
        """End the tasks found stopped; start stopping the leftovers of those found running."""
        for live in self._stopped:  # settled before the orchestrator is reported open
            await self._settle(live)
        self._stopped = []
        if self._leftovers:
            tg.start_soon(self._recover, self._leftovers)
            self._leftovers = []
        else:
            self._done.set()

    async def wait(self) -> None:
        """Return once the tasks found running are settled."""
        await self._done.wait()

    async def _recover(self, items: list[tuple[LiveTask, Leftovers]]) -> None:
        """Stop what tasks found running at start left, all at once; then settle each.

        Shielded: the tasks are settled even if the orchestrator shuts down meanwhile.
        """
        remote: dict[str, list[Leftovers]] = {}
        for live, left in items:
            if live.task.node is not None:
                remote.setdefault(live.task.node, []).append(left)
        here = [left for live, left in items if live.task.node is None]
        with anyio.CancelScope(shield=True):
            async with anyio.create_task_group() as tg:
                tg.start_soon(self._stop_here, here)
                for node, lefts in remote.items():
                    tg.start_soon(self._stop_on, node, lefts)
            for live, _ in items:
                live.recovering = False
                self.count -= 1
                await self._settle(live)
            self._done.set()

    @staticmethod
    async def _stop_here(items: list[Leftovers]) -> None:
        if not items:
            return
        try:
            await anyio.to_thread.run_sync(stop_leftovers, items)
        except Exception:  # settle them anyway: a task must not stay `running` forever
            logger.exception("stopping the processes left by a dead outrider failed")

    async def _stop_on(self, node: str, items: list[Leftovers]) -> None:
        """Ask the node the attempts ran on to stop what they left there, if it is reached."""
        asked = False
        grace = max(item.grace_period for item in items)
        with anyio.move_on_after(grace + _NODE_TIMEOUT):
            try:
                markers = [item.task_marker for item in items]
                asked = await self._engine.leftovers_on(node, markers, grace)
            except Exception:  # settle them anyway, as above
                logger.exception("asking node %s for what a dead outrider left failed", node)
        if not asked:
            logger.warning(
                "%d task(s) ran on node %s, which is not reached now; its worker died with the "
                "daemon, and its guardian stopped what they ran there", len(items), node,
            )  # fmt: skip

    async def _settle(self, live: LiveTask) -> None:
        reason = live.stop_reason or "shutdown"
        if reason == "shutdown":
            live.stop_message = "the outrider process running it stopped"
        await self._engine.runs.end_stopped(live, reason)
