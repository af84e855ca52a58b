"""`outrider serve`: one Orchestrator behind HTTP (REST, SSE, MCP) on loopback.

Start-up order: validate the config, take the store, bind the socket, then record
`daemon.json` (URL and pid, 0600) and report readiness; requests that arrive meanwhile wait in
the listen backlog. SIGTERM/SIGINT/SIGHUP (or `POST /v1/shutdown`): stop accepting, end long polls
and event streams, let running tasks finish for `shutdown_grace` seconds, then stop the rest
and record them; `daemon.json` is removed last.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import socket
from typing import TYPE_CHECKING

import anyio
import uvicorn

from .._agents._definitions import AgentCatalog, load_agents
from .._asynclib import next_stop_signal
from .._http._app import AuthMiddleware, create_app
from .._http._auth import LOCAL, Tokens
from .._logging import logger
from .._mcp._server import build_server, daemon_resolver
from .._paths import daemon_file, data_dir, open_private, private_dir
from .._service._orchestrator import Orchestrator
from .._types._errors import UserError
from ._config import MCP_TOOLS, import_handlers
from ._runners import agent_limits, executors, runners

if TYPE_CHECKING:
    from collections.abc import Callable, Generator, Iterator

    from fastapi import FastAPI

    from .._types._api import Tasks
    from ._config import Config

__all__ = ["serve"]


class _Server(uvicorn.Server):
    """uvicorn without its own signal handling: the daemon owns SIGINT/SIGTERM."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # proto must be IPPROTO_TCP: asyncio sets TCP_NODELAY on accepted sockets only then, and
    # without it small responses wait ~40 ms for a delayed ACK.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise UserError(
            f"Cannot listen on {host}:{port}: {exc.strerror}; is another daemon running? "
            "(`outrider status`), or pick another `--port`.",
            field="port",
        ) from None
    sock.listen(128)
    sock.set_inheritable(False)
    return sock


@contextlib.contextmanager
def _daemon_record(url: str) -> Iterator[None]:
    path = daemon_file()
    tmp = path.with_suffix(".tmp")
    try:
        private_dir(path.parent)
        fd = open_private(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
        with os.fdopen(fd, "w") as out:
            json.dump({"url": url, "pid": os.getpid()}, out)
        tmp.replace(path)
    except OSError as exc:
        raise UserError(
            f"Cannot write {path}: {exc.strerror}; make the data dir writable, or set "
            "OUTRIDER_HOME to one that is."
        ) from None
    try:
        yield
    finally:
        with contextlib.suppress(OSError):
            current = json.loads(path.read_text())
            if current.get("pid") == os.getpid():
                path.unlink()


def _check_can_serve(config: Config, *, allow_remote: bool) -> None:
    """Refuse a non-loopback host unless allowed, and a data dir that cannot be used."""
    if not _is_loopback(config.host) and not allow_remote:
        raise UserError(
            f"Refusing to listen on {config.host!r}, which is not loopback: pass "
            "--allow-remote to serve other machines (every request still needs the token).",
            field="host",
        )
    try:
        private_dir(data_dir())
    except OSError as exc:
        raise UserError(
            f"Cannot use the data dir {data_dir()}: {exc.strerror}; make it writable (and "
            "yours), or set OUTRIDER_HOME to one that is."
        ) from None


def _orchestrator(config: Config) -> Orchestrator:
    """The daemon's orchestrator: the config's limits and handlers, and the agents found here."""
    agents = load_agents()
    for problem in (*agents.warnings, *agents.errors):
        logger.warning("agents: %s", problem)
    limits = {**agent_limits(agents.agents), **config.limits}  # the operator's win
    composed = runners(config, agents.agents)
    orch = Orchestrator(
        config.db_path,
        config.model_copy(update={"limits": limits}),
        runners=composed,
        executors=executors(config, agents.agents, composed),
    )
    for name, fn in import_handlers(config.handlers).items():
        orch.register_handler(name, fn)
    return orch


def _app(orch: Orchestrator, config: Config, tokens: Tokens, stopping: anyio.Event) -> FastAPI:
    """HTTP and MCP over the orchestrator's sessions; the principal comes from the token."""

    def sessions(principal: str, name: str) -> Tasks:
        return orch.session(name, owner=principal, admin=principal == LOCAL)

    mcp, _ = build_server(
        daemon_resolver(sessions), tools=MCP_TOOLS, listed=config.mcp_tools,
        max_wait=config.mcp_wait, agents=AgentCatalog(),
    )  # fmt: skip
    # The MCP routes first: they make the session manager the app's lifespan runs.
    mcp_routes = mcp.streamable_http_app(streamable_http_path="/mcp", host=config.host).routes
    app = create_app(
        sessions, status=orch.status, stopping=stopping, request_stop=stopping.set,
        lifespan=mcp.session_manager.run, tokens=tokens,
    )  # fmt: skip
    app.router.routes.extend(mcp_routes)
    return app


async def serve(
    config: Config,
    *,
    allow_remote: bool = False,
    on_ready: Callable[[str], None] | None = None,
) -> None:
    """Run the daemon until SIGINT/SIGTERM/SIGHUP or a shutdown request.

    Raises:
        UserError: A non-loopback host without `allow_remote`, a port in use, a bad handler.
    """
    _check_can_serve(config, allow_remote=allow_remote)
    tokens = Tokens.from_config(config)
    orch = _orchestrator(config)
    stopping = anyio.Event()
    async with orch:
        app = _app(orch, config, tokens, stopping)
        sock = _bind(config.host, config.port)
        host, port = sock.getsockname()[:2]
        url = f"http://{'[' + host + ']' if ':' in host else host}:{port}"
        app.state.host, app.state.port, app.state.url = host, port, url
        http_config = uvicorn.Config(
            AuthMiddleware(app, tokens=tokens), log_level="warning", lifespan="on",
            timeout_graceful_shutdown=3, access_log=False,
        )  # fmt: skip
        server = _Server(http_config)
        with _daemon_record(url):
            async with anyio.create_task_group() as tg:

                async def stop_when_asked() -> None:
                    await stopping.wait()
                    server.should_exit = True

                async def stop_on_signal() -> None:
                    received = await next_stop_signal()
                    logger.info("received %s: stopping", received.name)
                    stopping.set()

                tg.start_soon(stop_on_signal)
                tg.start_soon(stop_when_asked)
                logger.info("serving on %s (store %s)", url, config.db_path)
                if on_ready is not None:
                    on_ready(url)
                await server.serve(sockets=[sock])
                tg.cancel_scope.cancel()
        logger.info("HTTP stopped; letting running tasks finish (up to %ss)", config.shutdown_grace)
