"""`outrider run FILE` and `outrider demo`.

`run`: the batch runs in this process (no daemon), in a store of its own, as one group, shown
live (`_live`). `demo`: the sample batch and a scripted agent team run in the daemon, shown live,
and the run ends with a link to the dashboard.
"""

from __future__ import annotations

from pathlib import Path  # noqa: TC003  # typer reads the annotations at run time
from typing import Annotated

import typer

from ._options import EXIT_INTERRUPTED, fail

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
    open_browser: Annotated[
        bool, typer.Option("--open", help="Open the dashboard in the default browser at the end.")
    ] = False,
) -> None:
    """A sample project's checks, a prioritised burst and a scripted agent team, in the daemon.

    Everything runs offline (the agents on the built-in scripted model); it ends with a
    one-time link to the dashboard, which shows the same run.
    """
    from rich.console import Console

    from .._types._errors import OutriderError
    from .._types._task import TaskState
    from ._live import demo_end, demo_in_daemon, run_with_signals

    console = Console()
    console.print(
        "[bold]outrider demo[/], in the daemon (session `demo`): lint, test and build a sample "
        "project at the same time and package it when all three succeed; a burst of 12 tasks at "
        "priorities 1-9 on a key limited to 2; and a team of sub-agents on the built-in "
        "[bold]scripted model[/] (no provider, no key, a made-up price): a lead delegates a "
        "reader and a tester in parallel.\n"
    )
    outcome = run_with_signals(lambda: demo_in_daemon(console))
    if outcome is None:
        console.print("[yellow]interrupted: the demo's tasks were cancelled[/]")
        raise typer.Exit(EXIT_INTERRUPTED)
    if isinstance(outcome, OutriderError):
        fail(str(outcome))
    tasks, url = outcome
    demo_end(console, tasks, url, show=open_browser)
    raise typer.Exit(0 if all(t.state is TaskState.SUCCEEDED for t in tasks) else 1)
