"""Small async helpers: pinning the async library, waiting for a signal to stop, child watching."""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
from typing import TYPE_CHECKING

import anyio
import anyio.from_thread

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

try:
    import sniffio
except ImportError:  # pragma: no cover - then anyio finds its library cheaply by itself
    sniffio = None  # type: ignore[assignment]  # checked before use

__all__ = ["STOP_SIGNALS", "OnLoop", "next_stop_signal", "pidfd_child_watcher", "pin_async_library"]

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
"""Ctrl-C, a polite kill, a closed terminal: each asks a command or the daemon to stop."""


def pin_async_library() -> None:
    """Pin the async library in the current task's context, for it and the tasks it starts.

    anyio asks sniffio which async library runs each time it makes a cancel scope or an event,
    and sniffio finds asyncio by looking up the current task; pinning the answer (as `anyio.run`
    does) saves that lookup. Call it first thing in a long-lived task of outrider's own: the
    context is that task's copy, so the host's is left as it was.
    """
    if sniffio is not None:
        sniffio.current_async_library_cvar.set(sniffio.current_async_library())


async def next_stop_signal() -> signal.Signals:
    """Wait for the next of `STOP_SIGNALS`; while waiting, they do not end the process."""
    with anyio.open_signal_receiver(*STOP_SIGNALS) as signals:
        async for signum in signals:
            return signal.Signals(signum)
    raise AssertionError("a signal receiver never ends")  # pragma: no cover


def _pidfds_work() -> bool:
    try:
        os.close(os.pidfd_open(os.getpid()))
    except (AttributeError, OSError):  # pragma: no cover - a kernel before 5.3
        return False
    return True


@contextlib.contextmanager
def pidfd_child_watcher() -> Iterator[None]:
    """Within it, the running asyncio loop awaits its child processes through pidfds.

    Python 3.12 does so by default; 3.11's default watcher starts a thread per child process
    to wait for it, which costs every spawn a thread start and the loop a wait for it (the
    shell runner's throughput doubled without; it now awaits its leaders through their pidfds
    itself, and this serves the other children: worker processes, and every child on a kernel
    without pidfds). The watcher is process-wide and serves one
    loop, so only a process outrider owns enters it (the daemon, `outrider run`), in its
    loop; the previous watcher is back on the way out.
    """
    if sys.version_info >= (3, 12) or not _pidfds_work():  # pragma: no cover - 3.12 has it
        yield
        return
    import asyncio

    previous = asyncio.get_child_watcher()
    watcher = asyncio.PidfdChildWatcher()
    watcher.attach_loop(asyncio.get_running_loop())
    asyncio.set_child_watcher(watcher)
    try:
        yield
    finally:
        asyncio.set_child_watcher(previous)


class OnLoop:
    """Calls a function on the event loop of the thread that made it, from any thread."""

    def __init__(self) -> None:
        self._thread = threading.get_ident()

    def __call__(self, fn: Callable[[], None]) -> None:
        """Call `fn` now on the loop's thread, else hand it to the loop and wait for it."""
        if threading.get_ident() == self._thread:
            fn()
        else:
            anyio.from_thread.run_sync(fn)
