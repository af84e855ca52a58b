"""`RayCluster`: attempts run on the nodes of a Ray cluster (`cluster` extra).

The `Nodes` source of a `NodePool` (`_nodes`) on Ray: one actor per node (`NodeWorker`,
pinned to it) runs the same worker (`_worker.serve_stream`) on the actor's event loop, and the
same messages travel as the same frames: daemon → node as actor calls (`push`, awaited one by
one, so in order), node → daemon as one streaming call (`pull`). Placement, node loss and the
records of where attempts ran are `NodePool`'s.

Invariants:
- A node's slots are its `outrider_slots` resource; a node is lost when its actor dies (its
  processes were killed, its machine fell silent past Ray's health checks, it left).
- A node contains its processes as the daemon does (subreaper and guardian): when its actor
  dies — the daemon died and Ray ended its actors, or Ray killed it — every process its tasks
  started is stopped.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
from typing import TYPE_CHECKING, Any

import anyio
import anyio.to_thread
from anyio.abc import ByteStream

from ._nodes import MemoryStream, NodeInfo

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream


__all__ = ["SLOTS_RESOURCE", "NodeWorker", "RayCluster", "connect", "list_nodes"]

SLOTS_RESOURCE = "outrider_slots"
"""The Ray resource a node offers outrider: its slots (attempts it runs at once)."""


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
        from .._collector import settle_collector
        from ..runners._procs import contain_this_process
        from ._worker import serve_stream

        contain_this_process()
        stream = MemoryStream(self._in_receive, self._out_send)
        await serve_stream(stream, on_ready=settle_collector)  # the actor's process is the node's

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


class _RayLink:
    """A node's actor, as a `NodeLink`."""

    def __init__(self, actor: Any) -> None:
        self._actor = actor
        self._life = actor.run.remote()  # ends when the node's worker does
        self.stream: ByteStream = _NodeEnd(actor)

    async def ended(self) -> str:
        import ray

        try:
            await self._life
        except ray.exceptions.RayError as exc:
            return f"was lost ({type(exc).__name__})"
        return "ended its worker"

    def kill(self) -> None:
        import ray

        ray.kill(self._actor)


class RayCluster:
    """The nodes of a Ray cluster, as a `Nodes` source: one `NodeWorker` actor per node.

    Args:
        address: The head's `host:port`.
        token_file: The file holding the cluster's token (0600).
    """

    def __init__(self, address: str, token_file: str) -> None:
        self.address = address
        self._token_file = token_file

    @contextlib.asynccontextmanager
    async def lifespan(self) -> AsyncIterator[None]:
        """Connect to the cluster as its driver; leave it on the way out."""
        await anyio.to_thread.run_sync(connect, self.address, self._token_file)
        import ray  # after `connect`: Ray keeps the token settings it first read

        try:
            yield
        finally:
            await anyio.to_thread.run_sync(ray.shutdown)

    async def nodes(self) -> list[NodeInfo]:
        """The cluster's nodes that offer slots (its `outrider_slots` resource)."""
        return await anyio.to_thread.run_sync(_list_nodes)

    async def open(self, node: NodeInfo) -> _RayLink:
        """Start the node's actor, pinned to it."""
        import ray
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        strategy = NodeAffinitySchedulingStrategy(node.node_id, soft=False)
        remote: Any = ray.remote(NodeWorker)
        return _RayLink(remote.options(
            num_cpus=0, scheduling_strategy=strategy, max_concurrency=10_000
        ).remote())  # fmt: skip


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
