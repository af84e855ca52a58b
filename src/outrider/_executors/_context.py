"""The worker's side of a run: its `RunContext` turns reports and calls into messages.

Invariants:
- Reports are batched: a task's output is coalesced for `BATCH_WINDOW` seconds (or until
  `BATCH_BYTES` are waiting), and only its latest progress and usage are kept meanwhile. A
  task's pending reports are sent before any other message of that task (a call, its end),
  so the daemon sees them in the order the run made them.
- A call the run stops waiting for (it was cancelled) is abandoned: the daemon stops it or
  undoes it (`Abandon`). When the daemon is gone, every waiting call fails.
- Safe to call from the run's worker threads: reports are handed to the event loop.
"""

from __future__ import annotations

import base64
import itertools
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

import anyio
import psutil

from .._asynclib import OnLoop
from .._types._errors import UserError
from .._types._task import TASK_SPEC_ADAPTER, Task, Usage
from ._messages import Abandon, Call, LimitNote, Output, Progress, UsageReport

if TYPE_CHECKING:
    from pydantic import JsonValue

    from .._types._task import TaskSpec
    from ._channel import Channel
    from ._messages import CallOp, Reply, Start

__all__ = [
    "BATCH_BYTES", "BATCH_WINDOW", "Calls", "Outbound", "RemoteLimiter", "WorkerContext",
    "context_for",
]  # fmt: skip

BATCH_WINDOW = 0.025
"""Seconds a task's output waits for more before it is sent.

Each message costs both sides a write, a read and its handling (the daemon's log and event)
whatever it carries; a model streams a chunk every 10-30 ms, so a window of a chunk or two
halves the messages at a delay no reader of the output notices."""
BATCH_BYTES = 64 * 1024
"""Output waiting beyond this is sent at once."""


@dataclass
class _Pending:
    output: bytearray = field(default_factory=bytearray)
    progress: Progress | None = None
    usage: UsageReport | None = None


class Outbound:
    """The reports of the worker's runs, batched on the way to the daemon (see the module doc)."""

    def __init__(self, channel: Channel) -> None:
        self._channel = channel
        self._pending: dict[str, _Pending] = {}
        self._waiting = anyio.Event()
        self._closed = False

    def _of(self, task_id: str) -> _Pending:
        pending = self._pending.get(task_id)
        if pending is None:
            pending = self._pending[task_id] = _Pending()
            self._waiting.set()
        return pending

    def output(self, task_id: str, data: bytes) -> None:
        """Queue output of `task_id`."""
        pending = self._of(task_id)
        pending.output += data
        if len(pending.output) >= BATCH_BYTES:
            self.flush(task_id)

    def progress(self, report: Progress) -> None:
        """Keep `report` as its task's latest progress."""
        self._of(report.task_id).progress = report

    def usage(self, report: UsageReport) -> None:
        """Keep `report` as its task's latest usage."""
        self._of(report.task_id).usage = report

    def flush(self, task_id: str) -> None:
        """Send what `task_id` has waiting now: its output, then its progress and usage."""
        pending = self._pending.pop(task_id, None)
        if pending is None:
            return
        if pending.output:
            self._channel.post(Output(task_id=task_id, data=bytes(pending.output)))
        if pending.progress is not None:
            self._channel.post(pending.progress)
        if pending.usage is not None:
            self._channel.post(pending.usage)

    async def run(self) -> None:
        """Send waiting reports one batch window after the first of them, until `close`."""
        while not self._closed:
            await self._waiting.wait()
            self._waiting = anyio.Event()
            await anyio.sleep(BATCH_WINDOW)  # the batch window: reports gather meanwhile
            for task_id in list(self._pending):
                self.flush(task_id)

    def close(self) -> None:
        """Send everything waiting; `run` returns."""
        for task_id in list(self._pending):
            self.flush(task_id)
        self._closed = True
        self._waiting.set()


@dataclass
class _Waiter:
    done: anyio.Event = field(default_factory=anyio.Event)
    reply: Reply | None = None


class Calls:
    """The worker's calls to the daemon, each waiting for its `Reply`."""

    def __init__(self, channel: Channel) -> None:
        self._channel = channel
        self._ids = itertools.count(1)
        self._waiting: dict[int, _Waiter] = {}
        self._gone: str | None = None

    async def call(
        self, task_id: str, op: CallOp, args: dict[str, JsonValue], blob: bytes | None = None
    ) -> JsonValue:
        """Ask the daemon (`blob`: bytes the call carries) and wait for its answer.

        Raises:
            UserError: The daemon refused (its message says why).
            RuntimeError: The daemon failed, or it is gone.
        """
        if self._gone is not None:
            raise RuntimeError(self._gone)
        call_id = next(self._ids)
        waiter = self._waiting[call_id] = _Waiter()
        self._channel.post(Call(call_id=call_id, task_id=task_id, op=op, args=args, blob=blob))
        try:
            await waiter.done.wait()
        except BaseException:  # stopped while waiting: the daemon stops or undoes the call
            self._channel.post(Abandon(call_id=call_id))
            raise
        finally:
            del self._waiting[call_id]
        reply = waiter.reply
        if reply is None:  # the daemon is gone (`fail_all`)
            raise RuntimeError(str(self._gone))
        if reply.error is not None:
            if reply.error.kind == "user":
                raise UserError(reply.error.message, field=reply.error.field)
            raise RuntimeError(reply.error.message)
        return reply.value

    def answer(self, reply: Reply) -> None:
        """The daemon answered (a call no longer waited for is ignored)."""
        waiter = self._waiting.get(reply.call_id)
        if waiter is not None:
            waiter.reply = reply
            waiter.done.set()

    def fail_all(self, why: str) -> None:
        """The daemon is gone: every waiting call fails."""
        self._gone = why
        for waiter in self._waiting.values():
            waiter.done.set()


class WorkerContext:
    """The `RunContext` of a run in a worker: reports and calls become messages."""

    def __init__(self, start: Start, calls: Calls, outbound: Outbound) -> None:
        self._start = start
        self._calls = calls
        self._outbound = outbound
        self._on_loop = OnLoop()
        self.cancelled = False
        self.watched = start.watched
        """Someone follows its output live (`Start`, then each `Watch`)."""

    @property
    def task_id(self) -> str:
        return self._start.task_id

    @property
    def attempt(self) -> int:
        return self._start.attempt

    @property
    def resuming(self) -> bool:
        return self._start.resuming

    @property
    def cancel_requested(self) -> bool:
        return self.cancelled

    @property
    def session(self) -> str:
        return self._start.session

    def progress(
        self, completed: float, total: float | None = None, message: str | None = None
    ) -> None:
        report = Progress(task_id=self.task_id, completed=completed, total=total, message=message)
        self._on_loop(lambda: self._outbound.progress(report))

    def output(self, data: bytes | str) -> None:
        raw = data.encode() if isinstance(data, str) else bytes(data)
        self._on_loop(lambda: self._outbound.output(self.task_id, raw))

    def usage(self, usage: Usage) -> None:
        report = UsageReport(task_id=self.task_id, usage=usage)
        self._on_loop(lambda: self._outbound.usage(report))

    async def _call(self, op: CallOp, blob: bytes | None = None, **args: JsonValue) -> JsonValue:
        self._outbound.flush(self.task_id)  # its reports first, in the order it made them
        return await self._calls.call(self.task_id, op, args, blob)

    async def spawn(
        self, spec: TaskSpec, /, *, label: str | None = None, timeout: float | None = None
    ) -> Task:
        raw = TASK_SPEC_ADAPTER.dump_python(spec, mode="json")
        value = await self._call("spawn", spec=raw, label=label, timeout=timeout)
        return Task.model_validate(value)

    async def tail(self, task_id: str, *, lines: int = 50) -> str:
        return str(await self._call("tail", task_id=task_id, lines=lines))

    async def save_transcript(self, data: bytes) -> None:
        await self._call("save_transcript", blob=bytes(data))

    async def load_transcript(self) -> bytes | None:
        value = await self._call("load_transcript")
        return None if value is None else base64.b64decode(str(value))

    def abandon(self, ended: anyio.Event) -> None:
        """A worker's runs leave no thread behind the daemon's back: nothing to hand over."""

    async def track_process(self, pid: int) -> None:
        try:  # its start time here: the daemon may run on another machine (a node's pool)
            created: float | None = psutil.Process(pid).create_time()
        except psutil.Error:
            created = None
        await self._call("track_process", pid=pid, created=created)


class _Leases:
    """`PathGuard` of a run in a worker: each claim is a call to the daemon's leases."""

    def __init__(self, ctx: WorkerContext) -> None:
        self._ctx = ctx

    async def claim(self, path: str) -> str | None:
        value = await self._ctx._call("claim", path=path)
        return None if value is None else str(value)


class GuardedWorkerContext(WorkerContext):
    """The context of a run whose writes claim leases in the daemon."""

    @property
    def path_guard(self) -> _Leases:
        return _Leases(self)


def context_for(start: Start, calls: Calls, outbound: Outbound) -> WorkerContext:
    """The context of the run `start` begins."""
    kind = GuardedWorkerContext if start.guarded else WorkerContext
    return kind(start, calls, outbound)


class RemoteLimiter:
    """A model's limiter in the daemon, seen from a worker: every worker shares its limits."""

    def __init__(self, model: str, calls: Calls, channel: Channel) -> None:
        self.model = model
        self._calls = calls
        self._channel = channel

    async def acquire(self, tokens: int = 0) -> None:
        """Wait for the daemon to grant a call slot."""
        await self._calls.call("", "acquire", {"model": self.model, "tokens": tokens})

    async def release(self) -> None:
        """Give the slot back."""
        self._note("release")

    def succeeded(self) -> None:
        """A call went through."""
        self._note("succeeded")

    def throttled(self, retry_after: float | None) -> None:
        """The provider throttled a call."""
        self._note("throttled", retry_after=retry_after)

    def stated(self, rpm: float | None, tpm: float | None) -> None:
        """The provider stated its limits."""
        if rpm or tpm:
            self._note("stated", rpm=rpm, tpm=tpm)

    def _note(
        self,
        event: Literal["release", "succeeded", "throttled", "stated"],
        *,
        retry_after: float | None = None,
        rpm: float | None = None,
        tpm: float | None = None,
    ) -> None:
        note = LimitNote(model=self.model, event=event, retry_after=retry_after, rpm=rpm, tpm=tpm)
        self._channel.post(note)
