"""The `outrider` command line (typer + rich).

Commands by module: `_run` (`run` a batch file, the offline `demo`), `_submit` (`submit`,
`retry`), `_tasks` (`ps`, `show`, `logs`, `wait`, `cancel`, `notices`), `_daemon` (`serve`,
`mcp`, `status`, `limit`, `stop`, `dashboard`), `_cluster` (`worker`, `nodes`), `_worktrees`
(`worktrees`, `merge`, `discard`), `_config` (`config check`), `_doctor` (`doctor`,
`install`) and `_agents` (`agents`); what they print and their exit codes are in `_output`.

Help texts are plain text (`rich_markup_mode=None`): a `[[task]]` in a help is shown as written.

Start-up is part of the interface: `outrider mcp` (the stdio bridge a host starts) goes straight
to `_hosts._bridge` (and `outrider hook` to `_hosts._hooks`) without building the command
line, and the command modules import what a
command needs inside it, so `--help` and `submit` load typer and little else.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import typer

__all__ = ["app", "main"]


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
    config = found.get("--config")
    return found.get("--session"), found.get("--tools"), Path(config) if config else None
