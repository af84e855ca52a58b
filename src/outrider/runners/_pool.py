"""WorkerPool: worker processes for handlers registered with `isolation="process"`.

Design: `multiprocessing` "spawn" processes, each with one `Pipe`. A job is sent as
`(fn, params)`, with `fn` pickled by reference (a module-level function; functions of a
`__main__` script work as they do with `multiprocessing`). While it runs, the worker sends
`("progress", …)` and `("output", …)` messages, then one `("result", value)` or
`("error", type, message, traceback)`.

Invariants:
- One job per worker at a time; at most `max_workers` workers exist (callers beyond wait).
- A worker that dies mid-job (crash, `os._exit`, a signal) fails only that job with
  `WorkerCrashed`; it is discarded and the next job gets a fresh worker.
- An idle worker exits by itself after `idle_timeout` seconds; a dead idle worker is noticed
  before reuse and replaced.
- Blocking pipe reads and process start/join run in worker threads, never on the event loop.

Cancellation: cancelling `run` terminates that job's worker (SIGTERM, then SIGKILL after 1 s),
joins it so no zombie is left (shielded), discards it, and lets the cancellation propagate.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import multiprocessing
import os
import traceback
from typing import TYPE_CHECKING

import anyio
import anyio.to_thread

from ._protocol import RunFailure

if TYPE_CHECKING:
    from collections.abc import Callable
    from multiprocessing.connection import Connection
    from multiprocessing.process import BaseProcess

    from pydantic import JsonValue

    from ._protocol import RunContext

__all__ = ["WorkerCrashed", "WorkerPool"]

_CTX = multiprocessing.get_context("spawn")


class WorkerCrashed(RunFailure):
    """The worker process died while running a handler."""


class _WorkerContext:
    """The `ctx` a handler gets inside a worker: reports travel to the parent over the pipe."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn
        self.cancel_requested = False

    def progress(
        self, completed: float, total: float | None = None, message: str | None = None
    ) -> None:
        self._conn.send(("progress", completed, total, message))

    def output(self, data: bytes | str) -> None:
        self._conn.send(("output", data))


def _worker_main(conn: Connection, idle_timeout: float) -> None:
    """The worker's loop: run jobs until idle for `idle_timeout` s or the pipe closes."""
    ctx = _WorkerContext(conn)
    while conn.poll(idle_timeout):
        try:
            fn, params = conn.recv()
        except EOFError:
            return
        try:
            value = fn(ctx, **params)
            if asyncio.iscoroutine(value):
                value = asyncio.run(value)
            json.dumps(value)
            conn.send(("result", value))
        except Exception as exc:
            detail = "".join(traceback.format_exception(exc, limit=-8))[-8000:]
            conn.send(("error", type(exc).__name__, str(exc), detail))


class _Worker:
    def __init__(self, process: BaseProcess, conn: Connection) -> None:
        self.process = process
        self.conn = conn


class WorkerPool:
    """A bounded pool of reusable worker processes (see the module docstring)."""

    def __init__(self, *, max_workers: int | None = None, idle_timeout: float = 60.0) -> None:
        self.max_workers = max_workers or os.cpu_count() or 1
        self.idle_timeout = idle_timeout
        self._idle: list[_Worker] = []
        self._busy: set[_Worker] = set()
        self._slots = anyio.Semaphore(self.max_workers)

    def _spawn(self) -> _Worker:
        parent, child = _CTX.Pipe()
        process = _CTX.Process(
            target=_worker_main,
            args=(child, self.idle_timeout),
            daemon=True,
            name="outrider-worker",
        )
        process.start()
        child.close()
        return _Worker(process, parent)

    async def _acquire(self) -> _Worker:
        while self._idle:
            worker = self._idle.pop()
            if worker.process.is_alive():
                return worker
            await self._discard(worker)
        return await anyio.to_thread.run_sync(self._spawn)

    async def _discard(self, worker: _Worker) -> None:
        def stop() -> None:
            if worker.process.is_alive():
                worker.process.terminate()
                worker.process.join(1.0)
            if worker.process.is_alive():
                worker.process.kill()
            worker.process.join(5.0)
            worker.conn.close()
            with contextlib.suppress(ValueError):
                worker.process.close()

        with anyio.CancelScope(shield=True):
            await anyio.to_thread.run_sync(stop)

    async def run(
        self,
        fn: Callable[..., object],
        params: dict[str, JsonValue],
        ctx: RunContext,
        *,
        handler: str,
    ) -> JsonValue:
        """Run `fn(ctx, **params)` in a worker process and return its JSON result.

        Raises:
            RunFailure: The handler raised (type and traceback kept) or returned non-JSON.
            WorkerCrashed: The worker died during the call.
        """
        async with self._slots:
            worker = await self._acquire()
            self._busy.add(worker)
            healthy = False
            try:
                await anyio.to_thread.run_sync(worker.conn.send, (fn, params))
                while True:
                    try:
                        message = await anyio.to_thread.run_sync(
                            worker.conn.recv, abandon_on_cancel=True
                        )
                    except (EOFError, OSError):
                        await anyio.to_thread.run_sync(worker.process.join, 5.0)
                        raise WorkerCrashed(
                            f"The worker process running handler {handler!r} died (exit code "
                            f"{worker.process.exitcode}); the task failed and the worker was "
                            "replaced.",
                            type="WorkerCrashed",
                        ) from None
                    match message:
                        case ("progress", completed, total, text):
                            ctx.progress(completed, total, text)
                        case ("output", data):
                            ctx.output(data)
                        case ("result", value):
                            healthy = True
                            return value  # type: ignore[no-any-return]  # JSON checked in the worker
                        case ("error", kind, text, detail):
                            healthy = True
                            raise RunFailure(
                                f"Handler {handler!r} raised {kind}: {text}",
                                type=kind,
                                detail=detail,
                                retryable=True,
                            )
            finally:
                self._busy.discard(worker)
                if healthy:
                    self._idle.append(worker)
                else:
                    await self._discard(worker)

    async def aclose(self) -> None:
        """Stop every worker and wait for them. Cancellation: shielded."""
        workers, self._idle = [*self._idle, *self._busy], []
        for worker in workers:
            await self._discard(worker)
