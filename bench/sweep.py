"""Sweep benchmark: how long a retention sweep of many finished tasks holds submits back.

Run: uv run python bench/sweep.py  [N]   (N finished tasks to sweep; default 50,000)

A store holds N tasks (and their three events each) that finished long ago. One submitter submits
handler tasks one after another for as long as the sweep takes (at least 2 s), and its latencies
are compared across three phases of the same run: no sweep (the baseline), the sweep in short
transactions (outrider's), and the sweep as one transaction (the whole batch at once).
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import anyio

import outrider
from outrider._store._sqlite import AddEvent, InsertTask, SQLiteBackend
from outrider._types._events import TaskQueued
from outrider._types._task import Task, TaskState

N = int(sys.argv[1]) if len(sys.argv) > 1 else 50_000
OLD = datetime.fromtimestamp(time.time() - 30 * 86400, UTC)  # finished a month ago


def fill(db: Path) -> None:
    """N tasks that finished a month ago, with their events."""
    backend = SQLiteBackend(str(db))
    backend.migrate()
    blank = Task(id="t_0", session="bench", spec=outrider.call("noop"), state=TaskState.SUCCEEDED,
                 priority=5, keys=("handler:noop",), created_at=OLD, finished_at=OLD)  # fmt: skip
    data = TaskQueued(kind="handler", priority=5, keys=["handler:noop"])
    at = OLD.timestamp()
    for start in range(0, N, 5_000):
        changes = []
        for n in range(start, min(N, start + 5_000)):
            task = blank.model_copy(update={"id": f"t_{n:020d}"})
            events = [AddEvent("task.queued", "bench", at, task.id, None, data)] * 3
            changes.append([InsertTask(task, n + 1), *events])
        backend.apply(changes)
    backend.close()


async def phase(orch: outrider.Orchestrator, sweep: str) -> tuple[float, float, float, float]:
    """Submit one after another while `sweep` runs ("none": for 2 s); latencies and sweep time."""
    store = orch._store  # the benchmark drives the store's sweep directly
    latencies: list[float] = []
    done = anyio.Event()
    took = 0.0

    async def sweeper() -> None:
        nonlocal took
        t0 = time.perf_counter()
        if sweep == "batched":
            await store.sweep(time.time())
        elif sweep == "one":
            await anyio.to_thread.run_sync(
                lambda: store.backend.sweep(time.time(), batch=N + 1),
                limiter=store._write_limiter,
            )
        took = time.perf_counter() - t0
        await anyio.sleep(max(0.0, 2.0 - took))  # sleep-ok: keep submitting for 2 s at least
        done.set()

    async with anyio.create_task_group() as tg:
        tg.start_soon(sweeper)
        session = orch.session("bench")
        while not done.is_set():
            t0 = time.perf_counter()
            await session.submit(outrider.call("noop"))
            latencies.append(time.perf_counter() - t0)
    latencies.sort()
    p99 = latencies[int(0.99 * (len(latencies) - 1))]
    return statistics.median(latencies) * 1e3, p99 * 1e3, latencies[-1] * 1e3, took


async def main() -> None:
    print(f"{N:,} finished tasks to sweep; latencies of one submitter in ms")
    print(f"{'phase':<28}{'p50':>8}{'p99':>8}{'max':>9}{'sweep s':>9}")
    for sweep in ("none", "batched", "none", "one"):
        db = Path(tempfile.mkdtemp()) / "sweep.db"
        fill(db)
        settings = outrider.Settings(retention=365 * 86400.0)  # no sweep of its own
        async with outrider.Orchestrator(db, settings) as orch:
            orch.register_handler("noop", lambda ctx: None)
            p50, p99, worst, took = await phase(orch, sweep)
        name = {"none": "no sweep (baseline)", "batched": "sweep, short transactions",
                "one": "sweep, one transaction"}[sweep]  # fmt: skip
        print(f"{name:<28}{p50:>8.2f}{p99:>8.2f}{worst:>9.1f}{took:>9.2f}")


if __name__ == "__main__":
    anyio.run(main)
