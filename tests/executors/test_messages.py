"""The messages and the channel between the daemon and a worker, and the daemon's composition."""

from __future__ import annotations

import itertools
import socket
import struct

import anyio
import anyio.lowlevel
import pytest
from anyio.abc import ByteStream, UNIXSocketStream
from pydantic import ValidationError

from outrider._daemon._config import Config
from outrider._daemon._runners import executors, runners
from outrider._executors._channel import FRAMES_PER_TURN, MAX_FRAME, Channel
from outrider._executors._messages import (
    Call,
    Cancel,
    Done,
    Failed,
    Message,
    Output,
    Start,
    Sweep,
    Swept,
    UsageReport,
    decode,
    encode,
)  # fmt: skip
from outrider._executors._pool import WorkerPool
from outrider._types._task import Usage


@pytest.mark.parametrize(
    "message",
    [
        Start(task_id="t", attempt=2, session="me/s", resuming=True, kind="agent",
              spec={"kind": "agent", "agent": "a", "prompt": "p"}, guarded=True),
        Output(task_id="t", data=b"\xff\x00 not utf-8"),
        Output(task_id="t"),
        Call(call_id=8, task_id="t", op="save_transcript", blob=b'{"messages": [\x00]}'),
        UsageReport(task_id="t", usage=Usage(input_tokens=1, cost=0.25)),
        Call(call_id=7, task_id="t", op="spawn", args={"spec": {"kind": "shell"}}),
        Failed(task_id="t", message="m", kind="worker_lost", retryable=True),
        Sweep(sweep_id=3, markers=["t.1", "u.2"], grace_period=5.0),
        Swept(sweep_id=3, found=2),
    ],
)  # fmt: skip
def test_every_message_comes_back_as_it_was_sent(message: object) -> None:
    from_worker = not isinstance(message, Start | Sweep)
    assert decode(encode(message), from_worker=from_worker) == message  # type: ignore[arg-type]


def test_a_message_from_the_wrong_side_is_refused() -> None:
    with pytest.raises(ValidationError):
        decode(encode(Done(task_id="t")), from_worker=False)


def test_bulk_bytes_travel_raw_after_the_json() -> None:
    data = bytes(range(256)) * 4
    frame = encode(Output(task_id="t", data=data))
    assert frame == b'{"type":"output","task_id":"t"}\x00' + data  # not base64, not escaped
    call = Call(call_id=3, task_id="t", op="save_transcript", blob=data)
    assert decode(encode(call), from_worker=True) == call
    with pytest.raises(ValueError, match="'done' message carries no bytes"):
        decode(encode(Done(task_id="t")) + b"\x00x", from_worker=True)


class _CountedStream(ByteStream):
    """A stream that counts its writes and reads."""

    def __init__(self, inner: ByteStream) -> None:
        self.inner = inner
        self.writes = 0
        self.reads = 0

    async def send(self, item: bytes) -> None:
        self.writes += 1
        await self.inner.send(item)

    async def receive(self, max_bytes: int = 65536) -> bytes:
        self.reads += 1
        return await self.inner.receive(max_bytes)

    async def send_eof(self) -> None:
        await self.inner.send_eof()

    async def aclose(self) -> None:
        await self.inner.aclose()


async def test_what_is_queued_goes_out_in_one_write_and_is_taken_in_one_read() -> None:
    left, right = socket.socketpair()
    read = _CountedStream(await UNIXSocketStream.from_socket(left))
    daemon = Channel(read, incoming_from_worker=True)
    counted = _CountedStream(await UNIXSocketStream.from_socket(right))
    worker = Channel(counted, incoming_from_worker=False)
    for n in range(50):
        worker.post(Output(task_id="t", data=str(n).encode()))
    worker.post(Done(task_id="t"))
    worker.close()
    await worker.run()
    got = []
    while (message := await daemon.receive()) is not None:
        got.append(message)
    assert [int(m.data) for m in got[:-1] if isinstance(m, Output)] == list(range(50))
    assert got[-1] == Done(task_id="t")
    assert (counted.writes, worker.sent) == (1, 51)
    assert read.reads <= 3  # the batch (at most split in two), then the end; not two per frame
    await daemon.aclose()
    await worker.aclose()


async def _pair() -> tuple[Channel, Channel]:
    left, right = socket.socketpair()
    daemon = Channel(await UNIXSocketStream.from_socket(left), incoming_from_worker=True)
    worker = Channel(await UNIXSocketStream.from_socket(right), incoming_from_worker=False)
    return daemon, worker


async def test_messages_arrive_in_order_and_the_end_is_seen() -> None:
    daemon, worker = await _pair()
    async with anyio.create_task_group() as tg:
        tg.start_soon(worker.run)
        for n in range(50):
            worker.post(Output(task_id="t", data=str(n).encode()))
        worker.close()
        got = []
        while (message := await daemon.receive()) is not None:
            assert isinstance(message, Output)
            got.append(int(message.data))
    assert got == list(range(50))
    assert worker.sent == 50
    worker.post(Done(task_id="t"))  # after the close: dropped, never raised
    await daemon.aclose()
    await worker.aclose()


@pytest.mark.parametrize(("to_daemon", "per_turn"), [(True, FRAMES_PER_TURN), (False, 1)])
async def test_a_long_batch_of_frames_lets_the_loop_run_others_between(
    to_daemon: bool, per_turn: int
) -> None:
    daemon, worker = await _pair()
    sender, receiver = (worker, daemon) if to_daemon else (daemon, worker)
    for n in range(100):
        sender.post(Output(task_id="t", data=b"x") if to_daemon else Cancel(task_id=str(n)))
    sender.close()
    await sender.run()
    got: list[Message] = []
    turns: list[int] = []  # how many frames were received at each turn of another task

    async def other() -> None:
        while True:
            turns.append(len(got))
            await anyio.lowlevel.checkpoint()

    async with anyio.create_task_group() as tg:
        tg.start_soon(other)
        while (message := await receiver.receive()) is not None:
            got.append(message)
        tg.cancel_scope.cancel()
    assert len(got) == 100
    gaps = [after - before for before, after in itertools.pairwise(turns)]
    assert max(gaps) == per_turn
    await daemon.aclose()
    await worker.aclose()


async def test_a_frame_over_the_limit_or_cut_short_ends_the_channel() -> None:
    left, right = socket.socketpair()
    with right:
        daemon = Channel(await UNIXSocketStream.from_socket(left), incoming_from_worker=True)
        right.sendall(struct.pack(">I", MAX_FRAME + 1))
        with pytest.raises(ValueError, match="over the limit"):
            await daemon.receive()
        await daemon.aclose()
    left, right = socket.socketpair()
    with right:
        daemon = Channel(await UNIXSocketStream.from_socket(left), incoming_from_worker=True)
        right.sendall(struct.pack(">I", 100) + b"{}")
    assert await daemon.receive() is None
    await daemon.aclose()


def test_the_daemon_runs_agents_in_a_pool_unless_told_not_to() -> None:
    composed = runners(Config(), {})
    (pool,) = executors(Config(), {}, composed).values()
    assert isinstance(pool, WorkerPool)
    assert pool.size >= 1
    assert executors(Config(agent_workers=0), {}, composed) == {}
    (sized,) = executors(Config(agent_workers=3), {}, composed).values()
    assert isinstance(sized, WorkerPool)
    assert sized.size == 3
    assert pool.nice == 10
    (level,) = executors(Config(agent_worker_nice=0), {}, composed).values()
    assert isinstance(level, WorkerPool)
    assert level.nice == 0
    with pytest.raises(ValidationError, match="agent_worker_nice"):
        Config(agent_worker_nice=20)
    with pytest.raises(ValueError, match="at least 1"):
        WorkerPool("x:y", size=0)
