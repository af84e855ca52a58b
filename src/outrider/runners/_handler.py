"""The `handler` runner: named Python callables, run on the loop, in threads, or in processes.

- `async def` handlers run as coroutines on the event loop; cancellation is delivered inside
  them at their next `await`.
- Plain `def` handlers run in worker threads. A thread cannot be interrupted: on cancellation
  `ctx.cancel_requested` turns true and the thread is abandoned at once: the task ends saying
  so, but keeps its concurrency slots until the thread really returns (so a limit of 1 never
  runs two bodies at once); whatever it returns is discarded.
- `isolation="process"` handlers run in a `WorkerPool` process; cancellation kills the worker.

A handler is called as `handler(ctx, **params)`; its return value must be JSON-serialisable.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import json
import traceback
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import anyio
import anyio.from_thread
import anyio.to_thread

from outrider._types._task import HandlerSpec

from ._pool import WorkerPool
from ._protocol import RunContext, RunFailure, RunnerHost, RunOutcome

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable, Mapping

    from pydantic import JsonValue

__all__ = ["Handler", "HandlerRunner", "Isolation"]

Isolation = Literal["thread", "process"]


@dataclass(frozen=True, slots=True)
class Handler:
    """A registered handler."""

    name: str
    fn: Callable[..., object]
    isolation: Isolation = "thread"


def _ensure_json(handler: str, value: object) -> JsonValue:
    try:
        json.dumps(value)
    except (TypeError, ValueError) as exc:
        raise RunFailure(
            f"Handler {handler!r} returned a {type(value).__name__}, which is not "
            f"JSON-serialisable ({exc}); return dicts, lists, strings, numbers or None.",
            type="TypeError",
        ) from None
    return value  # type: ignore[return-value]  # checked by json.dumps just above


def _failure(handler: str, exc: Exception) -> RunFailure:
    detail = "".join(traceback.format_exception(exc, limit=-8))
    return RunFailure(
        f"Handler {handler!r} raised {type(exc).__name__}: {exc}",
        type=type(exc).__name__,
        detail=detail[-8000:],
        retryable=True,
    )


async def _in_thread(call: Callable[[], object], ctx: RunContext) -> object:
    """Run `call` in a worker thread; if stopped, abandon it, telling `ctx` when it ends."""
    ended = anyio.Event()

    def body() -> object:
        try:
            return call()
        finally:
            with contextlib.suppress(RuntimeError):  # the event loop is gone: no one waits
                anyio.from_thread.run_sync(ended.set)

    try:
        return await anyio.to_thread.run_sync(body, abandon_on_cancel=True)
    except anyio.get_cancelled_exc_class():
        if not ended.is_set():
            ctx.abandon(ended)
        raise


class HandlerRunner:
    """Runs `HandlerSpec` tasks with the handlers registered on the orchestrator."""

    kind = "handler"
    uses_processes = False

    def __init__(self, handlers: Mapping[str, Handler], *, workers: int | None = None) -> None:
        self._handlers = handlers
        self._workers = workers
        self._pool: WorkerPool | None = None

    def _worker_pool(self) -> WorkerPool:
        """The pool of `isolation="process"` handlers, started on first use."""
        if self._pool is None:
            self._pool = WorkerPool(max_workers=self._workers)
        return self._pool

    @contextlib.asynccontextmanager
    async def lifespan(self, host: RunnerHost) -> AsyncIterator[None]:
        """Close the worker processes, if any started, once every run has ended."""
        try:
            yield
        finally:
            if self._pool is not None:
                await self._pool.aclose()

    def default_keys(self, spec: object) -> tuple[str, ...]:
        """One key per handler: `handler:<name>`."""
        assert isinstance(spec, HandlerSpec)
        return (f"handler:{spec.handler}",)

    def required_keys(self, spec: object) -> tuple[str, ...]:
        """None: a handler names no outside limit."""
        return ()

    async def run(self, spec: object, ctx: RunContext) -> RunOutcome:
        """Call the handler with `ctx` and the spec's params."""
        assert isinstance(spec, HandlerSpec)
        handler = self._handlers.get(spec.handler)
        if handler is None:
            raise RunFailure(
                f"No handler {spec.handler!r} is registered; register it with "
                "`Orchestrator.handler` before the task starts.",
                type="RunnerError",
            )
        if handler.isolation == "process":
            pool = self._worker_pool()
            result = await pool.run(handler.fn, spec.params, ctx, handler=spec.handler)
            return RunOutcome(result=result)
        try:
            if inspect.iscoroutinefunction(handler.fn):
                value = await handler.fn(ctx, **spec.params)
            else:
                value = await _in_thread(functools.partial(handler.fn, ctx, **spec.params), ctx)
        except RunFailure:
            raise
        except Exception as exc:
            raise _failure(spec.handler, exc) from exc
        return RunOutcome(result=_ensure_json(spec.handler, value))
