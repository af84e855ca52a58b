"""Daemon benchmark: submit latency over HTTP and over MCP (stdio), SSE delivery, host start.

Run: uv run python bench/serve.py  [--quick] [--busy N]

`--busy N` keeps N processes spinning on the CPU (at most ten minutes) while host start is
measured: the load of a machine whose cores other work keeps busy, the same in every run.

Host start is measured as a host does it: the installed `outrider` script (its modules
compiled to bytecode first, as an installed copy has them after its first run; this machine
sets PYTHONDONTWRITEBYTECODE) started as a process, its first `initialize` and `tools/list`
answered (with the daemon running, and with none); a tool call through a started bridge; a
finished task reaching a waiting `wait_tasks` answer; `outrider --help` and `outrider
submit`. Baselines in the same run: `python -c pass`, a bare Python stdio server answering
`initialize`, and curl sending the same submit.

Starts a real `outrider serve` on a free loopback port in a temporary data dir. Submitted tasks
go to a key held by one long task, so they queue without running and the latency measured is the
API's (validation, the durable write, the answer), not the machine's load from running them.
"""

from __future__ import annotations

import compileall
import json
import os
import shutil
import statistics
import subprocess
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
BUSY = int(sys.argv[sys.argv.index("--busy") + 1]) if "--busy" in sys.argv else 0
SPIN = "import time\nend = time.monotonic() + 600\nwhile time.monotonic() < end:\n    pass\n"


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


N_START = 10 if QUICK else 30
SCRIPT = Path(sys.executable).with_name("outrider")
OUTRIDER = [str(SCRIPT)] if SCRIPT.exists() else [sys.executable, "-m", "outrider._cli"]
BARE = (
    "import json, sys\n"
    "for line in sys.stdin:\n"
    "    ask = json.loads(line)\n"
    "    sys.stdout.write(json.dumps({'jsonrpc': '2.0', 'id': ask['id'], 'result': {}}) + '\\n')\n"
    "    sys.stdout.flush()\n"
)
"""The least a Python stdio server does: answer each line (the floor of any bridge in Python)."""


class RawBridge:
    """`outrider mcp` spoken to as a host does: JSON-RPC lines on its stdin and stdout."""

    def __init__(self, env: dict[str, str], argv: list[str] | None = None) -> None:
        self.process = subprocess.Popen(
            argv or [*OUTRIDER, "mcp"], env=env,
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        self.ids = 0

    def ask(self, method: str, params: dict[str, object]) -> dict[str, object]:
        self.ids += 1
        line = {"jsonrpc": "2.0", "id": self.ids, "method": method, "params": params}
        assert self.process.stdin is not None
        assert self.process.stdout is not None
        self.process.stdin.write(json.dumps(line).encode() + b"\n")
        self.process.stdin.flush()
        while True:
            answer = json.loads(self.process.stdout.readline())
            if answer.get("id") == self.ids:
                return answer  # type: ignore[no-any-return]

    def close(self) -> None:
        assert self.process.stdin is not None
        assert self.process.stdout is not None
        self.process.stdin.close()
        self.process.wait(30)
        self.process.stdout.close()


HELLO = {"protocolVersion": "2025-06-18", "capabilities": {},
         "clientInfo": {"name": "bench", "version": "1"}}  # fmt: skip


def bridge_start(env: dict[str, str], argv: list[str] | None = None) -> tuple[float, float]:
    """Seconds from starting the bridge to its `initialize` answer, and to `tools/list`'s."""
    start = time.perf_counter()
    bridge = RawBridge(env, argv)
    bridge.ask("initialize", HELLO)
    hello = time.perf_counter() - start
    bridge.ask("tools/list", {})
    listed = time.perf_counter() - start
    bridge.close()
    return hello, listed


def curl_submit(env: dict[str, str]) -> list[str]:
    """curl sending what `outrider submit --key held -- true` sends (the token's holder known)."""
    body = {"spec": {"kind": "shell", "command": "true", "cwd": os.getcwd(), "env": {}},
            "keys": ["held"], "priority": 5}  # fmt: skip
    headers = {"Authorization": f"Bearer {env['OUTRIDER_TOKEN']}",
               "X-Outrider-Session": "default", "Content-Type": "application/json"}  # fmt: skip
    given = [part for name, value in headers.items() for part in ("-H", f"{name}: {value}")]
    url = f"{env['OUTRIDER_URL']}/v1/tasks"
    return ["curl", "-sf", "-o", "/dev/null", "-X", "POST", url, *given, "--data", json.dumps(body)]


def host_start(env: dict[str, str]) -> dict[str, list[float]]:
    """The start-up measures, with the daemon of `env` running (and one without any)."""
    out: dict[str, list[float]] = {k: [] for k in (
        "init", "list", "init-nodaemon", "list-nodaemon", "call", "wake", "help", "submit",
        "python", "bare", "curl")}  # fmt: skip
    compileall.compile_dir(Path(outrider.__file__).parent, quiet=1)
    for _ in range(N_START):
        hello, listed = bridge_start(env)
        out["init"].append(hello)
        out["list"].append(listed)
        empty = tempfile.mkdtemp(prefix="outrider-bench-none-")
        lonely = {**env, "OUTRIDER_HOME": empty, "OUTRIDER_URL": "http://127.0.0.1:9"}
        hello, listed = bridge_start(lonely)  # no daemon (and none started: a fixed URL)
        out["init-nodaemon"].append(hello)
        out["list-nodaemon"].append(listed)
        out["bare"].append(bridge_start(env, [sys.executable, "-c", BARE])[0])
        commands = {
            "help": [*OUTRIDER, "--help"], "python": [sys.executable, "-c", "pass"],
            "submit": [*OUTRIDER, "submit", "--key", "held", "--", "true"],
            **({"curl": curl_submit(env)} if shutil.which("curl") else {}),
        }  # fmt: skip
        for key, argv in commands.items():
            start = time.perf_counter()
            subprocess.run(argv, env=env, capture_output=True, check=True)
            out[key].append(time.perf_counter() - start)
    bridge = RawBridge(env)
    bridge.ask("initialize", HELLO)
    bridge.ask("tools/call", {"name": "list_tasks", "arguments": {}})
    for _ in range(N_START * 3):
        start = time.perf_counter()
        bridge.ask(
            "tools/call", {"name": "list_tasks", "arguments": {"status": "queued", "limit": 1}}
        )
        out["call"].append(time.perf_counter() - start)
    for _ in range(N_START):
        given = bridge.ask("tools/call", {"name": "delegate_task", "arguments": {
            "description": "wake", "command": "sleep 0.2"}})  # fmt: skip
        task_id = given["result"]["structuredContent"]["task"]["id"]  # type: ignore[index]
        waited = bridge.ask(
            "tools/call", {"name": "wait_tasks", "arguments": {"task_ids": [task_id]}}
        )
        got = datetime.now(UTC)
        ended = waited["result"]["structuredContent"]["tasks"][0]["finished_at"]  # type: ignore[index]
        out["wake"].append((got - datetime.fromisoformat(ended)).total_seconds())
    bridge.close()
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
        spinners = [subprocess.Popen([sys.executable, "-c", SPIN]) for _ in range(BUSY)]
        try:
            starts = host_start({**os.environ, "OUTRIDER_URL": url, "OUTRIDER_TOKEN": token})
        finally:
            for spinner in spinners:
                spinner.kill()
                spinner.wait()
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
    for name, key, target in (
        ("bridge start → initialize answered, daemon running", "init", 0.300),
        ("bridge start → tools/list answered, daemon running", "list", 0.300),
        ("bridge start → tools/list answered, no daemon", "list-nodaemon", 0.500),
        ("tool call through a started bridge (list_tasks)", "call", 0.020),
        ("task end → waiting wait_tasks answered (p50 target)", "wake", 0.005),
        ("`outrider --help`", "help", 0.200),
        ("`outrider submit -- true`", "submit", 0.200),
        ("baseline: `python -c pass`", "python", 0.0),
        ("baseline: a bare Python stdio server answers initialize", "bare", 0.0),
        ("baseline: curl sends the same submit", "curl", 0.0),
    ):
        values = starts[key]
        if not values:
            continue
        p50, p99 = pct(values, 50), pct(values, 99)
        judged = p50 if key == "wake" else p99
        met = "" if not target else "yes" if judged <= target else "no"
        goal = "" if not target else f"{'p50' if key == 'wake' else 'p99'} ≤ {target * 1000:.0f} ms"
        table.add_row(f"{name} ({len(values)})", f"{p50 * 1000:.1f} ms", f"{p99 * 1000:.1f} ms",
                      goal, met)  # fmt: skip
    burst = f"SSE events delivered per second (burst of {N_SSE} tasks)"
    table.add_row(burst, f"{rate:,.0f}/s", "", "", "")
    Console().print(table)


if __name__ == "__main__":
    main()
