"""Many streaming agents at once: outrider's worker pool against in-process and bare baselines.

Run: uv run python bench/workers.py  [--quick]  [--pool-only | --watched | --unwatched]
         [--dashboard]  [--nice N]  [--no-api]  [--bare-validating]  [N ...]
     | --memory N  |  --capacity [--rounds R] [N ...]  |  --loop [N]

The fake provider (tests/fakellm.py, its own process, real HTTP on 127.0.0.1) streams every
answer as 37 chunks 20 ms apart; each agent makes 4 model calls, the first 3 with a
`list_files` tool call. Every chunk carries the time the server sent it (`fakellm.STAMP`), so
a reader on this machine knows how late it arrives. For N concurrent agents, in one run:

- bare, 1 process: the same pydantic-ai agents under `asyncio.gather`; latency measured where
  each chunk is parsed;
- bare, 1 process per core: the agents split over that many processes;
- outrider in-process (`agent_workers = 0`) and outrider with a worker per core: latency
  measured at an event subscriber of the orchestrator (`task.output`), as a dashboard sees it,
  and the API's answer times while the agents run (`_time_api`): `get` of a running agent's
  task and of an ended one, `status`, and `submit` of a tiny task, each every 20 ms; and how
  late the loop wakes from a 20 ms sleep (the machine's floor for any answer);
- outrider with a worker per core and nobody watching (no subscriber): its agents ask for
  whole answers instead of streams (`agent_streaming = "watched"`, the default); the fake
  provider sends each when its stream would have ended, so the wall time is the same work.

CPU is user + system time of every process of the run (the workers included), per agent; for
outrider's runs, the daemon's own share (its process: the engine, the store, the events, and
the subscriber above) beside it.
Outrider's runs set the garbage collector as `outrider serve` does once it is ready
(`settle_collector`: what exists is frozen out of later collections), and set it back after.
`--pool-only`: only the run with a worker per core (to compare two versions of the daemon).
`--watched`: only the bare run with a process per core and outrider's with a worker per core.
`--nice N`: the workers' CPU priority below the daemon's (`agent_worker_nice`, default 10).
`--no-api`: outrider's runs do not time the API. Its calls are work of their own (two `get`s,
a `status` and a `submit` every 20 ms: a tiny task started and stored 50 times a second),
which the bare runs do not do: their CPU is not the agents'. The overhead (CPU per agent) is
measured so; the API's answer times and the overload's wall time with them.
`--unwatched`: only the bare run with a process per core and outrider's run nobody watches.
`--bare-validating`: the bare runs call the model through outrider's OpenAI client (each
answer parsed by pydantic's validator, `outrider._agents._validating`), not the SDK's own: the
baseline then parses as outrider does, and the ratio is outrider's own cost.
`--dashboard`: as `--watched`, outrider's subscriber taking every task's output without watching
(`watch=False`), as the dashboard's pages other than a task's own do: its agents ask for whole
answers, so an event carries a turn's output at once (its lateness is up to a turn's 0.74 s).
`--loop`: the agent loop alone, in this one process: N agents (default 100) of the bare
baseline, then the same bare agents calling through outrider's OpenAI client (each answer
parsed by pydantic's validator, `outrider._agents._validating`), then N of outrider's agent
runner with a context that keeps nothing (no daemon, no store, no worker), then the same with
the garbage collector set as a worker sets it once it is ready (`settle_collector`), 5 rounds
each in turn; the CPU per agent of each round.
`--capacity`: at each size (default 10 to 120) the bare run with a process per core and
outrider's with a worker per core (watched, the API not timed); the capacity of each is the
most agents whose events were at most 500 ms late at the 99th percentile. `--rounds R`: each
size R times, the two in turn, and its p99 the median of the R (one run's p99 moves by a
fifth or more with the machine's hiccups).

`--memory N`: memory per running agent instead. Each run is a fresh process of its own (so no
run inherits another's heap): the resident memory (RSS) of its whole tree (workers included,
the fake provider not) is sampled every 50 ms; per agent is the peak while the N agents run
minus the tree's RSS just before they start (the daemon's workers already running), over N.
Outrider's runs start timing once its workers run (one agent per worker first): a worker's
start (Python, pydantic-ai and the provider SDK imported) is paid once per daemon.
"""

from __future__ import annotations

import contextlib
import functools
import gc
import multiprocessing
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, cast

import anyio
import anyio.lowlevel
import psutil
from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.fakellm import stamp_ages

import outrider
from outrider._agents._definitions import AgentDefinition
from outrider._agents._recipe import AgentRecipe, agent_pool
from outrider._collector import settle_collector
from outrider._executors._pool import DEFAULT_NICE

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Iterator

    from outrider._agents._validating import ValidatingOpenAI
    from outrider.runners._protocol import RunContext

QUICK = "--quick" in sys.argv
POOL_ONLY = "--pool-only" in sys.argv
UNWATCHED = "--unwatched" in sys.argv
DASHBOARD = "--dashboard" in sys.argv
WATCHED = "--watched" in sys.argv or DASHBOARD
CAPACITY = "--capacity" in sys.argv
LOOP = "--loop" in sys.argv
PROBE = "--no-api" not in sys.argv
"""Whether outrider's runs time the API while the agents run (`_time_api`)."""
BARE_VALIDATING = "--bare-validating" in sys.argv
"""Whether the bare runs parse the model's answers as outrider does (`_bare_agents`)."""
LATE_LIMIT = 0.5
"""Capacity: the most agents whose output reaches a reader within this many seconds p99."""
NICE = int(sys.argv[sys.argv.index("--nice") + 1]) if "--nice" in sys.argv else DEFAULT_NICE
"""The workers' CPU priority below the daemon's (`agent_worker_nice`)."""
ROUNDS = int(sys.argv[sys.argv.index("--rounds") + 1]) if "--rounds" in sys.argv else 1
"""Capacity: how many times each size runs, each side in turn; its p99 is their median."""
ASKED = [
    int(a)
    for i, a in enumerate(sys.argv[1:])
    if a.isdigit() and sys.argv[i] not in ("--nice", "--rounds")
]
SIZES = ASKED or ([20] if QUICK else [50, 200])
FAKE_SERVER = Path(__file__).resolve().parents[1] / "tests" / "fakellm.py"
CALLS, CHUNKS, DELAY = 4, 37, 0.020
CORES = os.cpu_count() or 1
_MEMORY = False
"""In a `--memory` run: the outrider run records its tree's RSS growth in `_GROWTH`."""
_GROWTH: list[float] = []
_DAEMON_CPU: list[float] = []
"""The CPU of the daemon's own process in each outrider run (the workers not counted)."""


def _cpu() -> float:
    me = psutil.Process()
    total = sum(me.cpu_times()[:2])
    for child in me.children(recursive=True):
        try:
            if "fakellm" not in " ".join(child.cmdline()):
                total += sum(child.cpu_times()[:2])
        except psutil.Error:
            pass
    return total


def _children_cpu() -> float:
    """CPU of finished children (the reaped workers and bare processes)."""
    times = os.times()
    return times.children_user + times.children_system


def _pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


@functools.cache
def _validating_client(base_url: str) -> ValidatingOpenAI:
    """One client for every bare run through it, as pydantic-ai keeps one for the SDK's own."""
    from outrider._agents._validating import ValidatingOpenAI

    return ValidatingOpenAI(base_url=base_url, api_key="k")


async def _bare_agents(base_url: str, count: int, *, validating: bool = False) -> list[float]:
    """`count` bare pydantic-ai agents at once (`validating`: through outrider's OpenAI client);
    how late each stamp was when its agent parsed it."""
    from pydantic_ai import Agent
    from pydantic_ai.messages import PartDeltaEvent, PartStartEvent, TextPart, TextPartDelta
    from pydantic_ai.models.openai import OpenAIChatModel
    from pydantic_ai.providers.openai import OpenAIProvider

    def list_files(pattern: str) -> str:
        """List the files matching `pattern`."""
        return "a.txt"

    if validating:
        provider = OpenAIProvider(openai_client=_validating_client(base_url))
    else:
        provider = OpenAIProvider(base_url=base_url, api_key="k")
    agent = Agent(OpenAIChatModel("bench", provider=provider), tools=[list_files])
    ages: list[float] = []

    async def one(i: int) -> None:
        async with agent.iter(f"job {i}") as run:
            async for node in run:
                if Agent.is_model_request_node(node):
                    async with node.stream(run.ctx) as stream:
                        async for event in stream:
                            if isinstance(event, PartStartEvent) and isinstance(
                                event.part, TextPart
                            ):
                                ages.extend(stamp_ages(event.part.content))
                            elif isinstance(event, PartDeltaEvent) and isinstance(
                                event.delta, TextPartDelta
                            ):
                                ages.extend(stamp_ages(event.delta.content_delta))
                elif Agent.is_call_tools_node(node):
                    async with node.stream(run.ctx) as tools:
                        async for _ in tools:
                            pass

    async with anyio.create_task_group() as tg:
        for i in range(count):
            tg.start_soon(one, i)
    return ages


def _bare_process(base_url: str, count: int, out: multiprocessing.Queue[list[float]]) -> None:
    out.put(anyio.run(_bare, base_url, count))


async def _bare(base_url: str, count: int) -> list[float]:
    """The bare run's agents, through the client `--bare-validating` asks for."""
    return await _bare_agents(base_url, count, validating=BARE_VALIDATING)


def bare(base_url: str, count: int, processes: int) -> tuple[float, float, list[float]]:
    cpu0, start = _cpu() + _children_cpu(), time.perf_counter()
    if processes == 1:
        ages = anyio.run(_bare, base_url, count)
    else:
        out: multiprocessing.Queue[list[float]] = multiprocessing.Queue()
        shares = [count // processes + (i < count % processes) for i in range(processes)]
        procs = [multiprocessing.Process(target=_bare_process, args=(base_url, n, out))
                 for n in shares]  # fmt: skip
        for p in procs:
            p.start()
        ages = [a for _ in procs for a in out.get()]
        for p in procs:
            p.join()
    return time.perf_counter() - start, _cpu() + _children_cpu() - cpu0, ages


_NOT_RUNNING = {"task.succeeded", "task.failed", "task.cancelled", "task.timed_out",
                "task.retrying"}  # fmt: skip
API_CALLS = ("get running", "get ended", "status", "submit")
"""The API calls timed while the agents run, each every 20 ms."""
LOOP_LATE = "loop wakes late"
"""How much later than asked the loop resumes a 20 ms sleep: the floor of any answer to a
request that arrives while the loop waits (the machine's scheduling, not outrider's work)."""


async def _time_api(
    session: outrider.Session, running: dict[str, None], ended: str,
    times: dict[str, list[float]],
) -> None:  # fmt: skip
    """Time each of `API_CALLS` every 20 ms, concurrently, until cancelled.

    `get running` gets one of the tasks `running` (while one runs), `get ended` the task
    `ended`; `submit` submits a tiny task (a handler that returns at once). Each is timed from
    just before a turn of the event loop (a checkpoint), as a request that comes over HTTP
    waits for one before it is read: a call answered from memory would otherwise not wait
    for the loop at all.
    """
    tiny = outrider.call("bench.noop")

    async def call(name: str) -> bool:
        if name == "get running":
            if (task_id := next(iter(running), None)) is None:
                return False
            await anyio.lowlevel.checkpoint()
            await session.get(task_id)
            return True
        await anyio.lowlevel.checkpoint()
        if name == "get ended":
            await session.get(ended)
        elif name == "status":
            await session.status()
        else:
            await session.submit(tiny)
        return True

    async def every(name: str) -> None:
        while True:
            t0 = time.perf_counter()
            if await call(name):
                times[name].append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            await anyio.sleep(0.02)
            if name == "status":
                times[LOOP_LATE].append(time.perf_counter() - t0 - 0.02)

    async with anyio.create_task_group() as tg:
        for name in API_CALLS:
            tg.start_soon(every, name)


class _Watcher:
    """The subscriber of a watched run: how late each stamp arrives, which tasks run."""

    def __init__(self, count: int, ages: list[float]) -> None:
        self.count = count
        self.ages = ages
        self.timed: set[str] = set()
        """The tasks measured (the warm-up's are not)."""
        self.running: dict[str, None] = {}
        """The tasks running now, in the order they started."""
        self.ended: set[str] = set()
        self.all_ended = anyio.Event()
        """Set once the subscriber saw the end of each of `count` tasks."""

    async def watch(self, session: outrider.Session) -> None:
        async for event in session.events(watch=not DASHBOARD):
            if event.task_id not in self.timed:
                continue
            if event.type == "task.output":
                self.ages.extend(stamp_ages(str(getattr(event.data, "text", ""))))
            elif event.type == "task.started":
                self.running[event.task_id] = None
            elif event.type in _NOT_RUNNING:
                self.running.pop(event.task_id, None)
                if event.type != "task.retrying":
                    self.ended.add(event.task_id)
                    if len(self.ended) == self.count:
                        self.all_ended.set()


def _recipe(base_url: str, count: int) -> AgentRecipe:
    """The bench's agent: the bare baseline's one tool, so each request carries the same tool
    list (every built-in tool's schema in each request cost the workers 5% more CPU)."""
    definition = AgentDefinition(name="bench", model="fake/bench", prompt="Work.", limit=count,
                                 tools=("list_files",), source=Path("bench.md"),
                                 format="outrider")  # fmt: skip
    return AgentRecipe(
        agents={"bench": definition}, sandbox="off",
        providers={"fake": outrider.ProviderConfig(base_url=base_url, api_key="k",
                                                   max_concurrency=count)},
    )  # fmt: skip


async def _outrider(
    base_url: str, count: int, workers: int, watched: bool = True, probe: bool = PROBE
) -> tuple[float, float, list[float], dict[str, list[float]]]:
    with tempfile.TemporaryDirectory() as tmp:
        workspace = Path(tmp) / "workspace"  # what `list_files` lists: one file, as bare's
        workspace.mkdir()
        (workspace / "a.txt").write_text("a\n")
        recipe = _recipe(base_url, count)
        runner = recipe.build()
        pool = agent_pool(recipe, runner, size=workers, nice=NICE) if workers else None
        executors = {"agent": pool} if pool is not None else {}
        settings = outrider.Settings(
            max_running=count + 10,  # room for the tiny tasks `_time_api` submits
            limits={"agent:bench": count, "model:fake/bench": count},
        )
        ages: list[float] = []
        api: dict[str, list[float]] = {name: [] for name in (*API_CALLS, LOOP_LATE)}
        async with (
            outrider.Orchestrator(
                Path(tmp) / "bench.db", settings, runners=[runner], executors=executors
            ) as orch,
            contextlib.AsyncExitStack() as stack,
        ):
            orch.register_handler("bench.noop", _noop)
            session = orch.session("b")
            # every worker started
            warm = outrider.agent("bench", "warm up", workspace=str(workspace))
            warmed = [(await session.submit(warm)).id for _ in range(max(workers, 1))]
            await session.wait(warmed)
            stack.enter_context(_as_the_daemon_collects())
            peak = _PeakRss() if _MEMORY else None
            own0 = sum(psutil.Process().cpu_times()[:2])
            cpu0, start = _cpu() + _children_cpu(), time.perf_counter()
            async with anyio.create_task_group() as tg:
                watcher = _Watcher(count, ages)
                timed, running = watcher.timed, watcher.running
                if watched:
                    tg.start_soon(watcher.watch, session)
                spec = outrider.agent("bench", "job", workspace=str(workspace))
                # Nobody watching: a task counts as running from its submit to its end (a
                # subscriber to learn when it starts would watch it).
                on_done = None if watched else (lambda t: running.pop(t.id, None))
                tasks = []
                for _ in range(count):
                    tasks.append(await session.submit(spec, on_done=on_done))
                    timed.add(tasks[-1].id)
                    if not watched:
                        running[tasks[-1].id] = None

                if probe:
                    tg.start_soon(_time_api, session, running, warmed[0], api)
                done = await session.wait([t.id for t in tasks])
                wall = time.perf_counter() - start
                if peak is not None:
                    _GROWTH.append(peak.stop())
                if watched:  # the last events may still be on their way to the subscriber
                    with anyio.move_on_after(30):
                        await watcher.all_ended.wait()
                tg.cancel_scope.cancel()
            cpu = _cpu() + _children_cpu() - cpu0
            _DAEMON_CPU.append(sum(psutil.Process().cpu_times()[:2]) - own0)
        failed = [t for t in done if t.state is not outrider.TaskState.SUCCEEDED]
        assert not failed, failed[0].error
    return wall, cpu, ages, api


@contextlib.contextmanager
def _as_the_daemon_collects() -> Iterator[None]:
    """The garbage collector as `outrider serve` (and each of its workers) sets it once it is
    ready; then as it was."""
    threshold = gc.get_threshold()
    settle_collector()
    try:
        yield
    finally:
        gc.unfreeze()
        gc.set_threshold(*threshold)


class _Quiet:
    """A `RunContext` that keeps nothing: outrider's agent loop without a daemon."""

    attempt, resuming, cancel_requested, session, watched = 1, False, False, "s", True

    def __init__(self, task_id: str) -> None:
        self.task_id = task_id

    def progress(self, *report: object) -> None: ...
    def output(self, data: bytes | str) -> None: ...
    def usage(self, usage: object) -> None: ...
    async def save_transcript(self, data: bytes) -> None: ...
    async def load_transcript(self) -> bytes | None:
        return None


class _Host:
    """A `RunnerHost` that takes no limits and tells of no watchers."""

    def suggest_limit(self, key: str, limit: int) -> None: ...
    def on_watch_change(self, callback: object) -> Callable[[], None]:
        return lambda: None


def agent_loop(base_url: str, count: int, rounds: int = 5) -> None:
    """`--loop`: bare agents, then outrider's agent runner alone, in turn; CPU per agent."""
    with tempfile.TemporaryDirectory() as tmp:
        workspace = Path(tmp)
        (workspace / "a.txt").write_text("a\n")
        runner = _recipe(base_url, count).build()

        async def ours(n: int) -> None:
            async with anyio.create_task_group() as tg:
                for i in range(n):
                    spec = outrider.agent("bench", f"job {i}", workspace=str(workspace))
                    quiet = cast("RunContext", _Quiet(f"t{i}"))  # what the agent loop uses of one
                    tg.start_soon(runner.run, spec, quiet)

        async def settled(n: int) -> None:
            with _as_the_daemon_collects():
                await ours(n)

        async def rounds_of_each() -> dict[str, list[float]]:
            async with runner.lifespan(_Host()):
                await _bare_agents(base_url, 2)  # warm-up: connections, first imports
                await ours(2)
                runs: dict[str, Callable[[], Awaitable[object]]] = {
                    "bare pydantic-ai": lambda: _bare_agents(base_url, count),
                    "bare, outrider's OpenAI client": lambda: _bare_agents(
                        base_url, count, validating=True
                    ),
                    "outrider's agent loop": lambda: ours(count),
                    "outrider's agent loop, collector settled": lambda: settled(count),
                }
                cpu: dict[str, list[float]] = {name: [] for name in runs}
                for _ in range(rounds):
                    for name, run in runs.items():
                        t0 = time.process_time()
                        await run()
                        cpu[name].append((time.process_time() - t0) / count)
            return cpu

        cpu = anyio.run(rounds_of_each)
    table = Table(title=f"{count} agents, the agent loop alone, one process, CPU ms per agent")
    for col in ("run", "rounds", "median"):
        table.add_column(col)
    for name, values in cpu.items():
        ms = [v * 1000 for v in values]
        table.add_row(name, " ".join(f"{v:.1f}" for v in ms), f"{statistics.median(ms):.1f}")
    Console().print(table)


async def _noop(ctx: object) -> None:
    """The tiny task `_time_api` submits."""


def _percentiles_ms(times: list[float]) -> str:
    if not times:
        return "-"
    return f"{_pct(times, 0.5) * 1e3:.1f} / {_pct(times, 0.99) * 1e3:.1f} ({len(times)})"


def _rss() -> int:
    """Bytes resident in this process and its children (the fake provider is no child here)."""
    me = psutil.Process()
    total = me.memory_info().rss
    for child in me.children(recursive=True):
        with contextlib.suppress(psutil.Error):
            total += child.memory_info().rss
    return total


class _PeakRss:
    """The tree's RSS before the agents start, and its peak until `stop` (sampled in a thread)."""

    def __init__(self) -> None:
        self.idle = _rss()
        self.peak = self.idle
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()

    def _sample(self) -> None:
        while not self._done.wait(0.05):
            self.peak = max(self.peak, _rss())

    def stop(self) -> float:
        """MB per agent above the idle tree."""
        self._done.set()
        self._thread.join()
        return self.peak - self.idle


def _memory_child(base_url: str, run: str, count: int) -> None:
    """One run of `--memory` (its own process); prints the tree's growth in bytes."""
    global _MEMORY
    _MEMORY = True
    if run == "bare":
        anyio.run(_bare_agents, base_url, 1)  # warmed up as outrider's are
        peak = _PeakRss()
        anyio.run(_bare_agents, base_url, count)
        print(peak.stop())
    else:
        anyio.run(_outrider, base_url, count, CORES if run == "workers" else 0)
        assert _GROWTH
        print(_GROWTH[0])


def memory(base_url: str, count: int) -> None:
    table = Table(title=f"{count} agents x {CALLS} calls of {CHUNKS} chunks, {CORES} cores")
    for col in ("run", "RSS growth MB", "MB per running agent", "beyond bare"):
        table.add_column(col)
    runs = [("bare", "bare pydantic-ai, 1 process"), ("daemon", "outrider, agents in the daemon"),
            ("workers", f"outrider, {CORES} workers")]  # fmt: skip
    per_agent = {}
    for run, name in runs:
        argv = [sys.executable, __file__, "--memory-child", base_url, run, str(count)]
        done = subprocess.run(argv, capture_output=True, text=True, check=True)
        growth = float(done.stdout.split()[-1])
        per_agent[run] = growth / count / 2**20
        beyond = "-" if run == "bare" else f"{per_agent[run] - per_agent['bare']:+.2f}"
        table.add_row(name, f"{growth / 2**20:.0f}", f"{per_agent[run]:.2f}", beyond)
    Console(width=220).print(table)


def _cells(
    n: int,
    wall: float,
    cpu: float,
    ages: list[float],
    api: dict[str, list[float]],
    own: str = "",
) -> list[str]:
    """A run's table cells after its name."""
    late = f"{_pct(ages, 0.5):.2f} / {_pct(ages, 0.99):.2f} ({len(ages)})" if ages else "-"
    answers = [_percentiles_ms(api.get(call, [])) for call in (*API_CALLS, LOOP_LATE)]
    return [f"{wall:.1f}", f"{cpu / n:.3f}{own}", late, *answers]


def capacity(base_url: str, sizes: list[int]) -> None:
    """The capacity of the bare baseline (a process per core) and of outrider (watched).

    Each size runs both, one after the other (`ROUNDS` times), in increasing order; a size's
    p99 is the median of its rounds', and a run's capacity is the largest size whose events
    were within `LATE_LIMIT` p99 (sizes past a miss still run, so the table shows where each
    crosses it).
    """
    title = f"event late p99 s by concurrent agents ({CORES} cores)"
    if ROUNDS > 1:
        title += f": median of {ROUNDS} rounds (range)"
    table = Table(title=title)
    for col in ("agents", f"bare, {CORES} processes", f"outrider, {CORES} workers"):
        table.add_column(col)
    best = {"bare": 0, "outrider": 0}
    for n in sizes:
        p99s: dict[str, list[float]] = {"bare": [], "outrider": []}
        for _ in range(ROUNDS):
            p99s["bare"].append(_pct(bare(base_url, n, CORES)[2], 0.99))
            ours = anyio.run(_outrider, base_url, n, CORES, True, False)
            p99s["outrider"].append(_pct(ours[2], 0.99))
        row = [str(n)]
        for name, values in p99s.items():
            p99 = statistics.median(values)
            if p99 <= LATE_LIMIT:
                best[name] = max(best[name], n)
            spread = f" ({min(values):.2f}-{max(values):.2f})" if ROUNDS > 1 else ""
            row.append(f"{p99:.2f}{spread}")
        table.add_row(*row)
    Console(width=220).print(table)
    ratio = best["outrider"] / best["bare"] if best["bare"] else float("nan")
    print(f"capacity within {LATE_LIMIT * 1000:.0f} ms p99: bare {best['bare']}, "
          f"outrider {best['outrider']} ({ratio:.2f} of bare)")  # fmt: skip


def _measure_apart(base_url: str) -> None:
    """`--capacity` or `--loop`."""
    if CAPACITY:
        capacity(base_url, ASKED or [10, 20, 40, 60, 80, 120])
    else:
        agent_loop(base_url, ASKED[0] if ASKED else 100)


def main() -> None:
    if "--memory-child" in sys.argv:
        at = sys.argv.index("--memory-child")
        _memory_child(sys.argv[at + 1], sys.argv[at + 2], int(sys.argv[at + 3]))
        return
    argv = [sys.executable, str(FAKE_SERVER), "0", "0", str(CALLS), str(CHUNKS), str(DELAY)]
    server = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout is not None
        base_url = f"http://127.0.0.1:{server.stdout.readline().split()[0]}/v1"
        if "--memory" in sys.argv:
            memory(base_url, int(sys.argv[sys.argv.index("--memory") + 1]))
            return
        import outrider._agents._loop  # noqa: F401  # imported once per process; not timed

        if CAPACITY or LOOP:
            _measure_apart(base_url)
            return

        table = Table(
            title=f"agents x {CALLS} calls of {CHUNKS} chunks {DELAY * 1000:.0f} ms apart, "
            f"{CORES} cores"
        )
        for col in ("agents", "run", "wall s", "CPU s/agent (daemon)", "event late p50 / p99 s",
                    *(f"API {name} p50 / p99 ms" for name in API_CALLS),
                    f"{LOOP_LATE} p50 / p99 ms"):  # fmt: skip
            table.add_column(col)
        for n in SIZES:
            if UNWATCHED:
                table.add_row(
                    str(n), f"bare, {CORES} processes", *_cells(n, *bare(base_url, n, CORES), {})
                )
                unwatched = anyio.run(_outrider, base_url, n, CORES, False)
                own = f" ({_DAEMON_CPU[-1] / n:.3f})"
                table.add_row(
                    str(n),
                    f"outrider, {CORES} workers, nobody watching",
                    *_cells(n, *unwatched, own=own),
                )
                continue
            every = not (POOL_ONLY or WATCHED)
            runs: list[tuple[str, float, float, list[float], dict[str, list[float]]]] = []
            if every:
                runs.append(("bare, 1 process", *bare(base_url, n, 1), {}))
            if not POOL_ONLY:
                runs.append((f"bare, {CORES} processes", *bare(base_url, n, CORES), {}))
            if every:
                runs.append(("outrider in-process", *anyio.run(_outrider, base_url, n, 0)))
            ours_name = f"outrider, {CORES} workers" + (", a dashboard open" if DASHBOARD else "")
            runs.append((ours_name, *anyio.run(_outrider, base_url, n, CORES)))
            if every:
                unwatched = anyio.run(_outrider, base_url, n, CORES, False)
                runs.append((f"outrider, {CORES} workers, nobody watching", *unwatched))
            ours = 3 if every else 1  # the last runs are outrider's
            daemon = [""] * (len(runs) - ours) + [f" ({c / n:.3f})" for c in _DAEMON_CPU[-ours:]]
            for (name, *measured), own in zip(runs, daemon, strict=True):
                table.add_row(str(n), name, *_cells(n, *measured, own=own))
        Console(width=220).print(table)
    finally:
        server.terminate()
        server.wait()


if __name__ == "__main__":
    main()
