"""`outrider config check`: the daemon's settings, checked before it starts.

It reads the config exactly as `outrider serve` does (the file, then `OUTRIDER_*` variables),
imports the `[handlers]`, and loads the agent definitions of this directory. A bad setting is
the same one-line error, with exit 2; otherwise it prints every effective setting, defaults and
resolved paths included.
"""

from __future__ import annotations

import json
from typing import Annotated

import typer

from .._types._errors import UserError
from ._options import ConfigOpt, fail, warn

__all__ = ["config_app"]

config_app = typer.Typer(
    no_args_is_help=True, rich_markup_mode=None, help="The daemon's configuration (outrider.toml)."
)


@config_app.command()
def check(
    config: ConfigOpt = None,
    json_output: Annotated[bool, typer.Option("--json", help="Print JSON instead.")] = False,
) -> None:
    """Validate the config the daemon would use and print its effective settings."""
    from .._agents._definitions import load_agents
    from .._daemon._config import find_config_file, import_handlers, load_config
    from ._output import err, out

    try:
        settings = load_config(config)
        import_handlers(settings.handlers)
    except UserError as exc:
        fail(str(exc))
    found = load_agents()
    for problem in (*found.warnings, *found.errors):
        warn(f"agents: {problem}")
    source = find_config_file(config)
    values = settings.model_dump(mode="json")
    values.update(db=str(settings.db_path), token_file=str(settings.local_token_file))
    if json_output:
        print(json.dumps({"file": source and str(source), "settings": values}, indent=2))
        return
    err.print(f"{source or 'no config file (defaults)'}: valid", markup=False, soft_wrap=True)
    width = max(map(len, values))
    for name, value in values.items():
        out.print(f"{name:<{width}} = {json.dumps(value)}", markup=False, soft_wrap=True)
