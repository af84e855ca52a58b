"""The request guard: bodies checked before any route, and no exception let out to the server."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import pytest

from outrider._http import _guard

if TYPE_CHECKING:
    from starlette.types import Message, Receive, Scope, Send


async def call(app: Any, body: bytes, *, chunks: int = 1) -> list[Message]:
    """Send one POST through `guarded(app)`; returns what it sent back."""
    size = max(1, len(body) // chunks)
    parts = [body[i : i + size] for i in range(0, len(body), size)] or [b""]
    incoming: list[Message] = [
        {"type": "http.request", "body": p, "more_body": i < len(parts) - 1}
        for i, p in enumerate(parts)
    ]
    sent: list[Message] = []

    async def receive() -> Message:
        return incoming.pop(0) if incoming else {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        sent.append(message)

    scope: Scope = {"type": "http", "method": "POST", "path": "/v1/tasks", "headers": []}
    await _guard.guarded(app, scope, receive, send)
    return sent


def answer(sent: list[Message]) -> tuple[int, dict[str, Any]]:
    return sent[0]["status"], json.loads(sent[1]["body"])


async def test_a_body_over_the_limit_is_413(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_guard, "MAX_BODY_BYTES", 10)

    async def never(scope: Scope, receive: Receive, send: Send) -> None:
        raise AssertionError("the route must not run")

    status, body = answer(await call(never, b'{"a": "0123456789"}', chunks=3))
    assert status == 413
    assert "over 10 bytes" in body["error"]["message"]


async def test_an_exception_is_one_500_answer_and_goes_no_further() -> None:
    async def broken(scope: Scope, receive: Receive, send: Send) -> None:
        assert (await receive())["body"] == b"{}"  # the checked body is replayed
        raise RuntimeError("a bug")

    status, body = answer(await call(broken, b"{}"))
    assert status == 500
    assert body["error"]["type"] == "InternalError"

    async def half(scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        raise RuntimeError("after the answer began")

    sent = await call(half, b"{}")
    assert [m["type"] for m in sent] == ["http.response.start"]  # nothing more, nothing raised


@pytest.mark.parametrize(
    ("body", "problem"),
    [(b"null", "got null"), (b"true", "got a boolean"), (b"12", "got a number"),
     (b'{"\\ud800": 1}', "lone surrogate"), (b'{"ok": "caf\\u00e9"}', None)],
)  # fmt: skip
def test_body_problems(body: bytes, problem: str | None) -> None:
    found = _guard.body_problem(body)
    assert (found is None) if problem is None else (found is not None and problem in found)
