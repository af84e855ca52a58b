"""`outrider run FILE` and `outrider demo`: a batch in an orchestrator of its own, shown live.

The batch runs in this process (no daemon), in a store of its own, as one group (`_live`).
"""

from __future__ import annotations

from pathlib import Path  # noqa: TC003  # typer reads the annotations at run time
from typing import Annotated

import typer

from ._options import fail

__all__ = ["demo", "run"]


def run(
    file: Annotated[
        Path, typer.Argument(help="A TOML batch file of [[task]] tables.", show_default=False)
    ],
    db: Annotated[Path | None, typer.Option(help="Store file (default: a fresh one).")] = None,
    config: Annotated[
        Path | None,
        typer.Option(help="Config file for agent tasks' providers (default: outrider.toml)."),
    ] = None,
    json_output: Annotated[
        bool, typer.Option("--json", help="Print one JSON document of every task's record.")
    ] = False,
    session: Annotated[str, typer.Option(help="Session that owns the tasks.")] = "cli",
) -> None:
    """Run a batch of tasks from a TOML file with a live table; exit 1 if any did not succeed.

    A task runs a shell `command`, or a sub-agent: `agent` (defined beside the file, in
    .outrider/agents/) with its `prompt` and an optional `model`.
    """
    from .._types._errors import UserError
    from ._batch import BatchError, load_batch
    from ._live import Plan, execute

    try:
        batch = load_batch(file)
        plan = Plan.of(batch, file, config)
    except (BatchError, UserError) as exc:
        fail(str(exc))
    execute(batch, db=db, session=session, as_json=json_output, plan=plan)


def demo(
    db: Annotated[Path | None, typer.Option(help="Store file (default: a fresh one).")] = None,
) -> None:
    """Lint, test and build a bundled sample project at once, then a prioritised burst."""
    from rich.console import Console

    from ._demo import demo_agent, demo_batch
    from ._live import execute

    console = Console()
    console.print(
        "[bold]outrider demo[/]: lint, test and build a sample project at the same time, "
        "package it when all three succeed, and a burst of 12 tasks at priorities 1-9 on a "
        "key limited to 2.\n"
    )
    try:
        execute(demo_batch(), db=db, session="demo", as_json=False)
    except typer.Exit as done:
        if done.exit_code == 0:
            demo_agent(console)
            console.print("\nNext: describe your own jobs in a TOML file and `outrider run FILE`.")
        raise
