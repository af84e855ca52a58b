"""`WorkerPool`: attempts run in a pool of worker processes, each running many on its own loop.

The daemon keeps the engine, the store, limits, timers and events; a worker (`_worker`) runs
the runner and sends back what its `RunContext` is told (`_messages`). What a run awaits of the
daemon (a child task, a log's tail, its transcript, a lease, a model call's slot) is a `Call`,
served here through the task's own context, so children, logs and leases are the daemon's.

Invariants:
- `run` returns only once the worker said the attempt is over (`Done`, `Failed`,
  `Cancelled`) or the worker is gone: a cancelled run sends `Cancel` and waits, shielded.
- Placement: the least busy worker, a new one while fewer than `size` run and all are busy;
  tasks with the same affinity key (a delegation tree's root id) go to the same worker while
  one of them runs there, so what they share in memory (a tree's budget) stays exact.
- A worker that dies fails only its own running attempts, as retryable (`worker_lost`); it is
  replaced on the next placement. Calls it left are stopped; model slots it held are released.
"""

from __future__ import annotations

import base64
import contextlib
import itertools
import os
import socket
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar, cast

import anyio
from anyio.abc import UNIXSocketStream
from pydantic import ValidationError

from .._logging import logger
from .._types._errors import UserError
from .._types._task import TASK_SPEC_ADAPTER
from ..runners._protocol import GuardedContext, RunFailure, RunOutcome
from ._channel import Channel
from ._messages import (
    Abandon,
    Call,
    CallError,
    Cancel,
    Cancelled,
    Done,
    Failed,
    LimitNote,
    Output,
    Progress,
    Ready,
    Reply,
    SetLimit,
    Setup,
    Start,
    Sweep,
    Swept,
    UsageReport,
    Watch,
)  # fmt: skip
from ._protocol import Moved

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable

    from anyio.abc import Process, TaskGroup
    from pydantic import JsonValue

    from ..runners._protocol import RunContext, Runner, RunnerHost
    from ._messages import Message
    from ._protocol import CallLimiter

__all__ = ["DEFAULT_NICE", "WorkerPool"]

_W = TypeVar("_W", bound="_Worker")

DEFAULT_NICE = 10
"""A worker's CPU priority below the daemon's, by default: measured with 500 agents on 2 cores
(docs/PERFORMANCE.md), the API's p99 fell three to five times, for 5-8% more wall time when
nobody watches the agents (none when someone does)."""
_MAX_NICE = 19
_STOP_GRACE = 10.0
"""Seconds a worker has to exit after its channel closes, before it is killed."""


@dataclass
class _Job:
    ctx: RunContext
    ended: anyio.Event = field(default_factory=anyio.Event)
    end: Done | Failed | Cancelled | None = None
    calls: set[int] = field(default_factory=set)
    """Its calls being served."""
    quiet: anyio.Event = field(default_factory=anyio.Event)
    """Set when its last call being served ended."""
    watched: bool = False
    """What the worker was last told of `ctx.watched`."""

    async def calls_over(self) -> None:
        """Wait until none of its calls is being served."""
        while self.calls:
            self.quiet = anyio.Event()
            await self.quiet.wait()


@dataclass
class _Worker:
    """The daemon's handle on one worker process."""

    pool: WorkerPool
    number: int
    process: Process | None = None
    channel: Channel | None = None
    pid: int | None = None
    ready: anyio.Event = field(default_factory=anyio.Event)
    lost: str | None = None
    jobs: dict[str, _Job] = field(default_factory=dict)
    calls: dict[int, anyio.CancelScope] = field(default_factory=dict)
    held: Counter[str] = field(default_factory=Counter)
    """Model call slots this worker holds, by model."""
    granted: dict[int, str] = field(default_factory=dict)
    """`acquire` calls answered and not yet released, by call id (to undo an `Abandon`)."""
    sweeps: dict[int, tuple[anyio.Event, list[int]]] = field(default_factory=dict)
    """`Sweep`s sent and not yet answered: set when `Swept` (its count) arrives or it is lost."""
    placed: int = 0
    """Attempts placed on it and not yet over (its load)."""
    tg: TaskGroup | None = None

    lost_kind = "worker_lost"
    """The failure type of the attempts it ran when it is lost."""

    async def open(self) -> anyio.abc.ByteStream:
        """Start the worker process; the stream to it.

        Raises:
            OSError: It could not start.
        """
        parent, child = socket.socketpair()
        try:
            with child:
                self.process = await anyio.open_process(
                    [sys.executable, "-m", "outrider._executors._worker", str(child.fileno()),
                     str(self.pool.nice)],
                    pass_fds=(child.fileno(),), stdin=subprocess.DEVNULL, stdout=None,
                    stderr=None, start_new_session=True,
                )  # fmt: skip
            return await UNIXSocketStream.from_socket(parent)
        except OSError:
            parent.close()
            raise

    async def gone(self) -> str:
        """Wait for the worker to exit (killing it after a grace period); how it ended."""
        assert self.process is not None
        with anyio.move_on_after(_STOP_GRACE):
            await self.process.wait()
        if self.process.returncode is None:
            self.process.kill()
            await self.process.wait()
        code = self.process.returncode
        how = f"exited ({code})" if code is None or code >= 0 else f"was killed by signal {-code}"
        return (
            f"its worker process (pid {self.pid or self.process.pid}) {how} while it ran "
            "(the daemon's log has what the worker wrote)"
        )

    async def serve(self) -> None:
        """Start the worker, then handle its messages until it is gone.

        It runs in the pool's task group, apart from the attempts waiting for it: a stopped
        attempt never stops the start of the worker others wait for too.
        """
        try:
            stream = await self.open()
        except OSError as exc:
            self._gone(f"its worker could not start ({exc})")
            return
        self.channel = channel = Channel(stream, incoming_from_worker=True)
        async with anyio.create_task_group() as tg:
            self.tg = tg
            tg.start_soon(channel.run)
            channel.post(Setup(factory=self.pool.factory, config=self.pool.config))
            try:
                await self._read(channel)
            finally:
                with anyio.CancelScope(shield=True):
                    channel.close()
                    await self._reap()
                tg.cancel_scope.cancel()  # model-slot calls left waiting
        await channel.aclose()

    async def _read(self, channel: Channel) -> None:
        while True:
            try:
                message = await channel.receive()
            except ValidationError as exc:
                logger.error("worker %s sent a message that is not one: %s", self.pid, exc)
                return
            if message is None:
                return
            self._handle(message)

    def _handle(self, message: Message) -> None:
        match message:
            case Ready(pid=pid):
                self.pid = pid
                self.ready.set()
            case Output() | Progress() | UsageReport():
                if (job := self.jobs.get(message.task_id)) is not None:
                    _report(job.ctx, message)
            case SetLimit(key=key, limit=limit):
                self.pool.suggest_limit(key, limit)
            case Call():
                job = self.jobs.get(message.task_id)
                if self.tg is not None and (job is not None or message.op == "acquire"):
                    self.tg.start_soon(self._call, job, message)
            case Abandon(call_id=call_id):
                self._abandon(call_id)
            case LimitNote():
                self._note(message)
            case Done() | Failed() | Cancelled() | Swept():
                self._answered(message)

    def _answered(self, message: Done | Failed | Cancelled | Swept) -> None:
        """An attempt is over, or a sweep is."""
        if isinstance(message, Swept):
            if (waiting := self.sweeps.pop(message.sweep_id, None)) is not None:
                waiting[1].append(message.found)
                waiting[0].set()
        elif (job := self.jobs.get(message.task_id)) is not None:
            job.end = message
            job.ended.set()

    async def _call(self, job: _Job | None, call: Call) -> None:
        with anyio.CancelScope() as scope:
            self.calls[call.call_id] = scope
            if job is not None:
                job.calls.add(call.call_id)
            try:
                ctx = None if job is None else job.ctx
                reply = Reply(call_id=call.call_id, value=await self._serve_call(ctx, call))
            except UserError as exc:
                error = CallError(kind="user", message=str(exc), field=exc.field)
                reply = Reply(call_id=call.call_id, error=error)
            except Exception as exc:  # the call's boundary: the run reads the failure
                message = f"{type(exc).__name__}: {exc}"
                reply = Reply(call_id=call.call_id, error=CallError(kind="error", message=message))
            finally:
                del self.calls[call.call_id]
                if job is not None:
                    job.calls.discard(call.call_id)
                    if not job.calls:
                        job.quiet.set()
            assert self.channel is not None
            self.channel.post(reply)

    async def _serve_call(self, ctx: RunContext | None, call: Call) -> JsonValue:
        if call.op == "acquire":
            await self._acquire(call)
            return None
        assert ctx is not None
        args = call.args
        match call.op:
            case "spawn":
                spec = TASK_SPEC_ADAPTER.validate_python(args["spec"])
                label, timeout = args.get("label"), args.get("timeout")
                task = await ctx.spawn(
                    spec, label=None if label is None else str(label),
                    timeout=None if timeout is None else float(cast("float", timeout)),
                )  # fmt: skip
                return cast("JsonValue", task.model_dump(mode="json"))
            case "tail":
                return await ctx.tail(str(args["task_id"]), lines=cast("int", args["lines"]))
            case "save_transcript":
                await ctx.save_transcript(call.blob or b"")
                return None
            case "load_transcript":
                data = await ctx.load_transcript()
                return None if data is None else base64.b64encode(data).decode()
            case "track_process":
                await ctx.track_process(cast("int", args["pid"]))
                return None
            case "claim":
                if not isinstance(ctx, GuardedContext):
                    return None  # it works alone: nothing to claim
                return await ctx.path_guard.claim(str(args["path"]))
        raise ValueError(f"no such call: {call.op!r}")

    async def _acquire(self, call: Call) -> None:
        model = str(call.args["model"])
        await self.pool.limiter(model).acquire(cast("int", call.args.get("tokens", 0)))
        self.held[model] += 1
        self.granted[call.call_id] = model

    def _abandon(self, call_id: int) -> None:
        if (scope := self.calls.get(call_id)) is not None:
            scope.cancel()  # its slot, if any, is released by the limiter's own cleanup
        elif (model := self.granted.pop(call_id, None)) is not None:
            self._release(model)  # granted, but the run stopped waiting before it read so

    def _note(self, note: LimitNote) -> None:
        if note.event == "release":
            for call_id, model in self.granted.items():
                if model == note.model:
                    del self.granted[call_id]
                    break
            self._release(note.model)
            return
        limiter = self.pool.limiter(note.model)
        if note.event == "succeeded":
            limiter.succeeded()
        elif note.event == "throttled":
            limiter.throttled(note.retry_after)
        else:
            limiter.stated(note.rpm, note.tpm)

    def _release(self, model: str) -> None:
        if self.held[model] > 0:
            self.held[model] -= 1
            self.pool.release_soon(model)

    async def _reap(self) -> None:
        """The worker is gone (or is told to go): wait for its end, then fail its runs."""
        self._gone(await self.gone())

    def _gone(self, why: str) -> None:
        """The worker is gone: its attempts fail (retryably), its model slots are released."""
        self.lost = why
        self.ready.set()
        for model, count in self.held.items():
            for _ in range(count):
                self.pool.release_soon(model)
        self.held.clear()
        for done, _ in self.sweeps.values():
            done.set()
        for job in self.jobs.values():
            if not job.ended.is_set():
                job.end = Failed(task_id="", message=why, kind=self.lost_kind, retryable=True)
                job.ended.set()
        self.pool.forget(self)

    async def sweep(self, markers: list[str], grace_period: float) -> int | None:
        """Have the worker stop what these attempts left on its machine; how many it found.

        None if the worker is gone before it answered.
        """
        await self.ready.wait()
        if self.lost is not None or self.channel is None:
            return None
        sweep_id = next(self.pool._numbers)
        done, found = self.sweeps[sweep_id] = (anyio.Event(), [])
        self.channel.post(Sweep(sweep_id=sweep_id, markers=markers, grace_period=grace_period))
        await done.wait()
        return found[0] if found else None

    async def run(self, kind: str, spec: object, ctx: RunContext) -> RunOutcome:
        """Run one attempt on this worker (see the module doc)."""
        await self.ready.wait()
        if self.lost is not None or self.channel is None:
            raise RunFailure(
                f"The task could not start: {self.lost}.", type=self.lost_kind, retryable=True
            )
        channel = self.channel
        job = self.jobs[ctx.task_id] = _Job(ctx, watched=ctx.watched)
        moved = spec if isinstance(spec, Moved) else None
        start = Start(
            task_id=ctx.task_id, attempt=ctx.attempt, session=ctx.session,
            resuming=ctx.resuming, kind=kind,
            spec=TASK_SPEC_ADAPTER.dump_python(
                cast("Any", moved.spec if moved else spec), mode="json"
            ),
            guarded=isinstance(ctx, GuardedContext), folder=moved.folder if moved else None,
            env=dict(moved.env) if moved else {}, watched=job.watched,
        )  # fmt: skip
        channel.post(start)
        try:
            try:
                await job.ended.wait()
            except anyio.get_cancelled_exc_class():
                # Its calls go on meanwhile: a stopped run still saves its transcript, and
                # the children it waited for are cancelled as it abandons their calls.
                with anyio.CancelScope(shield=True):
                    channel.post(Cancel(task_id=ctx.task_id))
                    await job.ended.wait()
                raise
            finally:
                with anyio.CancelScope(shield=True):
                    for call_id in job.calls:  # calls it left: stopped, then waited for
                        self.calls[call_id].cancel()
                    await job.calls_over()
        finally:
            del self.jobs[ctx.task_id]
        return _outcome(job.end)


def _report(ctx: RunContext, message: Output | Progress | UsageReport) -> None:
    if isinstance(message, Output):
        ctx.output(message.data)
    elif isinstance(message, Progress):
        ctx.progress(message.completed, message.total, message.message)
    else:
        ctx.usage(message.usage)


def _outcome(end: Done | Failed | Cancelled | None) -> RunOutcome:
    if isinstance(end, Done):
        return RunOutcome(result=end.result, exit_code=end.exit_code)
    if isinstance(end, Failed):
        raise RunFailure(
            end.message, type=end.kind, detail=end.detail, exit_code=end.exit_code,
            retryable=end.retryable,
        )  # fmt: skip
    raise RunFailure("The worker stopped the run on its own.", type="worker_lost", retryable=True)


class WorkerPool:
    """Runs attempts in worker processes (see the module doc).

    Args:
        factory: `module:function` that builds a worker's runners: called in each worker with
            `config` and the worker's `WorkerHost`.
        config: JSON for `factory`, sent over the channel (never on a command line).
        size: Workers at most (default: one per CPU).
        affinity: A task's placement key from its spec and id (tasks sharing one share a
            worker while one of them runs), or None.
        limiter: The daemon's limiter of a model (`provider/model`), for workers' model calls.
        nice: How much lower a worker's CPU priority is than the daemon's (0 to 19; 0: the
            same). The daemon's own work (the API, events, the store) then comes first.
    """

    def __init__(
        self,
        factory: str,
        config: JsonValue = None,
        *,
        size: int | None = None,
        affinity: Callable[[object, str], str | None] | None = None,
        limiter: Callable[[str], CallLimiter] | None = None,
        nice: int = DEFAULT_NICE,
    ) -> None:
        if size is not None and size < 1:
            raise ValueError(f"size must be at least 1, not {size}")
        if not 0 <= nice <= _MAX_NICE:
            raise ValueError(f"nice must be from 0 to {_MAX_NICE}, not {nice}")
        self.nice = nice
        self.factory = factory
        self.config = config
        self.size = size or os.cpu_count() or 1
        self._affinity = affinity
        self._limiter = limiter
        self._workers: list[_Worker] = []
        self._keys: dict[str, tuple[_Worker, int]] = {}
        self._numbers = itertools.count(1)
        self._host: RunnerHost | None = None
        self._tg: TaskGroup | None = None

    @property
    def pids(self) -> list[int]:
        """The process ids of the workers that are ready."""
        return [w.pid for w in self._workers if w.pid is not None and w.lost is None]

    @property
    def running(self) -> int:
        """Attempts placed on a worker and not yet over."""
        return sum(w.placed for w in self._workers)

    @contextlib.asynccontextmanager
    async def lifespan(self, host: RunnerHost) -> AsyncIterator[None]:
        """Workers start as attempts need them; on the way out each is told to go, and reaped."""
        self._host = host
        forget = host.on_watch_change(self._rewatch)
        async with anyio.create_task_group() as tg:
            self._tg = tg
            try:
                yield
            finally:
                forget()
                self._tg = None
                for worker in self._workers:
                    if worker.channel is not None:
                        worker.channel.close()

    def _rewatch(self) -> None:
        """Someone started or stopped watching: tell workers whose runs it changed."""
        for worker in self._workers:
            if worker.channel is None:
                continue
            for job in worker.jobs.values():
                if (watched := job.ctx.watched) != job.watched:
                    job.watched = watched
                    worker.channel.post(Watch(task_id=job.ctx.task_id, watched=watched))

    def suggest_limit(self, key: str, limit: int) -> None:
        """A worker's runner asked for a key's limit."""
        if self._host is not None:
            self._host.suggest_limit(key, limit)

    def limiter(self, model: str) -> CallLimiter:
        """The daemon's limiter of `model`.

        Raises:
            RuntimeError: The pool was made without limiters.
        """
        if self._limiter is None:
            raise RuntimeError("this worker pool has no model limiters (give `limiter`)")
        return self._limiter(model)

    def release_soon(self, model: str) -> None:
        """Release a model call slot a worker held."""
        if self._tg is not None:
            self._tg.start_soon(self.limiter(model).release)

    def forget(self, worker: _Worker) -> None:
        """A worker is gone: later attempts go elsewhere."""
        if worker in self._workers:
            self._workers.remove(worker)
        for key, (placed, _) in list(self._keys.items()):
            if placed is worker:
                del self._keys[key]

    def _place(self, key: str | None) -> _Worker:
        if (together := self._with_key(key)) is not None:
            return together
        live = [w for w in self._workers if w.lost is None]
        least = min(live, key=lambda w: w.placed, default=None)
        if least is None or (least.placed > 0 and len(live) < self.size):
            least = self._spawn()
        return self._placed(least, key)

    async def _choose(
        self, key: str | None, runner: Runner, spec: object, ctx: RunContext
    ) -> _Worker:
        """The worker an attempt (of `key`) runs on, counted as placed there."""
        return self._place(key)

    async def _started(self, worker: _Worker, ctx: RunContext) -> None:
        """An attempt is about to start on `worker` (a node's pool records where)."""

    def _with_key(self, key: str | None) -> _Worker | None:
        """The worker running the attempts of `key`, now placed there too; None if none."""
        if key is not None and key in self._keys:
            worker, count = self._keys[key]
            if worker.lost is None:
                self._keys[key] = (worker, count + 1)
                worker.placed += 1
                return worker
        return None

    def _placed(self, worker: _Worker, key: str | None) -> _Worker:
        """Count an attempt (of `key`) as placed on `worker`."""
        worker.placed += 1
        if key is not None:
            self._keys[key] = (worker, 1)
        return worker

    def _spawn(self) -> _Worker:
        return self._start(_Worker(self, next(self._numbers)))

    def _start(self, worker: _W) -> _W:
        """Start `worker` in the pool's task group; it serves until it is gone."""
        if self._tg is None:
            raise RuntimeError("the worker pool is not open (enter its lifespan first)")
        self._workers.append(worker)
        self._tg.start_soon(worker.serve)
        return worker

    def _unplace(self, worker: _Worker, key: str | None) -> None:
        worker.placed -= 1
        if key is not None and key in self._keys:
            placed, count = self._keys[key]
            if count <= 1:
                del self._keys[key]
            else:
                self._keys[key] = (placed, count - 1)

    async def run(self, runner: Runner, spec: object, ctx: RunContext) -> RunOutcome:
        """Run one attempt on a worker (see the module doc)."""
        key = self._affinity(spec, ctx.task_id) if self._affinity is not None else None
        worker = await self._choose(key, runner, spec, ctx)
        try:
            await self._started(worker, ctx)
            return await worker.run(runner.kind, spec, ctx)
        finally:
            self._unplace(worker, key)
