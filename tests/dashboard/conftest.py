"""A daemon's HTTP app over an in-process orchestrator, on 127.0.0.1, with the dashboard.

The orchestrator runs shell tasks, the `gate` handler (`outrider.testing.ScriptedHandler`) and the
demo's scripted agents, so every page has something real to show.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import httpx
import pytest

import outrider
from outrider._agents import _scripted
from outrider._agents._definitions import load_agents
from outrider._agents._providers import Providers
from outrider._agents._runner import AgentRunner
from outrider._cli._demo import prepare
from outrider._http._auth import LOCAL
from outrider.testing import ScriptedHandler

from ..contracts.conftest import TOKENS, serving

if TYPE_CHECKING:
    from collections.abc import AsyncIterator
    from pathlib import Path


@dataclass
class Site:
    """The daemon's app over `orch`, served at `url`."""

    url: str
    orch: outrider.Orchestrator
    gates: ScriptedHandler
    sample: Path
    stack: contextlib.AsyncExitStack = field(default_factory=contextlib.AsyncExitStack)

    async def api(self, principal: str = LOCAL) -> httpx.AsyncClient:
        """A client of the JSON API with `principal`'s token."""
        headers = {"Authorization": f"Bearer {TOKENS[principal]}"}
        client = httpx.AsyncClient(base_url=self.url, headers=headers, timeout=30)
        return await self.stack.enter_async_context(client)

    async def login_url(self, principal: str = LOCAL) -> str:
        answer = await (await self.api(principal)).post("/v1/dashboard/login")
        assert answer.status_code == 200, answer.text
        url = answer.json()["url"]
        assert isinstance(url, str)
        return url

    async def browser(self, principal: str | None = LOCAL) -> httpx.AsyncClient:
        """A cookie-keeping client, logged in as `principal` (None: not logged in)."""
        client = httpx.AsyncClient(base_url=self.url, timeout=30)
        await self.stack.enter_async_context(client)
        if principal is not None:
            assert (await client.get(await self.login_url(principal))).status_code == 200
        return client


@pytest.fixture(autouse=True)
def fast_scripts(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_scripted, "WORD_DELAY", 0.0)


@pytest.fixture
async def site(tmp_path: Path) -> AsyncIterator[Site]:
    sample = prepare(tmp_path)
    agents = load_agents(sample).agents
    runner = AgentRunner(agents, Providers(), sandbox="off")
    settings = outrider.Settings(shutdown_grace=0.5, limits={"hold": 1})
    orch = outrider.Orchestrator(tmp_path / "o.db", settings, runners=[runner])
    async with orch:
        gates = ScriptedHandler(orch)
        async with serving(orch) as url:
            found = Site(url, orch, gates, sample)
            async with found.stack:
                yield found
