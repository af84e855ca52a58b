"""Finding the local daemon and its token, and starting it in the background.

The URL: `url` given, else `$OUTRIDER_URL`, else the running daemon's `daemon.json`, else
`http://127.0.0.1:$OUTRIDER_PORT` (default 8765). The token: `token` given, else
`$OUTRIDER_TOKEN`, else the token file in the data dir.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import subprocess
import sys
import threading
import time
from typing import TYPE_CHECKING, TypeVar

import anyio.to_thread

from .._errors import DaemonError
from .._paths import daemon_file, data_dir, token_file

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ["DEFAULT_URL", "arun_blocking", "find_token", "find_url", "run_blocking", "start_daemon"]

DEFAULT_URL = "http://127.0.0.1:8765"
T = TypeVar("T")


def find_url(url: str | None) -> str:
    """The daemon's base URL (see the module docstring)."""
    if url:
        return url.rstrip("/")
    if env := os.environ.get("OUTRIDER_URL"):
        return env.rstrip("/")
    with contextlib.suppress(OSError, ValueError, KeyError):
        return str(json.loads(daemon_file().read_text())["url"])
    port = os.environ.get("OUTRIDER_PORT", "8765")
    return f"http://127.0.0.1:{port}" if port != "0" else DEFAULT_URL


def find_token(token: str | None) -> str | None:
    """The bearer token (see the module docstring), or None if there is none."""
    if token:
        return token
    if env := os.environ.get("OUTRIDER_TOKEN"):
        return env
    with contextlib.suppress(OSError):
        return token_file().read_text().strip() or None
    return None


async def arun_blocking(fn: Callable[[], T]) -> T:
    """Run a blocking function in a worker thread (the async client's way)."""
    return await anyio.to_thread.run_sync(fn)


def run_blocking(fn: Callable[[], T]) -> T:
    """Run a blocking function (the sync client's way: here)."""
    return fn()


def start_daemon(*, wait: float = 20.0) -> str:
    """Start `outrider serve` in the background and return its URL once it listens.

    Raises:
        DaemonError: It exited or did not get ready within `wait` seconds; the message holds
            the end of its log.
    """
    log_path = data_dir() / "daemon.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    read_fd, write_fd = os.pipe()
    with open(log_path, "ab") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "outrider._cli", "serve", "--ready-fd", str(write_fd)],
            stdin=subprocess.DEVNULL, stdout=log, stderr=log, pass_fds=(write_fd,),
            start_new_session=True, close_fds=True,
        )  # fmt: skip
    os.close(write_fd)
    # The daemon outlives this call; a waiter thread reaps it should it exit while we live.
    threading.Thread(target=process.wait, name="outrider-daemon-reaper", daemon=True).start()
    try:
        line = b""
        deadline = time.monotonic() + wait
        while not line.endswith(b"\n"):
            remaining = deadline - time.monotonic()
            ready, _, _ = select.select([read_fd], [], [], max(0.0, remaining))
            if not ready:
                raise DaemonError(f"The daemon did not get ready in {wait:.0f}s; see {log_path}.")
            chunk = os.read(read_fd, 4096)
            if not chunk:
                tail = log_path.read_text(errors="replace").strip().splitlines()[-5:]
                raise DaemonError(
                    "The daemon failed to start: " + (" | ".join(tail) or f"see {log_path}")
                )
            line += chunk
    finally:
        os.close(read_fd)
    return line.decode().strip()
