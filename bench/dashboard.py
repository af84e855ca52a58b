"""Dashboard benchmark: the task page of 2,000 tasks, and the dashboard while 200 agents stream.

Run: uv run python bench/dashboard.py  [--quick]

One process: an orchestrator on a store in a temporary folder, behind the daemon's HTTP app
(with the dashboard) served by uvicorn on 127.0.0.1, and the clients. "Agents" are handler
tasks that report output and usage the way the built-in agent does (a line every 20 ms and
usage every 10 lines), so the dashboard's work is measured, not a model's.

A. Server time of the task page of a session of 2,000 tasks (1,700 ended, 5% of them failed,
   200 running agents, 100 queued after one of them), against `GET /v1/tasks` of the same
   tasks (the JSON API's own listing) as the baseline; both through the ASGI app in process,
   timed from the request to the answer's last byte, so only the server's work is timed.
B. The same page, and `GET /v1/status`, over loopback HTTP (clients in processes of their
   own) while 200 running agents are idle, while all 200 stream output with no page's live
   stream open (the baselines), and while they stream with one live stream of the page open;
   and what that stream sends: messages per second, and the most updates any one task got in
   one second (the page's limit is 4).
"""

from __future__ import annotations

import contextlib
import json
import re
import statistics
import sys
import tempfile
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import TYPE_CHECKING

import anyio
import anyio.lowlevel
import httpx
import uvicorn

import outrider
from outrider import Usage
from outrider._daemon._serve import _bind, _Server
from outrider._http._app import AuthMiddleware, create_app
from outrider._http._auth import LOCAL, Tokens

if TYPE_CHECKING:
    from starlette.types import Receive, Scope, Send

QUICK = "--quick" in sys.argv
RUNS = 10 if QUICK else 30
PHASE = 5.0 if QUICK else 10.0
TOKEN = "bench-token"
SESSION = "bench"


def pct(values: list[float], q: int) -> float:
    return statistics.quantiles(values, n=100)[q - 1] if len(values) > 1 else values[0]


def ms(values: list[float] | object) -> str:
    assert isinstance(values, list)
    return f"{statistics.median(values) * 1000:.1f} / {pct(values, 95) * 1000:.1f} ms"


class Agents:
    """Handlers: quick ones that end at once, and held ones that stream while told to."""

    def __init__(self, orch: outrider.Orchestrator) -> None:
        self.streaming = anyio.Event()
        self.release = anyio.Event()
        self.lines = 0
        orch.register_handler("quick", self.quick)
        orch.register_handler("agent", self.agent)

    async def quick(self, ctx: outrider.RunContext, fail: bool = False) -> str:
        ctx.output("thinking about it\nanswered\n")
        ctx.usage(Usage(input_tokens=1200, output_tokens=300, requests=2, cost=0.0081))
        if fail:
            raise RuntimeError("the model gave up")
        return "done: a short answer"

    async def agent(self, ctx: outrider.RunContext) -> str:
        await self.streaming.wait()
        turn = 0
        while not self.release.is_set():
            turn += 1
            ctx.output(f"turn {turn}: streamed text of a model's answer, token by token\n")
            self.lines += 1
            if turn % 10 == 0:
                ctx.usage(Usage(input_tokens=100 * turn, output_tokens=20 * turn, requests=turn))
            await anyio.sleep(0.02)
        return "ok"


@contextlib.asynccontextmanager
async def served(orch: outrider.Orchestrator):  # type: ignore[no-untyped-def]
    stopping = anyio.Event()

    def sessions(principal: str, name: str) -> outrider.Tasks:
        return orch.session(name, owner=principal, admin=principal == LOCAL)

    tokens = Tokens({LOCAL: TOKEN})
    app = create_app(sessions, status=orch.status, stopping=stopping,
                     request_stop=stopping.set, tokens=tokens)  # fmt: skip
    wrapped = AuthMiddleware(app, tokens=tokens)
    config = uvicorn.Config(wrapped, log_level="warning",
                            lifespan="off", timeout_graceful_shutdown=1)  # fmt: skip
    server = _Server(config)
    sock = _bind("127.0.0.1", 0)
    app.state.port = sock.getsockname()[1]
    async with anyio.create_task_group() as tg:
        tg.start_soon(lambda: server.serve(sockets=[sock]))
        while not server.started:
            await anyio.lowlevel.checkpoint()
        try:
            yield wrapped, f"http://127.0.0.1:{app.state.port}"
        finally:
            stopping.set()
            server.should_exit = True


async def logged_in(client: httpx.AsyncClient) -> None:
    answer = await client.post("/v1/dashboard/login", headers={"Authorization": f"Bearer {TOKEN}"})
    login = answer.json()["url"].split("/ui/", 1)[1]
    assert (await client.get(f"/ui/{login}")).status_code == 200


async def seed(orch: outrider.Orchestrator) -> None:
    """2,000 tasks: 1,700 ended (85 failed), 200 running agents, 100 queued after one of them."""
    orch.set_limit("agents", 200)
    me = orch.session(SESSION, owner=LOCAL)
    ended = [outrider.SubmitItem(spec=outrider.call("quick", fail=i % 20 == 0), label=f"job {i}")
             for i in range(1700)]  # fmt: skip
    for start in range(0, len(ended), 500):
        done = await me.submit_many(ended[start : start + 500])
        await me.wait([t.id for t in done if isinstance(t, outrider.Task)])
    held = [outrider.SubmitItem(spec=outrider.call("agent"), label=f"agent {i}", keys=("agents",))
            for i in range(200)]  # fmt: skip
    agents = [t for t in await me.submit_many(held) if isinstance(t, outrider.Task)]
    after = [outrider.SubmitItem(spec=outrider.call("quick"), label=f"after {i}",
                                 depends_on=(agents[0].id,)) for i in range(100)]  # fmt: skip
    await me.submit_many(after)


class Timed:
    """An ASGI app timed from the request to the last byte of its answer (server time)."""

    def __init__(self, app: AuthMiddleware) -> None:
        self.app = app
        self.last = 0.0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        start = time.perf_counter()
        await self.app(scope, receive, send)
        self.last = time.perf_counter() - start


async def page_a(app: AuthMiddleware, url: str) -> tuple[list[float], list[float]]:
    timed = Timed(app)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=timed), base_url=url) as client:
        await logged_in(client)
        page, api = [], []
        for _ in range(RUNS):
            answer = await client.get(f"/ui/s/{SESSION}")
            page.append(timed.last)
            assert answer.status_code == 200
            assert answer.text.count('class="task g-') >= 2000, answer.text.count('class="task g-')
            listed = await client.get("/v1/tasks", params={"limit": 10_000},
                                      headers={"Authorization": f"Bearer {TOKEN}",
                                               "X-Outrider-Session": SESSION})  # fmt: skip
            api.append(timed.last)
            assert len(listed.json()["tasks"]) == 2000
    return page, api


async def responsive(url: str, seconds: float) -> tuple[list[float], list[float]]:
    """Page and status latencies over loopback HTTP for `seconds`."""
    page, status = [], []
    async with httpx.AsyncClient(base_url=url, timeout=60) as client:
        await logged_in(client)
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            start = time.perf_counter()
            assert (await client.get(f"/ui/s/{SESSION}")).status_code == 200
            page.append(time.perf_counter() - start)
            start = time.perf_counter()
            answer = await client.get("/v1/status", headers={"Authorization": f"Bearer {TOKEN}"})
            status.append(time.perf_counter() - start)
            assert answer.status_code == 200
            await anyio.sleep(0.1)
    return page, status


async def stream(url: str, seconds: float, stats: dict[str, object]) -> None:
    """Read the task page's live stream for `seconds`, counting updates per task per second."""
    per_second: dict[int, Counter[str]] = defaultdict(Counter)
    messages, size = 0, 0
    async with httpx.AsyncClient(base_url=url, timeout=60) as client:
        await logged_in(client)
        page = (await client.get(f"/ui/s/{SESSION}")).text
        live = re.search(r'hx-sse:connect="([^"]+)"', page)
        assert live is not None
        start = time.monotonic()
        with anyio.move_on_after(seconds):
            async with client.stream("GET", live[1].replace("&amp;", "&")) as response:
                async for line in response.aiter_lines():
                    messages += line.startswith("id:")
                    if not line.startswith("data:"):
                        continue
                    size += len(line)
                    second = int(time.monotonic() - start)
                    for target in re.findall(r'hx-target="#[ot]-(t_[0-9a-z]+)"', line):
                        per_second[second][target] += 1
    busiest = max((c.most_common(1)[0][1] for c in per_second.values() if c), default=0)
    stats.update(messages=messages, seconds=seconds, bytes=size, busiest=busiest,
                 tasks=len({t for c in per_second.values() for t in c}))  # fmt: skip


async def in_a_client_process(url: str, what: str) -> dict[str, object]:
    """Run the client side of a phase in a process of its own: the daemon's process serves."""
    done = await anyio.run_process([sys.executable, __file__, "client", what, url, str(PHASE)])
    found: dict[str, object] = json.loads(done.stdout)
    return found


async def client(what: str, url: str, seconds: float) -> None:
    """The client side of one phase; prints its figures as JSON."""
    if what == "stream":
        stats: dict[str, object] = {}
        await stream(url, seconds, stats)
        print(json.dumps(stats))
    else:
        page, status = await responsive(url, seconds)
        print(json.dumps({"page": page, "status": status}))


async def main() -> None:
    with tempfile.TemporaryDirectory() as folder:
        orch = outrider.Orchestrator(Path(folder) / "o.db", outrider.Settings(max_running=200))
        async with orch:
            agents = Agents(orch)
            began = time.perf_counter()
            await seed(orch)
            print(f"seeded 2,000 tasks in {time.perf_counter() - began:.1f}s")
            async with served(orch) as (app, url):
                page, api = await page_a(app, url)
                idle = await in_a_client_process(url, "pages")
                agents.streaming.set()
                unwatched = await in_a_client_process(url, "pages")  # no page stream open
                before = agents.lines
                found: dict[str, dict[str, object]] = {}

                async def phase(what: str) -> None:
                    found[what] = await in_a_client_process(url, what)

                async with anyio.create_task_group() as tg:
                    tg.start_soon(phase, "stream")
                    tg.start_soon(phase, "pages")
                lines = agents.lines - before
                stats, busy = found["stream"], found["pages"]
                idle_page, idle_status = idle["page"], idle["status"]
                busy_page, busy_status = busy["page"], busy["status"]
                agents.release.set()
        print()
        print("| measure | dashboard | baseline (same run) |")
        print("|---|---|---|")
        print(f"| A. task page of 2,000 tasks, server time p50 / p95 | {ms(page)} | "
              f"`GET /v1/tasks` of the same tasks: {ms(api)} |")  # fmt: skip
        print(f"| B. task page over HTTP while 200 agents stream, p50 / p95 | {ms(busy_page)} | "
              f"no page stream open: {ms(unwatched['page'])}; 200 agents idle: "
              f"{ms(idle_page)} |")  # fmt: skip
        print(f"| B. `GET /v1/status` while they stream, p50 / p95 | {ms(busy_status)} | "
              f"no page stream open: {ms(unwatched['status'])}; "
              f"idle: {ms(idle_status)} |")  # fmt: skip
        seconds = float(stats["seconds"])  # type: ignore[arg-type]
        print(f"| B. the page's live stream | {int(stats['messages']) / seconds:.1f} messages/s, "  # type: ignore[call-overload]
              f"{int(stats['bytes']) / seconds / 1024:.0f} KiB/s, {stats['tasks']} tasks updated, "  # type: ignore[call-overload]
              f"at most {stats['busiest']} updates of one task in a second | the agents wrote "
              f"{lines / PHASE:,.0f} lines/s |")  # fmt: skip


if __name__ == "__main__":
    if sys.argv[1:2] == ["client"]:
        anyio.run(client, sys.argv[2], sys.argv[3], float(sys.argv[4]))
    else:
        anyio.run(main)
