"""`outrider submit` of a shell command without typer: the common case, started fast.

typer coerces every parameter of the command it runs through pydantic, which alone takes
longer to import than the whole request should take. A plain `submit` of a shell command
(the options below, no `--agent`, `--handler` or `--wait`) is parsed here and sent as plain
JSON (`_client._light`); the daemon validates it, so what is stored and refused is the same.
Anything this parser does not take as plainly given — another option, `--help`, a value that
starts with `-`, is not a number where one is due or is out of its range, a missing folder —
goes to the typer command, which says what is wrong. (argparse would parse the same options,
but importing and building it cost a quarter of this command's start.) `tests/cli` checks
that every option here is one of the typer command's and that both store the same task.
"""

from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path

from .._types._errors import OutriderError, UserError, exit_code_of

TYPE_CHECKING = False  # as `typing`'s: the commands that must start fast do not import typing
if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence
    from typing import Any

__all__ = ["OPTIONS", "env_of", "parse", "post_task", "shell_spec", "submit_fast"]

_ENV_ITEM = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)=(.*)$", re.S)
OPTIONS: dict[str, type[str | int | float]] = {
    "--label": str, "--description": str, "--priority": int, "--timeout": float, "--ttl": float,
    "--stall-timeout": float, "--max-attempts": int, "--key": str, "--depends-on": str,
    "--group": str, "--cwd": str, "--env": str, "--session": str,
}  # fmt: skip
"""The options of a plain `submit` (and `--json`); `--key`, `--depends-on`, `--env` repeat."""
REPEATED = ("--key", "--depends-on", "--env")


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

    client = LightClient(session, autostart=True, on_start=said)
    try:
        task = client.call("POST", "/v1/tasks", body)
    except OutriderError as exc:
        from ._say import error

        error(str(exc))
        return exit_code_of(exc)
    finally:
        client.close()
    print(json.dumps(task, indent=2, ensure_ascii=False) if json_output else task["id"])
    return 0


def parse(argv: Sequence[str]) -> tuple[dict[str, Any], list[str]] | None:
    """A plain submit's options and its command's words; None if anything is not plain.

    Options are keyed by name, the repeated ones as lists, `--json` as True; typer says what is
    wrong with anything this returns None for.
    """
    end = argv.index("--") if "--" in argv else len(argv)
    given: dict[str, Any] = {}
    words: list[str] = []
    items = iter(argv[:end])
    for item in items:
        name, equals, value = item.partition("=")
        if item == "--json":
            given[item] = True
        elif not item.startswith("-"):
            words.append(item)
        elif name not in OPTIONS or (not equals and (value := next(items, "-")).startswith("-")):
            return None  # another option, --help, a missing value, or a value like an option
        else:
            try:
                typed = OPTIONS[name](value)
            except ValueError:
                return None
            given[name] = [*given.get(name, []), typed] if name in REPEATED else typed
    return given, [*words, *argv[end + 1 :]]


def submit_fast(argv: Sequence[str]) -> int | None:
    """Run `outrider submit ARGV` here if it is a plain shell submit; else None (use typer)."""
    if (parsed := parse(argv)) is None:
        return None
    given, words = parsed
    priority, attempts = given.get("--priority"), given.get("--max-attempts")
    cwd = given.get("--cwd")
    if (priority is not None and not 0 <= priority <= 10) or (
        (attempts is not None and not 1 <= attempts <= 100)
        or (cwd is not None and not Path(cwd).is_dir())
    ):
        return None  # typer says what is wrong
    try:
        where = str(Path(cwd or ".").resolve())
        spec = shell_spec(words, where=where, env=env_of(given.get("--env")))
    except UserError:
        return None
    options = {
        "label": given.get("--label"), "description": given.get("--description"),
        "priority": 5 if priority is None else priority, "timeout": given.get("--timeout"),
        "ttl": given.get("--ttl"), "stall_timeout": given.get("--stall-timeout"),
        "max_attempts": attempts, "keys": given.get("--key"),
        "depends_on": given.get("--depends-on"), "group": given.get("--group"),
    }  # fmt: skip
    body = {"spec": spec, **{k: v for k, v in options.items() if v is not None}}
    session = given.get("--session") or _session()
    return post_task(body, session=session, json_output=bool(given.get("--json")))


def _session() -> str:
    return os.environ.get("OUTRIDER_SESSION") or "default"
