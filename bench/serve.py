"""Daemon benchmark: submit latency over HTTP and over MCP (stdio), and SSE delivery.

Run: uv run python bench/serve.py  [--quick]

Starts a real `outrider serve` on a free loopback port in a temporary data dir. Submitted tasks
go to a key held by one long task, so they queue without running and the latency measured is the
API's (validation, the durable write, the answer), not the machine's load from running them.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import anyio
import httpx
from mcp import Client as MCPClient
from mcp.client.stdio import StdioServerParameters
from rich.console import Console
from rich.table import Table

import outrider
from outrider._client import start_daemon

QUICK = "--quick" in sys.argv
N_HTTP = 300 if QUICK else 1_000
N_MCP = 100 if QUICK else 300
N_SSE = 100 if QUICK else 300


def pct(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100)[int(q) - 1] if len(values) > 1 else values[0]


def http_submit(url: str, token: str) -> list[float]:
    headers = {"Authorization": f"Bearer {token}", "X-Outrider-Session": "bench-http"}
    body = {"spec": {"kind": "shell", "command": "true"}, "keys": ["held"]}
    out = []
    with httpx.Client(base_url=url, headers=headers) as http:
        http.post("/v1/tasks", json={**body, "spec": {"kind": "shell", "command": "sleep 600"}})
        for _ in range(N_HTTP):
            start = time.perf_counter()
            response = http.post("/v1/tasks", json=body)
            out.append(time.perf_counter() - start)
            assert response.status_code == 201, response.text
    return out


async def mcp_calls(home: Path) -> list[float]:
    params = StdioServerParameters(
        command=sys.executable, args=["-m", "outrider._cli", "mcp", "--session", "bench-mcp"],
        env={**os.environ, "OUTRIDER_HOME": str(home)},
    )  # fmt: skip
    out = []
    async with MCPClient(params) as client:
        await client.call_tool("delegate_task", {"description": "hold", "command": "sleep 600"})
        for i in range(N_MCP):
            start = time.perf_counter()
            result = await client.call_tool(
                "delegate_task", {"description": f"job {i}", "command": "true"}
            )
            out.append(time.perf_counter() - start)
            assert not result.is_error
    return out


def sse_delivery(url: str, token: str) -> tuple[list[float], float]:
    """Completion-to-delivery latency of `task.succeeded`, and events/s for a burst."""
    client = outrider.Client(url, token=token, session="bench-sse")
    got: list[float] = []
    seen = threading.Event()
    count = {"events": 0}

    def listen() -> None:
        for event in client.events():
            now = datetime.now(UTC)
            count["events"] += 1
            if event.type == "task.succeeded":
                got.append((now - event.at).total_seconds())
                seen.set()
            if event.type == "group.completed":
                return

    listener = threading.Thread(target=listen, daemon=True)
    listener.start()
    with outrider.Client(url, token=token, session="bench-sse") as submitter:
        for _ in range(N_SSE // 2):  # one at a time: latency without queueing behind others
            seen.clear()
            submitter.submit(outrider.shell("true"))
            seen.wait(30)
        start = time.perf_counter()
        before = count["events"]
        submitter.submit_many(
            [{"spec": {"kind": "shell", "command": "true"}} for _ in range(N_SSE)], group="burst"
        )
        listener.join(120)
        rate = (count["events"] - before) / (time.perf_counter() - start)
    client.close()
    return got, rate


def main() -> None:
    home = Path(tempfile.mkdtemp(prefix="outrider-bench-"))
    (home / "outrider.toml").write_text("max_queued = 100000\n[limits]\nheld = 1\nshell = 8\n")
    os.environ.update(OUTRIDER_HOME=str(home), OUTRIDER_PORT="0")
    url = start_daemon()
    token = (home / "token").read_text().strip()
    pid = json.loads((home / "daemon.json").read_text())["pid"]
    try:
        http = http_submit(url, token)
        mcp = anyio.run(mcp_calls, home)
        sse, rate = sse_delivery(url, token)
    finally:
        with outrider.Client(url, token=token) as client:
            client.shutdown()
    import psutil

    psutil.Process(pid).wait(60)
    table = Table("measure", "p50", "p99", "target", "met")
    for name, values, target in (
        (f"HTTP submit ({N_HTTP}, sequential, keep-alive)", http, 0.010),
        (f"MCP tool call delegate_task over stdio ({N_MCP})", mcp, 0.020),
        (f"task end → SSE delivery ({len(sse)})", sse, 0.050),
    ):
        p50, p99 = pct(values, 50), pct(values, 99)
        met = "yes" if p99 <= target else "no"
        goal = f"p99 ≤ {target * 1000:.0f} ms"
        table.add_row(name, f"{p50 * 1000:.1f} ms", f"{p99 * 1000:.1f} ms", goal, met)
    burst = f"SSE events delivered per second (burst of {N_SSE} tasks)"
    table.add_row(burst, f"{rate:,.0f}/s", "", "", "")
    Console().print(table)


if __name__ == "__main__":
    main()
