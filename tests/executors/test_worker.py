"""The worker's side of the channel, driven message by message from a test."""

from __future__ import annotations

import socket
import struct

import anyio
from anyio.abc import UNIXSocketStream

from outrider._executors._channel import Channel
from outrider._executors._context import Calls
from outrider._executors._messages import Cancel, Cancelled, Start, encode
from outrider._executors._worker import Worker
from tests.executors.probe import LocalHost, Probe


def _frame(message: Start | Cancel) -> bytes:
    data = encode(message)
    return struct.pack(">I", len(data)) + data


async def test_a_cancel_right_behind_its_start_stops_the_run() -> None:
    left, right = socket.socketpair()
    left_raw = await UNIXSocketStream.from_socket(left)
    daemon = Channel(left_raw, incoming_from_worker=True)
    channel = Channel(await UNIXSocketStream.from_socket(right), incoming_from_worker=False)
    worker = Worker(channel, Calls(channel), [Probe(LocalHost({}))])
    async with anyio.create_task_group() as tg:
        tg.start_soon(daemon.run)
        tg.start_soon(channel.run)
        tg.start_soon(worker.serve, tg)
        spec = {"kind": "shell", "command": "wait"}
        start = Start(task_id="t", attempt=1, session="s", resuming=False, kind="shell", spec=spec)
        await left_raw.send(_frame(start) + _frame(Cancel(task_id="t")))  # read as one
        with anyio.fail_after(10):
            while not isinstance(await daemon.receive(), Cancelled):
                pass
        daemon.close()  # the worker's serve returns at the end of the stream
        worker.outbound.close()
        channel.close()
    await daemon.aclose()
    await channel.aclose()
