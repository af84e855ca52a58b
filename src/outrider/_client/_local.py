"""Finding the local daemon and its token, and starting it in the background.

The URL: `url` given, else `$OUTRIDER_URL`, else the running daemon's `daemon.json` (unless
the pid it names is dead: a stale file), else `http://127.0.0.1:$OUTRIDER_PORT` (default 8765).
The token: `token` given, else `$OUTRIDER_TOKEN`, else the token file in the data dir.

A client sends its token only to a daemon that proved it holds it (`outrider._proof`,
`check_proof`). Clients starting the daemon at the same time take turns under a file lock: the
first starts it, the others find it running and use it.

A daemon started here is fully detached from the client that started it: a shell in a session
of its own starts it in the background and exits, so the daemon is in its own session and
process group, is nobody's child here, and has no stdio of the client's (its output goes to
`daemon.log`). A host that stops the whole process tree or group of its MCP server does not
reach it.

This module uses the standard library only: the fast commands (`outrider mcp`, hooks,
`submit`) import it without the HTTP stack.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import select
import sys
import time
from urllib.parse import urlsplit

from .._paths import daemon_file, data_dir, open_private, private_dir, token_file
from .._proof import valid
from .._types._errors import AuthError, DaemonError

TYPE_CHECKING = False  # as `typing`'s: the commands that must start fast do not import typing
if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from pathlib import Path
    from typing import TypeVar

    T = TypeVar("T")

__all__ = [
    "DEFAULT_URL",
    "arun_blocking",
    "check_proof",
    "find_token",
    "find_url",
    "run_blocking",
    "start_daemon",
    "start_or_find",
]

DEFAULT_URL = "http://127.0.0.1:8765"


def find_url(url: str | None) -> str:
    """The daemon's base URL (see the module docstring)."""
    if url:
        return url.rstrip("/")
    if env := os.environ.get("OUTRIDER_URL"):
        return env.rstrip("/")
    if (recorded := _recorded_daemon()) is not None:
        return recorded
    port = os.environ.get("OUTRIDER_PORT", "8765")
    return f"http://127.0.0.1:{port}" if port != "0" else DEFAULT_URL


def _recorded_daemon() -> str | None:
    """The URL in `daemon.json` if the daemon that wrote it still runs (a dead one's is stale)."""
    try:
        record = json.loads(daemon_file().read_text())
        url, pid = str(record["url"]), int(record["pid"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:  # alive, another user's: the proof decides
        pass
    return url


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
    import anyio.to_thread  # the async client's only: the fast commands never import anyio

    return await anyio.to_thread.run_sync(fn)


def run_blocking(fn: Callable[[], T]) -> T:
    """Run a blocking function (the sync client's way: here)."""
    return fn()


def check_proof(doc: object, *, url: str, token: str, nonce: str) -> None:
    """Accept the daemon at `url` only if it proved it holds `token` (then it may be sent).

    Args:
        doc: The JSON body of its `/health` answer to the challenge (None if it was not JSON).
        url: Its base URL.
        token: The token the client would send.
        nonce: The challenge sent.

    Raises:
        AuthError: It is a daemon, and it does not know the token.
        DaemonError: It did not prove it is the daemon holding the token.
    """
    answer = doc.get("proof", "absent") if isinstance(doc, dict) else "absent"
    if answer is None:
        raise AuthError(
            f"The daemon at {url} does not know this token (it was not sent); use the token "
            "from its data dir (`OUTRIDER_TOKEN` or the `token` file)."
        )
    parsed = urlsplit(url)
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    if not valid(answer, token, nonce, port):
        raise DaemonError(
            f"The server at {url} did not prove it is the outrider daemon that holds your "
            "token, so the token was not sent; another program may have its address (a dead "
            f"daemon's {daemon_file()}). Stop that program, or remove the file."
        )


@contextlib.contextmanager
def _start_lock(path: Path, wait: float) -> Iterator[None]:
    """One client at a time starts the daemon; the others wait and then use it."""
    fd = open_private(path, os.O_RDWR | os.O_CREAT)
    try:
        deadline = time.monotonic() + wait
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise DaemonError(
                        f"Another client is starting the daemon and did not finish in {wait:.0f}s; "
                        f"see {path.with_name('daemon.log')}."
                    ) from None
                time.sleep(0.05)
        yield
    finally:
        os.close(fd)


def start_daemon(*, wait: float = 20.0) -> str:
    """Start `outrider serve` in the background and return its URL once it listens.

    Clients starting it at the same time take turns: the first starts it, the others find it
    running (`daemon.json`) and use it.

    Raises:
        DaemonError: It exited or did not get ready within `wait` seconds; the message holds
            the end of its log.
    """
    return start_or_find(wait)[0]


def start_or_find(wait: float = 20.0) -> tuple[str, bool]:
    """The daemon's URL, and whether this call started it (else another client had)."""
    log_path = data_dir() / "daemon.log"
    try:
        private_dir(log_path.parent)
        with _start_lock(log_path.with_name("daemon.start.lock"), wait):
            if (running := _recorded_daemon()) is not None:
                return running, False
            return _spawn_daemon(log_path, wait), True
    except OSError as exc:
        raise DaemonError(
            f"Cannot start the daemon: {exc.strerror} ({exc.filename}); make the data dir "
            "writable, or set OUTRIDER_HOME to one that is."
        ) from None


def _spawn_daemon(log_path: Path, wait: float) -> str:
    log = open_private(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    read_fd, write_fd = os.pipe()
    serve = [sys.executable, "-m", "outrider._cli", "serve", "--ready-fd", str(write_fd)]
    try:
        # A shell in a new session starts the daemon in the background and exits at once:
        # the daemon is then nobody's child here (see the module docstring).
        import subprocess  # only to start a daemon: not on a command's way to a running one

        launcher = subprocess.Popen(
            ["/bin/sh", "-c", '"$@" &', "outrider-start", *serve],
            stdin=subprocess.DEVNULL, stdout=log, stderr=log, pass_fds=(write_fd,),
            start_new_session=True, close_fds=True,
        )  # fmt: skip
        launcher.wait()
    finally:
        os.close(log)
        os.close(write_fd)
    try:
        return _read_ready(read_fd, log_path, wait)
    finally:
        os.close(read_fd)


def _read_ready(read_fd: int, log_path: Path, wait: float) -> str:
    """The URL the daemon writes on its ready pipe once it listens."""
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
    return line.decode().strip()
