"""`outrider install HOST`: the MCP entry and the wake-up hooks (or plugin) in a host's config.

What is written, per host (`--project`: under the current folder, `--user`: the home folder):

- claude: `.mcp.json` (user: `~/.claude.json`); hooks in `.claude/settings.json`.
- opencode: `opencode.json(c)` (user: `~/.config/opencode/`); the plugin
  `.opencode/plugin/outrider.ts` (user: `~/.config/opencode/plugin/`).
- codex: `.codex/config.toml` (user: `~/.codex/`); a Stop hook in `.codex/hooks.json`.
- gemini: `.gemini/settings.json` (user: `~/.gemini/`), with an AfterAgent hook.
- cursor: `.cursor/mcp.json` (user: `~/.cursor/`); no hook (notices come with answers).

Invariants:
- The entry runs the absolute path of the `outrider` being installed, so a host finds it
  whatever its PATH.
- A merge keeps every other entry of the file (JSON, JSONC read with its comments dropped,
  TOML edited as text so its comments stay); a changed file is first copied to `FILE.bak`.
- Installing twice changes nothing the second time; `--uninstall` removes exactly what an
  install wrote (outrider's entries are recognised by name and by `outrider` in the command).
- Nothing is half-written: a file that cannot be read as its format is reported and left as it
  is, and nothing else is written.
"""

from __future__ import annotations

import json
import re
import shutil
from dataclasses import dataclass
from importlib import resources
from typing import TYPE_CHECKING, Any, Literal

from .._types._errors import UserError

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

__all__ = ["HOSTS", "Edit", "apply", "plan"]

HOSTS = ("claude", "opencode", "codex", "gemini", "cursor")
NAME = "outrider"
Scope = Literal["project", "user"]


@dataclass(frozen=True)
class Edit:
    """One file to change: how its new text follows from its old one (None: absent)."""

    path: Path
    change: Callable[[str | None], str | None]
    """The new text (None: remove the file), from the old; raises `UserError` if unreadable."""


# -- JSON ------------------------------------------------------------------------------------

_JSONC_TOKENS = re.compile(r'"(?:\\.|[^"\\])*"|//[^\n]*|/\*.*?\*/', re.S)
_TRAILING_COMMA = re.compile(r",(\s*[}\]])")


def _load_json(path: Path, text: str | None) -> dict[str, Any]:
    """A JSON or JSONC object (comments and trailing commas dropped), {} for no file."""
    if text is None or not text.strip():
        return {}
    plain = _JSONC_TOKENS.sub(lambda m: m[0] if m[0].startswith('"') else "", text)
    plain = _TRAILING_COMMA.sub(r"\1", plain)
    try:
        found = json.loads(plain)
    except ValueError as exc:
        raise UserError(
            f"Cannot read {path} as JSON ({exc}); fix it, then install again."
        ) from None
    if not isinstance(found, dict):
        raise UserError(f"{path} does not hold a JSON object; fix it, then install again.")
    return found


def _json_edit(path: Path, update: Callable[[dict[str, Any]], None]) -> Edit:
    def change(old: str | None) -> str | None:
        doc = _load_json(path, old)
        update(doc)
        if not doc and old is not None and not _load_json(path, old):
            return old
        return json.dumps(doc, indent=2, ensure_ascii=False) + "\n"

    return Edit(path, change)


def _set_entry(table: str, entry: dict[str, Any] | None) -> Callable[[dict[str, Any]], None]:
    """Put (or, with None, remove) `table.outrider`, dropping `table` if it ends empty."""

    def update(doc: dict[str, Any]) -> None:
        found = doc.get(table)
        servers: dict[str, Any] = dict(found) if isinstance(found, dict) else {}
        if entry is None:
            servers.pop(NAME, None)
        else:
            servers[NAME] = entry
        if servers:
            doc[table] = servers
        else:
            doc.pop(table, None)

    return update


def _is_ours(hook: object) -> bool:
    command = hook.get("command") if isinstance(hook, dict) else None
    return isinstance(command, str) and " hook " in command and NAME in command


def _set_hooks(hooks: dict[str, dict[str, Any]] | None) -> Callable[[dict[str, Any]], None]:
    """Put outrider's `hooks` (event: hook) in a Claude-style `hooks` table, dropping old ones."""

    def update(doc: dict[str, Any]) -> None:
        table = doc.get("hooks")
        events: dict[str, Any] = dict(table) if isinstance(table, dict) else {}
        for event in list(events):
            groups = events[event] if isinstance(events[event], list) else []
            kept = []
            for group in groups:
                inner = group.get("hooks") if isinstance(group, dict) else None
                if isinstance(inner, list) and any(_is_ours(h) for h in inner):
                    rest = [h for h in inner if not _is_ours(h)]
                    if not rest:
                        continue
                    group = {**group, "hooks": rest}
                kept.append(group)
            events[event] = kept
        for event, hook in (hooks or {}).items():
            events.setdefault(event, []).append({"hooks": [hook]})
        events = {k: v for k, v in events.items() if v != []}
        if events:
            doc["hooks"] = events
        else:
            doc.pop("hooks", None)

    return update


# -- TOML ------------------------------------------------------------------------------------

_TABLE = re.compile(r"^\s*\[\[?\s*([^\]]+?)\s*\]\]?\s*(#.*)?$")


def _toml_edit(path: Path, entry: str | None) -> Edit:
    """`[mcp_servers.outrider]` (and its sub-tables) replaced by `entry`, as text."""

    def change(old: str | None) -> str | None:
        import tomllib

        text = old or ""
        try:
            tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise UserError(
                f"Cannot read {path} as TOML ({exc}); fix it, then install again."
            ) from None
        kept: list[str] = []
        ours = False
        for line in text.splitlines():
            if match := _TABLE.match(line):
                name = match[1].replace('"', "").replace(" ", "")
                ours = name == f"mcp_servers.{NAME}" or name.startswith(f"mcp_servers.{NAME}.")
            if not ours:
                kept.append(line)
        body = "\n".join(kept).rstrip()
        if entry is not None:
            body = f"{body}\n\n{entry}" if body else entry
        if old is None and not body:
            return None
        return body + "\n" if body else ""

    return Edit(path, change)


# -- files -----------------------------------------------------------------------------------


def _file_edit(path: Path, text: str | None) -> Edit:
    return Edit(path, lambda _old: text)


def _plugin_source() -> str:
    return resources.files(__package__).joinpath("opencode_plugin.ts").read_text()


# -- the hosts -------------------------------------------------------------------------------


def _hook(exe: str, event: str, **extra: object) -> dict[str, Any]:
    return {"type": "command", "command": f"{_quote(exe)} hook {event}", **extra}


def _quote(word: str) -> str:
    import shlex

    return shlex.quote(word)


def _claude(exe: str, root: Path, home: Path, scope: Scope, on: bool) -> list[Edit]:
    server = {"type": "stdio", "command": exe, "args": ["mcp"], "env": {}} if on else None
    hooks = {
        "SessionStart": _hook(exe, "claude-start", timeout=10),
        "UserPromptSubmit": _hook(exe, "claude-prompt", timeout=10),
        "Stop": _hook(exe, "claude-rewake", asyncRewake=True, timeout=86400),
    } if on else None  # fmt: skip
    mcp_file = root / ".mcp.json" if scope == "project" else home / ".claude.json"
    settings = (root if scope == "project" else home) / ".claude" / "settings.json"
    return [_json_edit(mcp_file, _set_entry("mcpServers", server)),
            _json_edit(settings, _set_hooks(hooks))]  # fmt: skip


def _opencode(exe: str, root: Path, home: Path, scope: Scope, on: bool) -> list[Edit]:
    folder = root if scope == "project" else home / ".config" / "opencode"
    config = next(
        (folder / n for n in ("opencode.jsonc", "opencode.json") if (folder / n).exists()),
        folder / "opencode.json",
    )
    plugins = folder / ".opencode" / "plugin" if scope == "project" else folder / "plugin"
    entry = {"type": "local", "command": [exe, "mcp"], "enabled": True} if on else None
    plugin = _plugin_source().replace("__OUTRIDER__", json.dumps(exe)) if on else None
    return [_json_edit(config, _set_entry("mcp", entry)),
            _file_edit(plugins / "outrider.ts", plugin)]  # fmt: skip


def _codex(exe: str, root: Path, home: Path, scope: Scope, on: bool) -> list[Edit]:
    folder = (root if scope == "project" else home) / ".codex"
    entry = f'[mcp_servers.{NAME}]\ncommand = {json.dumps(exe)}\nargs = ["mcp"]' if on else None
    hooks = {"Stop": _hook(exe, "stop", timeout=10)} if on else None
    return [_toml_edit(folder / "config.toml", entry),
            _json_edit(folder / "hooks.json", _set_hooks(hooks))]  # fmt: skip


def _gemini(exe: str, root: Path, home: Path, scope: Scope, on: bool) -> list[Edit]:
    settings = (root if scope == "project" else home) / ".gemini" / "settings.json"
    entry = {"command": exe, "args": ["mcp"]} if on else None
    hooks = {"AfterAgent": _hook(exe, "stop", timeout=10000)} if on else None

    def update(doc: dict[str, Any]) -> None:
        _set_entry("mcpServers", entry)(doc)
        _set_hooks(hooks)(doc)

    return [_json_edit(settings, update)]


def _cursor(exe: str, root: Path, home: Path, scope: Scope, on: bool) -> list[Edit]:
    path = (root if scope == "project" else home) / ".cursor" / "mcp.json"
    entry = {"command": exe, "args": ["mcp"]} if on else None
    return [_json_edit(path, _set_entry("mcpServers", entry))]


_PLANS = {"claude": _claude, "opencode": _opencode, "codex": _codex, "gemini": _gemini,
          "cursor": _cursor}  # fmt: skip


def plan(
    host: str, *, exe: str, root: Path, home: Path, scope: Scope, uninstall: bool = False
) -> list[Edit]:
    """The files `outrider install HOST` changes.

    Raises:
        UserError: An unknown host.
    """
    if host not in _PLANS:
        raise UserError(f"Unknown host {host!r}: give one of {', '.join(HOSTS)}.", field="host")
    return _PLANS[host](exe, root, home, scope, not uninstall)


def apply(edits: list[Edit], *, dry_run: bool) -> list[str]:
    """Make the edits (each changed file backed up first); what changed, one line per file.

    Raises:
        UserError: A file cannot be read as its format (nothing was written).
    """
    changes: list[tuple[Path, str | None, str | None]] = []
    for edit in edits:
        old = edit.path.read_text() if edit.path.is_file() else None
        new = edit.change(old)
        changes.append((edit.path, old, new))
    said = []
    for path, old, new in changes:
        if new == old:
            said.append(f"unchanged  {path}")
            continue
        verb = "would " if dry_run else ""
        if new is None:
            said.append(f"{verb}remove   {path}")
        else:
            said.append(f"{verb}{'write' if old is None else 'update'}   {path}")
        if dry_run:
            continue
        if old is not None:
            shutil.copy2(path, path.with_name(path.name + ".bak"))
            said[-1] += f" (backup: {path.name}.bak)"
        if new is None:
            path.unlink()
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(new)
    return said
