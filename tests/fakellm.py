"""A fake LLM provider over real HTTP on 127.0.0.1: OpenAI Chat Completions and Anthropic Messages.

The wire formats follow the providers' documented APIs (JSON bodies, SSE streams with the same
event shapes, error bodies, `retry-after` headers), so the real SDKs talk to it unchanged.

Answers are scripted per model name: `fake.script("m1", [Reply.tool("read_file", path="a"),
Reply.text("done")])` answers the first call to model `m1` with a tool call, the second with
text. Models without a script use `fake.responder` (a function of the call), by default a fixed
text. Every call is recorded in `fake.calls`.

Scriptable faults: latency, status codes (429 with Retry-After, 500, 529), a connection dropped
mid-stream, slow streams (to cancel mid-stream; `fake.aborted` counts requests the client
really aborted), and a server-wide requests-per-minute limit (a token bucket).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import math
import re
import socket
import threading
import time
from collections import defaultdict, deque
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import uvicorn
from starlette.applications import Starlette
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Awaitable, Callable

    from starlette.requests import Request

__all__ = ["Call", "FakeLLM", "Reply"]


@dataclass(frozen=True)
class Reply:
    """One scripted answer."""

    text: str | None = None
    tool_calls: tuple[tuple[str, dict[str, Any]], ...] = ()
    latency: float = 0.0
    status: int = 200
    retry_after: float | None = None
    drop_after_chunks: int | None = None
    """Stream this many chunks, then drop the connection."""
    chunk_delay: float = 0.0
    input_tokens: int | None = None
    output_tokens: int | None = None
    finish_reason: str | None = None
    """OpenAI: the finish reason in place of the standard one (a server's own, such as `eos`)."""

    @classmethod
    def say(cls, text: str, **kw: Any) -> Reply:
        return cls(text=text, **kw)

    @classmethod
    def tool(cls, name: str, /, **args: Any) -> Reply:
        return cls(tool_calls=((name, args),))

    @classmethod
    def tools(cls, *calls: tuple[str, dict[str, Any]]) -> Reply:
        return cls(tool_calls=tuple(calls))

    @classmethod
    def error(cls, status: int, retry_after: float | None = None) -> Reply:
        return cls(status=status, retry_after=retry_after)


@dataclass
class Call:
    """A request the server received."""

    api: str  # "openai" | "anthropic"
    model: str
    body: dict[str, Any]
    headers: dict[str, str]

    @property
    def max_tokens(self) -> int | None:
        """The output cap the request carried (`max_tokens` or `max_completion_tokens`)."""
        value = self.body.get("max_completion_tokens", self.body.get("max_tokens"))
        return value if isinstance(value, int) else None

    @property
    def last_user_text(self) -> str:
        """The text of the newest user/tool message (to see tool results).

        A `system` message after it is passed over: Claude Code sends its environment last.
        """
        for msg in reversed(self.body.get("messages", [])):
            if msg.get("role") == "system":
                continue
            content = msg.get("content")
            if isinstance(content, str):
                return content
            if isinstance(content, list):
                parts = []
                for part in content:
                    if part.get("type") == "text":
                        parts.append(part["text"])
                    elif part.get("type") == "tool_result":
                        inner = part.get("content")
                        if isinstance(inner, str):
                            parts.append(inner)
                        elif isinstance(inner, list):
                            parts += [p.get("text", "") for p in inner]
                return "\n".join(parts)
        return ""

    @property
    def tool_results(self) -> list[str]:
        """Every tool result in the conversation, oldest first."""
        out: list[str] = []
        for msg in self.body.get("messages", []):
            if msg.get("role") == "tool":
                out.append(str(msg.get("content")))
            content = msg.get("content")
            if isinstance(content, list):
                for part in content:
                    if part.get("type") == "tool_result":
                        inner = part.get("content")
                        out.append(
                            inner if isinstance(inner, str)
                            else "".join(p.get("text", "") for p in inner or [])
                        )  # fmt: skip
        return out


class _Bucket:
    """A token bucket: `rate` per second, holding at most `burst`."""

    def __init__(self, per_minute: float, burst: float) -> None:
        self.rate = per_minute / 60.0
        self.burst = burst
        self.tokens = burst
        self.stamp = time.monotonic()

    def take(self) -> float:
        """Take a token; 0 if granted, else the seconds until one is available."""
        now = time.monotonic()
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens >= 1:
            self.tokens -= 1
            return 0.0
        return (1 - self.tokens) / self.rate


class FakeLLM:
    """The server. Use as a context manager; `base_url` is set while it runs."""

    def __init__(self) -> None:
        self.scripts: dict[str, deque[Reply]] = defaultdict(deque)
        self.responder: Callable[[Call], Reply] = lambda call: Reply.say("ok")
        self.calls: list[Call] = []
        self.rate_limited = 0
        self.aborted = 0
        self.dropped = 0
        self.in_flight = 0
        self.max_in_flight = 0
        self.latency = 0.0
        self.api_key: str | None = None
        self._bucket: _Bucket | None = None
        self._stated: float | None = None
        self._ids = itertools.count(1)
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self.port = 0

    # -- configuration -----------------------------------------------------------------

    def script(self, model: str, replies: list[Reply]) -> None:
        """Answer the next calls to `model` with `replies`, in order."""
        self.scripts[model].extend(replies)

    def limit_rate(
        self, per_minute: float | None, burst: float = 1.0, *, stated: bool = False
    ) -> None:
        """Answer 429 (with Retry-After) beyond `per_minute` requests; None: no limit.

        `stated`: say the limit in every answer's headers, as OpenAI and Anthropic do.
        """
        self._bucket = _Bucket(per_minute, burst) if per_minute else None
        self._stated = per_minute if stated else None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    @property
    def anthropic_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def calls_for(self, model: str) -> list[Call]:
        return [c for c in self.calls if c.model == model]

    # -- lifecycle -----------------------------------------------------------------------

    def __enter__(self) -> FakeLLM:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        self.port = sock.getsockname()[1]
        app = Starlette(
            routes=[
                Route(
                    "/v1/chat/completions",
                    self._stating(self._openai, "x-ratelimit-limit-requests"),
                    methods=["POST"],
                ),
                Route(
                    "/v1/messages",
                    self._stating(self._anthropic, "anthropic-ratelimit-requests-limit"),
                    methods=["POST"],
                ),
                Route("/_stats", self._stats, methods=["GET", "POST"]),
            ]
        )
        config = uvicorn.Config(app, log_level="critical", lifespan="off", timeout_keep_alive=30)
        self._server = uvicorn.Server(config)
        sock.listen(128)  # connections wait in the backlog until uvicorn accepts them

        def serve() -> None:
            assert self._server is not None
            asyncio.run(self._server.serve([sock]))

        self._thread = threading.Thread(target=serve, name="fake-llm", daemon=True)
        self._thread.start()
        self._sock = sock
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._server is not None
        assert self._thread is not None
        self._server.should_exit = True
        self._server.force_exit = True  # a stream still open (a client gone mid-answer) ends now
        self._thread.join(10)
        assert not self._thread.is_alive(), "the fake provider did not stop"
        self._sock.close()

    # -- protocol ------------------------------------------------------------------------

    def _stating(
        self, handler: Callable[[Request], Awaitable[Response]], header: str
    ) -> Callable[[Request], Awaitable[Response]]:
        """`handler`, its answers saying the request limit in `header` when one is stated."""

        async def answer(request: Request) -> Response:
            response = await handler(request)
            if self._stated is not None:
                response.headers[header] = f"{self._stated:g}"
            return response

        return answer

    def _next_reply(self, call: Call) -> Reply:
        queue = self.scripts.get(call.model)
        if queue:
            return queue.popleft()
        return self.responder(call)

    async def _admit(self, request: Request, api: str) -> tuple[Call, Reply] | Response:
        self._enter()
        try:
            return await self._answer(request, api)
        finally:
            self._leave()

    async def _answer(self, request: Request, api: str) -> tuple[Call, Reply] | Response:
        body = await request.json()
        call = Call(api, str(body.get("model")), body, dict(request.headers))
        self.calls.append(call)
        if self.api_key is not None:
            sent = request.headers.get("authorization", "").removeprefix("Bearer ")
            sent = request.headers.get("x-api-key", sent)
            if sent != self.api_key:
                return _error(api, 401, "invalid api key", None)
        if self._bucket is not None and (wait := self._bucket.take()) > 0:
            self.rate_limited += 1
            return _error(api, 429, "rate limit exceeded", wait)
        reply = self._next_reply(call)
        delay = reply.latency or self.latency
        if delay:
            await asyncio.sleep(delay)
        if reply.status != 200:
            if reply.status == 429:
                self.rate_limited += 1
            return _error(api, reply.status, f"scripted status {reply.status}", reply.retry_after)
        return call, reply

    async def _openai(self, request: Request) -> Response:
        admitted = await self._admit(request, "openai")
        if isinstance(admitted, Response):
            return admitted
        call, reply = admitted
        usage = _usage(call, reply)
        if call.body.get("stream"):
            include_usage = (call.body.get("stream_options") or {}).get("include_usage", False)
            chunks = _openai_chunks(call, reply, next(self._ids), usage if include_usage else None)
            return StreamingResponse(self._stream(chunks, reply), media_type="text/event-stream")
        streamed = len(_openai_chunks(call, reply, 0, None))
        message: dict[str, Any] = {"role": "assistant", "content": reply.text}
        if reply.tool_calls:
            message["tool_calls"] = [
                {"id": f"call_{i}_{next(self._ids)}", "type": "function",
                 "function": {"name": name, "arguments": json.dumps(args)}}
                for i, (name, args) in enumerate(reply.tool_calls)
            ]  # fmt: skip
        return self._whole(
            streamed,
            reply,
            {
                "id": f"chatcmpl-{next(self._ids)}",
                "object": "chat.completion",
                "created": int(time.time()),
                "model": call.model,
                "choices": [
                    {
                        "index": 0,
                        "message": message,
                        "logprobs": None,
                        "finish_reason": reply.finish_reason
                        or ("tool_calls" if reply.tool_calls else "stop"),
                    }
                ],
                "usage": {
                    "prompt_tokens": usage[0],
                    "completion_tokens": usage[1],
                    "total_tokens": sum(usage),
                },
            },
        )

    async def _anthropic(self, request: Request) -> Response:
        admitted = await self._admit(request, "anthropic")
        if isinstance(admitted, Response):
            return admitted
        call, reply = admitted
        usage = _usage(call, reply)
        msg_id = f"msg_{next(self._ids)}"
        content: list[dict[str, Any]] = []
        if reply.text is not None:
            content.append({"type": "text", "text": reply.text})
        for i, (name, args) in enumerate(reply.tool_calls):
            content.append(
                {"type": "tool_use", "id": f"toolu_{i}_{next(self._ids)}", "name": name,
                 "input": args}
            )  # fmt: skip
        stop = "tool_use" if reply.tool_calls else "end_turn"
        chunks = _anthropic_events(call, msg_id, content, stop, usage)
        if call.body.get("stream"):
            return StreamingResponse(self._stream(chunks, reply), media_type="text/event-stream")
        return self._whole(
            len(chunks),
            reply,
            {
                "id": msg_id,
                "type": "message",
                "role": "assistant",
                "model": call.model,
                "content": content,
                "stop_reason": stop,
                "stop_sequence": None,
                "usage": {"input_tokens": usage[0], "output_tokens": usage[1]},
            },
        )

    def _whole(self, streamed: int, reply: Reply, body: dict[str, Any]) -> Response:
        """An unstreamed answer, sent when its stream of `streamed` chunks would have ended.

        Like a provider, it answers once the whole text is made; a client that goes away
        meanwhile counts as `aborted`, and a scripted drop cuts the body short.
        """
        data = json.dumps(body).replace(STAMP, _stamp())
        if reply.drop_after_chunks is None and not reply.chunk_delay:
            return Response(data, media_type="application/json")
        sent = streamed if reply.drop_after_chunks is None else reply.drop_after_chunks

        async def answer() -> AsyncIterator[str]:
            self._enter()
            try:
                await asyncio.sleep(reply.chunk_delay * max(sent - 1, 0))
                if reply.drop_after_chunks is not None:
                    self.dropped += 1
                    yield data[: len(data) // 2]
                    raise ConnectionAbortedError("scripted drop")
                yield data
            except asyncio.CancelledError:
                self.aborted += 1
                raise
            finally:
                self._leave()

        return StreamingResponse(answer(), media_type="application/json")

    async def _stream(self, chunks: list[str], reply: Reply) -> AsyncIterator[str]:
        self._enter()
        try:
            for n, chunk in enumerate(chunks):
                if reply.drop_after_chunks is not None and n >= reply.drop_after_chunks:
                    self.dropped += 1
                    raise ConnectionAbortedError("scripted drop")
                if reply.chunk_delay and n:
                    await asyncio.sleep(reply.chunk_delay)
                yield chunk.replace(STAMP, _stamp()) if STAMP in chunk else chunk
        except asyncio.CancelledError:
            self.aborted += 1
            raise
        finally:
            self._leave()

    async def _stats(self, request: Request) -> Response:
        """GET: the counters; POST: reset them (for a server in another process).

        POST `?stated=1` also says the rate limit in every answer's headers from then on.
        """
        if request.method == "POST":
            self.rate_limited = self.aborted = self.dropped = self.max_in_flight = 0
            self.calls.clear()
            stated = request.query_params.get("stated") == "1"
            self._stated = self._bucket.rate * 60 if stated and self._bucket else None
        counters = {"calls": len(self.calls), "rate_limited": self.rate_limited,
                    "aborted": self.aborted, "max_in_flight": self.max_in_flight,
                    "in_flight": self.in_flight}  # fmt: skip
        return JSONResponse(counters)

    def _enter(self) -> None:
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)

    def _leave(self) -> None:
        self.in_flight -= 1


def _usage(call: Call, reply: Reply) -> tuple[int, int]:
    """Input and output tokens; a real provider never writes more than `max_tokens`."""
    tokens_in = reply.input_tokens
    if tokens_in is None:  # like a provider: the messages, system prompt and tool definitions
        sent = {k: v for k, v in call.body.items() if k in ("messages", "system", "tools")}
        tokens_in = max(1, len(json.dumps(sent)) // 4)
    tokens_out = reply.output_tokens
    if tokens_out is None:
        tokens_out = max(1, len(reply.text or "") // 4 + 10 * len(reply.tool_calls))
    cap = call.max_tokens
    return tokens_in, tokens_out if cap is None else min(tokens_out, cap)


def _error(api: str, status: int, message: str, retry_after: float | None) -> Response:
    headers = {}
    if retry_after is not None:
        headers["retry-after"] = str(max(1, math.ceil(retry_after)))
        headers["retry-after-ms"] = str(max(1, math.ceil(retry_after * 1000)))
    kind = {
        401: "authentication_error", 429: "rate_limit_error", 529: "overloaded_error"
    }.get(status, "api_error")  # fmt: skip
    if api == "anthropic":
        body: dict[str, Any] = {"type": "error", "error": {"type": kind, "message": message}}
    else:
        body = {"error": {"message": message, "type": kind, "param": None, "code": kind}}
    return JSONResponse(body, status_code=status, headers=headers)


def _sse(data: dict[str, Any], event: str | None = None) -> str:
    head = f"event: {event}\n" if event else ""
    return f"{head}data: {json.dumps(data)}\n\n"


STAMP = "@@@@@@@@"
"""Eight characters of streamed text that the server replaces, as it sends them, by `~` and the
time (`time.monotonic()` in ms, modulo 10^7, 7 digits): a reader in another process on this
machine measures how late each chunk reaches it (`stamp_ages`)."""


def _stamp() -> str:
    return f"~{int(time.monotonic() * 1000) % 10_000_000:07d}"


def stamp_ages(text: str) -> list[float]:
    """The age in seconds, now, of each stamp in `text` (see `STAMP`)."""
    now = int(time.monotonic() * 1000) % 10_000_000
    return [((now - int(m)) % 10_000_000) / 1000 for m in _STAMPS.findall(text)]


_STAMPS = re.compile(r"~(\d{7})")


def _split(text: str, size: int = 8) -> list[str]:
    return [text[i : i + size] for i in range(0, len(text), size)] or [""]


def _openai_chunks(call: Call, reply: Reply, n: int, usage: tuple[int, int] | None) -> list[str]:
    base = {"id": f"chatcmpl-{n}", "object": "chat.completion.chunk",
            "created": int(time.time()), "model": call.model}  # fmt: skip

    def chunk(delta: dict[str, Any], finish: str | None = None) -> str:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
        return _sse({**base, "choices": [choice]})

    out = [chunk({"role": "assistant", "content": ""})]
    if reply.text:
        out += [chunk({"content": piece}) for piece in _split(reply.text)]
    for i, (name, args) in enumerate(reply.tool_calls):
        arguments = json.dumps(args)
        start = {"index": i, "id": f"call_{n}_{i}", "type": "function",
                 "function": {"name": name, "arguments": ""}}  # fmt: skip
        out.append(chunk({"tool_calls": [start]}))
        out += [
            chunk({"tool_calls": [{"index": i, "function": {"arguments": piece}}]})
            for piece in _split(arguments, 16)
        ]
    out.append(chunk({}, reply.finish_reason or ("tool_calls" if reply.tool_calls else "stop")))
    if usage is not None:
        out.append(_sse({**base, "choices": [], "usage": {
            "prompt_tokens": usage[0], "completion_tokens": usage[1],
            "total_tokens": sum(usage)}}))  # fmt: skip
    out.append("data: [DONE]\n\n")
    return out


def _anthropic_events(
    call: Call, msg_id: str, content: list[dict[str, Any]], stop: str, usage: tuple[int, int]
) -> list[str]:
    out = [_sse({"type": "message_start", "message": {
        "id": msg_id, "type": "message", "role": "assistant", "model": call.model,
        "content": [], "stop_reason": None, "stop_sequence": None,
        "usage": {"input_tokens": usage[0], "output_tokens": 1}}}, "message_start")]  # fmt: skip
    for index, block in enumerate(content):
        if block["type"] == "text":
            out.append(_sse({"type": "content_block_start", "index": index,
                             "content_block": {"type": "text", "text": ""}},
                            "content_block_start"))  # fmt: skip
            out += [
                _sse({"type": "content_block_delta", "index": index,
                      "delta": {"type": "text_delta", "text": piece}}, "content_block_delta")
                for piece in _split(block["text"])
            ]  # fmt: skip
        else:
            out.append(_sse({"type": "content_block_start", "index": index,
                             "content_block": {"type": "tool_use", "id": block["id"],
                                               "name": block["name"], "input": {}}},
                            "content_block_start"))  # fmt: skip
            out += [
                _sse({"type": "content_block_delta", "index": index,
                      "delta": {"type": "input_json_delta", "partial_json": piece}},
                     "content_block_delta")
                for piece in _split(json.dumps(block["input"]), 16)
            ]  # fmt: skip
        out.append(_sse({"type": "content_block_stop", "index": index}, "content_block_stop"))
    out.append(_sse({"type": "message_delta", "delta": {"stop_reason": stop,
                     "stop_sequence": None}, "usage": {"output_tokens": usage[1]}},
                    "message_delta"))  # fmt: skip
    out.append(_sse({"type": "message_stop"}, "message_stop"))
    return out


def _agent_responder(calls: int) -> Callable[[Call], Reply]:
    """An agent that makes `calls - 1` tool calls (`list_files`), then answers."""

    def respond(call: Call) -> Reply:
        done = len(call.tool_results)
        if done < calls - 1:
            return Reply.tool("list_files", pattern=f"*{done}")
        return Reply.say("finished")

    return respond


def _streaming_responder(calls: int, chunks: int, delay: float) -> Callable[[Call], Reply]:
    """Each answer streams `chunks` stamped chunks `delay` apart; the first `calls - 1` also
    call `list_files`."""

    def respond(call: Call) -> Reply:
        tools = (("list_files", {"pattern": "*"}),) if len(call.tool_results) < calls - 1 else ()
        return Reply(text=STAMP * chunks, tool_calls=tools, chunk_delay=delay)

    return respond


def main() -> None:
    """Serve in this process until killed: `python tests/fakellm.py RPM LATENCY CALLS [CHUNKS
    DELAY]` (with CHUNKS, every answer streams that many stamped chunks DELAY s apart).

    Prints the port on the first line. A server in its own process sees requests when they
    arrive, not when the client's process lets it run.
    """
    import sys

    rpm, latency, calls = float(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3])
    fake = FakeLLM()
    fake.latency = latency
    fake.responder = _agent_responder(calls)
    if len(sys.argv) > 5:
        fake.responder = _streaming_responder(calls, int(sys.argv[4]), float(sys.argv[5]))
    fake.limit_rate(rpm or None)
    with fake:
        print(fake.port, flush=True)
        threading.Event().wait()


if __name__ == "__main__":
    main()
