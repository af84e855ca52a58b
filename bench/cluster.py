"""Cluster benchmark: the same workloads on a Ray cluster (a head and a node on 127.0.0.1) and on
the local executor, side by side in one run.

Run: uv run python bench/cluster.py  [--quick]

- first attempts: one per slot, while each node's worker starts (Ray starts its process, which
  imports the runners);
- submit → end, p50 / p99: one `true` shell task at a time (placed, started on its node, its
  end reported back and stored);
- cancel: a running `sleep 60 & sleep 60 & wait`, until `cancel` returned (the tree is gone then);
- node loss: a node's worker killed (`kill -9` of its process) until the attempt is `retrying`;
- frozen node: every process of a third node stopped (SIGSTOP) while it runs an attempt, until
  the attempt is `retrying`, with the head's health checks at 1 s, 1 s timeout, 4 misses
  (`HEALTH_CHECKS`; Ray's defaults take about a minute);
- throughput at a limit: N `sleep 0.1` tasks at a key limit of 4 (placed two on each node), the
  ideal wall time (N x 0.1 s / 4) over the actual one;
- W2 (`bench/engine.py`'s): 1,000 simulated agents, each 5 waits of 100 ms, at a limit of 100
  across the two nodes (50 slots each), ideal (1,000 / 100 x 0.5 s) over actual wall time. The
  agent is the executor seam's probe runner (`tests/executors/probe.py`, `agent`), run by each
  node's worker as by the daemon: what is measured is outrider and the executor, not a model's
  CPU (1,000 real built-in agents need minutes of CPU on 2 cores, `bench/workers.py`).

Both nodes are on this one 2-core machine, so the cluster's figures include Ray's own processes
competing with the work; on real machines its transport (loopback gRPC here) adds network latency.
"""

from __future__ import annotations

import os
import signal
import socket
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import anyio
import psutil
from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.executors.probe import LocalHost, Probe

import outrider
from outrider._daemon._cluster import Head, Node
from outrider._daemon._config import Config
from outrider._daemon._runners import executors, runners
from outrider._executors._nodes import NodePool
from outrider._executors._ray import RayCluster
from outrider.testing import task_processes, wait_until

QUICK = "--quick" in sys.argv
STARTS = 30 if QUICK else 100
CANCELS = 3 if QUICK else 10
LOSSES = 2 if QUICK else 5
SLEEPS = 40 if QUICK else 200
LIMIT = 4
W2 = 200 if QUICK else 1_000
W2_LIMIT = 100
SLOTS = W2_LIMIT // 2
"""Each node's slots: W2's limit across the two."""
ROOT = Path(__file__).resolve().parents[1]
HEALTH_CHECKS = {
    "RAY_health_check_period_ms": "1000",
    "RAY_health_check_timeout_ms": "1000",
    "RAY_health_check_failure_threshold": "4",
}


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def _starts(session: outrider.Tasks) -> list[float]:
    delays = []
    for _ in range(STARTS):
        task = await session.submit(outrider.shell("true"))
        (done,) = await session.wait([task.id], timeout=60)
        assert done.finished_at is not None
        delays.append((done.finished_at - done.created_at).total_seconds() * 1000)
    return delays


async def _cancels(session: outrider.Tasks) -> list[float]:
    times = []
    for _ in range(CANCELS):
        task = await session.submit(outrider.shell("sleep 60 & sleep 60 & wait"))
        await wait_until(lambda t=task: len(task_processes([t.id])) >= 3, timeout=60)
        start = time.perf_counter()
        await session.cancel(task.id)
        times.append((time.perf_counter() - start) * 1000)
        assert not task_processes([task.id])
    return times


async def _losses(session: outrider.Tasks) -> list[float]:
    times = []
    for _ in range(LOSSES):
        task = await session.submit(outrider.shell("sleep 60"), max_attempts=2)
        await wait_until(lambda t=task: len(task_processes([t.id])) >= 1, timeout=60)
        marked = task_processes([task.id])
        (worker,) = {p.ppid() for p in marked} - {p.pid for p in marked}
        start = time.perf_counter()
        os.kill(worker, signal.SIGKILL)
        async for _event in session.events(task_id=task.id, types=["task.retrying"]):
            times.append((time.perf_counter() - start) * 1000)
            break
        await session.cancel(task.id)
    return times


async def _throughput(session: outrider.Tasks) -> float:
    start = time.perf_counter()
    tasks = [await session.submit(outrider.shell("sleep 0.1")) for _ in range(SLEEPS)]
    await session.wait([t.id for t in tasks], timeout=600)
    return (SLEEPS * 0.1 / LIMIT) / (time.perf_counter() - start)


@dataclass
class Figures:
    cold: float
    starts: list[float]
    cancels: list[float]
    throughput: float
    losses: list[float]


async def _cold(session: outrider.Tasks) -> float:
    """Seconds until the first attempts (one per slot) ended: the workers start meanwhile."""
    start = time.perf_counter()
    tasks = [await session.submit(outrider.shell("true")) for _ in range(LIMIT)]
    await session.wait([t.id for t in tasks], timeout=120)
    return time.perf_counter() - start


async def measure(config: Config, db: Path, *, remote: bool) -> Figures:
    made = runners(config, {})
    placed = executors(config, {}, made) if remote else {}
    async with outrider.Orchestrator(db, config, runners=made, executors=placed) as orch:
        session = orch.session("bench")
        return Figures(
            await _cold(session), await _starts(session), await _cancels(session),
            await _throughput(session), await _losses(session) if remote else [],
        )  # fmt: skip


async def frozen(config: Config, db: Path, head: Head) -> float:
    """Ms from freezing a node that runs an attempt until the attempt is `retrying`."""
    extra = Node.join(head.address, head.token, folder=db.parent, slots=SLOTS + 1)  # placed there
    stopped: list[psutil.Process] = []
    try:
        made = runners(config, {})
        async with outrider.Orchestrator(
            db, config, runners=made, executors=executors(config, {}, made)
        ) as orch:
            session = orch.session("bench")
            task = await session.submit(outrider.shell("sleep 60"), max_attempts=2)
            await wait_until(lambda: len(task_processes([task.id])) >= 1, timeout=60)
            start = time.perf_counter()
            root = psutil.Process(extra.ray.process.pid)
            for process in [root, *root.children(recursive=True)]:
                process.suspend()
                stopped.append(process)
            async for _event in session.events(task_id=task.id, types=["task.retrying"]):
                break
            took = (time.perf_counter() - start) * 1000
            await session.cancel(task.id)
    finally:
        for process in stopped:
            process.resume()
        extra.stop()
    return took


async def w2(db: Path, nodes: NodePool | None) -> float:
    """W2 at a limit of 100, on the nodes (or in the daemon): ideal / actual wall time."""
    settings = outrider.Settings(max_running=2 * W2_LIMIT, limits={"probe": W2_LIMIT})
    placed = {"shell": nodes} if nodes is not None else {}
    async with outrider.Orchestrator(
        db, settings, runners=[Probe(LocalHost({}))], executors=placed
    ) as orch:
        session = orch.session("w2")
        warm = [await session.submit(outrider.ShellSpec(command="agent 1 0")) for _ in range(4)]
        await session.wait([t.id for t in warm], timeout=120)  # each node's worker runs
        start = time.perf_counter()
        items = [outrider.SubmitItem(spec=outrider.ShellSpec(command="agent")) for _ in range(W2)]
        tasks = await session.submit_many(items)
        done = await session.wait([t.id for t in tasks if isinstance(t, outrider.Task)])
        wall = time.perf_counter() - start
    assert all(t.state is outrider.TaskState.SUCCEEDED for t in done), done[0].error
    return (W2 / W2_LIMIT * 0.5) / wall


def _row(table: Table, name: str, values: list[float], base: list[float]) -> None:
    def cell(v: list[float]) -> str:
        return f"{_pct(v, 0.5):.1f} / {_pct(v, 0.99):.1f}" if v else "-"

    table.add_row(name, cell(values), cell(base))


async def main() -> None:
    folder = Path(tempfile.mkdtemp(prefix="outrider-bench-cluster-"))
    os.environ["OUTRIDER_HOME"] = str(folder)
    os.environ["PYTHONPATH"] = str(ROOT)  # the nodes' workers import the probe runner
    os.environ.update(HEALTH_CHECKS)  # read by the head
    started = time.perf_counter()
    head = Head.start(folder, bind="127.0.0.1", port=_free_port(), slots=SLOTS)
    head_s = time.perf_counter() - started
    started = time.perf_counter()
    node = Node.join(head.address, head.token, folder=folder, slots=SLOTS)
    node_s = time.perf_counter() - started
    try:
        limits = {"shell": LIMIT}
        remote = await measure(Config(cluster=head.address, limits=limits), folder / "r.db",
                               remote=True)  # fmt: skip
        local = await measure(Config(limits=limits), folder / "l.db", remote=False)
        ray = RayCluster(head.address, str(folder / "cluster.token"))
        nodes = NodePool("tests.executors.probe:runners", nodes=ray)
        w2_remote = await w2(folder / "w2r.db", nodes)
        w2_local = await w2(folder / "w2l.db", None)
        lost = await frozen(Config(cluster=head.address), folder / "f.db", head)
    finally:
        node.stop()
        head.stop()
    table = Table(title=f"outrider on a Ray cluster (head + node on 127.0.0.1, "
                        f"{psutil.cpu_count()} cores), ms p50 / p99")  # fmt: skip
    for column in ("measure", "cluster", "local executor"):
        table.add_column(column)
    _row(table, f"submit → end of `true` ({STARTS}, one at a time)", remote.starts, local.starts)
    _row(table, f"cancel a running tree ({CANCELS})", remote.cancels, local.cancels)
    _row(table, f"node worker kill -9 → retrying ({LOSSES})", remote.losses, [])
    _row(table, "a node frozen (SIGSTOP) → retrying (1)", [lost], [])
    table.add_row(f"{SLEEPS} x sleep 0.1 at limit {LIMIT}: ideal / actual",
                  f"{remote.throughput:.2f}", f"{local.throughput:.2f}")  # fmt: skip
    table.add_row(f"W2: {W2} agents (5 x 100 ms) at limit {W2_LIMIT}: ideal / actual",
                  f"{w2_remote:.2f}", f"{w2_local:.2f}")  # fmt: skip
    table.add_row("start: head / node (s)", f"{head_s:.1f} / {node_s:.1f}", "-")
    table.add_row(f"first {LIMIT} attempts, workers starting (s)", f"{remote.cold:.1f}",
                  f"{local.cold:.1f}")  # fmt: skip
    Console().print(table)


if __name__ == "__main__":
    anyio.run(main)
