"""The `outrider` command line (typer + rich).

Commands by module: `_run` (`run` a batch file, the offline `demo`), `_submit` (`submit`,
`retry`), `_tasks` (`ps`, `show`, `logs`, `wait`, `cancel`, `notices`), `_daemon` (`serve`,
`mcp`, `status`, `limit`, `stop`, `dashboard`), `_config` (`config check`), `_doctor` (`doctor`) and
`_agents` (`agents`); what they print and their exit codes are in `_output`.

Help texts are plain text (`rich_markup_mode=None`): a `[[task]]` in a help is shown as written.
"""

from __future__ import annotations

from typing import Annotated

import typer

from .._version import __version__
from . import _daemon, _run, _submit, _tasks, _worktrees
from ._agents import agents_app
from ._config import config_app
from ._doctor import doctor

__all__ = ["app", "main"]

app = typer.Typer(
    no_args_is_help=True,
    rich_markup_mode=None,
    help="Run shell jobs and sub-agents in parallel, in the background, durably.",
)


def _version(shown: bool) -> None:
    if shown:
        print(f"outrider {__version__}")
        raise typer.Exit


@app.callback()
def _main(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_version, is_eager=True, help="Print the version and exit."
        ),
    ] = False,
) -> None:
    """Run shell jobs and sub-agents in parallel, in the background, durably."""


for _command in (
    _run.run, _run.demo, _submit.submit, _submit.retry, _tasks.ps, _tasks.show, _tasks.logs,
    _tasks.wait, _tasks.cancel, _tasks.notices, _daemon.serve, _daemon.mcp, _daemon.status,
    _daemon.limit, _daemon.stop, _daemon.dashboard,
    _worktrees.worktrees, _worktrees.merge, _worktrees.discard,
):  # fmt: skip
    app.command()(_command)
app.add_typer(agents_app, name="agents")
app.command()(doctor)
app.add_typer(config_app, name="config")


def main() -> None:
    """Run the `outrider` command."""
    app(prog_name="outrider")
