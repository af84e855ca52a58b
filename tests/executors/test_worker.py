"""The worker's side of the channel, driven message by message from a test."""

from __future__ import annotations

import os
import shutil
import socket
import struct
import subprocess
import sys
from pathlib import Path

import anyio
import pytest
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


_TAKES_ITS_TURN = """
import sys, time
from outrider._executors._worker import lower_priority

def group() -> str:
    with open("/proc/self/autogroup") as f:
        return f.read()

deadline = time.monotonic() + 10
while True:  # a change of its own first (another process's may have just been taken)
    try:
        with open("/proc/self/autogroup", "w") as f:
            f.write("5")
        break
    except BlockingIOError:
        if time.monotonic() > deadline:
            sys.exit("the kernel took no change")
        time.sleep(0.05)  # sleep-ok: the kernel's pace, polled with a deadline
lower_priority(10)  # within 0.1 s of the last change: the kernel says to try again
while not group().rstrip().endswith("nice 10"):
    if time.monotonic() > deadline:
        sys.exit("its session still runs at " + group())
    time.sleep(0.05)  # sleep-ok: another thread's write, polled with a deadline
"""


def test_a_worker_without_privileges_waits_its_turn_to_lower_its_sessions_priority() -> None:
    """Without CAP_SYS_ADMIN the kernel takes one session priority change per 0.1 s."""
    if os.geteuid() != 0 or not shutil.which("setpriv"):
        pytest.skip("dropping CAP_SYS_ADMIN needs root and setpriv (util-linux)")
    if not Path("/proc/self/autogroup").exists():
        pytest.skip("this kernel does not group CPU time by session (autogroup)")
    argv = ["setpriv", "--bounding-set=-sys_admin", sys.executable, "-c", _TAKES_ITS_TURN]
    done = subprocess.run(
        argv, start_new_session=True, capture_output=True, text=True, timeout=60, check=False
    )  # its own session: its own group, not the test's
    assert done.returncode == 0, done.stderr
