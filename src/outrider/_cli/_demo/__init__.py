"""The built-in demo: lint, test and build a small sample project at once, then a burst."""

from __future__ import annotations

import shutil
import sys
import tempfile
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

import anyio

from .._batch import Batch, BatchTask

if TYPE_CHECKING:
    from rich.console import Console

__all__ = ["demo_agent", "demo_batch"]

_STEPS = (
    "import sys, time\n"
    "for i in range(5):\n"
    "    print(f'step {i + 1}/5 of ' + sys.argv[1], flush=True)\n"
    "    time.sleep(0.15)\n"
)


def _sample_copy() -> Path:
    """A fresh copy of the sample project in a temp folder."""
    workdir = Path(tempfile.mkdtemp(prefix="outrider-demo-"))
    sample = resources.files(__package__).joinpath("sample")
    with resources.as_file(sample) as source:
        shutil.copytree(source, workdir / "sample", ignore=shutil.ignore_patterns("__pycache__"))
    return workdir / "sample"


def demo_batch() -> Batch:
    """Copy the sample project to a temp folder and describe the demo batch over it."""
    cwd = str(_sample_copy())
    py = sys.executable
    tasks = [
        BatchTask(label="lint", command=[py, "-m", "compileall", "-f", "calc", "checks"], cwd=cwd,
                  priority=8, keys=["shell"]),
        BatchTask(label="test", command=[py, "-m", "unittest", "discover", "-v", "-s", "checks"],
                  cwd=cwd, priority=8, keys=["shell"]),
        BatchTask(label="build", command=[py, "-m", "zipfile", "-c", "calc.zip", "calc"], cwd=cwd,
                  priority=8, keys=["shell"]),
        BatchTask(label="package", cwd=cwd, priority=9, keys=["shell"],
                  command=[py, "-c", "import zipfile; print(zipfile.ZipFile('calc.zip').namelist())"],  # noqa: E501
                  depends_on=["lint", "test", "build"]),
    ]  # fmt: skip
    for index, priority in enumerate((1, 3, 9, 5, 2, 7, 4, 6, 8, 1, 9, 5)):
        name = f"burst-{index + 1:02d}"
        tasks.append(
            BatchTask(label=f"{name} (p{priority})", command=[py, "-c", _STEPS, name], cwd=cwd,
                      priority=priority, keys=["burst"])
        )  # fmt: skip
    return Batch(limits={"shell": 3, "burst": 2}, task=tasks)


def demo_agent(console: Console) -> None:
    """A read-only sub-agent describes the sample project, when a model is configured."""
    from ... import AgentDefinition, AgentRunner, Orchestrator, agent
    from ..._daemon._config import load_config

    config = load_config()
    if not config.default_model:
        console.print(
            "\n[bold]Sub-agents[/]: no model is configured, so the agent part is skipped. Set "
            '`default_model = "openai/gpt-4.1-mini"` in outrider.toml and OPENAI_API_KEY (or '
            "ANTHROPIC_API_KEY with an anthropic/… model, or any OpenAI-compatible server as "
            "\\[providers.NAME] base_url) and run the demo again."
        )
        return
    workspace = _sample_copy()
    reader = AgentDefinition(
        name="demo-reader", read_only=True, max_turns=10, budget_tokens=50_000,
        prompt="You read code and explain it briefly.", source=Path("demo"), format="outrider",
    )  # fmt: skip
    providers = config.model_providers()

    async def run() -> None:
        runner = AgentRunner({"demo-reader": reader}, providers)
        async with Orchestrator(db=":memory:", runners=[runner]) as orch:
            spec = agent("demo-reader", "Describe what calc/ does in two sentences.",
                         workspace=str(workspace))  # fmt: skip
            task = await orch.session("demo").submit(spec)
            (done,) = await orch.session("demo").wait([task.id])
        console.print(f"\n[bold]Sub-agent[/] on {config.default_model}: {done.state.value}")
        console.print(str(done.result if done.error is None else done.error.message))
        if done.usage is not None:
            cost = "unknown" if done.usage.cost is None else f"${done.usage.cost:.4f}"
            console.print(
                f"{done.usage.input_tokens} in / {done.usage.output_tokens} out tokens, "
                f"{done.usage.requests} requests, cost {cost}"
            )

    console.print(f"\n[bold]Sub-agents[/]: asking a read-only agent on {config.default_model}…")
    anyio.run(run)
