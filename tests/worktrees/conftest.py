"""Real git repositories on `tmp_path`, and an orchestrator whose agents write in them."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

import outrider
from outrider._agents._definitions import AgentDefinition
from outrider._agents._providers import ProviderConfig, Providers
from outrider._agents._runner import AgentRunner
from outrider.runners._cli_agent import CliAgentRunner, CliTemplate
from tests.fakellm import FakeLLM

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Iterator

S = "wt-tests"


def git(repo: Path, *args: str) -> str:
    """Run git in `repo`; its stdout."""
    done = subprocess.run(
        ["git", *args], cwd=repo, capture_output=True, text=True, check=True,
        env={"PATH": "/usr/bin:/bin", "HOME": str(repo), "GIT_CONFIG_NOSYSTEM": "1",
             "LC_ALL": "C"},
    )  # fmt: skip
    return done.stdout


def exists(path: str) -> bool:
    """Whether a file or folder is there."""
    return Path(path).exists()


def write(path: str, text: str) -> None:
    """Write a file."""
    Path(path).write_text(text)


def read(path: str) -> str:
    """A file's text."""
    return Path(path).read_text()


def state(repo: Path) -> tuple[str, str, str]:
    """What the parent's checkout looks like: status, index and HEAD."""
    return (
        git(repo, "status", "--porcelain=v2", "--untracked-files=all"),
        git(repo, "ls-files", "--stage"),
        git(repo, "rev-parse", "HEAD"),
    )


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeLLM]:
    with FakeLLM() as server:
        yield server


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    root = tmp_path / "repo"
    root.mkdir()
    git(root, "init", "-q", "-b", "main")
    git(root, "config", "user.email", "dev@example.com")
    git(root, "config", "user.name", "Dev")
    (root / "a.py").write_text("one\ntwo\nthree\n")
    (root / "b.py").write_text("b\n")
    (root / ".gitignore").write_text("*.log\n")
    git(root, "add", ".")
    git(root, "commit", "-q", "-m", "start")
    return root


def _agent(name: str, **kw: Any) -> AgentDefinition:
    return AgentDefinition(
        name=name, model=f"fake/{name}", prompt=f"You are {name}.", source=Path(f"{name}.md"),
        format="outrider", **kw,
    )  # fmt: skip


@pytest.fixture
async def orch(
    tmp_path: Path, fake: FakeLLM, request: pytest.FixtureRequest
) -> AsyncIterator[outrider.Orchestrator]:
    agents = {
        "writer": _agent("writer"),
        "reader": _agent("reader", read_only=True),
        "inplace": _agent("inplace", isolation="none"),
        "prepared": _agent("prepared", setup="echo ready > setup.log"),
        "unprepared": _agent("unprepared", setup="echo no; exit 4"),
        "auto": _agent("auto", merge="auto-if-clean"),
        "helper": _agent("helper"),
    }
    providers = Providers({"fake": ProviderConfig(base_url=fake.base_url, api_key="k")})
    cli = CliAgentRunner({"sh": CliTemplate(("/bin/sh", "-c", "{prompt}"))})
    fake.scripts.clear()
    settings = outrider.Settings(worktrees_dir=str(tmp_path / "worktrees"))
    async with outrider.Orchestrator(
        db=tmp_path / "o.db", settings=settings, runners=[AgentRunner(agents, providers), cli]
    ) as o:
        yield o


async def run(orch: outrider.Orchestrator, *specs: outrider.TaskSpec) -> list[outrider.Task]:
    """Submit the specs at once and wait for all of them."""
    session = orch.session(S)
    tasks = [await session.submit(spec) for spec in specs]
    done = await session.wait([t.id for t in tasks], timeout=30)
    assert all(t.state.terminal for t in done), done
    return list(done)
