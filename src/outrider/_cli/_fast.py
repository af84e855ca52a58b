"""`outrider submit` of a shell command without typer: the common case, started fast.

typer coerces every parameter of the command it runs through pydantic, which alone takes
longer to import than the whole request should take. A plain `submit` of a shell command
(the options below, no `--agent`, `--handler` or `--wait`) is parsed here with argparse and
sent as plain JSON (`_client._light`); the daemon validates it, so what is stored and refused
is the same. Anything this parser does not accept as given — another option, `--help`, a value
out of its range, a missing folder — goes to the typer command, which says what is wrong.
`tests/cli` checks that every option here is one of the typer command's, meaning the same.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from .._types._errors import OutriderError, UserError, exit_code_of

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

__all__ = ["OPTIONS", "env_of", "post_task", "shell_spec", "submit_fast"]

_ENV_ITEM = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)=(.*)$", re.S)
OPTIONS = {
    "--label": str, "--description": str, "--priority": int, "--timeout": float, "--ttl": float,
    "--stall-timeout": float, "--max-attempts": int, "--key": str, "--depends-on": str,
    "--group": str, "--cwd": str, "--env": str, "--session": str,
}  # fmt: skip
"""The options of a plain `submit` (and `--json`); `--key`, `--depends-on`, `--env` repeat."""
_REPEATED = ("--key", "--depends-on", "--env")


def env_of(items: Sequence[str] | None) -> dict[str, str]:
    """`--env NAME=VALUE` items as a mapping.

    Raises:
        UserError: An item is not NAME=VALUE.
    """
    env: dict[str, str] = {}
    for item in items or ():
        match = _ENV_ITEM.match(item)
        if match is None:
            raise UserError(
                f"Invalid `--env` {item!r}: give NAME=VALUE with a variable name, e.g. CI=1."
            )
        env[match[1]] = match[2]
    return env


def shell_spec(words: Sequence[str], *, where: str, env: Mapping[str, str]) -> dict[str, object]:
    """A shell command's spec, as the daemon reads it: one word for `sh -c`, several an argv.

    Raises:
        UserError: No command.
    """
    if not words:
        raise UserError("Give the command to run, e.g. `outrider submit -- make test`.")
    command: str | list[str] = words[0] if len(words) == 1 else list(words)
    return {"kind": "shell", "command": command, "cwd": where, "env": dict(env)}


def post_task(body: Mapping[str, object], *, session: str, json_output: bool) -> int:
    """Send a task as plain JSON, print its id (its record with --json); the exit code."""
    from .._client._light import LightClient

    def said(url: str) -> None:
        print(f"started the outrider daemon at {url}", file=sys.stderr)

    try:
        task = LightClient(session, autostart=True, on_start=said).call("POST", "/v1/tasks", body)
    except OutriderError as exc:
        from ._say import error

        error(str(exc))
        return exit_code_of(exc)
    print(json.dumps(task, indent=2, ensure_ascii=False) if json_output else task["id"])
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(add_help=False, allow_abbrev=False, exit_on_error=False)
    parser.add_argument("words", nargs="*")
    for option, kind in OPTIONS.items():
        parser.add_argument(option, type=kind, action="append" if option in _REPEATED else "store")
    parser.add_argument("--json", action="store_true")
    return parser


def submit_fast(argv: Sequence[str]) -> int | None:
    """Run `outrider submit ARGV` here if it is a plain shell submit; else None (use typer)."""
    end = argv.index("--") if "--" in argv else len(argv)
    head, tail = list(argv[:end]), list(argv[end + 1 :])
    if "--help" in head or "-h" in head:
        return None
    try:
        given, unknown = _parser().parse_known_intermixed_args(head)
    except (argparse.ArgumentError, ValueError):
        return None
    priority, attempts = given.priority, given.max_attempts
    if unknown or (priority is not None and not 0 <= priority <= 10):
        return None
    if (attempts is not None and not 1 <= attempts <= 100) or (
        given.cwd is not None and not Path(given.cwd).is_dir()
    ):
        return None
    try:
        spec = shell_spec([*given.words, *tail], where=str(Path(given.cwd or ".").resolve()),
                          env=env_of(given.env))  # fmt: skip
    except UserError:
        return None
    options = {
        "label": given.label, "description": given.description,
        "priority": 5 if priority is None else priority, "timeout": given.timeout,
        "ttl": given.ttl, "stall_timeout": given.stall_timeout, "max_attempts": attempts,
        "keys": given.key, "depends_on": given.depends_on, "group": given.group,
    }  # fmt: skip
    body = {"spec": spec, **{k: v for k, v in options.items() if v is not None}}
    session = given.session or _session()
    return post_task(body, session=session, json_output=given.json)


def _session() -> str:
    return os.environ.get("OUTRIDER_SESSION") or "default"
