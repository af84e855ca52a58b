"""Agent benchmark: many agents on one rate-limited model, with and without outrider's limits.

Run: uv run python bench/agents.py  [--quick]  [--sandbox | --tools | --files | --transcripts]

`--tools` measures only what an agent run spends on its tools: the prebuilt tools it gets
(a lookup) against building the same seven tools for the run (their schemas parsed from their
signatures and docstrings, as each run once did), 200 runs each.

`--files` measures only the file tools' walk: `list_files` and `grep` over a tree of 20,441
entries (40 folders of 10 of 50 small files), for patterns that reach one folder, the top
folder alone, or all of it, each beside the standard library's `glob.glob` of the same pattern
(recursive, no policy, no hidden paths, no links checked: a floor), with outrider's own store
folder inside the workspace (hidden, as when the daemon's data lives in the project). The
median of 7 rounds of each.

`--transcripts` measures only a transcript's save: 200 tasks each saving a transcript 8 times as
it grows from 2 to 16 KB (as an agent saves before every model call), appended as a record to
its file (`TranscriptWriter`), beside replacing the file with each save (a new file written and
renamed over it, as saves once did); the CPU per save, the median of 5 rounds.

`--sandbox` measures only what the sandbox adds to each `run_command`: the same command run
N times as `/bin/sh -c` and inside bubblewrap (with the policy check and the masks a run
builds), one after another, the median and 90th percentile per command.

The fake provider (tests/fakellm.py, real HTTP on 127.0.0.1) allows 600 requests/min (a token
bucket, no burst) and answers after 40 ms. Each agent task makes 5 model calls (4 tool calls,
then its answer). The ideal wall time is calls / (600/min). Compared:

(a) outrider: the agent runner with the provider's `rpm = 600` in config (calls paced before
    they are sent; 429s would halve the model's concurrency and honour Retry-After);
(a') outrider without the rate in config: it learns the rate from 429s and Retry-After;
(a'') the same, the provider stating its limit in response headers (as OpenAI and Anthropic do);
(b) a fixed concurrency of 50 workers making the same calls, retrying a 429 after 0.5 s.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

import anyio
import httpx
from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


import outrider
from outrider._agents._definitions import AgentDefinition

if TYPE_CHECKING:
    from collections.abc import Callable

QUICK = "--quick" in sys.argv
SANDBOX_ONLY = "--sandbox" in sys.argv
TOOLS_ONLY = "--tools" in sys.argv
FILES_ONLY = "--files" in sys.argv
TRANSCRIPTS_ONLY = "--transcripts" in sys.argv
SANDBOX_RUNS = 100 if QUICK else 300
FAKE_SERVER = Path(__file__).resolve().parents[1] / "tests" / "fakellm.py"
TASKS = 40 if QUICK else 200
CALLS = 5
RPM = 600
LATENCY = 0.040


class Server:
    """The fake provider in its own process (as a real provider is), and its counters."""

    def __init__(self, port: int) -> None:
        self.base_url = f"http://127.0.0.1:{port}/v1"
        self._stats = f"http://127.0.0.1:{port}/_stats"

    async def reset(self, *, stated: bool = False) -> None:
        async with httpx.AsyncClient() as client:
            params = {"stated": "1" if stated else "0"}
            (await client.post(self._stats, params=params)).raise_for_status()

    async def rate_limited(self) -> int:
        async with httpx.AsyncClient() as client:
            return int((await client.get(self._stats)).json()["rate_limited"])


async def outrider_run(
    fake: Server, *, configured: bool, stated: bool = False
) -> tuple[float, int, int]:
    await fake.reset(stated=stated)
    with tempfile.TemporaryDirectory() as tmp:
        agents = {"bench": AgentDefinition(name="bench", model="fake/bench", prompt="Work.",
                                           source=Path("bench.md"), format="outrider")}  # fmt: skip
        provider = outrider.ProviderConfig(
            base_url=fake.base_url, api_key="k", rpm=RPM if configured else None,
            max_concurrency=50,
        )  # fmt: skip
        runner = outrider.AgentRunner(agents, outrider.Providers({"fake": provider}))
        async with outrider.Orchestrator(
            Path(tmp) / "bench.db",
            outrider.Settings(
                max_running=TASKS, limits={"agent:bench": TASKS, "model:fake/bench": 50}
            ),
            runners=[runner],
        ) as orch:
            start = time.perf_counter()
            tasks = [
                await orch.session("b").submit(outrider.agent("bench", f"job {i}", workspace=tmp))
                for i in range(TASKS)
            ]
            done = await orch.session("b").wait([t.id for t in tasks])
            wall = time.perf_counter() - start
    ok = sum(t.state == outrider.TaskState.SUCCEEDED for t in done)
    return wall, await fake.rate_limited(), ok


async def naive_run(fake: Server) -> tuple[float, int, int]:
    await fake.reset()
    jobs = list(range(TASKS))
    ok = 0

    async def agent(client: httpx.AsyncClient, job: int) -> None:
        nonlocal ok
        messages: list[dict[str, object]] = [{"role": "user", "content": f"job {job}"}]
        for step in range(CALLS):
            while True:
                response = await client.post(
                    "/chat/completions", json={"model": "naive", "messages": messages}
                )
                if response.status_code != 429:
                    break
                await anyio.sleep(0.5)
            response.raise_for_status()
            if step < CALLS - 1:
                messages.append({"role": "tool", "tool_call_id": str(step), "content": "ok"})
        ok += 1

    async def worker(client: httpx.AsyncClient) -> None:
        while jobs:
            await agent(client, jobs.pop())

    limits = httpx.Limits(max_connections=50)
    async with httpx.AsyncClient(base_url=fake.base_url, limits=limits, timeout=60) as client:
        start = time.perf_counter()
        async with anyio.create_task_group() as tg:
            for _ in range(50):
                tg.start_soon(worker, client)
        wall = time.perf_counter() - start
    return wall, await fake.rate_limited(), ok


async def _timed(argv_for: Callable[[], list[str]], cwd: str) -> list[float]:
    times = []
    for _ in range(SANDBOX_RUNS):
        start = time.perf_counter()
        argv = argv_for()
        await anyio.run_process(argv, cwd=cwd, check=True)
        times.append(time.perf_counter() - start)
    return times


async def sandbox_costs() -> None:
    from outrider._agents._sandbox import bwrap_argv, probe
    from outrider._agents._workspace import Patterns, Policy, Workspace

    status = probe()
    if status.bwrap is None:
        print(f"no sandbox here: {status.reason}")
        return
    bwrap = status.bwrap
    command = "echo hi > /dev/null"
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        for i in range(200):  # a small project: 200 files, a denied folder
            (root / f"pkg{i % 10}").mkdir(exist_ok=True)
            (root / f"pkg{i % 10}" / f"m{i}.py").write_text("x = 1\n")
        (root / "secrets").mkdir()
        policy = Policy(paths=Patterns(deny=("secrets/**",)), commands=Patterns(allow=("echo *",)))
        ws = Workspace(root, policy)

        def plain() -> list[str]:
            ws.check_command(command)
            return ["/bin/sh", "-c", command]

        def sandboxed() -> list[str]:
            ws.check_command(command)
            hidden = ws.denied()
            return bwrap_argv(bwrap, command, workspace=ws.root, hidden=hidden, network=False)

        rows = [("/bin/sh -c (baseline)", await _timed(plain, tmp)),
                ("bubblewrap sandbox", await _timed(sandboxed, tmp))]  # fmt: skip
    table = Table(title=f"{SANDBOX_RUNS} commands each, one after another")
    for col in ("run", "median ms", "p90 ms"):
        table.add_column(col)
    for name, times in rows:
        ordered = sorted(times)
        p90 = ordered[int(len(ordered) * 0.9)]
        table.add_row(name, f"{statistics.median(times) * 1000:.1f}", f"{p90 * 1000:.1f}")
    Console().print(table)
    added = statistics.median(rows[1][1]) - statistics.median(rows[0][1])
    print(f"sandbox cost per command (median): {added * 1000:.1f} ms")


def tool_costs(runs: int = 200) -> None:
    """Per run: the prebuilt tools against building them (the same-run baseline)."""
    from pydantic_ai import Tool

    from outrider._agents._tools import TOOLS

    functions = [tool.function for tool in TOOLS.values()]
    allowed = set(TOOLS) - {"delegate"}
    start = time.perf_counter()
    for _ in range(runs):
        [tool for name, tool in TOOLS.items() if name in allowed]
    prebuilt = (time.perf_counter() - start) / runs
    start = time.perf_counter()
    for _ in range(runs):
        [Tool(fn, takes_ctx=True) for fn in functions]
    built = (time.perf_counter() - start) / runs
    print(f"tools per run: prebuilt {prebuilt * 1e6:.1f} us, built per run {built * 1e3:.2f} ms")


def file_costs(rounds: int = 7) -> None:
    """`list_files` and `grep` on a 20,441-entry tree, beside `glob.glob` of the same pattern."""
    import glob

    from outrider._agents._workspace import Policy, Workspace

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        for top in range(40):
            for sub in range(10):
                folder = root / f"pkg{top}" / f"mod{sub}"
                folder.mkdir(parents=True)
                for n in range(50):
                    (folder / f"f{n}.py").write_text("x = 1\n")
        home = root / "pkg0" / "outrider"  # the daemon's data inside the workspace: hidden
        home.mkdir()
        ws = Workspace(root, Policy(), hidden=[home / "outrider.db", home / "token", home])
        table = Table(title="file tools on 20,441 entries, median ms of 7 rounds")
        for col in ("call", "outrider ms", "glob.glob ms (floor)", "ratio"):
            table.add_column(col)
        calls = [("list_files", "pkg3/mod2/*"), ("list_files", "*"),
                 ("list_files", "**/*.py"), ("grep", "pkg3/**/*.py")]  # fmt: skip
        for tool, pattern in calls:
            ours, floor = [], []
            for _ in range(rounds):
                start = time.perf_counter()
                ws.list(pattern) if tool == "list_files" else ws.grep("x", pattern)
                ours.append(time.perf_counter() - start)
                start = time.perf_counter()
                found = glob.glob(pattern, root_dir=root, recursive=True)
                if tool == "grep":  # the floor reads what it found, as the search does
                    for rel in found:
                        if (root / rel).is_file():
                            (root / rel).read_text()
                floor.append(time.perf_counter() - start)
            mine, base = statistics.median(ours), statistics.median(floor)
            table.add_row(f"{tool} {pattern}", f"{mine * 1e3:.1f}", f"{base * 1e3:.1f}",
                          f"{mine / base:.2f}")  # fmt: skip
        Console().print(table)


def transcript_costs(tasks: int = 200, saves: int = 8, rounds: int = 5) -> None:
    """CPU per transcript save: appended as a record, beside the file replaced each time."""
    import os

    from outrider._store._transcripts import TranscriptWriter, transcript_path

    def replace(path: Path, data: bytes) -> None:
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_bytes(data)
        os.replace(tmp, path)

    docs = [b'{"messages":"' + b"x" * (2048 * (n + 1)) + b'"}' for n in range(saves)]
    appended, replaced = [], []
    for _ in range(rounds):
        with tempfile.TemporaryDirectory() as tmp:
            paths = [transcript_path(Path(tmp), f"t_{i}") for i in range(tasks)]
            writers = [TranscriptWriter(path) for path in paths]
            start = time.process_time()
            for data in docs:  # every task saves, turn by turn, as agents running together do
                for writer in writers:
                    writer.save(data)
            appended.append((time.process_time() - start) / (tasks * saves))
            start = time.process_time()
            for data in docs:
                for path in paths:
                    replace(path.with_name(path.name + ".old"), data)
            replaced.append((time.process_time() - start) / (tasks * saves))
    ours, base = statistics.median(appended), statistics.median(replaced)
    print(f"transcript save, CPU per save: appended {ours * 1e6:.0f} us, "
          f"the file replaced {base * 1e6:.0f} us ({ours / base:.2f})")  # fmt: skip


async def main() -> None:
    if TRANSCRIPTS_ONLY:
        transcript_costs()
        return
    if FILES_ONLY:
        file_costs()
        return
    if TOOLS_ONLY:
        tool_costs()
        return
    if SANDBOX_ONLY:
        await sandbox_costs()
        return
    import outrider._agents._loop  # noqa: F401  # imported once per process; not timed

    ideal = TASKS * CALLS / (RPM / 60)
    rows = []
    argv = [sys.executable, str(FAKE_SERVER), str(RPM), str(LATENCY), str(CALLS)]
    process = await anyio.open_process(argv, stdout=subprocess.PIPE)
    try:
        assert process.stdout is not None
        port = int((await process.stdout.receive()).decode().split()[0])
        fake = Server(port)
        rows.append(("(a) outrider, rpm in config", *await outrider_run(fake, configured=True)))
        rows.append(("(a') outrider, rate learned from 429s",
                     *await outrider_run(fake, configured=False)))  # fmt: skip
        rows.append(("(a'') outrider, rate stated in headers",
                     *await outrider_run(fake, configured=False, stated=True)))  # fmt: skip
        rows.append(("(b) fixed 50, naive retry", *await naive_run(fake)))
    finally:
        process.terminate()
        await process.wait()
    table = Table(title=f"{TASKS} agents x {CALLS} calls, {RPM} req/min, {LATENCY * 1000:.0f} ms")
    for col in ("run", "wall s", "vs ideal", "429s", "succeeded"):
        table.add_column(col)
    for name, wall, limited, ok in rows:
        table.add_row(name, f"{wall:.1f}", f"{wall / ideal:.3f}x", str(limited), f"{ok}/{TASKS}")
    Console().print(table)
    print(f"ideal (rate limit): {ideal:.1f} s")
    await sandbox_costs()


if __name__ == "__main__":
    anyio.run(main)
