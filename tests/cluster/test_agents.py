"""Built-in agents on a real Ray cluster (a head and a node on loopback): a node runs the
daemon's agent runner, its model calls going to the fake provider over real HTTP."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import psutil
import pytest

import outrider
from outrider._agents._definitions import AgentDefinition
from outrider._agents._providers import ProviderConfig
from outrider._daemon._config import Config
from outrider._daemon._runners import executors, runners
from outrider.testing import wait_until
from tests.fakellm import FakeLLM, Reply

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Iterator

    from tests.cluster.conftest import Cluster

pytestmark = [pytest.mark.cluster, pytest.mark.slow, pytest.mark.timeout(300)]
S = "agents"


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeLLM]:
    with FakeLLM() as server:
        yield server


@pytest.fixture
async def orch(
    cluster: Cluster, fake: FakeLLM, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[outrider.Orchestrator]:
    monkeypatch.setenv("OUTRIDER_HOME", str(cluster.folder))  # where the cluster's token is
    talker = AgentDefinition(name="talker", model="fake/talker", prompt="You talk.",
                             source=Path("talker.md"), format="outrider")  # fmt: skip
    config = Config(
        cluster=cluster.head.address, db=tmp_path / "o.db", sandbox="off",
        providers={"fake": ProviderConfig(base_url=fake.base_url, api_key="k")},
    )  # fmt: skip
    agents = {"talker": talker}
    made = runners(config, agents)
    async with outrider.Orchestrator(
        tmp_path / "o.db", config, runners=made, executors=executors(config, agents, made)
    ) as opened:
        yield opened


def _clients_of(port: int) -> set[int]:
    """The processes with a connection open to `port` on this machine."""
    return {c.pid for c in psutil.net_connections("tcp")
            if c.raddr and c.raddr.port == port and c.pid is not None}  # fmt: skip


async def test_cancel_of_a_remote_agent_aborts_its_provider_request(
    orch: outrider.Orchestrator, fake: FakeLLM, tmp_path: Path
) -> None:
    fake.script("talker", [Reply.say("word " * 400, chunk_delay=0.05)])
    aborted, calls = fake.aborted, len(fake.calls_for("talker"))
    session = orch.session(S)
    task = await session.submit(outrider.agent("talker", "Talk", workspace=str(tmp_path)))
    await wait_until(lambda: len(fake.calls_for("talker")) == calls + 1, timeout=60)
    (client,) = _clients_of(fake.port)  # a node's worker streams the answer, not the daemon
    assert client != os.getpid()
    ended = await session.cancel(task.id)
    assert ended.state is outrider.TaskState.CANCELLED
    await wait_until(lambda: fake.aborted > aborted, timeout=10)  # the server's own thread
    assert client not in _clients_of(fake.port)
