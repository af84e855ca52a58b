"""`outrider doctor`: what this machine and folder give outrider, each problem with its fix."""

from __future__ import annotations

import os
from pathlib import Path

from rich.console import Console

from .._agents._definitions import load_agents
from .._agents._providers import BUILTIN_PROVIDERS
from .._agents._sandbox import probe
from .._daemon._config import load_config
from .._types._errors import UserError

__all__ = ["run_checks"]

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


def _daemon() -> bool:
    from .._client._light import LightClient
    from .._paths import token_file
    from .._types._errors import OutriderError

    token = token_file()
    if token.exists() and token.stat().st_mode & 0o077:
        _line(False, "token", f"{token} is readable by others", f"chmod 600 {token}")
    try:
        health = LightClient("doctor").call("GET", "/health")
    except OutriderError as exc:
        _line(False, "daemon", str(exc).rstrip("."), "`outrider serve` (a host's bridge starts "
              "one on its first call)")  # fmt: skip
        return False
    _line(True, "daemon", f"running, version {health.get('version', '?')}")
    return True


def _hosts(project: Path, home: Path) -> None:
    from ._install import HOSTS, plan

    found = []
    for host in HOSTS:
        for scope in ("project", "user"):
            edits = plan(host, exe="outrider", root=project, home=home, scope=scope)
            if all(edit.path.is_file() and "outrider" in edit.path.read_text() for edit in edits):
                found.append(f"{host} ({scope})")
    if found:
        _line(True, "hosts", "outrider is installed in " + ", ".join(found))
    else:
        _line(False, "hosts", "no agent host here or in your home has outrider",
              "outrider install claude (or opencode, codex, gemini, cursor)")  # fmt: skip


def run_checks(config: Path | None) -> int:
    """Print each check with its fix; 0 if nothing needs fixing, else 1."""
    try:
        settings = load_config(config)
    except UserError as exc:
        _line(False, "config", str(exc), "fix the setting it names")
        return 1
    running = _daemon()
    _hosts(Path.cwd(), Path.home())
    sandboxed = _sandbox(settings.sandbox)
    _providers(dict(os.environ))  # a missing key only matters for that provider's models
    agents_ok = _agents(Path.cwd())
    return 0 if sandboxed and agents_ok and running else 1
