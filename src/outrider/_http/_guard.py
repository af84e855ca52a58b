"""What every request body is checked for before a route sees it, and the last-resort answer.

- A JSON body must be UTF-8, parse, nest at most `MAX_DEPTH` deep, hold no lone surrogate
  (an escaped U+D800 alone, which no store or answer can encode) and be an object; each
  failure is a 400 naming `body`, the problem and the fix. Over `MAX_BODY_BYTES` it is a 413.
- An exception no handler answered becomes one 500 JSON answer, logged with its traceback;
  it is not raised on to the server, so the connection stays usable for the next request.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from starlette.responses import JSONResponse

from .._logging import logger

if TYPE_CHECKING:
    from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["MAX_BODY_BYTES", "MAX_DEPTH", "body_problem", "guarded"]

MAX_BODY_BYTES = 32 * 1024 * 1024
MAX_DEPTH = 64


class BodyRefused(Exception):
    """A request body that no route may see; `status` and a one-line message."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def body_problem(body: bytes) -> str | None:
    """Why a JSON request body is refused, in one sentence; None if it is fine."""
    try:
        text = body.decode()
    except UnicodeDecodeError as exc:
        return (
            f"Invalid request body: byte {body[exc.start]:#04x} at position {exc.start} is not "
            "UTF-8; send JSON text encoded as UTF-8."
        )
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        where = f"line {exc.lineno}, column {exc.colno}"
        return f"Invalid request body: not JSON ({exc.msg} at {where}); send a JSON object."
    except RecursionError:
        return f"Invalid request body: it nests deeper than {MAX_DEPTH} levels; flatten it."
    if (problem := _walk(value, 1)) is not None:
        return f"Invalid request body: {problem}."
    if not isinstance(value, dict):
        return f"Invalid request body: expected a JSON object, got {_kind(value)}."
    return None


def _kind(value: object) -> str:
    return {list: "an array", str: "a string", bool: "a boolean", type(None): "null"}.get(
        type(value), "a number"
    )


def _walk(value: object, depth: int) -> str | None:
    if depth > MAX_DEPTH:
        return f"it nests deeper than {MAX_DEPTH} levels; flatten it"
    if isinstance(value, str):
        return _surrogate(value)
    items: list[Any] = []
    if isinstance(value, dict):
        items = [*value.keys(), *value.values()]
    elif isinstance(value, list):
        items = value
    for item in items:
        if (problem := _walk(item, depth + 1)) is not None:
            return problem
    return None


def _surrogate(text: str) -> str | None:
    if text.isascii():
        return None
    try:
        text.encode()
    except UnicodeEncodeError as exc:
        return (
            f"a string holds the lone surrogate {text[exc.start]!r}, which is no character; "
            "send valid Unicode (pair it, or drop it)"
        )
    return None


async def _read_body(receive: Receive) -> bytes:
    chunks: list[bytes] = []
    size = 0
    more = True
    while more:
        message = await receive()
        if message["type"] == "http.disconnect":
            break
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise BodyRefused(
                413, f"The request body is over {MAX_BODY_BYTES} bytes; send less per request."
            )
        chunks.append(chunk)
        more = message.get("more_body", False)
    return b"".join(chunks)


def _error(status: int, message: str, field: str | None = "body") -> JSONResponse:
    body: dict[str, Any] = {"type": "UserError" if status < 500 else "InternalError",
                            "message": message}  # fmt: skip
    if field is not None:
        body["field"] = field
    return JSONResponse({"error": body}, status_code=status)


async def guarded(app: ASGIApp, scope: Scope, receive: Receive, send: Send) -> None:
    """Call `app` with the body checked (JSON writes under /v1) and no exception let out."""
    started = False

    async def tracked_send(message: Message) -> None:
        nonlocal started
        started = started or message["type"] == "http.response.start"
        await send(message)

    try:
        if scope["method"] in ("POST", "PUT", "PATCH") and scope["path"].startswith("/v1/"):
            body = await _read_body(receive)
            if body and (problem := body_problem(body)) is not None:
                await _error(400, problem)(scope, receive, send)
                return
            receive = _replay(body, receive)
        await app(scope, receive, tracked_send)
    except BodyRefused as exc:
        await _error(exc.status, str(exc))(scope, receive, send)
    except Exception:  # the last resort: answered, logged, and the connection kept
        logger.exception("%s %s failed", scope["method"], scope["path"])
        if not started:
            message = "The daemon failed to answer this request; see its log. It is a bug."
            await _error(500, message, None)(scope, receive, send)


def _replay(body: bytes, receive: Receive) -> Receive:
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay
