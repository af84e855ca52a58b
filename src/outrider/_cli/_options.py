"""The options every command shares, and how a command ends with an error: light to import.

The command modules import this at the top and everything heavier (the client, rich, the
models) inside the command that needs it, so a command loads typer and what it uses. An error
is one line on stderr, `error: …` (red on a terminal; `_say`, which the fast paths use alone).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, NoReturn

import typer

from ._say import error, warn

__all__ = [
    "EXIT_INTERRUPTED",
    "ConfigOpt",
    "JsonOpt",
    "SessionOpt",
    "error",
    "fail",
    "root",
    "warn",
]

EXIT_INTERRUPTED = 130
SessionOpt = Annotated[
    str,
    typer.Option(envvar="OUTRIDER_SESSION", help="Session to act in (env OUTRIDER_SESSION)."),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON instead of text.")]
ConfigOpt = Annotated[Path | None, typer.Option(help="Config file (default: outrider.toml).")]


def fail(message: str, code: int = 2) -> NoReturn:
    """Print `error: message` on stderr and end the command with `code`."""
    error(message)
    raise typer.Exit(code)


def _version(shown: bool) -> None:
    if shown:
        from .._version import __version__

        print(f"outrider {__version__}")
        raise typer.Exit


def root(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_version, is_eager=True, help="Print the version and exit."
        ),
    ] = False,
) -> None:
    """Run shell jobs and sub-agents in parallel, in the background, durably."""
