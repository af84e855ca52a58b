"""The daemon's ASGI app: a thin REST + SSE layer over `SessionView`.

Every route but `/health` and the OpenAPI documents needs `Authorization: Bearer <token>`; the
token picks the principal, the `X-Outrider-Session` header (default `default`) the session.
Errors are `{"error": {"type", "message", "field"?}}` with 400 (bad input), 401, 404 (unknown
id, the same for another session's id), 429 (queue full, with Retry-After), 503 (shutting
down, or the store cannot write: a full or read-only disk, with Retry-After). Long polls and
event streams end promptly when the daemon stops.
"""

from __future__ import annotations

import contextlib
import re
from typing import TYPE_CHECKING, Annotated, Any, Literal

import anyio
from fastapi import APIRouter, Depends, FastAPI, Header, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, Field, JsonValue
from sse_starlette import EventSourceResponse, ServerSentEvent
from starlette.exceptions import HTTPException as StarletteHTTPException

from .._daemon._auth import LOCAL, check_session_name
from .._daemon._view import SessionView
from .._errors import Closed, OutriderError, QueueFull, StoreError, TaskNotFound, UserError
from .._models import (
    MAX_SEQ,
    Int,
    Notice,
    Number,
    Status,
    SubmitError,
    SubmitItem,
    Task,
    TaskState,
)
from .._version import __version__
from ._guard import guarded

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable

    from starlette.types import ASGIApp, Receive, Scope, Send

    from .._daemon._auth import Tokens
    from .._orchestrator import Orchestrator

__all__ = ["SESSION_HEADER", "AuthMiddleware", "create_app"]

SESSION_HEADER = "X-Outrider-Session"
_PUBLIC_PATHS = frozenset({"/health", "/openapi.json", "/docs", "/docs/oauth2-redirect"})
_MAX_WAIT = 300.0
_SEQ = re.compile(r"[0-9]{1,19}")


def _error(
    status: int, kind: str, message: str, *, field: str | None = None, **headers: str
) -> JSONResponse:
    body: dict[str, Any] = {"type": kind, "message": message}
    if field is not None:
        body["field"] = field
    return JSONResponse({"error": body}, status_code=status, headers=headers or None)


class AuthMiddleware:
    """Checks the bearer token of every request but the public ones; records the principal."""

    def __init__(self, app: ASGIApp, *, tokens: Tokens) -> None:
        self.app = app
        self.tokens = tokens

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if scope["path"] in _PUBLIC_PATHS:
            await guarded(self.app, scope, receive, send)
            return
        headers = dict(scope["headers"])
        auth = headers.get(b"authorization", b"").decode("latin-1")
        scheme, _, token = auth.partition(" ")
        principal = self.tokens.principal(token.strip()) if scheme.lower() == "bearer" else None
        if principal is None:
            reason = "missing" if not auth else "wrong"
            response = _error(
                401, "AuthError",
                f"The bearer token is {reason}: send `Authorization: Bearer <token>` with the "
                "token from the daemon's data dir (`outrider serve` prints where).",
                **{"WWW-Authenticate": "Bearer"},
            )  # fmt: skip
            await response(scope, receive, send)
            return
        scope.setdefault("state", {})["principal"] = principal
        await guarded(self.app, scope, receive, send)


class BatchBody(BaseModel):
    """Many tasks at once; each item is validated and stored on its own."""

    items: list[dict[str, Any]] = Field(min_length=1, max_length=1000)
    group: str | None = Field(default=None, min_length=1, max_length=200)


class BatchItemResult(BaseModel):
    """One item's outcome: the stored task, or why it was not stored."""

    task: Task | None = None
    error: SubmitError | None = None


class BatchResult(BaseModel):
    """One result per item, in order."""

    results: list[BatchItemResult]


class TaskList(BaseModel):
    """Tasks in submission order."""

    tasks: list[Task]


class WaitBody(BaseModel):
    """Which tasks to wait for, and how long."""

    task_ids: list[Annotated[str, Field(min_length=1)]] = Field(min_length=1, max_length=1000)
    timeout: Number = Field(default=30.0, ge=0, le=_MAX_WAIT)
    return_when: Literal["all", "any"] = "all"


class WaitResult(BaseModel):
    """The tasks as they are; `done` tells whether the wait condition was met."""

    done: bool
    tasks: list[Task]


class Output(BaseModel):
    """The last lines of a task's output."""

    task_id: str
    output: str


class Transcript(BaseModel):
    """An agent task's transcript, or null for a task that has none.

    Shape: `{agent, attempts: [{model, error}], messages: [...]}`, messages in pydantic-ai's
    JSON form.
    """

    task_id: str
    transcript: JsonValue


class NoticeList(BaseModel):
    """Unacknowledged completion notices, oldest first."""

    notices: list[Notice]


class ErrorDetail(BaseModel):
    """What went wrong; `field` names the bad input when there is one."""

    type: str
    message: str
    field: str | None = None


class ErrorBody(BaseModel):
    """Every error answer.

    400 bad input, 401 token, 404 unknown or foreign id, 429 queue full (with `Retry-After`),
    503 shutting down, or the store cannot write (with `Retry-After`).
    """

    error: ErrorDetail


class AckBody(BaseModel):
    """Acknowledge every notice with `seq <= up_to`."""

    up_to: Int = Field(ge=0, le=MAX_SEQ)


class Health(BaseModel):
    """Liveness and state.

    `ok`; `recovering` while the processes a crash left are being stopped; `degraded` while the
    store cannot write (`detail` says why).
    """

    status: Literal["ok", "recovering", "degraded"] = "ok"
    version: str = __version__
    detail: str | None = None
    proof: str | None = None
    """The answer to `challenge`: HMAC-SHA256 keyed by the token named by `token_id`."""


_bearer = HTTPBearer(auto_error=False, description="The token from the daemon's data dir.")


def _view(
    request: Request,
    _: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    session: Annotated[str, Header(alias=SESSION_HEADER, max_length=64)] = "default",
) -> SessionView:
    principal: str = request.state.principal
    orch: Orchestrator = request.app.state.orch
    return SessionView(orch, principal=principal, session=check_session_name(session))


View = Annotated[SessionView, Depends(_view)]
router = APIRouter(
    responses={"4XX": {"model": ErrorBody, "description": "Bad input, token, id or full queue"},
               "5XX": {"model": ErrorBody, "description": "Shutting down, or a fault"}}
)  # fmt: skip


async def _bad_request(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    first = exc.errors()[0]
    where = first.get("loc", ())
    loc = [str(p) for p in where if p not in ("body", "query", "header", "path")]
    field = ".".join(loc) or (str(where[0]) if where else "body")
    got = first.get("input")
    shown = "" if isinstance(got, dict | list) or got is None else f" (got {_clip(repr(got))})"
    message = first["msg"].removeprefix("Value error, ")
    if field == "body" and first["type"] == "missing":
        message = "it is empty; send a JSON object"
    return _error(400, "UserError", f"Invalid `{field}`: {message}{shown}.", field=field)


def _clip(text: str, limit: int = 200) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


async def _internal_error(_: Request, exc: Exception) -> JSONResponse:
    message = "The daemon failed to answer this request; see its log. It is a bug."
    return _error(500, "InternalError", message)


async def _outrider_error(_: Request, exc: Exception) -> JSONResponse:
    match exc:
        case UserError():
            return _error(400, "UserError", str(exc), field=exc.field)
        case TaskNotFound():
            return _error(404, "TaskNotFound", str(exc), field="task_id")
        case QueueFull():
            return _error(429, "QueueFull", str(exc), **{"Retry-After": "5"})
        case StoreError():  # a full or read-only disk: the same request succeeds once fixed
            return _error(503, type(exc).__name__, str(exc), **{"Retry-After": "5"})
        case Closed():
            return _error(503, "Closed", "The daemon is shutting down; retry once it restarts.")
        case _:
            return _error(500, type(exc).__name__, str(exc))


async def _http_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    kind = {404: "NotFound", 405: "MethodNotAllowed"}.get(exc.status_code, "HTTPError")
    return _error(exc.status_code, kind, str(exc.detail))


@router.get("/health", tags=["daemon"])
async def health(
    request: Request,
    challenge: Annotated[str | None, Query(pattern=r"^[0-9a-f]{32,128}$")] = None,
    token_id: Annotated[str | None, Query(pattern=r"^[0-9a-f]{32}$")] = None,
) -> Health:
    """Liveness and state; needs no token.

    With `challenge` and `token_id` (a client's token's id) it also proves that this daemon
    holds that token, so the client may send it (`outrider._proof`).
    """
    orch: Orchestrator = request.app.state.orch
    status = orch.status()
    proof = None
    tokens: Tokens | None = request.app.state.tokens
    if challenge is not None and token_id is not None and tokens is not None:
        proof = tokens.prove(challenge, token_id, request.app.state.port)
    if status.store_error is not None:
        return Health(status="degraded", detail=status.store_error, proof=proof)
    if status.recovering:
        detail = f"stopping the processes {status.recovering} tasks left when outrider died"
        return Health(status="recovering", detail=detail, proof=proof)
    return Health(proof=proof)


@router.post("/v1/tasks", status_code=201, tags=["tasks"])
async def submit(v: View, item: SubmitItem) -> Task:
    """Store one task and queue it; returns its record at once."""
    return await v.submit(item)


@router.post("/v1/tasks/batch", tags=["tasks"])
async def submit_many(v: View, body: BatchBody) -> BatchResult:
    """Store many tasks; each item succeeds or fails on its own (see `results`)."""
    results = await v.submit_many(body.items, group=body.group)
    return BatchResult(
        results=[
            BatchItemResult(task=r) if isinstance(r, Task) else BatchItemResult(error=r)
            for r in results
        ]
    )


@router.get("/v1/tasks", tags=["tasks"])
async def list_tasks(
    v: View,
    state: Annotated[list[TaskState] | None, Query()] = None,
    group: Annotated[str | None, Query(min_length=1)] = None,
    limit: Annotated[int | None, Query(ge=1, le=10_000)] = None,
) -> TaskList:
    """The session's tasks in submission order; filter by `state` (repeatable), `group`."""
    return TaskList(tasks=await v.list(states=state, group=group, limit=limit))


@router.get("/v1/tasks/{task_id}", tags=["tasks"])
async def get_task(v: View, task_id: str) -> Task:
    """One task (404 for an unknown id or another session's)."""
    return await v.get(task_id)


@router.post("/v1/tasks/{task_id}/cancel", tags=["tasks"])
async def cancel_task(v: View, task_id: str) -> Task:
    """Cancel a task (and its children); returns it once it ended. Idempotent."""
    return await v.cancel(task_id)


@router.get("/v1/tasks/{task_id}/output", tags=["tasks"])
async def task_output(
    v: View, task_id: str, lines: Annotated[int, Query(ge=1, le=100_000)] = 50
) -> Output:
    """The last `lines` lines of the task's output, also while it runs."""
    return Output(task_id=task_id, output=await v.tail(task_id, lines=lines))


@router.get("/v1/tasks/{task_id}/transcript", tags=["tasks"])
async def task_transcript(v: View, task_id: str) -> Transcript:
    """An agent task's transcript: the models tried and the full message history."""
    return Transcript(task_id=task_id, transcript=await v.transcript(task_id))


@router.post("/v1/wait", tags=["tasks"])
async def wait(request: Request, v: View, body: WaitBody) -> WaitResult:
    """Long-poll until all (or any) of the tasks ended, or `timeout` seconds (max 300)."""
    stopping: anyio.Event = request.app.state.stopping
    await v.wait(body.task_ids, timeout=0)  # unknown ids fail before the poll
    with anyio.move_on_after(body.timeout):
        async with anyio.create_task_group() as tg:

            async def until_stopping() -> None:
                await stopping.wait()
                tg.cancel_scope.cancel()

            tg.start_soon(until_stopping)
            await v.wait(body.task_ids, return_when=body.return_when)
            tg.cancel_scope.cancel()
    tasks = await v.wait(body.task_ids, timeout=0)
    ended = [t.state.terminal for t in tasks]
    done = all(ended) if body.return_when == "all" else any(ended)
    return WaitResult(done=done, tasks=tasks)


@router.get("/v1/status", tags=["daemon"])
async def status(v: View) -> Status:
    """Counts per state, and per concurrency key: running, limit, queued."""
    return await v.status()


@router.get("/v1/notices", tags=["notices"])
async def notices(v: View, limit: Annotated[int, Query(ge=1, le=1000)] = 100) -> NoticeList:
    """The session's unacknowledged completion notices (reading does not acknowledge)."""
    return NoticeList(notices=await v.notices(limit=limit))


@router.post("/v1/notices/ack", status_code=204, tags=["notices"])
async def ack_notices(v: View, body: AckBody) -> None:
    """Acknowledge the session's notices with `seq <= up_to`."""
    await v.ack_notices(body.up_to)


def _start_seq(after: int | None, last_event_id: str | None) -> int:
    start = after or 0
    if last_event_id:
        if not _SEQ.fullmatch(last_event_id) or int(last_event_id) > MAX_SEQ:
            raise UserError(
                f"Invalid `Last-Event-ID`: {last_event_id!r} is not an event seq.",
                field="Last-Event-ID",
            )
        start = max(start, int(last_event_id))
    return start


@router.get("/v1/events", tags=["events"], response_class=EventSourceResponse)
async def events(
    request: Request,
    v: View,
    after: Annotated[int | None, Query(ge=0, le=MAX_SEQ)] = None,
    all_sessions: Annotated[bool, Query()] = False,
    last_event_id: Annotated[str | None, Header(alias="Last-Event-ID")] = None,
) -> EventSourceResponse:
    """Server-Sent Events of the session's durable event stream (`id` is the event seq).

    Resume with `Last-Event-ID` (or `after`): no event is lost or repeated. `all_sessions=true`
    streams every session of the token's principal instead (each event names its session).
    """
    start = _start_seq(after, last_event_id)

    async def stream() -> AsyncIterator[ServerSentEvent]:
        async for event in v.events(after=start, all_sessions=all_sessions):
            yield ServerSentEvent(data=event.model_dump_json(), event=event.type, id=str(event.seq))

    return EventSourceResponse(stream(), ping=15, shutdown_event=request.app.state.stopping)


@router.get("/v1/notices/stream", tags=["notices"], response_class=EventSourceResponse)
async def follow_notices(
    request: Request,
    v: View,
    after: Annotated[int | None, Query(ge=0, le=MAX_SEQ)] = None,
    last_event_id: Annotated[str | None, Header(alias="Last-Event-ID")] = None,
) -> EventSourceResponse:
    """Server-Sent Events of the session's completion notices (`id` is the notice seq).

    The unacknowledged ones come first, then each new one as its task or group ends. Reading
    does not acknowledge. Resume with `Last-Event-ID` (or `after`). A group's summary comes
    after its tasks' notices; a reader may fold them (`Notice.group`).
    """
    start = _start_seq(after, last_event_id)

    async def stream() -> AsyncIterator[ServerSentEvent]:
        async for notice in v.follow_notices(after=start):
            yield ServerSentEvent(data=notice.model_dump_json(), event="notice", id=str(notice.seq))

    return EventSourceResponse(stream(), ping=15, shutdown_event=request.app.state.stopping)


@router.post("/v1/shutdown", status_code=202, tags=["daemon"])
async def shutdown(request: Request, _: View) -> dict[str, str]:
    """Stop the daemon gracefully (the local principal only)."""
    if request.state.principal != LOCAL:
        raise StarletteHTTPException(403, "Only the daemon's owner (the local token) may stop it.")
    request.app.state.request_stop()
    return {"status": "stopping"}


def create_app(
    orch: Orchestrator,
    *,
    stopping: anyio.Event,
    request_stop: Callable[[], None],
    mcp_app: ASGIApp | None = None,
    mcp_lifespan: Callable[[], contextlib.AbstractAsyncContextManager[None]] | None = None,
    tokens: Tokens | None = None,
) -> FastAPI:
    """The ASGI app over `orch` (wrap it in `AuthMiddleware`; set `app.state.port` once bound)."""

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        async with contextlib.AsyncExitStack() as stack:
            if mcp_lifespan is not None:
                await stack.enter_async_context(mcp_lifespan())
            yield

    app = FastAPI(
        title="outrider",
        version=__version__,
        summary="Run shell jobs and sub-agents in parallel, in the background, durably.",
        lifespan=lifespan,
        redoc_url=None,
    )
    app.state.orch = orch
    app.state.stopping = stopping
    app.state.request_stop = request_stop
    app.state.tokens = tokens
    app.state.port = 0
    app.add_exception_handler(RequestValidationError, _bad_request)
    app.add_exception_handler(OutriderError, _outrider_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, _internal_error)
    app.include_router(router)
    if mcp_app is not None:
        app.mount("/mcp", mcp_app)
    return app
