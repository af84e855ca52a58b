"""The web dashboard at `/ui`: every session's work on one screen, live.

Server-rendered (Jinja2) pages with vendored htmx 4 and its SSE extension (`static/`,
`VENDOR.md`): no build step, no CDN, and every page reads as plain HTML without script; the
actions (cancel, retry, acknowledge, set a limit) need the page's script. Like every interface
it acts through the session's `Tasks` only.

- `_access`: the one-time login code, the cookie, the Host and CSRF checks.
- `_pages`: the routes; `_screens`: each page whole and its live fragments; `_live`: the
  per-page stream; `_view`, `_timeline`: what is shown, worked out from records (pure);
  `_render`: the templates and their filters.

`install(app)` adds it to the daemon's app; `POST /v1/dashboard/login` (bearer token) mints a
login link for the token's principal.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse
from starlette.staticfiles import StaticFiles

from ..._wire._bodies import DashboardLogin
from ._access import CODE_TTL, LoginCodes, allowed_hosts
from ._pages import router

if TYPE_CHECKING:
    from fastapi import FastAPI

__all__ = ["install"]

api = APIRouter()
_STATIC = Path(__file__).parent / "static"


@api.post("/v1/dashboard/login", tags=["daemon"])
async def dashboard_login(request: Request) -> DashboardLogin:
    """A one-time link that logs the token's principal in to the dashboard (`/ui`)."""
    codes: LoginCodes = request.app.state.login_codes
    code = codes.mint(request.state.principal)
    base = request.app.state.url or f"{request.url.scheme}://{request.headers.get('host')}"
    return DashboardLogin(url=f"{base}/ui/login?code={code}", expires_in=CODE_TTL)


@api.get("/favicon.ico", include_in_schema=False)
async def favicon() -> FileResponse:
    """The dashboard's icon, where browsers look for it."""
    return FileResponse(_STATIC / "icon.svg", media_type="image/svg+xml")


def install(app: FastAPI) -> None:
    """Add the dashboard's routes, its static files and its login codes to `app`.

    `app.state.host` and `app.state.port` name the daemon (the Host check); `app.state.url`,
    when set, is the base of login links.
    """
    app.state.login_codes = LoginCodes()
    app.state.url = None
    app.state.host = "127.0.0.1"

    def hosts() -> frozenset[str] | None:
        return allowed_hosts(app.state.host, app.state.port)

    app.state.dashboard_hosts = hosts
    app.include_router(api)
    app.include_router(router)
    static = StaticFiles(packages=[(__name__, "static")])
    app.mount("/ui/static", static, name="dashboard-static")
