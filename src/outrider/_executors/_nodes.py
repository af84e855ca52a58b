"""`NodePool`: attempts run on the nodes of a cluster, each node a worker reached through a link.

A node is a worker like `WorkerPool`'s, reached through a `NodeLink` (a byte stream to the same
worker, `_worker.serve_stream`, speaking the same messages) instead of a socket to a local
process. Where nodes come from, and how a link to one is opened, is a `Nodes` source: Ray's
(`_ray.RayCluster`), or in-memory nodes for tests (`outrider.testing.FakeNodes`). Everything
else is `WorkerPool`'s: the engine, the store, limits, timers, events, child tasks, logs,
leases and model limiters stay in the daemon, so limits and priorities hold cluster-wide.

Invariants:
- Placement: among the live nodes that carry every label the task asks for (`placement`), the
  one with the most free slots (its slots less the attempts placed there); an attempt waits
  while no such node has a free slot, and looks again when a slot frees or a node joins.
  Tasks of one delegation tree go to the node of its root while one of them runs there (its
  budget stays exact).
- Each attempt's node is recorded (`PlacedContext.placed_on`, queued for the store ahead of the
  attempt's end) before it starts there, and the processes it reports are recorded as (node,
  pid, start time): a remote pid is never taken for a process of this machine.
- A node lost (its link broke: its worker was killed, its machine fell silent past the
  source's health checks, it left) ends the attempts it ran as `node_lost`, retryable. A node
  that comes back gets a new link; nothing from the old one is read again, so it never
  finishes an attempt that was retried elsewhere.
- A node whose worker was lost is passed over for `_DOUBTED` seconds while another node has a
  free slot: a frozen machine is still listed alive until the source's health checks give
  up on it (Ray's take about a minute), and a retry placed there would wait for them too.
"""

from __future__ import annotations

import contextlib
import math
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol, cast, runtime_checkable

import anyio
from anyio.abc import ByteStream

from .._logging import logger
from ..runners._protocol import RunContext
from ._pool import _STOP_GRACE, WorkerPool, _Worker

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable, Mapping
    from contextlib import AbstractAsyncContextManager

    from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream
    from pydantic import JsonValue

    from ..runners._protocol import Runner, RunnerHost
    from ._messages import Call
    from ._protocol import CallLimiter

__all__ = ["MemoryStream", "NodeInfo", "NodeLink", "NodePool", "Nodes", "PlacedContext"]

_REFRESH = 1.0
"""Seconds the list of nodes is trusted before it is asked for again."""
_DOUBTED = 60.0
"""Seconds after its worker was lost that a node is used only when no other has room."""


@dataclass(frozen=True)
class NodeInfo:
    """A node of the cluster, as outrider sees it."""

    node_id: str
    address: str
    slots: int
    alive: bool
    labels: Mapping[str, str] = field(default_factory=dict)

    def carries(self, wanted: Mapping[str, str]) -> bool:
        """Whether the node carries every label of `wanted`."""
        return all(self.labels.get(k) == v for k, v in wanted.items())

    def as_json(self) -> dict[str, JsonValue]:
        """The node as JSON (`outrider nodes --json`)."""
        return {
            "node_id": self.node_id, "address": self.address, "slots": self.slots,
            "alive": self.alive, "labels": dict(self.labels),
        }  # fmt: skip


class MemoryStream(ByteStream):
    """A byte stream over two memory streams: frames in from one, out to the other.

    An empty frame in, or the other side closing, ends the stream.
    """

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


class NodeLink(Protocol):
    """One worker on one node: the stream to it, and its end."""

    @property
    def stream(self) -> ByteStream:
        """Frames to and from the node's worker."""
        ...

    async def ended(self) -> str:
        """Wait for the node's worker to end; how it ended, in words (`was lost (…)`)."""
        ...

    def kill(self) -> None:
        """End the node's worker now (it did not end in time)."""
        ...


class Nodes(Protocol):
    """Where a pool's nodes come from."""

    def lifespan(self) -> AbstractAsyncContextManager[None]:
        """Join the cluster; leave it on the way out."""
        ...

    async def nodes(self) -> list[NodeInfo]:
        """The cluster's nodes that offer slots, alive or not."""
        ...

    async def open(self, node: NodeInfo) -> NodeLink:
        """Start a worker on `node`.

        Raises:
            OSError: It could not start.
        """
        ...


@runtime_checkable
class PlacedContext(RunContext, Protocol):
    """A run's context that records where its attempt runs (the daemon's own)."""

    @property
    def keys(self) -> tuple[str, ...]:
        """The keys the task holds."""
        ...

    async def placed_on(self, node: str) -> None:
        """Record the node this attempt runs on before it starts there (queued for the store)."""
        ...

    async def track_remote_process(self, node: str, pid: int, created: float | None) -> None:
        """Record a process of this attempt on `node` (its pid, its start time there)."""
        ...


@dataclass(eq=False)
class _NodeWorker(_Worker):
    """The daemon's handle on one node's worker."""

    node: NodeInfo | None = None
    link: NodeLink | None = None

    lost_kind = "node_lost"

    @property
    def where(self) -> str:
        assert self.node is not None
        return f"node {self.node.node_id[:12]} ({self.node.address})"

    async def open(self) -> ByteStream:
        """Start the node's worker through the pool's source."""
        assert self.node is not None
        self.link = await cast("NodePool", self.pool).source.open(self.node)
        return self.link.stream

    async def gone(self) -> str:
        """Wait for the node's worker to end (killing it after a grace period); how it ended."""
        assert self.link is not None
        with anyio.move_on_after(_STOP_GRACE):
            return f"its {self.where} {await self.link.ended()} while it ran"
        self.link.kill()
        return f"its {self.where} stopped answering while it ran"

    async def _serve_call(self, ctx: RunContext | None, call: Call) -> JsonValue:
        """As a local worker's, but a node's processes are recorded as the node's."""
        if call.op != "track_process":
            return await super()._serve_call(ctx, call)
        if isinstance(ctx, PlacedContext):
            assert self.node is not None
            created = call.args.get("created")
            await ctx.track_remote_process(
                self.node.node_id, cast("int", call.args["pid"]),
                None if created is None else float(cast("float", created)),
            )  # fmt: skip
        return None


class NodePool(WorkerPool):
    """Runs attempts on the nodes of a cluster (see the module doc).

    Args:
        factory: `module:function` that builds a node's runners (called on each node).
        config: JSON for `factory`, sent over the source's channel.
        nodes: Where the nodes come from.
        placement: The labels a node must carry to run a task, from its spec and the keys it
            holds (its runner's default keys where the context does not say); None: any node.
            It raises `RunFailure` for a task no node may run.
        affinity: As `WorkerPool`'s.
        limiter: As `WorkerPool`'s.
    """

    def __init__(
        self,
        factory: str,
        config: JsonValue = None,
        *,
        nodes: Nodes,
        placement: Callable[[object, tuple[str, ...]], Mapping[str, str]] | None = None,
        affinity: Callable[[object, str], str | None] | None = None,
        limiter: Callable[[str], CallLimiter] | None = None,
    ) -> None:
        super().__init__(factory, config, size=1, affinity=affinity, limiter=limiter)
        self.source = nodes
        self._placement = placement
        self._nodes: list[NodeInfo] = []
        self._seen = -math.inf
        self._by_node: dict[str, _NodeWorker] = {}
        self._freed = anyio.Event()
        self._lost_at: dict[str, float] = {}
        """When each node's worker was last lost (monotonic seconds)."""

    @contextlib.asynccontextmanager
    async def lifespan(self, host: RunnerHost) -> AsyncIterator[None]:
        """Join the cluster; leave it after every run ended."""
        async with self.source.lifespan(), super().lifespan(host):
            await self._refresh(force=True)
            yield

    def nodes(self) -> list[tuple[NodeInfo, int]]:
        """The nodes last seen, each with the attempts running there."""
        return [(node, self._placed_on(node.node_id)) for node in self._nodes]

    async def stop_leftovers(self, node_id: str, markers: list[str], grace_period: float) -> bool:
        """Have `node_id` stop what these attempts of a dead daemon left there (a recovery).

        Returns False if this pool does not reach that node (unknown, or not alive): then its
        worker died with the daemon, and its guardian stopped what ran there.
        """
        await self._refresh(force=True)
        node = next((n for n in self._nodes if n.node_id == node_id and n.alive), None)
        if node is None or self._tg is None:
            return False
        found = await self._on(node).sweep(markers, grace_period)
        logger.info("node %s stopped %s process(es) left by %d attempt(s) of a dead daemon",
                    node_id[:12], "?" if found is None else found, len(markers))  # fmt: skip
        return found is not None

    def _placed_on(self, node_id: str) -> int:
        worker = self._by_node.get(node_id)
        return 0 if worker is None or worker.lost is not None else worker.placed

    async def _refresh(self, *, force: bool = False) -> None:
        if not force and time.monotonic() - self._seen < _REFRESH:
            return
        self._nodes = await self.source.nodes()
        self._seen = time.monotonic()
        for node in self._nodes:  # a worker on every node, warm before an attempt needs it
            if node.alive and self._tg is not None:
                self._on(node)

    async def _choose(
        self, key: str | None, runner: Runner, spec: object, ctx: RunContext
    ) -> _Worker:
        if (together := self._with_key(key)) is not None:
            return together
        wanted: Mapping[str, str] = {}
        if self._placement is not None:
            keys = ctx.keys if isinstance(ctx, PlacedContext) else runner.default_keys(spec)
            wanted = self._placement(spec, keys)
        told = False
        while True:
            await self._refresh()
            free = [
                (n.slots - self._placed_on(n.node_id), n)
                for n in self._nodes if n.alive and n.carries(wanted)
            ]  # fmt: skip
            roomy = [f for f in free if f[0] > 0]
            trusted = [f for f in roomy if not self._doubted(f[1].node_id)]
            best = max(trusted or roomy, key=lambda f: f[0], default=None)
            if best is not None:
                return self._placed(self._on(best[1]), key)
            if not free and not told:
                told = True
                labels = ",".join(f"{k}={v}" for k, v in sorted(wanted.items()))
                logger.warning("a %s task waits for a node with labels %s", runner.kind, labels)
            with anyio.move_on_after(_REFRESH):  # a node may join meanwhile
                await self._freed.wait()

    async def _started(self, worker: _Worker, ctx: RunContext) -> None:
        if isinstance(worker, _NodeWorker) and isinstance(ctx, PlacedContext):
            assert worker.node is not None
            await ctx.placed_on(worker.node.node_id)

    def _on(self, node: NodeInfo) -> _NodeWorker:
        """The node's worker, started if it has none."""
        found = self._by_node.get(node.node_id)
        if found is not None and found.lost is None:
            return found
        worker = _NodeWorker(self, next(self._numbers), node=node)
        self._by_node[node.node_id] = worker
        return self._start(worker)

    def _doubted(self, node_id: str) -> bool:
        """Whether the node's worker was lost in the last `_DOUBTED` seconds."""
        return time.monotonic() - self._lost_at.get(node_id, -math.inf) < _DOUBTED

    def forget(self, worker: _Worker) -> None:
        """A node's worker is gone: its node gets a new one next time, if it is still alive."""
        super().forget(worker)
        for node_id, known in list(self._by_node.items()):
            if known is worker:
                del self._by_node[node_id]
                self._lost_at[node_id] = time.monotonic()
        self._seen = -math.inf
        self._wake()

    def _unplace(self, worker: _Worker, key: str | None) -> None:
        super()._unplace(worker, key)
        self._wake()

    def _wake(self) -> None:
        """A slot may be free: every attempt waiting for one looks again."""
        self._freed.set()
        self._freed = anyio.Event()
