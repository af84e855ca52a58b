"""`outrider doctor` and `outrider install HOST` (the work: `_hosts._doctor`, `_hosts._install`)."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path
from typing import Annotated

import typer

from ._options import fail

__all__ = ["doctor", "install"]


def doctor(
    config: Annotated[Path | None, typer.Option(help="Config file.")] = None,
) -> None:
    """Check the daemon, token, hosts, agents, provider keys and sandbox; each with its fix."""
    from .._hosts._doctor import run_checks

    raise typer.Exit(run_checks(config))


def _executable() -> str:
    """The absolute path of the `outrider` command being run."""
    found = shutil.which(sys.argv[0]) if sys.argv and sys.argv[0] else None
    if found and Path(found).name.startswith("outrider"):
        return str(Path(found).resolve())
    beside = Path(sys.executable).with_name("outrider")
    return str(beside if beside.exists() else shutil.which("outrider") or beside)


def install(
    host: Annotated[str, typer.Argument(help="claude, opencode, codex, gemini or cursor.")],
    user: Annotated[
        bool, typer.Option("--user/--project", help="The user's config, or this project's.")
    ] = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Say what would change.")] = False,
    uninstall: Annotated[
        bool, typer.Option("--uninstall", help="Remove what install wrote.")
    ] = False,
) -> None:
    """Add outrider to an agent host: its MCP server entry, plus the host's hooks or plugin."""
    from .._hosts._install import apply, plan
    from .._types._errors import UserError

    try:
        edits = plan(host, exe=_executable(), root=Path.cwd(), home=Path.home(),
                     scope="user" if user else "project", uninstall=uninstall)  # fmt: skip
        for line in apply(edits, dry_run=dry_run):
            print(line)
    except UserError as exc:
        fail(str(exc))
