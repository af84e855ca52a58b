"""In-memory cluster nodes: a `Nodes` source for `NodePool` whose nodes run in this process.

Each node runs the same worker a Ray node runs (`_worker.serve_stream`), reached through memory
streams instead of Ray's calls, so the messages, their order and the pool's placement, loss and
fencing are exercised without a cluster. Every frame waits `delay()` seconds on its way, one
relay per direction, so frames keep their order however long each waits.

`lose` ends a node as a machine's death does: its worker stops at once (nothing it had not sent
arrives), its link breaks, and it is listed as not alive until `revive`.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import anyio

from .._executors._nodes import MemoryStream, NodeInfo

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable, Mapping

    from anyio.abc import TaskGroup
    from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

__all__ = ["FakeNodes"]


@dataclass(eq=False)
class _Link:
    """The daemon's link to one in-memory node's worker."""

    stream: MemoryStream
    scopes: list[anyio.CancelScope] = field(default_factory=list)
    """The scopes of the node's worker and of its two relays."""
    over: anyio.Event = field(default_factory=anyio.Event)
    lost: bool = False
    ends: list[MemoryObjectSendStream[bytes] | MemoryObjectReceiveStream[bytes]] = field(
        default_factory=list
    )
    """Every memory stream of the link, closed when the nodes stop."""

    def scope(self) -> anyio.CancelScope:
        """A new scope of this link's tasks (`kill` cancels them all)."""
        self.scopes.append(scope := anyio.CancelScope())
        return scope

    async def ended(self) -> str:
        await self.over.wait()
        return "was lost (the test lost it)" if self.lost else "ended its worker"

    def kill(self) -> None:
        for scope in self.scopes:
            scope.cancel()


class FakeNodes:
    """In-memory nodes (see the module doc); `add` nodes before or while the pool runs.

    Args:
        delay: Seconds each frame waits on its way (called per frame); None: none.
    """

    def __init__(self, *, delay: Callable[[], float] | None = None) -> None:
        self._delay = delay
        self._nodes: dict[str, NodeInfo] = {}
        self._links: dict[str, list[_Link]] = {}
        self._every: list[_Link] = []
        self._tg: TaskGroup | None = None
        self.opened: list[str] = []
        """The node of each worker started, in order."""

    def add(self, node_id: str, *, slots: int = 2, labels: Mapping[str, str] | None = None) -> None:
        """A node joins (or comes back) with `slots` and `labels`."""
        self._nodes[node_id] = NodeInfo(node_id, f"memory:{node_id}", slots, True, labels or {})

    def lose(self, node_id: str) -> None:
        """The node dies: its workers stop at once and their links break."""
        node = self._nodes[node_id]
        self._nodes[node_id] = NodeInfo(node_id, node.address, node.slots, False, node.labels)
        for link in self._links.pop(node_id, []):
            link.lost = True
            link.kill()

    def revive(self, node_id: str) -> None:
        """A lost node comes back, as it was."""
        node = self._nodes[node_id]
        self._nodes[node_id] = NodeInfo(node_id, node.address, node.slots, True, node.labels)

    @contextlib.asynccontextmanager
    async def lifespan(self) -> AsyncIterator[None]:
        """The nodes run in this task group."""
        try:
            async with anyio.create_task_group() as tg:
                self._tg = tg
                try:
                    yield
                finally:
                    self._tg = None
                    tg.cancel_scope.cancel()
        finally:
            for link in self._every:  # also those whose tasks were stopped before they ran
                for end in link.ends:
                    end.close()

    async def nodes(self) -> list[NodeInfo]:
        """Every node added, alive or not."""
        return list(self._nodes.values())

    async def open(self, node: NodeInfo) -> _Link:
        """Start a worker on `node` (in this process)."""
        if self._tg is None or not self._nodes[node.node_id].alive:
            raise OSError(f"node {node.node_id} is not there")
        to_node = anyio.create_memory_object_stream[bytes](math.inf)
        relayed_in = anyio.create_memory_object_stream[bytes](math.inf)
        from_node = anyio.create_memory_object_stream[bytes](math.inf)
        relayed_out = anyio.create_memory_object_stream[bytes](math.inf)
        link = _Link(MemoryStream(relayed_out[1], to_node[0]))
        link.ends = [*to_node, *relayed_in, *from_node, *relayed_out]
        self._every.append(link)
        self._links.setdefault(node.node_id, []).append(link)
        self.opened.append(node.node_id)
        self._tg.start_soon(self._serve, link, MemoryStream(relayed_in[1], from_node[0]))
        self._tg.start_soon(self._relay, link, to_node[1], relayed_in[0])
        self._tg.start_soon(self._relay, link, from_node[1], relayed_out[0])
        return link

    async def _serve(self, link: _Link, stream: MemoryStream) -> None:
        from .._executors._worker import serve_stream

        try:
            with link.scope():
                await serve_stream(stream)
        finally:
            await stream.aclose()
            link.over.set()

    async def _relay(
        self,
        link: _Link,
        inbox: MemoryObjectReceiveStream[bytes],
        outbox: MemoryObjectSendStream[bytes],
    ) -> None:
        """Forward frames in order, each after its delay; a lost node's frames go nowhere."""
        with link.scope(), inbox, outbox:
            async for frame in inbox:
                if self._delay is not None:
                    await anyio.sleep(self._delay())  # sleep-ok: the network's delay, simulated
                await outbox.send(frame)
