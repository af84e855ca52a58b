"""A probe runner for the executor seam: each `shell` command names what it does with its context.

Built by `runners` (a `WorkerPool` factory) in a worker process, or directly for in-process
runs; the same tests run over both (`test_seam.py`).
"""

from __future__ import annotations

import contextlib
import gc
import json
import os
from typing import TYPE_CHECKING

import anyio

from outrider._types._errors import UserError
from outrider._types._task import ShellSpec, Usage
from outrider.runners._protocol import GuardedContext, RunFailure, RunOutcome, Workplace

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Mapping

    from pydantic import JsonValue

    from outrider._executors._protocol import CallLimiter, WorkerHost
    from outrider.runners._protocol import RunContext, RunnerHost


class Probe:
    """Runs `shell` tasks whose command names a probe (see `run`)."""

    kind = "shell"
    uses_processes = False

    def __init__(self, host: WorkerHost) -> None:
        self.host = host
        self.runner_host: RunnerHost | None = None
        self.origins: dict[str, str | None] = {}
        """The folder each worktree a task runs in stands for (noted by `relocate`)."""

    def default_keys(self, spec: object) -> tuple[str, ...]:
        return ("probe",)

    def required_keys(self, spec: object) -> tuple[str, ...]:
        return ()

    async def workplace(self, spec: object) -> Workplace:
        """A task with a `cwd` writes there in place (its writes claim leases)."""
        assert isinstance(spec, ShellSpec)
        asked = "worktree" if str(spec.command).startswith("origin") else "none"
        return Workplace(spec.cwd or ".", writes=spec.cwd is not None, asked=asked)

    def relocate(self, spec: object, folder: str, env: Mapping[str, str]) -> object:
        """Run in `folder`, noting what it stands for (as the agent runner does)."""
        assert isinstance(spec, ShellSpec)
        self.origins[folder] = spec.cwd
        return spec.model_copy(update={"cwd": folder, "env": {**spec.env, **env}})

    @contextlib.asynccontextmanager
    async def lifespan(self, host: RunnerHost) -> AsyncIterator[None]:
        self.runner_host = host
        yield

    async def run(self, spec: object, ctx: RunContext) -> RunOutcome:
        assert isinstance(spec, ShellSpec)
        assert isinstance(spec.command, str)
        word, _, arg = spec.command.partition(" ")
        if word == "origin":
            where = spec.cwd or ""
            return RunOutcome(
                result=[where, self.origins.get(where), spec.env.get("OUTRIDER_WORKTREE")]
            )
        return RunOutcome(result=await getattr(self, f"_{word}")(ctx, arg))

    async def _report(self, ctx: RunContext, arg: str) -> JsonValue:
        ctx.progress(1, 2, "half")
        ctx.output("hello ")
        await anyio.to_thread.run_sync(ctx.output, b"from a thread \xff\n")
        ctx.usage(Usage(input_tokens=3, output_tokens=4, requests=1, cost=0.5))
        await ctx.save_transcript(b'{"turns": 1}')
        stored = await ctx.load_transcript()
        return {
            "transcript": None if stored is None else json.loads(stored),
            "attempt": ctx.attempt, "resuming": ctx.resuming, "session": ctx.session,
            "cancel_requested": ctx.cancel_requested, "worker": os.getpid(),
        }  # fmt: skip

    async def _spawn(self, ctx: RunContext, arg: str) -> JsonValue:
        child = await ctx.spawn(ShellSpec(command=arg or "report"), label="child")
        return {"child": child.id, "state": child.state.value, "tail": await ctx.tail(child.id)}

    async def _refused(self, ctx: RunContext, arg: str) -> JsonValue:
        try:
            await ctx.spawn(ShellSpec(command="report"), timeout=-1)
        except UserError as exc:
            return {"refused": str(exc), "field": exc.field}
        return None

    async def _wait(self, ctx: RunContext, arg: str) -> JsonValue:
        ctx.output("waiting\n")
        await anyio.sleep_forever()
        return None  # pragma: no cover - never returns

    async def _once(self, ctx: RunContext, arg: str) -> JsonValue:
        """The first attempt waits until it is stopped; a later one returns its number."""
        if ctx.attempt == 1:
            await anyio.sleep_forever()
        return ctx.attempt

    async def _track(self, ctx: RunContext, arg: str) -> JsonValue:
        """Record process `arg` as the task's, then wait until stopped."""
        await ctx.track_process(int(arg))
        ctx.output("tracked\n")
        await anyio.sleep_forever()
        return None  # pragma: no cover - never returns

    async def _collector(self, ctx: RunContext, arg: str) -> JsonValue:
        """How the garbage collector is set where it runs."""
        return {"threshold": list(gc.get_threshold()), "frozen": gc.get_freeze_count()}

    async def _fail(self, ctx: RunContext, arg: str) -> JsonValue:
        raise RunFailure("it failed as asked", type="probe", detail="more", exit_code=3)

    async def _crash(self, ctx: RunContext, arg: str) -> JsonValue:
        raise ValueError("boom")

    async def _claim(self, ctx: RunContext, arg: str) -> JsonValue:
        if not isinstance(ctx, GuardedContext):
            return "unguarded"
        return await ctx.path_guard.claim(arg)

    async def _limit(self, ctx: RunContext, arg: str) -> JsonValue:
        assert self.runner_host is not None
        self.runner_host.suggest_limit("probe", int(arg))
        return None

    async def _model(self, ctx: RunContext, arg: str) -> JsonValue:
        limiter = self.host.limiter(arg)
        await limiter.acquire(10)
        limiter.stated(60.0, None)
        limiter.throttled(0.0)
        limiter.succeeded()
        await limiter.release()
        return "called"

    async def _hold(self, ctx: RunContext, arg: str) -> JsonValue:
        ctx.output("holding\n")
        await self.host.limiter(arg).acquire()
        return "granted"

    async def _agent(self, ctx: RunContext, arg: str) -> JsonValue:
        """A simulated agent (bench W2's): `turns` waits of `seconds` each (5 of 0.1 s)."""
        turns, seconds = (arg or "5 0.1").split()
        for _ in range(int(turns)):
            await anyio.sleep(float(seconds))  # sleep-ok: the run's own work, not a wait
        return None

    async def _count(self, ctx: RunContext, arg: str) -> JsonValue:
        """Count to n, reporting each; a stop lingers `linger` ms before the run is over."""
        n, linger = (float(a) for a in arg.split())
        global RUNNING, MOST
        RUNNING += 1
        MOST = max(MOST, RUNNING)
        try:
            for i in range(int(n)):
                ctx.output(f"{i}\n")
                ctx.progress(i + 1, n)
                await anyio.sleep(0.002)  # sleep-ok: the run's own work, not a wait
            return MOST
        finally:
            with anyio.CancelScope(shield=True):
                await anyio.sleep(linger / 1000)  # sleep-ok: a slow stop, on purpose
            RUNNING -= 1


RUNNING = 0
"""Runs of `count` going on in this process."""
MOST = 0
"""The most of them at once."""


class LocalHost:
    """The `WorkerHost` of an in-process probe: the limiters are the test's own."""

    def __init__(self, limiters: dict[str, CallLimiter]) -> None:
        self.limiters = limiters

    def suggest_limit(self, key: str, limit: int) -> None:
        raise AssertionError("not used in-process")

    def limiter(self, model: str) -> CallLimiter:
        return self.limiters[model]


def runners(config: JsonValue, host: WorkerHost) -> list[Probe]:
    """The worker's runners: one probe."""
    return [Probe(host)]
