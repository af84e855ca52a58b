"""HTTP/1.1 on a socket: what the light client needs to talk to the local daemon, no more.

`http.client` would do the job, but it imports the `email` package to parse headers: 15 of the
55 ms of imports of a plain `outrider submit` (`python -X importtime`), on commands whose whole
point is to start fast (`submit`, the stdio bridge, the host hooks). What the daemon speaks is
small: one request at a time on a connection, a body of known length, and an answer framed by
`Content-Length`, `Transfer-Encoding: chunked` or the end of the connection, read whole or line
by line as it arrives (the SSE streams).

Invariants:
- An answer that breaks the framing (a truncated body, a bad status line or chunk size) raises
  `BadAnswer` (a `ValueError`); the connection is then of no further use.
- Header values with a line break are refused before anything is sent (no header injection).
- `Connection.close` may be called from another thread while a read waits: it shuts the socket
  down, so the read ends (with `BadAnswer` or the data so far) and the daemon sees the request go.
- A connection takes another request only once its answer was read to its framed end
  (`Response.complete`) and the daemon did not say `Connection: close`.
"""

from __future__ import annotations

import contextlib
import socket

TYPE_CHECKING = False  # as `typing`'s: the commands that must start fast do not import typing
if TYPE_CHECKING:
    from collections.abc import Iterator, Mapping
    from io import BufferedReader

__all__ = ["BadAnswer", "Connection", "Response"]

_MAX_LINE = 65_536
_PIECE = 65_536
_BODILESS = (204, 304)


class BadAnswer(ValueError):
    """The daemon's answer is not well-formed HTTP/1.1 (or it stopped midway)."""


class Response:
    """An answer: `status`, `headers` (names in lower case), and the body, read once."""

    def __init__(self, file: BufferedReader, status: int, headers: dict[str, str]) -> None:
        self.status = status
        self.headers = headers
        self._file = file
        self._framing = _framing(status, headers)
        self.complete = False
        """The body was read to its framed end: the connection may take another request."""

    def read(self) -> bytes:
        """The whole body."""
        return b"".join(self._pieces())

    def __iter__(self) -> Iterator[bytes]:
        """The body's lines as they arrive, each with its line break (the last may have none)."""
        pending = b""
        for piece in self._pieces():
            pending += piece
            while (end := pending.find(b"\n")) >= 0:
                yield pending[: end + 1]
                pending = pending[end + 1 :]
        if pending:
            yield pending

    def _pieces(self) -> Iterator[bytes]:
        kind, length = self._framing
        self._framing = ("length", 0)  # a body is read once
        if kind == "chunked":
            yield from self._chunks()
        else:
            yield from self._counted(length)
        self.complete = length >= 0 and self.headers.get("connection", "").lower() != "close"

    def _counted(self, length: int) -> Iterator[bytes]:
        while length != 0:
            piece = self._file.read1(_PIECE if length < 0 else min(length, _PIECE))
            if not piece:
                if length > 0:
                    raise BadAnswer(f"the answer stopped {length} bytes before its end")
                return  # framed by the end of the connection
            length -= len(piece) if length > 0 else 0
            yield piece

    def _chunks(self) -> Iterator[bytes]:
        while True:
            line = self._file.readline(_MAX_LINE)
            try:
                size = int(line.split(b";", 1)[0].strip(), 16)
            except ValueError:
                raise BadAnswer(f"bad chunk size line {line[:40]!r}") from None
            if size == 0:
                while self._file.readline(_MAX_LINE) not in (b"\r\n", b"\n", b""):
                    pass  # trailers: none that matter here
                return
            data = self._file.read(size)
            if len(data) < size or self._file.read(2) != b"\r\n":
                raise BadAnswer("the answer stopped inside a chunk")
            yield data


def _framing(status: int, headers: Mapping[str, str]) -> tuple[str, int]:
    """How the body ends: ("chunked", 0), ("length", n), or ("length", -1) for the socket's end."""
    if status in _BODILESS:
        return "length", 0
    if "chunked" in headers.get("transfer-encoding", "").lower():
        return "chunked", 0
    if (length := headers.get("content-length")) is not None:
        try:
            return "length", int(length)
        except ValueError:
            raise BadAnswer(f"bad Content-Length {length!r}") from None
    return "length", -1


class Connection:
    """One connection to `host:port`; requests on it go one after another."""

    def __init__(self, host: str, port: int, *, timeout: float) -> None:
        self.host, self.port = host, port
        self.timeout = timeout
        self._socket = socket.create_connection((host, port), timeout=timeout)
        self._socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._file = self._socket.makefile("rb")

    def request(
        self, method: str, target: str, body: bytes | None, headers: Mapping[str, str]
    ) -> Response:
        """Send one request and read the answer's head; its body is left to read.

        Raises:
            ValueError: A header value with a line break (nothing was sent).
            OSError: The connection failed.
            BadAnswer: The answer's head is not HTTP/1.1.
        """
        self._socket.settimeout(self.timeout)
        lines = [f"{method} {target} HTTP/1.1", f"Host: {self.host}:{self.port}"]
        if body is not None or method in ("POST", "PUT", "PATCH"):
            lines.append(f"Content-Length: {len(body or b'')}")
        for name, value in headers.items():
            if "\r" in value or "\n" in value or "\r" in name or "\n" in name:
                raise ValueError(f"Invalid header {name!r}: it holds a line break.")
            lines.append(f"{name}: {value}")
        self._socket.sendall("\r\n".join([*lines, "", ""]).encode("latin-1") + (body or b""))
        while True:
            status, fields = self._head()
            if not 100 <= status < 200:
                return Response(self._file, status, fields)

    def usable(self) -> bool:
        """Whether the daemon still holds this idle connection open.

        A daemon that died or closed it left the connection's end (or a reset) to read, which a
        look at the socket without reading shows; an idle connection has nothing else to read.
        """
        try:
            self._socket.setblocking(False)  # `request` sets the timeout again
            self._socket.recv(1, socket.MSG_PEEK)
        except BlockingIOError:
            return True  # nothing to read: open
        except OSError:
            return False
        return False  # its end, or bytes nobody asked for

    def _head(self) -> tuple[int, dict[str, str]]:
        line = self._file.readline(_MAX_LINE)
        parts = line.split(None, 2)
        if len(parts) < 2 or not parts[0].startswith(b"HTTP/") or not parts[1].isdigit():
            raise BadAnswer(f"bad status line {line[:40]!r}" if line else "no answer")
        fields: dict[str, str] = {}
        while (line := self._file.readline(_MAX_LINE)) not in (b"\r\n", b"\n"):
            name, colon, value = line.decode("latin-1").partition(":")
            if not colon:
                raise BadAnswer(f"bad header line {line[:40]!r}")
            fields[name.strip().lower()] = value.strip()
        return int(parts[1]), fields

    def close(self) -> None:
        """Drop the connection (a read waiting on it in another thread ends)."""
        with contextlib.suppress(OSError):  # already closed by the daemon
            self._socket.shutdown(socket.SHUT_RDWR)
        self._file.close()
        self._socket.close()
