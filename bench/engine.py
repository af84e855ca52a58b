"""Engine benchmark: W1-W5 of docs/PERFORMANCE.md, each beside a baseline in the same run.

W1-W4 are beside plain asyncio. W5 reads queued tasks while 10,000 wait (each answer carries
its place in line), beside reading an ended task from the same store (no place to work out).

Run: uv run python bench/engine.py  [--quick]
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

import anyio
import psutil
from rich.console import Console
from rich.table import Table

import outrider
from outrider.testing import wait_until

QUICK = "--quick" in sys.argv
N1 = 2_000 if QUICK else 10_000
N2 = 200 if QUICK else 1_000
N3 = 2_000
N4 = 50
N5 = 10_000


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


async def w1(db: Path) -> dict[str, float]:
    async with outrider.Orchestrator(
        db, outrider.Settings(max_running=64, limits={"handler:noop": 64})
    ) as orch:

        @orch.handler("noop")
        async def noop(ctx: outrider.RunContext) -> None:
            return None

        latencies: list[float] = []
        ids: list[str] = []
        start = time.perf_counter()

        async def submitter(count: int) -> None:
            for _ in range(count):
                t0 = time.perf_counter()
                task = await orch.session("bench").submit(outrider.call("noop"))
                latencies.append(time.perf_counter() - t0)
                ids.append(task.id)

        async with anyio.create_task_group() as tg:
            for _ in range(16):
                tg.start_soon(submitter, N1 // 16)
        await orch.session("bench").wait(ids)
        wall = time.perf_counter() - start
        done = await orch.session("bench").list(states=["succeeded"])
        assert len(done) == len(ids)
    return {
        "tasks_per_s": len(ids) / wall,
        "p50_ms": statistics.median(latencies) * 1000,
        "p99_ms": pct(latencies, 0.99) * 1000,
    }


async def w1_unloaded(db: Path) -> dict[str, float]:
    """Submit latency with the engine otherwise idle: one submitter, tasks queue behind a key."""
    async with outrider.Orchestrator(db, outrider.Settings(limits={"hold": 1})) as orch:
        release = anyio.Event()

        @orch.handler("hold")
        async def hold(ctx: outrider.RunContext) -> None:
            await release.wait()

        latencies: list[float] = []
        for _ in range(N1 // 10):
            t0 = time.perf_counter()
            await orch.session("bench").submit(outrider.call("hold"), keys=["hold"])
            latencies.append(time.perf_counter() - t0)
        release.set()
        await orch.cancel_session("bench")
    return {"p50_ms": statistics.median(latencies) * 1000, "p99_ms": pct(latencies, 0.99) * 1000}


async def w1_baseline() -> float:
    sem = asyncio.Semaphore(64)

    async def noop() -> None:
        async with sem:
            return None

    start = time.perf_counter()
    await asyncio.gather(*(noop() for _ in range(N1)))
    return N1 / (time.perf_counter() - start)


async def agent() -> None:
    for _ in range(5):
        await asyncio.sleep(0.1)


async def w2(db: Path) -> float:
    async with outrider.Orchestrator(
        db, outrider.Settings(max_running=200, limits={"handler:agent": 100})
    ) as orch:

        @orch.handler("agent")
        async def simulated(ctx: outrider.RunContext) -> None:
            await agent()

        start = time.perf_counter()
        items = [outrider.SubmitItem(spec=outrider.call("agent")) for _ in range(N2)]
        tasks = await orch.session("bench").submit_many(items)
        await orch.session("bench").wait([t.id for t in tasks if isinstance(t, outrider.Task)])
        wall = time.perf_counter() - start
    return (N2 / 100 * 0.5) / wall


async def w2_baseline() -> float:
    sem = asyncio.Semaphore(100)

    async def limited() -> None:
        async with sem:
            await agent()

    start = time.perf_counter()
    await asyncio.gather(*(limited() for _ in range(N2)))
    return (N2 / 100 * 0.5) / (time.perf_counter() - start)


async def w3(db: Path) -> float:
    async with outrider.Orchestrator(
        db, outrider.Settings(max_running=1, limits={"hold": 1})
    ) as orch:
        release = anyio.Event()

        @orch.handler("hold")
        async def hold(ctx: outrider.RunContext) -> None:
            await release.wait()

        await orch.session("bench").submit(outrider.call("hold"), keys=["hold"])
        tracemalloc.start()
        before = tracemalloc.take_snapshot()
        items = [outrider.SubmitItem(spec=outrider.call("hold"), keys=("hold",))
                 for _ in range(N3)]  # fmt: skip
        await orch.session("bench").submit_many(items)
        after = tracemalloc.take_snapshot()
        tracemalloc.stop()
        grown = sum(s.size_diff for s in after.compare_to(before, "filename"))
        release.set()
        await orch.cancel_session("bench")
    return grown / N3 / 1024


async def w3_baseline() -> float:
    sem = asyncio.Semaphore(1)
    hold = asyncio.Event()

    async def waiter() -> None:
        async with sem:
            await hold.wait()

    tracemalloc.start()
    before = tracemalloc.take_snapshot()
    tasks = [asyncio.ensure_future(waiter()) for _ in range(N3)]  # noqa: TID251 - baseline
    await asyncio.sleep(0.05)
    after = tracemalloc.take_snapshot()
    tracemalloc.stop()
    hold.set()
    await asyncio.gather(*tasks)
    return sum(s.size_diff for s in after.compare_to(before, "filename")) / N3 / 1024


async def w4(db: Path) -> float:
    async with outrider.Orchestrator(
        db, outrider.Settings(max_running=N4, limits={"shell": N4})
    ) as orch:
        tasks = [await orch.session("bench").submit(outrider.shell("sleep 60")) for _ in range(N4)]
        me = psutil.Process()
        await wait_until(lambda: len(me.children(recursive=True)) >= N4, timeout=30)
        start = time.perf_counter()
        await orch.cancel_session("bench")
        await wait_until(lambda: not _alive_children(me), timeout=30, interval=0.001)
        elapsed = time.perf_counter() - start
        assert all(
            t.state is outrider.TaskState.CANCELLED
            for t in await orch.session("bench").wait([t.id for t in tasks])
        )
    return elapsed * 1000


def _alive_children(me: psutil.Process) -> bool:
    alive = []
    for child in me.children(recursive=True):
        try:
            if child.status() != psutil.STATUS_ZOMBIE:
                alive.append(child)
        except psutil.NoSuchProcess:
            pass
    return bool(alive)


async def w4_baseline() -> float:
    procs = [await asyncio.create_subprocess_exec("sleep", "60") for _ in range(N4)]
    start = time.perf_counter()
    for p in procs:
        p.kill()
    await asyncio.gather(*(p.wait() for p in procs))
    return (time.perf_counter() - start) * 1000


async def w5(db: Path) -> dict[str, float]:
    """Median ms: `get` of a queued task, `list(limit=50)` of queued ones, `get` of an ended one."""
    settings = outrider.Settings(max_running=1, max_queued=N5 + 10, limits={"handler:hold": 1})
    async with outrider.Orchestrator(db, settings) as orch:
        release = anyio.Event()

        @orch.handler("hold")
        async def hold(ctx: outrider.RunContext) -> None:
            await release.wait()

        @orch.handler("noop")
        async def noop(ctx: outrider.RunContext) -> None:
            return None

        me = orch.session("bench")
        (ended,) = await me.wait([(await me.submit(outrider.call("noop"))).id])
        items = [outrider.SubmitItem(spec=outrider.call("hold")) for _ in range(1_000)]
        queued = [t for _ in range(N5 // 1_000) for t in await me.submit_many(items)]
        middle = queued[len(queued) // 2].id
        times: dict[str, list[float]] = {"get queued": [], "list 50 queued": [], "get ended": []}
        for _ in range(50):
            for name, read in (("get queued", lambda: me.get(middle)),
                               ("list 50 queued", lambda: me.list(states=["queued"], limit=50)),
                               ("get ended", lambda: me.get(ended.id))):  # fmt: skip
                start = time.perf_counter()
                await read()
                times[name].append(time.perf_counter() - start)
        release.set()
        await orch.cancel_session("bench")
    return {name: statistics.median(t) * 1000 for name, t in times.items()}


async def main() -> None:
    tmp = Path(tempfile.mkdtemp(prefix="outrider-bench-"))
    r1 = await w1(tmp / "w1.db")
    b1 = await w1_baseline()
    r1u = await w1_unloaded(tmp / "w1u.db")
    r2 = await w2(tmp / "w2.db")
    b2 = await w2_baseline()
    r3 = await w3(tmp / "w3.db")
    b3 = await w3_baseline()
    r4 = await w4(tmp / "w4.db")
    b4 = await w4_baseline()
    r5 = await w5(tmp / "w5.db")
    table = Table(title=f"outrider engine benchmark ({psutil.cpu_count()} cores)")
    for column in ("workload", "outrider", "asyncio baseline", "target"):
        table.add_column(column)
    table.add_row(f"W1 {N1} no-op tasks, durable: tasks/s", f"{r1['tasks_per_s']:,.0f}",
                  f"{b1:,.0f} (in memory)", "≥ 5,000")  # fmt: skip
    table.add_row("W1 submit latency p50 / p99 (16 submitters)",
                  f"{r1['p50_ms']:.2f} / {r1['p99_ms']:.2f} ms", "-", "p99 ≤ 2 ms")  # fmt: skip
    table.add_row(f"W1 submit latency p50 / p99 (one submitter, {N1 // 10} submits)",
                  f"{r1u['p50_ms']:.2f} / {r1u['p99_ms']:.2f} ms", "-", "")  # fmt: skip
    table.add_row(f"W2 {N2} agents (5x100 ms) at limit 100: efficiency", f"{r2:.3f}",
                  f"{b2:.3f}", "≥ 0.97")  # fmt: skip
    table.add_row(f"W3 memory per waiting task ({N3} waiting)", f"{r3:.1f} KB",
                  f"{b3:.1f} KB", "≤ 30 KB")  # fmt: skip
    table.add_row(f"W4 cancel {N4} running `sleep 60`: all gone", f"{r4:.0f} ms",
                  f"{b4:.0f} ms (SIGKILL)", "≤ 300 ms")  # fmt: skip
    table.add_row(f"W5 get / list 50 of queued tasks, {N5:,} queued: median",
                  f"{r5['get queued']:.2f} / {r5['list 50 queued']:.2f} ms",
                  f"{r5['get ended']:.2f} ms (get of an ended task)", "")  # fmt: skip
    Console().print(table)


if __name__ == "__main__":
    asyncio.run(main())
