"""The dashboard's routes under `/ui`: login, pages, their live streams, and actions.

Every route checks `Host` first, then (but the login) the cookie; a page answers 401 with how
to log in, a foreign or unknown task 404, as in the API. Actions are POSTs that pass
`check_post` (CSRF) and answer a line for the page's flash area; what they change reaches the
page through its stream.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Literal

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from markupsafe import escape

from ..._types._api import check_session_name
from ..._types._errors import OutriderError, http_status_of
from ..._types._task import MAX_SEQ
from .._streams import event_stream
from ._access import (
    COOKIE,
    COOKIE_TTL,
    Refused,
    check_host,
    check_post,
    cookie_principal,
    cookie_value,
)
from ._live import follow
from ._render import page
from ._screens import KeysScreen, Screen, TaskScreen, TasksScreen, TimelineScreen, TreeScreen

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from anyio.streams.memory import MemoryObjectSendStream
    from sse_starlette import ServerSentEvent

    from ..._types._api import Sessions, Tasks
    from .._auth import Tokens
    from ._access import LoginCodes

__all__ = ["SECURITY_HEADERS", "router"]

router = APIRouter(prefix="/ui", include_in_schema=False)
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}
_ACK_PAGE = 1_000
_ACK_ROUNDS = 1_000
"""Pages of notices "Acknowledge all" takes at most (new ones keep coming while it runs)."""
_LOGIN_HINT = "Run `outrider dashboard` (add --open to open it) for a login link."


def _message(
    status: int, title: str, text: str, *, hint: str = "", refresh: str = ""
) -> HTMLResponse:
    html = page("message.html", title=title, text=text, hint=hint, refresh=refresh)
    return HTMLResponse(html, status_code=status, headers=SECURITY_HEADERS)


def _flash(text: str, *, ok: bool = True, status: int = 200) -> HTMLResponse:
    kind = "ok" if ok else "bad"
    html = f'<p class="note {kind}">{escape(text)}</p>'
    return HTMLResponse(html, status_code=status, headers=SECURITY_HEADERS)


def _tokens(request: Request) -> Tokens:
    tokens: Tokens | None = request.app.state.tokens
    if tokens is None:
        raise Refused(503, "This daemon has no tokens, so nobody can log in.")
    return tokens


def _principal(request: Request) -> str:
    check_host(request, request.app.state.dashboard_hosts())
    principal = cookie_principal(_tokens(request), request.cookies.get(COOKIE))
    if principal is None:
        raise Refused(401, "You are not logged in to this dashboard (or your login expired).")
    return principal


def _tasks(request: Request, session: str) -> Tasks:
    sessions: Sessions = request.app.state.sessions
    return sessions(_principal(request), check_session_name(session))


async def _answer(request: Request, make: Callable[[], Awaitable[Response]]) -> Response:
    """`make()`, with what it raises shown as a page (or a flash line for an action)."""
    action = request.method == "POST"
    try:
        return await make()
    except Refused as exc:
        if action:
            return _flash(str(exc), ok=False, status=exc.status)
        hint = _LOGIN_HINT if exc.status == 401 else ""
        return _message(exc.status, "Not allowed" if exc.status == 403 else "Log in", str(exc),
                        hint=hint)  # fmt: skip
    except OutriderError as exc:  # a foreign or unknown task is a 404, as in the API
        status = http_status_of(exc)
        if action:
            return _flash(str(exc), ok=False, status=status)
        return _message(status, "Not found" if status == 404 else "Error", str(exc))


# -- login ---------------------------------------------------------------------------------


@router.get("/login")
async def login(request: Request, code: str = "") -> Response:
    """Swap a one-time code for the login cookie, then go to the dashboard."""

    async def make() -> Response:
        check_host(request, request.app.state.dashboard_hosts())
        codes: LoginCodes = request.app.state.login_codes
        principal = codes.redeem(code)
        if principal is None:
            raise Refused(401, "This login link was used already or has expired.")
        # A page, not a redirect: the next request is then same-site, so the Strict cookie goes.
        response = _message(200, "Logged in", "Opening the dashboard…", refresh="/ui/")
        response.set_cookie(
            COOKIE, cookie_value(_tokens(request), principal), max_age=COOKIE_TTL, path="/ui",
            httponly=True, samesite="strict",
        )  # fmt: skip
        return response

    return await _answer(request, make)


@router.get("")
@router.get("/")
async def home(request: Request) -> Response:
    """The session with the newest activity (or `default`)."""

    async def make() -> Response:
        summaries = await _tasks(request, "default").sessions()
        newest = max(summaries, key=lambda s: (s.last_at is not None, s.last_at), default=None)
        name = newest.session if newest is not None else "default"
        return RedirectResponse(f"/ui/s/{name}", status_code=303)

    return await _answer(request, make)


# -- pages ---------------------------------------------------------------------------------


async def _page(request: Request, screen: Callable[[Tasks], Screen], session: str) -> Response:
    async def make() -> Response:
        html = await screen(_tasks(request, session)).render()
        return HTMLResponse(html, headers=SECURITY_HEADERS)

    return await _answer(request, make)


@router.get("/s/{session}")
async def tasks_page(request: Request, session: str) -> Response:
    """The session's tasks by group."""
    return await _page(request, lambda t: TasksScreen(t, session), session)


@router.get("/s/{session}/tree")
async def tree_page(request: Request, session: str) -> Response:
    """The delegation forest."""
    return await _page(request, lambda t: TreeScreen(t, session), session)


@router.get("/s/{session}/keys")
async def keys_page(request: Request, session: str) -> Response:
    """Concurrency keys and their queues."""
    return await _page(request, lambda t: KeysScreen(t, session), session)


def _by(value: str) -> Literal["key", "tree"]:
    return "tree" if value == "tree" else "key"


@router.get("/s/{session}/timeline")
async def timeline_page(request: Request, session: str, by: str = "key") -> Response:
    """Queued and running time as bars."""
    return await _page(request, lambda t: TimelineScreen(t, session, _by(by)), session)


@router.get("/s/{session}/timeline.json")
async def timeline_trace(request: Request, session: str, by: str = "key") -> Response:
    """The timeline as a Chrome trace, for Perfetto."""

    async def make() -> Response:
        trace = await TimelineScreen(_tasks(request, session), session, _by(by)).trace()
        name = f"outrider-{session}-trace.json"
        return Response(
            json.dumps(trace), media_type="application/json",
            headers={**SECURITY_HEADERS, "Content-Disposition": f'attachment; filename="{name}"'},
        )  # fmt: skip

    return await _answer(request, make)


@router.get("/s/{session}/t/{task_id}")
async def task_page(request: Request, session: str, task_id: str) -> Response:
    """One task."""
    return await _page(request, lambda t: TaskScreen(t, session, task_id), session)


# -- live ----------------------------------------------------------------------------------


def _screen(tasks: Tasks, session: str, view: str, task_id: str, by: str) -> Screen:
    match view:
        case "tree":
            return TreeScreen(tasks, session)
        case "keys":
            return KeysScreen(tasks, session)
        case "timeline":
            return TimelineScreen(tasks, session, _by(by))
        case "task":
            return TaskScreen(tasks, session, task_id)
        case _:
            return TasksScreen(tasks, session)


def _after(query: str, header: str | None) -> int:
    """Where a stream resumes: the `Last-Event-ID` a reconnecting page sends, else `after`."""
    for text in (header, query):
        if text and text.isdigit() and len(text) <= 19 and int(text) <= MAX_SEQ:
            return int(text)
    return 0


@router.get("/s/{session}/live")
async def live(
    request: Request, session: str, view: str = "tasks", after: str = "0", task: str = "",
    by: str = "key",
) -> Response:  # fmt: skip
    """The page's stream of HTML fragments (Server-Sent Events; `id` is the event seq)."""

    async def make() -> Response:
        tasks = _tasks(request, session)
        screen = _screen(tasks, session, view, task, by)
        if isinstance(screen, TaskScreen):
            await tasks.get(task)  # a foreign task is a 404 before the stream starts
        start = _after(after, request.headers.get("last-event-id"))

        async def produce(send: MemoryObjectSendStream[ServerSentEvent]) -> None:
            await follow(screen, start, send)

        return event_stream(
            produce, request.app.state.stopping,
            headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
        )  # fmt: skip

    return await _answer(request, make)


# -- actions -------------------------------------------------------------------------------


async def _action(
    request: Request, session: str, act: Callable[[Tasks], Awaitable[Response]]
) -> Response:
    async def make() -> Response:
        host = check_host(request, request.app.state.dashboard_hosts())
        check_post(request, host)
        return await act(_tasks(request, session))

    return await _answer(request, make)


@router.post("/s/{session}/t/{task_id}/cancel")
async def cancel(request: Request, session: str, task_id: str) -> Response:
    """Cancel a task and the tasks it started."""

    async def act(tasks: Tasks) -> Response:
        done = await tasks.cancel(task_id)
        return _flash(f"{done.label or done.id} is {done.state.value}.")

    return await _action(request, session, act)


@router.post("/s/{session}/t/{task_id}/retry")
async def retry(request: Request, session: str, task_id: str) -> Response:
    """Submit an ended task again as a new task."""

    async def act(tasks: Tasks) -> Response:
        new = await tasks.retry(task_id)
        return _flash(f"Submitted again as {new.id}.")

    return await _action(request, session, act)


@router.post("/s/{session}/ack")
async def acknowledge(request: Request, session: str) -> Response:
    """Acknowledge the session's completion notices (its failures move to Done)."""

    async def act(tasks: Tasks) -> Response:
        count = 0
        for _ in range(_ACK_ROUNDS):  # a page at a time, so none is left however many there are
            notices = await tasks.notices(limit=_ACK_PAGE)
            if not notices:
                break
            await tasks.ack_notices(max(n.seq for n in notices))
            count += len(notices)
        response = _flash(f"Acknowledged {count} notice{'' if count == 1 else 's'}.")
        response.headers["HX-Refresh"] = "true"
        return response

    return await _action(request, session, act)


@router.post("/s/{session}/limits")
async def set_limit(request: Request, session: str) -> Response:
    """Change a concurrency key's limit (the daemon's owner only)."""

    async def act(tasks: Tasks) -> Response:
        form = await request.form()
        key, text = str(form.get("key") or "").strip(), str(form.get("limit") or "")
        if not key or not text.isdigit():
            return _flash("Give a key and a whole number of at least 1.", ok=False, status=400)
        load = await tasks.set_limit(key, int(text))
        return _flash(f"{key}: limit {load.limit} ({load.running} running, {load.queued} queued).")

    return await _action(request, session, act)
