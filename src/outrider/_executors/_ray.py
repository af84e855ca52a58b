"""`RayNodes`: attempts run on the nodes of a Ray cluster, as on local workers (`cluster` extra).

A node is a worker like `WorkerPool`'s, reached over Ray instead of a socket: one actor per node
(`NodeWorker`, pinned to it) runs the same worker (`_worker.serve_stream`) on the actor's event
loop, and the same messages travel as the same frames: daemon → node as actor calls (`push`,
awaited one by one, so in order), node → daemon as one streaming call (`pull`). Everything
else is `WorkerPool`'s: the engine, the store, limits, timers, events, child tasks, logs, leases
and model limiters stay in the daemon, so limits and priorities hold cluster-wide, exactly.

Invariants:
- Placement: the node with the most free slots (its `outrider_slots` resource less the attempts
  placed there); an attempt waits for a slot while every node is full. Tasks of one delegation
  tree go to the node of its root while one of them runs there (its budget stays exact).
- A node lost (its actor died: its processes were killed, its machine fell silent past Ray's
  health checks, it left) ends the attempts it ran as `node_lost`, retryable. A node that comes
  back gets a new actor; nothing from the old one is read again, so it never finishes an
  attempt that was retried elsewhere.
- A node contains its processes as the daemon does (subreaper and guardian): when its actor
  dies — the daemon died and Ray ended its actors, or Ray killed it — every process its tasks
  started is stopped.
- A node's pids are its own: `track_process` is kept on the node (its registry and guardian),
  never recorded as the daemon's, so a recovery never kills a local process by a remote pid.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import anyio
import anyio.to_thread
from anyio.abc import ByteStream

from ._pool import WorkerPool, _Worker

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable, Mapping

    from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream
    from pydantic import JsonValue

    from ..runners._protocol import RunContext, RunnerHost
    from ._messages import Call
    from ._protocol import CallLimiter

__all__ = ["SLOTS_RESOURCE", "NodeInfo", "NodeWorker", "RayNodes", "connect", "list_nodes"]

SLOTS_RESOURCE = "outrider_slots"
"""The Ray resource a node offers outrider: its slots (attempts it runs at once)."""
_REFRESH = 1.0
"""Seconds the list of nodes is trusted before it is asked for again."""


def connect(address: str, token_file: str) -> None:
    """Connect this process to the cluster as its driver (blocking: call it in a thread).

    A loopback address stays loopback (see `_daemon._cluster`). Ray reads its token from
    `token_file` (named in the environment before Ray is first imported: Ray keeps what it
    read), so the token itself is in no process's environment or command line.
    """
    # Under `uv run`, Ray would upload this process's working directory to every node and
    # start the workers with `uv run` there; a node runs its own installed outrider instead.
    os.environ.update(
        RAY_AUTH_MODE="token",
        RAY_AUTH_TOKEN_PATH=token_file,
        RAY_USAGE_STATS_ENABLED="0",
        RAY_ENABLE_UV_RUN_RUNTIME_ENV="0",
    )
    import ray
    from ray._private import services

    services.resolve_ip_for_localhost = lambda host: host
    host = address.rsplit(":", 1)[0]
    ray.init(
        address=address, _node_ip_address=host if host.startswith("127.") else None,
        logging_level=logging.ERROR, log_to_driver=False, configure_logging=False,
    )  # fmt: skip


# -- the node's side ------------------------------------------------------------------------


class _DaemonEnd(ByteStream):
    """The node's end of its stream to the daemon: frames pushed in, frames pulled out."""

    def __init__(
        self, inbox: MemoryObjectReceiveStream[bytes], outbox: MemoryObjectSendStream[bytes]
    ) -> None:
        self._inbox = inbox
        self._outbox = outbox

    async def receive(self, max_bytes: int = 65536) -> bytes:
        try:
            data = await self._inbox.receive()
        except anyio.EndOfStream:
            raise anyio.EndOfStream from None
        if not data:
            raise anyio.EndOfStream
        return data

    async def send(self, item: bytes) -> None:
        await self._outbox.send(item)

    async def send_eof(self) -> None:
        self._outbox.close()

    async def aclose(self) -> None:
        self._outbox.close()
        self._inbox.close()


class NodeWorker:
    """The actor on each node: a worker (`_worker`) for the daemon, over Ray's calls."""

    def __init__(self) -> None:
        send: MemoryObjectSendStream[bytes]
        receive: MemoryObjectReceiveStream[bytes]
        self._in_send, self._in_receive = anyio.create_memory_object_stream[bytes](math.inf)
        send, receive = anyio.create_memory_object_stream[bytes](math.inf)
        self._out_send, self._out_receive = send, receive

    async def run(self) -> None:
        """Serve the daemon until it ends the stream; this node's processes die with it."""
        from ..runners._procs import contain_this_process
        from ._worker import serve_stream

        contain_this_process()
        await serve_stream(_DaemonEnd(self._in_receive, self._out_send))

    async def push(self, data: bytes) -> None:
        """A frame from the daemon (empty: the daemon's end closed)."""
        with contextlib.suppress(anyio.ClosedResourceError, anyio.BrokenResourceError):
            self._in_send.send_nowait(data)

    async def pull(self) -> AsyncIterator[bytes]:
        """The frames for the daemon, as the worker sends them."""
        async for frame in self._out_receive:
            yield frame


# -- the daemon's side ----------------------------------------------------------------------


class _NodeEnd(ByteStream):
    """The daemon's end of its stream to a node's actor."""

    def __init__(self, actor: Any) -> None:
        self._actor = actor
        self._frames: Any = None

    async def receive(self, max_bytes: int = 65536) -> bytes:
        import ray

        if self._frames is None:
            self._frames = self._actor.pull.options(num_returns="streaming").remote()
        try:
            ref = await self._frames.__anext__()
            data: bytes = await ref
        except StopAsyncIteration:
            raise anyio.EndOfStream from None
        except ray.exceptions.RayError as exc:
            raise anyio.BrokenResourceError from exc
        return data

    async def send(self, item: bytes) -> None:
        import ray

        try:
            await self._actor.push.remote(item)
        except ray.exceptions.RayError as exc:
            raise anyio.BrokenResourceError from exc

    async def send_eof(self) -> None:
        await self.send(b"")

    async def aclose(self) -> None:
        self._frames = None


@dataclass(frozen=True)
class NodeInfo:
    """A node of the cluster, as outrider sees it."""

    node_id: str
    address: str
    slots: int
    alive: bool
    labels: Mapping[str, str] = field(default_factory=dict)

    def as_json(self) -> dict[str, JsonValue]:
        """The node as JSON (`outrider nodes --json`)."""
        return {
            "node_id": self.node_id, "address": self.address, "slots": self.slots,
            "alive": self.alive, "labels": dict(self.labels),
        }  # fmt: skip


@dataclass(eq=False)
class _NodeWorker(_Worker):
    """The daemon's handle on one node's actor."""

    node: NodeInfo | None = None
    actor: Any = None
    life: Any = None
    """The actor's `run` call: it ends when the worker does."""

    lost_kind = "node_lost"

    async def open(self) -> ByteStream:
        """Start the node's actor, pinned to it."""
        import ray
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        assert self.node is not None
        strategy = NodeAffinitySchedulingStrategy(self.node.node_id, soft=False)
        remote: Any = ray.remote(NodeWorker)
        self.actor = remote.options(
            num_cpus=0, scheduling_strategy=strategy, max_concurrency=10_000
        ).remote()
        self.life = self.actor.run.remote()
        return _NodeEnd(self.actor)

    async def gone(self) -> str:
        """Wait for the actor to end (killing it after a grace period); how it ended."""
        import ray

        assert self.node is not None
        node = f"node {self.node.node_id[:12]} ({self.node.address})"
        with anyio.move_on_after(10):
            try:
                await self.life
            except ray.exceptions.RayError as exc:
                return f"its {node} was lost while it ran ({type(exc).__name__})"
            return f"its {node} ended its worker while it ran"
        ray.kill(self.actor)
        return f"its {node} stopped answering while it ran"

    async def _serve_call(self, ctx: RunContext | None, call: Call) -> JsonValue:
        """As a local worker's, but a node's processes stay the node's (see the module doc)."""
        if call.op == "track_process":
            return None
        return await super()._serve_call(ctx, call)


class RayNodes(WorkerPool):
    """Runs attempts on the nodes of a Ray cluster (see the module doc).

    Args:
        factory: `module:function` that builds a node's runners (called on each node).
        config: JSON for `factory`, sent over the cluster's authenticated channel.
        address: The head's `host:port`.
        token_file: The file holding the cluster's token (0600).
        affinity: As `WorkerPool`'s.
        limiter: As `WorkerPool`'s.
    """

    def __init__(
        self,
        factory: str,
        config: JsonValue = None,
        *,
        address: str,
        token_file: str,
        affinity: Callable[[object, str], str | None] | None = None,
        limiter: Callable[[str], CallLimiter] | None = None,
    ) -> None:
        super().__init__(factory, config, size=1, affinity=affinity, limiter=limiter)
        self.address = address
        self._token_file = token_file
        self._nodes: list[NodeInfo] = []
        self._seen = -math.inf
        self._by_node: dict[str, _NodeWorker] = {}
        self._freed = anyio.Event()

    @contextlib.asynccontextmanager
    async def lifespan(self, host: RunnerHost) -> AsyncIterator[None]:
        """Connect to the cluster as its driver; leave it after every run ended."""
        await anyio.to_thread.run_sync(connect, self.address, self._token_file)
        import ray  # after `connect`: Ray keeps the token settings it first read

        try:
            async with super().lifespan(host):
                await self._refresh(force=True)
                yield
        finally:
            await anyio.to_thread.run_sync(ray.shutdown)

    def _placed_on(self, node_id: str) -> int:
        worker = self._by_node.get(node_id)
        return 0 if worker is None or worker.lost is not None else worker.placed

    async def _refresh(self, *, force: bool = False) -> None:
        if not force and time.monotonic() - self._seen < _REFRESH:
            return
        self._nodes = await anyio.to_thread.run_sync(_list_nodes)
        self._seen = time.monotonic()
        for node in self._nodes:  # a worker on every node, warm before an attempt needs it
            if node.alive and self._tg is not None:
                self._on(node)

    async def _choose(self, key: str | None) -> _Worker:
        if (together := self._with_key(key)) is not None:
            return together
        while True:
            await self._refresh()
            free = [(n.slots - self._placed_on(n.node_id), n) for n in self._nodes if n.alive]
            best = max(free, key=lambda f: f[0], default=None)
            if best is not None and best[0] > 0:
                return self._placed(self._on(best[1]), key)
            with anyio.move_on_after(_REFRESH):  # a node may join meanwhile
                await self._freed.wait()

    def _on(self, node: NodeInfo) -> _NodeWorker:
        """The node's worker, started if it has none."""
        found = self._by_node.get(node.node_id)
        if found is not None and found.lost is None:
            return found
        worker = _NodeWorker(self, next(self._numbers), node=node)
        self._by_node[node.node_id] = worker
        return self._start(worker)

    def forget(self, worker: _Worker) -> None:
        """A node's worker is gone: its node gets a new one next time, if it is still alive."""
        super().forget(worker)
        for node_id, known in list(self._by_node.items()):
            if known is worker:
                del self._by_node[node_id]
        self._seen = -math.inf
        self._wake()

    def _unplace(self, worker: _Worker, key: str | None) -> None:
        super()._unplace(worker, key)
        self._wake()

    def _wake(self) -> None:
        """A slot may be free: every attempt waiting for one looks again."""
        self._freed.set()
        self._freed = anyio.Event()


async def list_nodes(address: str, token_file: str) -> list[NodeInfo]:
    """The nodes of the cluster at `address` that offer slots (a driver for the moment)."""
    await anyio.to_thread.run_sync(connect, address, token_file)
    import ray  # after `connect`: Ray keeps the token settings it first read

    try:
        return await anyio.to_thread.run_sync(_list_nodes)
    finally:
        await anyio.to_thread.run_sync(ray.shutdown)


def _list_nodes() -> list[NodeInfo]:
    import ray

    found = []
    for node in ray.nodes():  # type: ignore[no-untyped-call]  # Ray's own API
        slots = int(node.get("Resources", {}).get(SLOTS_RESOURCE, 0))
        if slots <= 0:
            continue
        labels = {k: v for k, v in (node.get("Labels") or {}).items() if not k.startswith("ray.")}
        found.append(NodeInfo(
            node["NodeID"], str(node.get("NodeManagerAddress", "?")), slots,
            bool(node.get("Alive")), labels,
        ))  # fmt: skip
    return found
