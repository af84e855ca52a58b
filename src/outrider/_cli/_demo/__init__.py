"""The built-in demo, run by the daemon (started if needed), offline, then shown in the dashboard.

Three parts at once, in the session `demo`: lint, test and build of a bundled sample project,
then a package step that waits for all three; a burst of 12 tasks at priorities 1-9 on a key
limited to 2; and a team of sub-agents on the built-in scripted model (no provider, no key):
a lead that looks at the project and delegates a reader and a tester in parallel, the tester
running a command as its own task. The demo ends with a one-time link to the dashboard, where
the same run shows as a list, a delegation tree, a timeline, with the agents' tool calls,
usage and (made-up) cost.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

from ..._types._api import submit_item
from ..._types._errors import NotAllowed
from ..._types._task import AgentSpec, ShellSpec, SubmitItem, Task

if TYPE_CHECKING:
    from ..._types._api import Tasks

__all__ = ["SESSION", "agent_item", "demo_items", "prepare", "submit_demo", "this_run"]

SESSION = "demo"
LIMITS = {"demo": 3, "demo-burst": 2}
_STEPS = (
    "import sys, time\n"
    "for i in range(5):\n"
    "    print(f'step {i + 1}/5 of ' + sys.argv[1], flush=True)\n"
    "    time.sleep(0.15)\n"
)
_AGENTS = {
    "demo-lead": (
        "model: scripted/lead\nbudget_tokens: 20000\ndelegates: [demo-reader, demo-tester]\n"
        "description: Scripted demo agent (no model is called) that leads a small team.\n",
        "You lead a small team: look at the project, hand out the work, sum up.",
    ),
    "demo-reader": (
        "model: scripted/reader\nread_only: true\n"
        "description: Scripted demo agent (no model is called) that reads code.\n",
        "You read code and say what it defines.",
    ),
    "demo-tester": (
        'model: scripted/tester\npermission:\n  commands: {allow: ["ls *"]}\n'
        "description: Scripted demo agent (no model is called) that runs a command.\n",
        "You run the command you are given and report.",
    ),
}
PLAN = (
    "Review the sample project with your team:\n"
    "- demo-reader: Explain what calc/__init__.py does.\n"
    "- demo-tester: Run `ls calc checks` and report what is there.\n"
)


def prepare(into: Path | None = None) -> Path:
    """A fresh copy of the sample project, with the demo's scripted agents beside it.

    Args:
        into: The folder to put it in (default: a new temporary one).
    """
    workdir = into or Path(tempfile.mkdtemp(prefix="outrider-demo-"))
    sample = resources.files(__package__).joinpath("sample")
    with resources.as_file(sample) as source:
        shutil.copytree(source, workdir / "sample", ignore=shutil.ignore_patterns("__pycache__"))
    agents = workdir / "sample" / ".outrider" / "agents"
    agents.mkdir(parents=True)
    for name, (front, prompt) in _AGENTS.items():
        (agents / f"{name}.md").write_text(f"---\n{front}---\n{prompt}\n")
    return workdir / "sample"


def _item(spec: ShellSpec | AgentSpec, **options: object) -> SubmitItem:
    return submit_item(spec, options)


def demo_items(cwd: Path) -> tuple[list[SubmitItem], list[SubmitItem]]:
    """The checks (lint, test, build), and the burst; the package step depends on the checks."""
    py, where = sys.executable, str(cwd)
    checks = [
        _item(ShellSpec(command=[py, "-m", "compileall", "-f", "calc", "checks"], cwd=where),
              label="lint", priority=8, keys=["demo"]),
        _item(ShellSpec(command=[py, "-m", "unittest", "discover", "-v", "-s", "checks"],
                        cwd=where), label="test", priority=8, keys=["demo"]),
        _item(ShellSpec(command=[py, "-m", "zipfile", "-c", "calc.zip", "calc"], cwd=where),
              label="build", priority=8, keys=["demo"]),
    ]  # fmt: skip
    burst = [
        _item(ShellSpec(command=[py, "-c", _STEPS, f"burst-{i + 1:02d}"], cwd=where),
              label=f"burst-{i + 1:02d} (p{p})", priority=p, keys=["demo-burst"])
        for i, p in enumerate((1, 3, 9, 5, 2, 7, 4, 6, 8, 1, 9, 5))
    ]  # fmt: skip
    return checks, burst


def package_item(cwd: Path, checks: list[Task]) -> SubmitItem:
    """The package step, once the checks succeeded."""
    script = "import zipfile; print(zipfile.ZipFile('calc.zip').namelist())"
    return _item(
        ShellSpec(command=[sys.executable, "-c", script], cwd=str(cwd)), label="package",
        priority=9, keys=["demo"], depends_on=[t.id for t in checks],
    )  # fmt: skip


def agent_item(cwd: Path) -> SubmitItem:
    """The scripted agent team's lead."""
    spec = AgentSpec(agent="demo-lead", prompt=PLAN, workspace=str(cwd))
    return _item(spec, label="team review (scripted model)", priority=7)


async def submit_demo(tasks: Tasks, cwd: Path, group: str) -> list[Task]:
    """Set the demo's limits and submit all of it; returns its top-level tasks."""
    for key, limit in LIMITS.items():
        try:
            await tasks.set_limit(key, limit)
        except NotAllowed:  # another principal's daemon: its limits stay as they are
            break
    checks_items, burst_items = demo_items(cwd)
    submitted = await tasks.submit_many(checks_items, group=group)
    checks = [t for t in submitted if isinstance(t, Task)]
    package = await tasks.submit_many([package_item(cwd, checks)], group=group)
    lead = await tasks.submit_many([agent_item(cwd)], group=group)
    burst = await tasks.submit_many(burst_items, group=group)
    found = [t for t in (*checks, *package, *lead, *burst) if isinstance(t, Task)]
    refused = [r for r in (*submitted, *package, *lead, *burst) if not isinstance(r, Task)]
    if refused:
        raise RuntimeError(f"The demo could not submit its tasks: {refused[0].message}")
    return found


def this_run(tasks: list[Task], roots: set[str]) -> list[Task]:
    """The tasks of this run: its top-level ones and every task they started."""
    by_id = {t.id: t for t in tasks}
    mine: list[Task] = []
    for task in tasks:
        seen, current = 0, task
        while current.id not in roots and current.parent in by_id and seen < 32:
            current, seen = by_id[current.parent], seen + 1
        if current.id in roots:
            mine.append(task)
    return mine
