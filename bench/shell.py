"""Shell throughput: N `true` commands at a concurrency of 16, outrider beside bare asyncio.

Run: uv run python bench/shell.py  [--quick]  [--rounds R]  [--cwd]

outrider: an Orchestrator on a temporary SQLite store, `shell` limit 16, the N tasks submitted at
once; the clock runs from the first submit to the last task's end. Measured twice: embedded in a
program (no subreaper), then contained as `outrider serve` and `outrider run` are (a child
subreaper with a guardian). Baseline: the same commands through `asyncio.create_subprocess_exec`
under a semaphore of 16 (no store, no process tracking), run right before each outrider round.
Both await their processes through pidfds, as the daemon and `outrider run` do.
Each figure is the range over the rounds; a ratio is outrider's rate over the baseline's beside
it (the median ratio is the steadiest figure on a shared machine). CPU: this process's, all
its threads (the store's writer included), per task, median over the rounds; beside it, the
commands' own (`sh -c true`: its children's, as `os.times` counts them once they are reaped),
the same work in both runs, which shares the cores with them.
`--cwd`: every command, outrider's and the baseline's, runs in a given working directory (a
temporary folder), as each command submitted from the CLI runs in the folder it came from.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import psutil
from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import outrider
from outrider._asynclib import pidfd_child_watcher
from outrider.runners._procs import contain_this_process

QUICK = "--quick" in sys.argv
N = 300 if QUICK else 1_000
CONCURRENCY = 16
ROUNDS = int(sys.argv[sys.argv.index("--rounds") + 1]) if "--rounds" in sys.argv else 3
CWD = tempfile.mkdtemp(prefix="outrider-bench-cwd-") if "--cwd" in sys.argv else None


def cpu() -> float:
    """This process's CPU seconds (every thread; not its children's)."""
    times = os.times()
    return times.user + times.system


def commands_cpu() -> float:
    """The CPU seconds of this process's reaped children (the commands)."""
    times = os.times()
    return times.children_user + times.children_system


async def through_outrider(db: Path) -> tuple[float, float, float]:
    """Tasks per second, submit of the first to the end of the last; CPU ms per task, its own
    and its command's."""
    settings = outrider.Settings(max_running=CONCURRENCY, limits={"shell": CONCURRENCY})
    async with outrider.Orchestrator(db, settings) as orch:
        session = orch.session("bench")
        cpu0, commands0, start = cpu(), commands_cpu(), time.perf_counter()
        tasks = await session.submit_many(
            [outrider.SubmitItem(spec=outrider.shell("true", cwd=CWD)) for _ in range(N)]
        )
        done = await session.wait([t.id for t in tasks if isinstance(t, outrider.Task)])
        elapsed, spent = time.perf_counter() - start, cpu() - cpu0
        commands = commands_cpu() - commands0
        assert len(done) == N
        assert all(t.state is outrider.TaskState.SUCCEEDED for t in done)
    return N / elapsed, spent / N * 1e3, commands / N * 1e3


async def bare() -> tuple[float, float, float]:
    """Tasks per second and CPU ms per task, its own and its command's: the same commands,
    only spawned and awaited."""
    gate = asyncio.Semaphore(CONCURRENCY)

    async def one() -> None:
        async with gate:
            proc = await asyncio.create_subprocess_exec(
                "/bin/sh", "-c", "true", stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT, start_new_session=True, cwd=CWD,
            )  # fmt: skip
            await proc.communicate()

    cpu0, commands0, start = cpu(), commands_cpu(), time.perf_counter()
    await asyncio.gather(*(one() for _ in range(N)))
    spent, commands = cpu() - cpu0, commands_cpu() - commands0
    return N / (time.perf_counter() - start), spent / N * 1e3, commands / N * 1e3


def span(values: list[float]) -> str:
    return f"{min(values):,.0f}-{max(values):,.0f}"


async def main() -> None:
    with pidfd_child_watcher():  # as the daemon and `outrider run` do (Python 3.11)
        await rounds()


async def rounds() -> None:
    tmp = Path(tempfile.mkdtemp(prefix="outrider-bench-shell-"))
    where = ", each in a working directory" if CWD else ""
    table = Table(title=f"{N} `true` commands at concurrency {CONCURRENCY}{where} "
                        f"({psutil.cpu_count()} cores, {ROUNDS} rounds)")  # fmt: skip
    for column in ("outrider", "outrider tasks/s", "bare tasks/s", "ratio", "median", "target",
                   "CPU ms/task: outrider / bare", "commands' CPU ms/task"):  # fmt: skip
        table.add_column(column)
    for mode in ("embedded (no subreaper)", "contained (subreaper, guardian)"):
        if mode.startswith("contained"):
            contain_this_process()
        ours: list[tuple[float, float, float]] = []
        theirs: list[tuple[float, float, float]] = []
        for n in range(ROUNDS):
            theirs.append(await bare())
            ours.append(await through_outrider(tmp / f"{mode[:3]}{n}.db"))
        ratio = [o[0] / t[0] for o, t in zip(ours, theirs, strict=True)]
        costs = (statistics.median(c for _, c, _ in side) for side in (ours, theirs))
        commands = (statistics.median(c for _, _, c in side) for side in (ours, theirs))
        table.add_row(mode, span([r for r, _, _ in ours]), span([r for r, _, _ in theirs]),
                      f"{min(ratio):.2f}-{max(ratio):.2f}", f"{statistics.median(ratio):.2f}",
                      "≥ 0.8", " / ".join(f"{c:.2f}" for c in costs),
                      " / ".join(f"{c:.2f}" for c in commands))  # fmt: skip
    Console(width=160).print(table)


if __name__ == "__main__":
    asyncio.run(main())
