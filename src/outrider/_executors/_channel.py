"""A channel of messages over a byte stream: length-prefixed JSON frames, sent in order.

Invariants:
- `post` never blocks and never reorders: messages queue in an unbounded outbox that one
  writer (`run`) sends, so sync code (a runner's reports, a limiter's notes) can post too.
- The writer sends what is queued together, in one write of up to `WRITE_BYTES` (one system
  call, one read on the other side, for many messages), never waiting for more to come.
- The reader takes all that the stream has (up to `READ_BYTES`) in one read and returns its
  complete frames one by one. The daemon's reader does not wait for the loop in between,
  except before one in every `FRAMES_PER_TURN`: a batch of many messages costs its loop one
  step per read, not two per message, and never holds it for long. A worker's reader lets
  its loop run others before every frame, so a burst of starts is taken in step with the
  runs it already has (taken 16 at a time, 500 agents' events came 4-6 times later).
- `receive` returns None once the other side is gone (end of stream, a broken pipe, a frame
  cut short); a frame that is not a message is a bug of the other side and raises.
"""

from __future__ import annotations

import contextlib
import math
import struct
from typing import TYPE_CHECKING

import anyio
import anyio.lowlevel

from ._messages import decode, encode

if TYPE_CHECKING:
    from anyio.abc import ByteStream
    from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

    from ._messages import Message

__all__ = ["Channel"]

_HEADER = struct.Struct(">I")
MAX_FRAME = 256 * 1024 * 1024
"""A frame longer than this is refused: the other side is broken."""
WRITE_BYTES = 256 * 1024
"""The writer stops gathering queued frames into one write beyond this many bytes."""
READ_BYTES = 256 * 1024
"""The most one read takes from the stream (asyncio's own read size)."""
FRAMES_PER_TURN = 16
"""Frames returned from what was read before the reader lets the loop run others."""


class Channel:
    """Messages over `stream`; `incoming_from_worker` says which side's messages it receives."""

    def __init__(self, stream: ByteStream, *, incoming_from_worker: bool) -> None:
        self._stream = stream
        self._read = bytearray()
        """Bytes read and not returned yet: from `_start` on (what is before it is consumed)."""
        self._start = 0
        self._in_turn = 0
        """Frames returned since the reader last let the loop run."""
        self._from_worker = incoming_from_worker
        self._per_turn = FRAMES_PER_TURN if incoming_from_worker else 1
        send: MemoryObjectSendStream[Message | None]
        receive: MemoryObjectReceiveStream[Message | None]
        send, receive = anyio.create_memory_object_stream(math.inf)
        self._outbox, self._queued = send, receive
        self.sent = 0

    def post(self, message: Message) -> None:
        """Queue `message` for sending (dropped once the channel is closed)."""
        self._put(message)

    def close(self) -> None:
        """Send what is queued, then end the stream (the writer returns)."""
        self._put(None)

    def _put(self, item: Message | None) -> None:
        with contextlib.suppress(anyio.ClosedResourceError, anyio.BrokenResourceError):
            self._outbox.send_nowait(item)

    async def run(self) -> None:
        """The writer: sends queued messages in order until `close` or the stream breaks."""
        try:
            with self._queued:
                async for message in self._queued:
                    frames, count, closing = self._gather(message)
                    if frames:
                        try:
                            await self._stream.send(b"".join(frames))
                        except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
                            break
                    self.sent += count
                    if closing:
                        break
        finally:  # also when it is stopped: later posts are dropped
            self._outbox.close()
        with anyio.CancelScope(shield=True):
            with contextlib.suppress(anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
                await self._stream.send_eof()

    def _gather(self, first: Message | None) -> tuple[list[bytes], int, bool]:
        """`first` and the messages queued behind it, as frames for one write.

        Returns the frames, how many messages they hold, and whether `close` was reached.
        """
        frames: list[bytes] = []
        size, message = 0, first
        while message is not None:
            data = encode(message)
            frames += (_HEADER.pack(len(data)), data)
            size += _HEADER.size + len(data)
            if size >= WRITE_BYTES:
                break
            try:
                message = self._queued.receive_nowait()
            except (anyio.WouldBlock, anyio.EndOfStream):  # it ends on the next wait
                break
        return frames, len(frames) // 2, message is None

    async def receive(self) -> Message | None:
        """The next message, or None once the other side is gone."""
        try:
            data = await self._frame()
        except (anyio.EndOfStream, anyio.BrokenResourceError, anyio.ClosedResourceError,
                OSError):  # fmt: skip
            return None
        return decode(data, from_worker=self._from_worker)

    async def _frame(self) -> bytes:
        """The next frame's body, from what was read if it holds one, else after reading more.

        Raises:
            anyio.EndOfStream: The stream ended (a frame cut short ends it too).
        """
        if self._in_turn >= self._per_turn:  # before a frame is taken: a cancel loses none
            self._in_turn = 0
            await anyio.lowlevel.checkpoint()
        while (frame := self._complete_frame()) is None:
            if self._start:  # what was returned goes, in one move per read
                del self._read[: self._start]
                self._start = 0
            self._read += await self._stream.receive(READ_BYTES)
            self._in_turn = 0
        self._in_turn += 1
        return frame

    def _complete_frame(self) -> bytes | None:
        """The body of the frame at `_start` if it was read whole (then consumed), else None."""
        start, read = self._start, self._read
        if len(read) - start < _HEADER.size:
            return None
        (size,) = _HEADER.unpack_from(read, start)
        if size > MAX_FRAME:
            raise ValueError(f"a frame of {size} bytes is over the limit of {MAX_FRAME}")
        end = start + _HEADER.size + size
        if len(read) < end:
            return None
        self._start = end
        return bytes(read[start + _HEADER.size : end])

    async def aclose(self) -> None:
        """Close the stream at once (pending messages are dropped)."""
        self._outbox.close()
        self._queued.close()
        await self._stream.aclose()
