"""The built-in demo: lint, test and build a small sample project at once, then a burst."""

from __future__ import annotations

import shutil
import sys
import tempfile
from importlib import resources
from pathlib import Path

from .._cli._batch import Batch, BatchTask

__all__ = ["demo_batch"]

_STEPS = (
    "import sys, time\n"
    "for i in range(5):\n"
    "    print(f'step {i + 1}/5 of ' + sys.argv[1], flush=True)\n"
    "    time.sleep(0.15)\n"
)


def demo_batch() -> Batch:
    """Copy the sample project to a temp folder and describe the demo batch over it."""
    workdir = Path(tempfile.mkdtemp(prefix="outrider-demo-"))
    sample = resources.files(__package__).joinpath("sample")
    with resources.as_file(sample) as source:
        shutil.copytree(source, workdir / "sample", ignore=shutil.ignore_patterns("__pycache__"))
    cwd = str(workdir / "sample")
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
