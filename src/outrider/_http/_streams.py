"""Server-Sent Events responses fed by a producer, ended whole when it is done.

A producer sends events into a memory stream; the response relays them. When the producer
returns (its source ended), or the daemon stops (the producer is cancelled then: an open stream
must not hold up the stop), the response sends what is left and ends the stream properly: a
client sees a whole stream, never one cut off. When the client leaves, the producer is
cancelled. The receiving end is closed however the response ends.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import anyio
from sse_starlette import EventSourceResponse, ServerSentEvent

if TYPE_CHECKING:
    from collections.abc import AsyncGenerator, Awaitable, Callable, Mapping

    from anyio.streams.memory import MemoryObjectSendStream

__all__ = ["event_stream"]


def event_stream(
    produce: Callable[[MemoryObjectSendStream[ServerSentEvent]], Awaitable[None]],
    stopping: anyio.Event,
    *,
    headers: Mapping[str, str] | None = None,
) -> EventSourceResponse:
    """The events `produce` sends, ended whole when it returns or `stopping` is set."""
    send, receive = anyio.create_memory_object_stream[ServerSentEvent](4)

    async def run() -> None:
        async with send, anyio.create_task_group() as tg:

            async def stop() -> None:
                await stopping.wait()
                tg.cancel_scope.cancel()

            tg.start_soon(stop)
            await produce(send)
            tg.cancel_scope.cancel()

    async def relay() -> AsyncGenerator[ServerSentEvent, None]:
        with receive:
            async for item in receive:
                yield item

    return EventSourceResponse(relay(), data_sender_callable=run, ping=15, headers=headers)
