"""A small blocking HTTP client of the local daemon, on the standard library only.

For the commands that must start fast (the stdio MCP bridge, the host hooks, `submit`): it
imports neither httpx nor pydantic nor anyio (nor `http.client`: `_http11` speaks the little
HTTP/1.1 the daemon needs, on the first request), and it reads and writes JSON as plain values
(the daemon validates every body). It finds the daemon and its token as `AsyncClient` does
(`_local`), sends the token only once the daemon proved it holds it, and, with `autostart`,
starts the daemon when none answers and sends the request again — every time the daemon is
gone, not only the first.

Thread safety: one `LightClient` may be used from several threads; a call takes a connection
of its own (an idle one, or a new one), so calls never wait for each other. A connection whose
answer was read to its end goes back to the client and is used again within `_REUSE_FOR`
seconds, well inside the daemon's keep-alive (uvicorn's 5 s), and only if the daemon did not
close it meanwhile (a killed daemon's connections are closed by the system): a request on a
reused connection meets a daemon that is there, as on a new one, and nothing is sent twice.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
from urllib.parse import urlencode, urlsplit

from .._proof import challenge, token_id
from .._types._errors import DaemonError, OutriderError, error_from_wire
from ._local import check_proof, find_token, find_url, start_or_find

TYPE_CHECKING = False  # as `typing`'s: the commands that must start fast do not import typing
if TYPE_CHECKING:
    from collections.abc import Callable, Mapping
    from typing import Any

    from ._http11 import Connection, Response

__all__ = ["LightClient", "Reply"]

_REFUSED = (ConnectionRefusedError, FileNotFoundError, socket.gaierror)
"""Errors that mean no daemon listens (nothing was sent)."""
_REUSE_FOR = 2.0
"""Seconds an idle connection is used again (the daemon closes one idle for 5 s)."""


class Reply:
    """A daemon's answer: its status, headers (names in lower case) and body (read or streamed)."""

    __slots__ = ("_release", "connection", "headers", "response", "status")

    def __init__(
        self,
        response: Response,
        connection: Connection,
        release: Callable[[Connection], None],
    ) -> None:
        self.status = response.status
        self.headers = response.headers
        self.response = response
        self.connection = connection
        self._release: Callable[[Connection], None] | None = release

    def json(self) -> Any:
        """The whole body as JSON (None if empty); closes the connection's use."""
        body = self.response.read()
        return json.loads(body) if body else None

    def close(self) -> None:
        """Done with the answer (idempotent).

        Its connection goes back to the client if the answer was read to its end, else it is
        dropped (abandoning a response still streaming).
        """
        release, self._release = self._release, None
        if release is not None and self.response.complete:
            release(self.connection)
        else:
            self.connection.close()


class LightClient:
    """One session of the local daemon, as plain JSON.

    Args:
        session: The session every call acts in (`X-Outrider-Session`).
        autostart: Start the daemon when none answers (not with an explicit URL).
        on_start: Called with the URL of each daemon this client started.
        timeout: Seconds to connect and for each read of an answer.
    """

    def __init__(
        self,
        session: str,
        *,
        autostart: bool = False,
        on_start: Callable[[str], None] | None = None,
        timeout: float = 30.0,
    ) -> None:
        self.session = session
        self.url = find_url(None)
        self._token = find_token(None)
        self._autostart = autostart and "OUTRIDER_URL" not in os.environ
        self._on_start = on_start
        self._timeout = timeout
        self._proven: str | None = None
        self._lock = threading.Lock()
        self._starts = 0
        self._idle: list[tuple[float, Connection]] = []  # put back when, and the connection

    def call(
        self,
        method: str,
        path: str,
        body: object = None,
        *,
        params: Mapping[str, object] | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: float | None = None,
    ) -> Any:
        """Send one request and return its JSON answer.

        Raises:
            OutriderError: The daemon answered an error (the exception it stands for), or
                there is no daemon (`DaemonError`).
        """
        reply = self.send(method, path, body, params=params, headers=headers, timeout=timeout)
        try:
            found = reply.json()
        finally:
            reply.close()
        if reply.status >= 400:
            raise _error_of(reply.status, found)
        return found

    def send(
        self,
        method: str,
        path: str,
        body: object = None,
        *,
        params: Mapping[str, object] | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: float | None = None,
    ) -> Reply:
        """Send one request; the answer is left to read (JSON or a stream).

        A refused connection (no daemon) starts one if allowed and sends again.

        Raises:
            DaemonError: No daemon answers (and none could be started).
        """
        target = path + ("?" + urlencode(params, doseq=True) if params else "")
        payload = None if body is None else json.dumps(body).encode()
        for attempt in (1, 2):
            starts = self._starts
            try:
                return self._send(method, target, payload, headers or {}, timeout)
            except _REFUSED as exc:
                if attempt == 2 or not self._start(starts):
                    raise DaemonError(
                        f"No outrider daemon at {self.url} ({exc.strerror or exc}); start one "
                        "with `outrider serve`."
                    ) from None
        raise AssertionError("unreachable")

    def _connect(self, timeout: float | None) -> Connection:
        """The connection last put back (if still fresh and to the same daemon), else a new one."""
        parts, now = urlsplit(self.url), time.monotonic()
        host, port = parts.hostname or "127.0.0.1", parts.port or 80
        found, stale = None, []
        with self._lock:
            while self._idle and found is None:
                since, connection = self._idle.pop()
                same = (connection.host, connection.port) == (host, port)
                if same and now - since < _REUSE_FOR and connection.usable():
                    found = connection
                else:
                    stale.append(connection)
        for connection in stale:
            connection.close()
        if found is not None:
            found.timeout = timeout or self._timeout
            return found
        from ._http11 import Connection  # on the first request: after the bridge's handshake

        return Connection(host, port, timeout=timeout or self._timeout)

    def close(self) -> None:
        """Close the idle connections (a later call opens a new one)."""
        with self._lock:
            idle, self._idle = self._idle, []
        for _, connection in idle:
            connection.close()

    def _release(self, connection: Connection) -> None:
        """Take back a connection whose answer was read to its end, to use again."""
        with self._lock:
            self._idle.append((time.monotonic(), connection))

    def _send(
        self,
        method: str,
        target: str,
        payload: bytes | None,
        extra: Mapping[str, str],
        timeout: float | None,
    ) -> Reply:
        connection = self._connect(timeout)
        try:
            self._prove(connection)
            headers = {"X-Outrider-Session": self.session, **extra}
            if self._token:
                headers["Authorization"] = f"Bearer {self._token}"
            if payload is not None:
                headers["Content-Type"] = "application/json"
            response = connection.request(method, target, payload, headers)
        except BaseException:
            connection.close()
            raise
        return Reply(response, connection, self._release)

    def _prove(self, connection: Connection) -> None:
        """Have the daemon prove it holds the token before it is sent (once per URL)."""
        if self._token is None or self._proven == self.url:
            return
        nonce = challenge()
        query = urlencode({"challenge": nonce, "token_id": token_id(self._token)})
        body = connection.request("GET", f"/health?{query}", None, {}).read()
        try:
            doc = json.loads(body)
        except ValueError:
            doc = None
        check_proof(doc, url=self.url, token=self._token, nonce=nonce)
        self._proven = self.url

    def _start(self, seen: int) -> bool:
        """Start the daemon if allowed; threads that failed meanwhile use the same one."""
        with self._lock:
            if self._starts != seen:
                return True
            if not self._autostart:
                return False
            self.url, started = start_or_find()
            self._token = find_token(None)
            self._starts += 1
        if started and self._on_start is not None:
            self._on_start(self.url)
        return True


def _error_of(status: int, body: object) -> OutriderError:
    """The exception an error answer stands for."""
    error = body.get("error") if isinstance(body, dict) else None
    if not isinstance(error, dict):
        return DaemonError(f"HTTP {status}: {str(body)[:300]}")
    field = error.get("field")
    return error_from_wire(
        status, str(error.get("type")), str(error.get("message")),
        field=field if isinstance(field, str) else None,
    )  # fmt: skip
