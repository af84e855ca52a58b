"""The light client's HTTP/1.1 against a real socket server that sends scripted answers.

The daemon's own answers are covered by every bridge, hook and `submit` test; here, the
framings and the broken answers a daemon that dies midway leaves behind.
"""

from __future__ import annotations

import select
import socket
import threading
from typing import TYPE_CHECKING

import pytest

from outrider._client._http11 import BadAnswer, Connection

if TYPE_CHECKING:
    from collections.abc import Iterator


class Scripted:
    """A server on 127.0.0.1 that reads each request and sends the next scripted answer."""

    def __init__(self, answers: list[bytes], *, then_close: bool = True) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.requests: list[bytes] = []
        self.release = threading.Event()
        self._answers, self._close = answers, then_close
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        peer, _ = self.listener.accept()
        with peer:
            reader = peer.makefile("rb")
            for answer in self._answers:
                head = b""
                while not head.endswith(b"\r\n\r\n"):
                    head += reader.readline()
                length = [int(v) for k, v in _fields(head) if k == b"content-length"]
                self.requests.append(head + reader.read(length[0] if length else 0))
                peer.sendall(answer)
            if not self._close:
                self.release.wait(30)
            reader.close()

    def join(self) -> None:
        self.release.set()
        self._thread.join(30)
        self.listener.close()


def _fields(head: bytes) -> Iterator[tuple[bytes, bytes]]:
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        yield name.strip().lower(), value.strip()


def connect(server: Scripted) -> Connection:
    return Connection("127.0.0.1", server.port, timeout=30)


def test_keep_alive_with_lengths_then_a_chunked_stream_read_by_lines() -> None:
    pieces = (b"data: a\r\n", b"\ndat", b"a: b", b"\n\n")
    chunked = (
        b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n"
        + b"".join(b"%x;ext=1\r\n%s\r\n" % (len(piece), piece) for piece in pieces)
        + b"0\r\nX-Trailer: 1\r\n\r\n"
    )
    server = Scripted([
        b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
        b"HTTP/1.1 204 No Content\r\n\r\n", chunked,
    ])  # fmt: skip
    connection = connect(server)
    first = connection.request("POST", "/v1/tasks", b'{"a":1}', {"X-Outrider-Session": "s"})
    assert (first.status, first.headers["content-length"], first.read()) == (200, "2", b"ok")
    assert connection.request("GET", "/none", None, {}).read() == b""
    lines = list(connection.request("GET", "/events", None, {}))
    assert lines == [b"data: a\r\n", b"\n", b"data: b\n", b"\n"]
    connection.close()
    server.join()
    assert server.requests[0].endswith(b'Content-Length: 7\r\nX-Outrider-Session: s\r\n\r\n{"a":1}')
    assert b"Content-Length" not in server.requests[1]


def test_a_body_to_the_end_of_the_connection_and_its_last_line_without_a_break() -> None:
    server = Scripted([b"HTTP/1.0 200 OK\r\n\r\none\ntwo"])
    connection = connect(server)
    assert list(connection.request("GET", "/", None, {})) == [b"one\n", b"two"]
    connection.close()
    server.join()


@pytest.mark.parametrize(
    ("answer", "said"),
    [
        (b"", "no answer"),
        (b"SSH-2.0-OpenSSH\r\n\r\n", "bad status line"),
        (b"HTTP/1.1 200 OK\r\nno colon here\r\n\r\n", "bad header line"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: many\r\n\r\n", "bad Content-Length"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort", "stopped 5 bytes before"),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", "bad chunk size"),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n9\r\nabc", "inside a chunk"),
    ],
)
def test_a_broken_answer_is_bad_answer(answer: bytes, said: str) -> None:
    server = Scripted([answer])
    connection = connect(server)
    with pytest.raises(BadAnswer, match=said):
        connection.request("GET", "/", None, {}).read()
    connection.close()
    server.join()


def test_a_header_with_a_line_break_is_refused_before_anything_is_sent() -> None:
    server = Scripted([])
    connection = connect(server)
    with pytest.raises(ValueError, match="line break"):
        connection.request("GET", "/", None, {"X-Outrider-Session": "a\r\nAuthorization: x"})
    connection.close()
    server.join()
    assert server.requests == []


def test_close_from_another_thread_ends_a_read_waiting_or_not() -> None:
    server = Scripted([b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"], then_close=False)
    connection = connect(server)
    response = connection.request("GET", "/stream", None, {})
    ended = threading.Event()
    failed: list[BaseException] = []

    def read() -> None:
        try:
            response.read()
        except (BadAnswer, ValueError, OSError) as exc:
            failed.append(exc)
        ended.set()

    threading.Thread(target=read, daemon=True).start()
    connection.close()
    assert ended.wait(30)
    assert failed  # the stream broke off: no partial answer is taken for a whole one
    server.join()


def test_an_idle_connection_is_usable_until_the_other_end_closes_it() -> None:
    server = Scripted([b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"], then_close=False)
    connection = connect(server)
    response = connection.request("GET", "/", None, {})
    assert (response.read(), response.complete) == (b"", True)
    assert connection.usable()
    server.join()  # the server closes its end
    assert select.select([connection._socket], [], [], 30)[0]  # its end arrived
    assert not connection.usable()
    connection.close()


def test_an_answer_to_the_end_of_the_connection_leaves_it_unusable() -> None:
    server = Scripted([b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 1\r\n\r\nx"])
    connection = connect(server)
    response = connection.request("GET", "/", None, {})
    assert (response.read(), response.complete) == (b"x", False)
    connection.close()
    server.join()
