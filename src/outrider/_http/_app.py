"""The daemon's ASGI app: a thin REST + SSE layer over `Tasks`.

Every route but `/health` and the OpenAPI documents needs `Authorization: Bearer <token>`; the
token picks the principal, the `X-Outrider-Session` header (default `default`) the session, and
the composition root's `sessions(principal, name)` gives the route that session's `Tasks`. The
paths and bodies are the ones declared in `outrider._wire`; errors are
`{"error": {"type", "message", "field"?}}` with the status of `outrider._errors.WIRE_ERRORS`
(503 while shutting down or while the store cannot write, with `Retry-After`). Every body is
checked before a route sees it (`_guard`); anything else unexpected is one 500 answer. Long
polls and event streams end promptly when the daemon stops.
"""

from __future__ import annotations

import contextlib
import re
from typing import TYPE_CHECKING, Annotated, Any

import anyio
from fastapi import APIRouter, Depends, FastAPI, Header, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sse_starlette import EventSourceResponse, ServerSentEvent
from starlette.exceptions import HTTPException as StarletteHTTPException

from .._types._api import Tasks, check_session_name, options_of
from .._types._errors import Closed, NotAllowed, OutriderError, http_status_of, user_error
from .._types._events import EventType  # noqa: TC001  # FastAPI reads the annotation at run time
from .._types._task import MAX_SEQ, KeyStatus, NoticeWait, Status, SubmitItem, Task, TaskState
from .._types._worktrees import MergeResult, Worktree  # noqa: TC001  # FastAPI reads them
from .._version import __version__
from .._wire._bodies import (
    MAX_WAIT,
    AckBody,
    BatchBody,
    BatchItemResult,
    BatchResult,
    ErrorBody,
    Health,
    LimitBody,
    MergeBody,
    NoticeList,
    Output,
    Reader,
    SessionList,
    TaskList,
    Transcript,
    WaitBody,
    WaitResult,
    WorktreeList,
)
from ._auth import LOCAL
from ._dashboard import install as install_dashboard
from ._guard import guarded
from ._streams import event_stream

if TYPE_CHECKING:
    from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Sequence

    from anyio.streams.memory import MemoryObjectSendStream
    from starlette.types import ASGIApp, Receive, Scope, Send

    from .._types._api import ReturnWhen, Sessions
    from ._auth import Tokens

__all__ = ["SESSION_HEADER", "AuthMiddleware", "create_app"]

SESSION_HEADER = "X-Outrider-Session"
_PUBLIC_PATHS = frozenset(
    {"/health", "/openapi.json", "/docs", "/docs/oauth2-redirect", "/favicon.ico"}
)
_RETRY_AFTER = {429: "5", 503: "5"}
_SEQ = re.compile(r"[0-9]{1,19}")
_CLOSED = "The daemon is shutting down; retry once it restarts."


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
        if scope["type"] != "http" or scope["path"] in _PUBLIC_PATHS:
            await self.app(scope, receive, send)
            return
        if scope["path"] == "/ui" or scope["path"].startswith("/ui/"):
            await guarded(self.app, scope, receive, send)  # the dashboard's own login (cookie)
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


_bearer = HTTPBearer(auto_error=False, description="The token from the daemon's data dir.")


def _tasks(
    request: Request,
    _: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    session: Annotated[str, Header(alias=SESSION_HEADER, max_length=64)] = "default",
) -> Tasks:
    sessions: Sessions = request.app.state.sessions
    return sessions(request.state.principal, check_session_name(session))


TasksDep = Annotated[Tasks, Depends(_tasks)]
router = APIRouter(
    responses={
        "4XX": {"model": ErrorBody, "description": "Bad input, token, id or full queue"},
        "5XX": {"model": ErrorBody, "description": "Shutting down, or the store cannot write"},
    }
)


async def _bad_request(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    error = user_error(exc.errors())
    return _error(400, "UserError", str(error), field=error.field)


async def _outrider_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, OutriderError)
    status = http_status_of(exc)
    headers = {"Retry-After": _RETRY_AFTER[status]} if status in _RETRY_AFTER else {}
    field = getattr(exc, "field", None)
    message = _CLOSED if isinstance(exc, Closed) else str(exc)
    return _error(status, type(exc).__name__, message, field=field, **headers)


async def _internal_error(_: Request, exc: Exception) -> JSONResponse:
    message = "The daemon failed to answer this request; see its log. It is a bug."
    return _error(500, "InternalError", message)


async def _http_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    kind = {404: "NotFound", 405: "MethodNotAllowed"}.get(exc.status_code, "HTTPError")
    return _error(exc.status_code, kind, str(exc.detail))


async def _held(request: Request, work: Callable[[], Awaitable[object]], seconds: float) -> None:
    """Run `work` for at most `seconds`, or until the daemon stops (long polls)."""
    stopping: anyio.Event = request.app.state.stopping
    with anyio.move_on_after(seconds):
        async with anyio.create_task_group() as tg:

            async def until_stopping() -> None:
                await stopping.wait()
                tg.cancel_scope.cancel()

            tg.start_soon(until_stopping)
            await work()
            tg.cancel_scope.cancel()


async def _wait_held(
    request: Request, tasks: Tasks, ids: Sequence[str], seconds: float, mode: ReturnWhen
) -> list[Task]:
    await _held(request, lambda: tasks.wait(ids, return_when=mode), seconds)
    return await tasks.wait(ids, timeout=0)


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
    status: Status = request.app.state.status()
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
async def submit(
    request: Request,
    tasks: TasksDep,
    item: SubmitItem,
    wait: Annotated[float | None, Query(ge=0, le=MAX_WAIT)] = None,
) -> Task:
    """Store one task and queue it; returns its record at once (with `position`).

    With `wait=SECONDS`, answers once the task ended, or with its record as it is at the
    deadline (delegate and wait in one call).
    """
    task = await tasks.submit(item.spec, **options_of(item))
    if wait:
        (task,) = await _wait_held(request, tasks, [task.id], wait, "all")
    return task


@router.post("/v1/tasks/batch", tags=["tasks"])
async def submit_many(tasks: TasksDep, body: BatchBody) -> BatchResult:
    """Store many tasks; each item succeeds or fails on its own (see `results`)."""
    results = await tasks.submit_many(body.items, group=body.group)
    return BatchResult(
        results=[
            BatchItemResult(task=r) if isinstance(r, Task) else BatchItemResult(error=r)
            for r in results
        ]
    )


@router.get("/v1/tasks", tags=["tasks"])
async def list_tasks(
    tasks: TasksDep,
    state: Annotated[list[TaskState] | None, Query()] = None,
    group: Annotated[str | None, Query(min_length=1)] = None,
    limit: Annotated[int | None, Query(ge=1, le=10_000)] = None,
) -> TaskList:
    """The session's tasks in submission order; filter by `state` (repeatable), `group`."""
    return TaskList(tasks=await tasks.list(states=state, group=group, limit=limit))


@router.get("/v1/tasks/{task_id}", tags=["tasks"])
async def get_task(tasks: TasksDep, task_id: str) -> Task:
    """One task (404 for an unknown id or another session's)."""
    return await tasks.get(task_id)


@router.post("/v1/tasks/{task_id}/cancel", tags=["tasks"])
async def cancel_task(tasks: TasksDep, task_id: str) -> Task:
    """Cancel a task (and its children); returns it once it ended. Idempotent."""
    return await tasks.cancel(task_id)


@router.post("/v1/tasks/{task_id}/retry", status_code=201, tags=["tasks"])
async def retry_task(tasks: TasksDep, task_id: str) -> Task:
    """Submit an ended task again, as a new task whose `retry_of` names it."""
    return await tasks.retry(task_id)


@router.get("/v1/worktrees", tags=["worktrees"])
async def worktrees(tasks: TasksDep) -> WorktreeList:
    """The worktrees of the session's writing tasks, oldest first."""
    return WorktreeList(worktrees=await tasks.worktrees())


@router.post("/v1/worktrees/prune", tags=["worktrees"])
async def prune_worktrees(tasks: TasksDep) -> WorktreeList:
    """Apply the cleanup rules to the session's worktrees now; returns the ones changed."""
    return WorktreeList(worktrees=await tasks.prune_worktrees())


@router.post("/v1/tasks/{task_id}/merge", tags=["worktrees"])
async def merge_task(tasks: TasksDep, task_id: str, body: MergeBody) -> MergeResult:
    """Bring an ended task's work from its worktree into its parent's checkout."""
    return await tasks.merge_task(task_id, how=body.how)


@router.post("/v1/tasks/{task_id}/discard", tags=["worktrees"])
async def discard_task(tasks: TasksDep, task_id: str) -> Worktree:
    """Give up an ended task's work: its worktree and branch go (a `.patch` stays)."""
    return await tasks.discard_task(task_id)


@router.post("/v1/session/cancel", tags=["tasks"])
async def cancel_all(tasks: TasksDep) -> TaskList:
    """Cancel every unfinished task of the session; returns them once they ended."""
    return TaskList(tasks=await tasks.cancel_all())


@router.get("/v1/tasks/{task_id}/output", tags=["tasks"])
async def task_output(
    tasks: TasksDep, task_id: str, lines: Annotated[int, Query(ge=1, le=100_000)] = 50
) -> Output:
    """The last `lines` lines of the task's output, also while it runs."""
    return Output(task_id=task_id, output=await tasks.tail(task_id, lines=lines))


@router.get("/v1/tasks/{task_id}/transcript", tags=["tasks"])
async def task_transcript(tasks: TasksDep, task_id: str) -> Transcript:
    """An agent task's transcript: the models tried and the full message history."""
    return Transcript(task_id=task_id, transcript=await tasks.transcript(task_id))


@router.post("/v1/wait", tags=["tasks"])
async def wait(request: Request, tasks: TasksDep, body: WaitBody) -> WaitResult:
    """Long-poll until all (or any) of the tasks ended, or `timeout` seconds (max 300)."""
    await tasks.wait(body.task_ids, timeout=0)  # unknown ids fail before the poll
    found = await _wait_held(request, tasks, body.task_ids, body.timeout, body.return_when)
    ended = [t.state.terminal for t in found]
    done = all(ended) if body.return_when == "all" else any(ended)
    return WaitResult(done=done, tasks=found)


@router.get("/v1/status", tags=["daemon"])
async def status(tasks: TasksDep) -> Status:
    """Counts per state, and per concurrency key: running, limit, queued."""
    return await tasks.status()


@router.put("/v1/limits/{key:path}", tags=["daemon"])
async def set_limit(tasks: TasksDep, key: str, body: LimitBody) -> KeyStatus:
    """Change a key's concurrency limit until the daemon restarts (its owner only)."""
    return await tasks.set_limit(key, body.limit)


ReaderQuery = Annotated[
    Reader | None, Query(description="A host window reading the session (its own cursor).")
]


@router.get("/v1/notices", tags=["notices"])
async def notices(
    tasks: TasksDep,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    reader: ReaderQuery = None,
) -> NoticeList:
    """The session's unacknowledged completion notices (reading does not acknowledge).

    With `reader`: the notices that reader has not received yet (each reader of a shared
    session receives every notice).
    """
    return NoticeList(notices=await tasks.notices(limit=limit, reader=reader))


@router.post("/v1/notices/ack", status_code=204, tags=["notices"])
async def ack_notices(tasks: TasksDep, body: AckBody) -> None:
    """Acknowledge the session's notices with `seq <= up_to` (once they reached a model)."""
    await tasks.ack_notices(body.up_to, reader=body.reader)


@router.get("/v1/notices/next", tags=["notices"])
async def next_notices(
    request: Request,
    tasks: TasksDep,
    timeout: Annotated[
        float, Query(ge=0, le=MAX_WAIT, allow_inf_nan=False, description="Seconds to wait.")
    ],
    reader: ReaderQuery = None,
) -> NoticeWait:
    """Long-poll: the next notices (as `GET /v1/notices`), within `timeout` seconds.

    Answers at once if there are notices. The newest waiter wins: a second wait for the same
    reader (or session) ends this one at once with `superseded: true`. Nothing is acknowledged.
    """
    found: list[NoticeWait] = []

    async def wait() -> None:
        found.append(await tasks.next_notices(timeout=timeout, reader=reader))

    await _held(request, wait, timeout + 1)
    return found[0] if found else NoticeWait(notices=[])


def _start_seq(after: int | None, last_event_id: str | None) -> int:
    start = after or 0
    if last_event_id:
        if not _SEQ.fullmatch(last_event_id) or int(last_event_id) > MAX_SEQ:
            raise user_error(
                [{"loc": ("Last-Event-ID",), "msg": "not an event seq", "input": last_event_id}]
            )
        start = max(start, int(last_event_id))
    return start


@router.get("/v1/events", tags=["events"], response_class=EventSourceResponse)
async def events(
    request: Request,
    tasks: TasksDep,
    after: Annotated[int | None, Query(ge=0, le=MAX_SEQ)] = None,
    all_sessions: Annotated[bool, Query()] = False,
    follow: Annotated[bool, Query()] = True,
    task_id: Annotated[str | None, Query(min_length=1, max_length=64)] = None,
    type: Annotated[list[EventType] | None, Query()] = None,  # the query parameter's name
    watch: Annotated[bool, Query()] = True,
    last_event_id: Annotated[str | None, Header(alias="Last-Event-ID")] = None,
) -> EventSourceResponse:
    """Server-Sent Events of the session's durable event stream (`id` is the event seq).

    Resume with `Last-Event-ID` (or `after`): no event is lost or repeated. `follow=false`
    ends the stream after the events stored so far. `all_sessions=true` streams every session
    of the token's principal instead (each event names its session). `task_id` keeps one
    task's events (404 for an unknown or foreign task), `type` (repeatable) those types.
    `watch=false` takes output events without watching the tasks (agents then stream their
    model's answers only for streams that watch; otherwise the output comes a turn at a time).
    """
    start = _start_seq(after, last_event_id)
    if task_id is not None:
        await tasks.get(task_id)  # a 404 before the stream starts

    async def stream() -> AsyncGenerator[ServerSentEvent, None]:
        async for event in tasks.events(
            after=start, follow=follow, all_sessions=all_sessions, task_id=task_id, types=type,
            watch=watch,
        ):  # fmt: skip
            yield ServerSentEvent(data=event.model_dump_json(), event=event.type, id=str(event.seq))

    return event_stream(_relaying(stream()), request.app.state.stopping)


@router.get("/v1/sessions", tags=["tasks"])
async def sessions(tasks: TasksDep) -> SessionList:
    """Every session of the token's principal, with its tasks per state and unseen failures."""
    return SessionList(sessions=await tasks.sessions())


@router.get("/v1/notices/stream", tags=["notices"], response_class=EventSourceResponse)
async def follow_notices(
    request: Request,
    tasks: TasksDep,
    after: Annotated[int | None, Query(ge=0, le=MAX_SEQ)] = None,
    last_event_id: Annotated[str | None, Header(alias="Last-Event-ID")] = None,
) -> EventSourceResponse:
    """Server-Sent Events of the session's completion notices (`id` is the notice seq).

    The unacknowledged ones come first, then each new one as its task or group ends. Reading
    does not acknowledge. Resume with `Last-Event-ID` (or `after`). A group's summary comes
    after its tasks' notices; a reader may fold them (`Notice.group`).
    """
    start = _start_seq(after, last_event_id)

    async def stream() -> AsyncGenerator[ServerSentEvent, None]:
        async for notice in tasks.follow_notices(after=start):
            yield ServerSentEvent(data=notice.model_dump_json(), event="notice", id=str(notice.seq))

    return event_stream(_relaying(stream()), request.app.state.stopping)


def _relaying(
    items: AsyncGenerator[ServerSentEvent, None],
) -> Callable[[MemoryObjectSendStream[ServerSentEvent]], Awaitable[None]]:
    """A producer for `event_stream` that sends `items` (closed however it ends)."""

    async def produce(send: MemoryObjectSendStream[ServerSentEvent]) -> None:
        async with contextlib.aclosing(items):
            async for item in items:
                await send.send(item)

    return produce


@router.post("/v1/shutdown", status_code=202, tags=["daemon"])
async def shutdown(request: Request, _: TasksDep) -> dict[str, str]:
    """Stop the daemon gracefully (the local principal only)."""
    if request.state.principal != LOCAL:
        raise NotAllowed("Only the daemon's owner (the local token) may stop it.")
    request.app.state.request_stop()
    return {"status": "stopping"}


def create_app(
    sessions: Sessions,
    *,
    status: Callable[[], Status],
    stopping: anyio.Event,
    request_stop: Callable[[], None],
    tokens: Tokens | None = None,
    lifespan: Callable[[], contextlib.AbstractAsyncContextManager[None]] | None = None,
) -> FastAPI:
    """The ASGI app over `sessions(principal, name)` (wrap it in `AuthMiddleware`).

    Set `app.state.port` once the socket is bound (the health proof and the dashboard's Host
    check name it), and `app.state.host` and `app.state.url` to the daemon's address.

    Args:
        sessions: A principal's session by name.
        status: The daemon's load and state (for `/health`).
        stopping: Set when the daemon stops: long polls and streams end.
        request_stop: What `POST /v1/shutdown` calls.
        tokens: The principals' tokens (`/health` proves it holds a client's).
        lifespan: Entered while the app runs (the MCP session manager).
    """

    @contextlib.asynccontextmanager
    async def app_lifespan(_: FastAPI) -> AsyncIterator[None]:
        async with contextlib.AsyncExitStack() as stack:
            if lifespan is not None:
                await stack.enter_async_context(lifespan())
            yield

    app = FastAPI(
        title="outrider",
        version=__version__,
        summary="Run shell jobs and sub-agents in parallel, in the background, durably.",
        lifespan=app_lifespan,
        redoc_url=None,
    )
    app.state.sessions = sessions
    app.state.status = status
    app.state.stopping = stopping
    app.state.request_stop = request_stop
    app.state.tokens = tokens
    app.state.port = 0
    app.add_exception_handler(RequestValidationError, _bad_request)
    app.add_exception_handler(OutriderError, _outrider_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, _internal_error)
    app.include_router(router)
    install_dashboard(app)
    return app
