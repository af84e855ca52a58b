"""Recovery benchmark: a store reopened after `kill -9` with N tasks whose processes ignore SIGTERM.

Measures, with each task's `grace_period` = G:
- open: how long `async with Orchestrator(db)` takes to return (the daemon answers at once);
- settled: until every leftover is gone and every task is settled (retried or `interrupted`);
- baseline: the same leftovers stopped one task after another (what a sequential recovery costs).

Run: uv run python bench/recovery.py  [N] [G]
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import anyio

import outrider
from outrider.runners import _procs

SCRIPT = """
import json, sys, anyio, outrider
async def main(db, n, grace):
    settings = outrider.Settings(max_running=n, limits={"shell": n})
    async with outrider.Orchestrator(db, settings) as orch:
        bench = orch.session("bench")
        for _ in range(n):
            spec = outrider.shell("trap '' TERM; echo up; sleep 600", grace_period=grace)
            await bench.submit(spec)
        seen = set()
        async for event in bench.events():
            if event.type == "task.output":
                seen.add(event.task_id)
                if len(seen) == n:
                    print("READY", flush=True)
                    await anyio.sleep_forever()
anyio.run(main, sys.argv[1], int(sys.argv[2]), float(sys.argv[3]))
"""


def crash(db: Path, n: int, grace: float) -> None:
    proc = subprocess.Popen([sys.executable, "-c", SCRIPT, str(db), str(n), str(grace)],
                            stdout=subprocess.PIPE, text=True)  # fmt: skip
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "READY"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    proc.stdout.close()


async def recover(db: Path) -> tuple[float, float]:
    start = time.perf_counter()
    async with outrider.Orchestrator(db) as orch:
        opened = time.perf_counter() - start
        ids = [t.id for t in await orch.session("bench").list()]
        await orch.session("bench").wait(ids)
        return opened, time.perf_counter() - start


def sequential(n: int, grace: float) -> float:
    """The baseline: N stubborn process groups stopped one after another."""
    procs = [subprocess.Popen(["/bin/sh", "-c", "trap '' TERM; sleep 600"],
                              env={**os.environ, "OUTRIDER_TASK": f"b{i}.1"},
                              start_new_session=True) for i in range(n)]  # fmt: skip
    time.sleep(0.2)  # sleep-ok: let every shell set its trap
    start = time.perf_counter()
    for i, proc in enumerate(procs):
        found = _procs.find_by_markers([_procs.Leftovers(f"b{i}.1", grace_period=grace)])[0]
        _procs.stop_processes([(found, grace)])
        proc.wait()
    return time.perf_counter() - start


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 20
    grace = float(sys.argv[2]) if len(sys.argv) > 2 else 1.0
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "o.db"
        crash(db, n, grace)
        opened, settled = anyio.run(recover, db)
    baseline = sequential(n, grace)
    figures = {"tasks": n, "grace": grace, "open_s": round(opened, 3),
               "settled_s": round(settled, 2), "sequential_s": round(baseline, 2)}  # fmt: skip
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
