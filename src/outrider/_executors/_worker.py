"""A worker process: runs many tasks' attempts on one event loop, for the daemon at the other end.

Started by `WorkerPool` as `python -m outrider._executors._worker FD [NICE]`, FD being its end
of a socket pair and NICE how much lower than the daemon's its CPU priority is
(`lower_priority`). The first message is `Setup`: the worker imports its `factory` and builds its
runners from `config` (agent definitions and providers; secrets come in the config or the
inherited environment, never on the command line), then answers `Ready`. Each `Start` runs in
its own task; what the run reports goes back as messages (`_context.WorkerContext`).

Invariants:
- A task's last message is `Done`, `Failed` or `Cancelled`, sent once its run is over.
- When the daemon's end closes, every run is cancelled and the worker exits: it never
  outlives its daemon.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import socket
import sys
import threading
import time
from typing import TYPE_CHECKING, cast

import anyio
from anyio.abc import UNIXSocketStream

from .._collector import settle_collector
from .._types._task import TASK_SPEC_ADAPTER
from ..runners._open_files import allow_open_files
from ..runners._procs import Leftovers, stop_leftovers
from ..runners._protocol import failure_of
from ._channel import Channel
from ._context import Calls, Outbound, RemoteLimiter, WorkerContext, context_for
from ._messages import (
    Cancel,
    Cancelled,
    Done,
    Failed,
    Ready,
    Reply,
    SetLimit,
    Setup,
    Start,
    Sweep,
    Swept,
    Watch,
)  # fmt: skip
from ._protocol import Moved, settled

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from anyio.abc import ByteStream, TaskGroup
    from pydantic import JsonValue

    from ..runners._protocol import Runner
    from ._protocol import WorkerHost

__all__ = ["lower_priority", "main", "serve_stream"]


class _Host:
    """The `WorkerHost` (and `RunnerHost`) of the worker's runners: both act in the daemon."""

    def __init__(self, channel: Channel, calls: Calls) -> None:
        self._channel = channel
        self._calls = calls
        self._limiters: dict[str, RemoteLimiter] = {}

    def suggest_limit(self, key: str, limit: int) -> None:
        self._channel.post(SetLimit(key=key, limit=limit))

    def on_watch_change(self, callback: Callable[[], object]) -> Callable[[], None]:
        """Never called back: a run here learns who watches it from `Watch` messages."""
        return lambda: None

    def limiter(self, model: str) -> RemoteLimiter:
        found = self._limiters.get(model)
        if found is None:
            found = self._limiters[model] = RemoteLimiter(model, self._calls, self._channel)
        return found


def build_runners(setup: Setup, host: WorkerHost) -> list[Runner]:
    """The runners `setup` names: its factory (`module:function`) called with its config."""
    module, _, name = setup.factory.partition(":")
    found = getattr(importlib.import_module(module), name)
    factory = cast("Callable[[JsonValue, WorkerHost], Sequence[Runner]]", found)
    return list(factory(setup.config, host))


class Worker:
    """The worker's side of the channel: starts, cancels and answers (see the module doc)."""

    def __init__(self, channel: Channel, calls: Calls, runners: Sequence[Runner]) -> None:
        self.channel = channel
        self.runners = {r.kind: r for r in runners}
        self.calls = calls
        self.outbound = Outbound(channel)
        self.scopes: dict[str, anyio.CancelScope] = {}
        self.contexts: dict[str, WorkerContext] = {}

    async def serve(self, tg: TaskGroup) -> None:
        """Handle the daemon's messages until its end closes; then cancel every run."""
        tg.start_soon(self.outbound.run)
        while (message := await self.channel.receive()) is not None:
            if isinstance(message, Start):
                # Its scope is known before the run starts: a `Cancel` right behind the
                # `Start` stops it as it begins.
                task_id = message.task_id
                self.scopes[task_id] = scope = anyio.CancelScope()
                self.contexts[task_id] = ctx = context_for(message, self.calls, self.outbound)
                tg.start_soon(self.run, message, scope, ctx)
            elif isinstance(message, Cancel):
                self._cancel(message.task_id)
            elif isinstance(message, Watch):
                if (watching := self.contexts.get(message.task_id)) is not None:
                    watching.watched = message.watched
            elif isinstance(message, Reply):
                self.calls.answer(message)
            elif isinstance(message, Sweep):
                tg.start_soon(self._sweep, message)
        self.calls.fail_all("the daemon closed the channel")
        for task_id in list(self.scopes):
            self._cancel(task_id)

    async def _sweep(self, sweep: Sweep) -> None:
        """Stop what a dead daemon's attempts left on this machine, found by their markers."""
        items = [Leftovers(m, grace_period=sweep.grace_period) for m in sweep.markers]
        found = await anyio.to_thread.run_sync(stop_leftovers, items)
        self.channel.post(Swept(sweep_id=sweep.sweep_id, found=found))

    def _cancel(self, task_id: str) -> None:
        if (ctx := self.contexts.get(task_id)) is not None:
            ctx.cancelled = True
        if (scope := self.scopes.get(task_id)) is not None:
            scope.cancel()

    async def run(self, start: Start, scope: anyio.CancelScope, ctx: WorkerContext) -> None:
        """Run one attempt in `scope`; its last message says how it ended."""
        task_id = start.task_id
        end: Done | Failed | Cancelled = Cancelled(task_id=task_id)
        with scope:
            try:
                end = await self._attempt(start, ctx)
            finally:
                del self.scopes[task_id], self.contexts[task_id]
        self.outbound.flush(task_id)
        self.channel.post(end)

    async def _attempt(self, start: Start, ctx: WorkerContext) -> Done | Failed:
        runner = self.runners.get(start.kind)
        if runner is None:
            known = ", ".join(sorted(self.runners)) or "none"
            message = f"This worker runs no {start.kind!r} tasks (it runs: {known})."
            return Failed(task_id=start.task_id, message=message, kind="config")
        try:
            spec: object = TASK_SPEC_ADAPTER.validate_python(start.spec)
            if start.folder is not None:
                spec = settled(runner, Moved(spec, start.folder, start.env))
            outcome = await runner.run(spec, ctx)
        except Exception as exc:  # the task boundary: a failure is data, as in the daemon
            failure = failure_of(exc)
            return Failed(
                task_id=start.task_id, message=failure.message, kind=failure.type,
                detail=failure.detail, exit_code=failure.exit_code, retryable=failure.retryable,
            )  # fmt: skip
        return Done(task_id=start.task_id, result=outcome.result, exit_code=outcome.exit_code)


async def serve(fd: int) -> None:
    """Serve the daemon at the other end of socket `fd` until it closes."""
    stream = await UNIXSocketStream.from_socket(socket.socket(fileno=fd))
    await serve_stream(stream, on_ready=settle_collector)


async def serve_stream(stream: ByteStream, *, on_ready: Callable[[], None] | None = None) -> None:
    """Serve the daemon at the other end of `stream` until it closes (any transport).

    `on_ready` is called once the runners are built, before the worker says it is ready: a
    process of its own settles its garbage collector then (`settle_collector`).
    """
    allow_open_files()  # an agent's connection, a command's pipes: hundreds of runs at once
    channel = Channel(stream, incoming_from_worker=False)
    async with anyio.create_task_group() as tg:
        tg.start_soon(channel.run)
        setup = await channel.receive()
        if not isinstance(setup, Setup):
            channel.close()
            return
        calls = Calls(channel)
        host = _Host(channel, calls)
        async with contextlib.AsyncExitStack() as stack:
            runners = build_runners(setup, host)
            for runner in runners:
                await stack.enter_async_context(runner.lifespan(host))
            if on_ready is not None:
                on_ready()
            channel.post(Ready(pid=os.getpid()))
            worker = Worker(channel, calls, runners)
            async with anyio.create_task_group() as runs:
                await worker.serve(runs)
                worker.outbound.close()
        channel.close()


def lower_priority(nice: int) -> None:
    """Give this process `nice` less CPU priority than its parent, the daemon.

    Its runs then take the CPU the daemon leaves: the daemon answers its API and relays its
    events first, however busy the runs keep the machine. A worker leads its own session
    (`setsid`), and where Linux groups CPU time by session (autogroup) a process's nice value
    weighs only inside its group: the group's is set too (`/proc/self/autogroup`; lowering a
    priority needs no privilege, but without it the kernel takes one such change per 0.1 s, so
    a worker that must wait its turn sets it from a thread). Where either cannot be set, the
    worker runs as it is.
    """
    if nice <= 0:
        return
    with contextlib.suppress(OSError):
        os.nice(nice)
    if not _set_group_nice(nice):
        retry = threading.Thread(
            target=_retry_group_nice, args=(nice,), name="outrider-priority", daemon=True
        )
        retry.start()


_AUTOGROUP = "/proc/self/autogroup"
_GROUP_TRIES = 50
"""How many times a session's priority change is tried again, 0.1 s apart: the kernel takes
one change per 0.1 s, system-wide, from processes without CAP_SYS_ADMIN, so workers that
start together take turns."""


def _set_group_nice(nice: int) -> bool:
    """Set this session's CPU priority; False when the kernel says to try again later."""
    try:
        with open(_AUTOGROUP, "w") as group:
            group.write(str(nice))
    except BlockingIOError:
        return False
    except OSError:  # no autogroup here (or not allowed): the process's own nice stands
        pass
    return True


def _retry_group_nice(nice: int) -> None:
    for _ in range(_GROUP_TRIES):
        time.sleep(0.1)  # the kernel's pace for unprivileged changes, not a synchronisation
        if _set_group_nice(nice):
            return


def main(argv: Sequence[str] | None = None) -> None:
    """`python -m outrider._executors._worker FD [NICE]`."""
    args = list(sys.argv[1:] if argv is None else argv)
    lower_priority(int(args[1]) if len(args) > 1 else 0)
    anyio.run(serve, int(args[0]))


if __name__ == "__main__":
    main()
