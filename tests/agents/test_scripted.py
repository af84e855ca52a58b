"""The built-in scripted model: a delegation tree with real tools, usage and cost, offline."""

from __future__ import annotations

from pathlib import Path

import pytest

import outrider
from outrider._agents import _scripted
from outrider._agents._definitions import AgentDefinition
from outrider._agents._providers import SCRIPTED_PRICE, Providers
from outrider._agents._runner import AgentRunner
from outrider._agents._workspace import Patterns, Policy

PLAN = (
    "Review the project with your team:\n"
    "- reader: Explain what calc/core.py does.\n"
    "- tester: Run `echo checks passed` and report.\n"
)


@pytest.fixture(autouse=True)
def fast(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_scripted, "WORD_DELAY", 0.0)


def _agent(name: str, model: str, **kw: object) -> AgentDefinition:
    return AgentDefinition.model_validate(
        {"name": name, "model": model, "prompt": f"You are {name}.",
         "source": Path(f"{name}.md"), "format": "outrider", **kw}
    )  # fmt: skip


async def test_a_scripted_lead_delegates_in_parallel_and_sums_up(tmp_path: Path) -> None:
    (tmp_path / "calc").mkdir()
    source = "def add(a, b):\n    return a + b\n\nclass Calc:\n    pass\n"
    (tmp_path / "calc" / "core.py").write_text(source)
    agents = {
        "lead": _agent("lead", "scripted/lead", budget_tokens=50_000),
        "reader": _agent("reader", "scripted/reader", read_only=True),
        "tester": _agent(
            "tester", "scripted/tester", permission=Policy(commands=Patterns(allow=("echo *",)))
        ),
    }
    runner = AgentRunner(agents, Providers(), sandbox="off")
    async with outrider.Orchestrator(db=tmp_path / "o.db", runners=[runner]) as orch:
        me = orch.session("me")
        lead = await me.submit(outrider.agent("lead", PLAN, workspace=str(tmp_path)))
        (done,) = await me.wait([lead.id], timeout=60)
        tasks = {t.label or t.name: t for t in await me.list()}
        output = await me.tail(lead.id, lines=100)
        transcript = await me.transcript(lead.id)
    assert done.state is outrider.TaskState.SUCCEEDED, done.error
    assert isinstance(done.result, str)
    assert "- reader: The file has 5 lines and defines add, Calc." in done.result
    assert "- tester: The command ended with exit code 0; it printed: checks passed" in done.result
    reader, tester = tasks["reader ← lead"], tasks["tester ← lead"]
    assert reader.parent == tester.parent == lead.id
    (command,) = [t for t in tasks.values() if t.kind == "shell"]
    assert command.parent == tester.id
    assert "Let me look at the project first." in output
    assert "→ delegate" in output
    assert done.usage is not None
    assert done.usage.requests == 3
    assert done.usage.input_tokens > 0
    assert done.usage.output_tokens > 0
    expected = (done.usage.input_tokens * SCRIPTED_PRICE.input
                + done.usage.output_tokens * SCRIPTED_PRICE.output) / 1e6  # fmt: skip
    assert done.usage.cost == pytest.approx(expected)
    assert isinstance(transcript, dict)
    assert transcript["attempts"] == [{"model": "scripted/lead", "error": None}]
    assert transcript["budget"] == {"tokens": 50_000, "cost": None}
    assert any(keys == "model:scripted/lead" for keys in done.keys)


async def test_a_reader_without_a_path_finds_a_file_and_a_bad_script_is_named(
    tmp_path: Path,
) -> None:
    (tmp_path / "only.py").write_text("x = 1\n")
    agents = {
        "reader": _agent("reader", "scripted/reader", read_only=True),
        "nobody": _agent("nobody", "scripted/poet"),
    }
    runner = AgentRunner(agents, Providers(), sandbox="off")
    async with outrider.Orchestrator(db=tmp_path / "o.db", runners=[runner]) as orch:
        me = orch.session("me")
        read = await me.submit(outrider.agent("reader", "Describe it.", workspace=str(tmp_path)))
        bad = await me.submit(outrider.agent("nobody", "Write a poem.", workspace=str(tmp_path)))
        found, refused = await me.wait([read.id, bad.id], timeout=60)
    assert found.result == "The file has 1 lines and defines no functions or classes."
    assert refused.error is not None
    assert refused.error.type == "config"
    assert "Unknown script 'poet'" in refused.error.message
    assert "scripted/lead, scripted/reader, scripted/tester" in refused.error.message


def test_the_scripts_are_the_ones_the_providers_know() -> None:
    assert sorted(_scripted.SCRIPTS) == sorted(n.split("/")[1] for n in Providers().prices)
