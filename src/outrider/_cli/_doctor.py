"""`outrider doctor`: what this machine and folder give outrider, each problem with its fix."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from .._agents._definitions import load_agents
from .._agents._providers import BUILTIN_PROVIDERS
from .._agents._sandbox import probe
from .._daemon._config import load_config
from .._types._errors import UserError

__all__ = ["doctor"]

_out = Console(highlight=False)


def _line(ok: bool, what: str, detail: str, fix: str | None = None) -> None:
    mark = "[green]ok[/]  " if ok else "[yellow]warn[/]"
    _out.print(f"{mark} {what}: {detail}", soft_wrap=True, markup=True)
    if fix:
        _out.print(f"     fix: {fix}", soft_wrap=True, markup=False)


def _sandbox(mode: str) -> bool:
    status = probe()
    if mode == "off":
        _line(False, "sandbox", 'off (sandbox = "off"): agent commands run unconfined',
              'set sandbox = "auto" in outrider.toml')  # fmt: skip
        return False
    if status.available:
        _line(True, "sandbox", f"bubblewrap works ({status.bwrap}); agent commands are confined")
        return True
    unsafe = (
        "agent tasks with run_command fail" if mode == "required" else "commands run unconfined"
    )
    _line(False, "sandbox", f"{status.reason}; {unsafe}", status.fix)
    return False


def _providers(environ: dict[str, str]) -> bool:
    ok = True
    for name, provider in BUILTIN_PROVIDERS.items():
        env = provider.api_key_env
        if provider.api == "scripted":
            _line(True, f"provider {name}", "built in: scripted answers, no model is called")
        elif env is None:
            _line(True, f"provider {name}", f"needs no key ({provider.base_url})")
        elif environ.get(env):
            _line(True, f"provider {name}", f"key in ${env}")
        else:
            ok = False
            fix = f"export {env}=… before starting the daemon, if you use {name}/… models"
            _line(False, f"provider {name}", f"no key (${env} is not set)", fix)
    return ok


def _agents(project: Path) -> bool:
    found = load_agents(project)
    names = ", ".join(sorted(found.agents)) or "none"
    fix = None if found.agents else "add markdown files to .outrider/agents/ or .claude/agents/"
    _line(bool(found.agents), "agents", f"{len(found.agents)} visible from {project}: {names}", fix)
    for problem in found.errors:
        _line(False, "agent file", problem, "fix the file; the other agents still load")
    return not found.errors


def doctor(
    config: Annotated[Path | None, typer.Option(help="Config file.")] = None,
) -> None:
    """Check the sandbox, provider keys and the agents visible here; each problem with its fix."""
    try:
        settings = load_config(config)
    except UserError as exc:
        _line(False, "config", str(exc), "fix the setting it names")
        raise typer.Exit(1) from None
    sandboxed = _sandbox(settings.sandbox)
    _providers(dict(os.environ))  # a missing key only matters for that provider's models
    agents_ok = _agents(Path.cwd())
    raise typer.Exit(0 if sandboxed and agents_ok else 1)
