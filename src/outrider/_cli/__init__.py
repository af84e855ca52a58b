"""The `outrider` command line (typer + rich).

Commands by module: `_run` (`run` a batch file, the offline `demo`), `_submit` (`submit`,
`retry`), `_tasks` (`ps`, `show`, `logs`, `wait`, `cancel`, `notices`), `_daemon` (`serve`,
`mcp`, `status`, `limit`, `stop`, `dashboard`), `_cluster` (`worker`, `nodes`), `_worktrees`
(`worktrees`, `merge`, `discard`), `_config` (`config check`), `_doctor` (`doctor`,
`install`) and `_agents` (`agents`); what they print and their exit codes are in `_output`.

Help texts are plain text (`rich_markup_mode=None`): a `[[task]]` in a help is shown as written.

Start-up is part of the interface: `outrider mcp` (the stdio bridge a host starts) goes straight
to `_hosts._bridge` (and `outrider hook` to `_hosts._hooks`) without building the command
line, a plain `submit` of a shell command goes to `_fast` (argparse and plain JSON), and
`outrider --help` prints `help.txt`, the typer application's own help written by
`scripts/cli_help.py` (checked by `make lint`), on any terminal where the application would
print the same text (80 columns or more). Everything else builds the application; the command
modules import what a command needs inside it.
"""

from __future__ import annotations

import os
import sys

TYPE_CHECKING = False  # `typing.TYPE_CHECKING`: typing, pathlib and shutil cost `--help` a third
if TYPE_CHECKING:
    from pathlib import Path

    import typer

__all__ = ["HELP_FILE", "HELP_WIDTH", "app", "build_app", "main"]

HELP_FILE = os.path.join(os.path.dirname(__file__), "help.txt")
"""`outrider --help` as the application prints it on a wide terminal (`scripts/cli_help.py`)."""
HELP_WIDTH = 80
"""Terminal columns from which the help's text no longer depends on the width (click's)."""


def build_app() -> typer.Typer:
    """The command line (typer), built when a command other than the bridge runs."""
    import typer

    from . import _cluster, _daemon, _run, _submit, _tasks, _worktrees
    from ._agents import agents_app
    from ._config import config_app
    from ._doctor import doctor, install
    from ._options import root

    app = typer.Typer(
        no_args_is_help=True, rich_markup_mode=None, pretty_exceptions_enable=False,
        help="Run shell jobs and sub-agents in parallel, in the background, durably.",
    )  # fmt: skip

    app.callback()(root)
    for command in (
        _run.run, _run.demo, _submit.submit, _submit.retry, _tasks.ps, _tasks.show, _tasks.logs,
        _tasks.wait, _tasks.cancel, _tasks.notices, _daemon.serve, _daemon.mcp, _daemon.status,
        _daemon.limit, _daemon.stop, _daemon.dashboard, _cluster.worker, _cluster.nodes,
        _worktrees.worktrees, _worktrees.merge, _worktrees.discard,
    ):  # fmt: skip
        app.command()(command)
    app.add_typer(agents_app, name="agents")
    app.command()(doctor)
    app.command()(install)
    app.add_typer(config_app, name="config")
    return app


def __getattr__(name: str) -> object:
    if name != "app":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals()["app"] = built = build_app()
    return built


def main() -> None:
    """Run the `outrider` command."""
    argv = sys.argv[1:]
    if (text := _static_help(argv)) is not None:
        sys.stdout.write(text)
        sys.exit(0)
    if (bridged := _bridge_args(argv)) is not None:
        from .._hosts._bridge import main as bridge

        sys.exit(bridge(*bridged))
    if argv[:1] == ["hook"]:
        from .._hosts._hooks import main as hook

        sys.exit(hook(argv[1:]))
    if argv[:1] == ["submit"]:
        from ._fast import submit_fast

        if (code := submit_fast(argv[1:])) is not None:
            sys.exit(code)
    build_app()(prog_name="outrider")


def _static_help(argv: list[str]) -> str | None:
    """`outrider --help`'s text without building the application, where it prints the same."""
    if argv != ["--help"] or "_OUTRIDER_COMPLETE" in os.environ:
        return None
    if _columns() < HELP_WIDTH:
        return None  # click wraps the help to a narrower terminal
    with open(HELP_FILE, encoding="utf-8") as file:
        return file.read()


def _columns() -> int:
    """The terminal's width as click finds it (what `shutil.get_terminal_size` does)."""
    try:
        columns = int(os.environ.get("COLUMNS", "0"))
    except ValueError:
        columns = 0
    if columns > 0:
        return columns
    try:
        return os.get_terminal_size(sys.__stdout__.fileno()).columns or 80  # type: ignore[union-attr]
    except (AttributeError, ValueError, OSError):  # no stdout, or not a terminal
        return 80  # shutil's fallback


def _bridge_args(argv: list[str]) -> tuple[str | None, str | None, Path | None] | None:
    """`outrider mcp`'s options when that is the command, parsed without building the app."""
    if argv[:1] != ["mcp"]:
        return None
    found: dict[str, str] = {}
    rest = argv[1:]
    while rest:
        option, _, value = rest.pop(0).partition("=")
        if option not in ("--session", "--tools", "--config") or (not value and not rest):
            return None  # --help, or anything else: the command line says what is wrong
        found[option] = value or rest.pop(0)
    from pathlib import Path

    config = found.get("--config")
    return found.get("--session"), found.get("--tools"), Path(config) if config else None
