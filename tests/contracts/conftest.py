"""The `Tasks` contract runs over both implementations: in process and over real HTTP.

`world` gives each test one session of a fresh orchestrator, either as `orch.session(...)` or
as an `AsyncClient` talking to that orchestrator's HTTP app served by uvicorn on 127.0.0.1 (in
this event loop; the ASGI transport of httpx cannot stream, and the event and notice streams
are part of the contract).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import anyio
import pytest
import uvicorn

import outrider
from outrider._daemon._serve import _bind, _Server
from outrider._http._app import AuthMiddleware, create_app
from outrider._http._auth import LOCAL, Tokens
from outrider.runners._cli_agent import CliAgentRunner, CliTemplate
from outrider.testing import ScriptedHandler

if TYPE_CHECKING:
    from collections.abc import AsyncIterator
    from pathlib import Path

TOKENS = {LOCAL: "local-token", "alice": "alice-token"}


@dataclass
class World:
    """One orchestrator, seen through one kind of `Tasks`."""

    kind: str
    orch: outrider.Orchestrator
    gates: ScriptedHandler
    url: str | None = None
    stack: contextlib.AsyncExitStack = field(default_factory=contextlib.AsyncExitStack)

    async def tasks(self, session: str = "s", principal: str = LOCAL) -> outrider.Tasks:
        """A session of `principal`, the way this world reaches it."""
        if self.url is None:
            return self.orch.session(session, owner=principal, admin=principal == LOCAL)
        client = outrider.AsyncClient(self.url, token=TOKENS[principal], session=session)
        return await self.stack.enter_async_context(client)


@contextlib.asynccontextmanager
async def serving(orch: outrider.Orchestrator) -> AsyncIterator[str]:
    """The daemon's HTTP app over `orch`, on a free loopback port, for the block's duration."""
    stopping = anyio.Event()

    def sessions(principal: str, name: str) -> outrider.Tasks:
        return orch.session(name, owner=principal, admin=principal == LOCAL)

    tokens = Tokens(TOKENS)
    app = create_app(
        sessions, status=orch.status, stopping=stopping, request_stop=stopping.set, tokens=tokens
    )
    config = uvicorn.Config(AuthMiddleware(app, tokens=tokens), log_level="warning",
                            lifespan="off", timeout_graceful_shutdown=1)  # fmt: skip
    server = _Server(config)
    sock = _bind("127.0.0.1", 0)
    app.state.port = sock.getsockname()[1]
    async with anyio.create_task_group() as tg:
        tg.start_soon(lambda: server.serve(sockets=[sock]))
        with anyio.fail_after(10):
            while not server.started:
                await anyio.lowlevel.checkpoint()
        port = sock.getsockname()[1]
        try:
            yield f"http://127.0.0.1:{port}"
        finally:
            stopping.set()
            server.should_exit = True


@pytest.fixture(params=["session", "http"])
async def world(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[World]:
    settings = outrider.Settings(
        shutdown_grace=0.5, limits={"hold": 1}, max_queued=20,
        worktrees_dir=str(tmp_path / "worktrees"),
    )  # fmt: skip
    sh = CliAgentRunner({"sh": CliTemplate(("/bin/sh", "-c", "{prompt}"))})
    orch = outrider.Orchestrator(tmp_path / "o.db", settings, runners=[sh])
    async with orch:
        gates = ScriptedHandler(orch)
        if request.param == "session":
            yield World("session", orch, gates)
            return
        async with serving(orch) as url:
            world = World("http", orch, gates, url=url)
            async with world.stack:
                yield world
