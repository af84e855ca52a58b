"""Server-Sent Events framing, for the clients (the daemon writes it with sse-starlette)."""

from __future__ import annotations

__all__ = ["SSEDecoder"]


class SSEDecoder:
    """Turns `text/event-stream` lines into message data (comments and pings are skipped)."""

    def __init__(self) -> None:
        self._data: list[str] = []

    def feed(self, line: str) -> str | None:
        """The data of the message that `line` completes, if it completes one."""
        if line == "":
            if not self._data:
                return None
            data, self._data = "\n".join(self._data), []
            return data
        if line.startswith(":"):
            return None
        name, _, value = line.partition(":")
        if name == "data":
            self._data.append(value.removeprefix(" "))
        return None
