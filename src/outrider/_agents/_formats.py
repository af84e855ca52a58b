"""How each host's agent file format maps onto one `AgentDefinition`, field by field.

Each format is read the way its host reads it (the host's documentation is the reference):

- **Claude Code** (`.claude/agents/*.md`): `tools` is an allow list (comma-separated or a YAML
  list; omitted: every tool; empty: none); `disallowedTools` is removed from it; `model` is an
  alias (`sonnet`, `opus`, `haiku`), a full id (`claude-sonnet-4-5-20250929`, which means
  Anthropic's API) or `inherit` (the configured default); `maxTurns` bounds the turns;
  `permissionMode: plan` is read-only and `dontAsk` refuses what would need a prompt (writing,
  commands), since a background task has no one to ask. `Agent(a, b)` (or the older
  `Task(a, b)`) allows delegating to those agents only.
- **opencode** (`.opencode/agent(s)/*.md`): the file name is the agent's name; `tools` is a map
  from tool name (wildcards allowed) to on/off over every tool, which is on unless turned off;
  `permission.edit` and `permission.bash` (`allow`, `ask`, `deny`, or for bash a map of command
  patterns) restrict editing and commands, `ask` counting as `deny` (no one to ask);
  `steps` (or the older `maxSteps`) bounds the turns; `disable: true` hides the agent;
  `prompt: "{file:./x.md}"` reads the prompt from a file next to the agent file.
- **outrider** (`.outrider/agents/*.md`): the fields of `AgentDefinition` as they are.

A tool name the built-in agent does not have is a warning and grants nothing; an empty or
all-denied tool set is no tools. Documented fields that have no meaning here are listed in
`AgentDefinition.notes` (shown by `outrider agents show`).
"""

from __future__ import annotations

import fnmatch
import re
from typing import TYPE_CHECKING, Any

from ._workspace import Patterns, Policy

if TYPE_CHECKING:
    from pathlib import Path

__all__ = [
    "BUILTIN_TOOLS", "KNOWN_FIELDS", "claude_fields", "listed", "no_meaning", "opencode_fields",
    "tool_names",
]  # fmt: skip

BUILTIN_TOOLS = (
    "read_file", "list_files", "grep", "write_file", "edit_file", "run_command", "delegate",
)  # fmt: skip
"""The built-in agent's tools."""

_WRITING = ("write_file", "edit_file")

KNOWN_FIELDS: dict[str, frozenset[str]] = {
    "outrider": frozenset({
        "name", "description", "model", "tools", "temperature", "top_p", "limit", "timeout",
        "max_turns", "budget_tokens", "budget_cost", "workspace", "fallback_models", "cli",
        "mode", "permission", "read_only", "delegates", "isolation", "setup", "merge",
    }),
    "opencode": frozenset({
        "description", "model", "tools", "temperature", "mode", "permission", "prompt",
        "top_p", "disable", "maxSteps", "steps", "name", "color", "hidden",
    }),
    "claude": frozenset({
        "name", "description", "tools", "model", "color", "permissionMode", "skills",
        "disallowedTools", "hooks", "maxTurns", "mcpServers", "memory", "background",
        "isolation",
    }),
}  # fmt: skip
"""Every field each format documents; others are warned about."""

_NO_MEANING: dict[str, dict[str, str]] = {
    "opencode": {
        "color": "display only",
        "hidden": "display only",
        "permission.webfetch": "the built-in agent has no web tool",
        "permission.external_directory": "paths outside the workspace are always refused",
        "permission.doom_loop": "outrider stops a run that repeats a call (its loop guard)",
    },
    "claude": {
        "color": "display only",
        "skills": "outrider has no skills",
        "hooks": "outrider runs no hooks",
        "mcpServers": "the built-in agent uses no MCP servers",
        "memory": "the built-in agent keeps no memory between tasks",
        "background": "every outrider task runs in the background",
    },
}

_ALIASES = {
    "read": "read_file", "view": "read_file", "glob": "list_files", "list": "list_files",
    "ls": "list_files", "grep": "grep", "search": "grep", "write": "write_file",
    "edit": "edit_file", "multiedit": "edit_file", "patch": "edit_file", "bash": "run_command",
    "shell": "run_command", "task": "delegate", "agent": "delegate",
}  # fmt: skip
_CALL = re.compile(r"^\s*(\w+)\s*\((.*)\)\s*$")


def tool_names(names: list[str], path: Path, warnings: list[str]) -> tuple[str, ...]:
    """Host tool names mapped onto the built-in agent's; unknown names warn and grant nothing."""
    out: list[str] = []
    for name in names:
        bare = _CALL.sub(r"\1", name)
        mapped = bare if bare in BUILTIN_TOOLS else _ALIASES.get(bare.lower())
        if mapped is None:
            warnings.append(f"{path}: the built-in agent has no tool {name!r}; not granted")
        elif mapped not in out:
            out.append(mapped)
    return tuple(out)


def listed(value: object, field: str) -> list[str]:
    """A tool list: a comma-separated string or a YAML list."""
    match value:
        case str():
            return [t.strip() for t in re.split(r",(?![^(]*\))", value) if t.strip()]
        case list():
            return [str(t) for t in value]
    raise ValueError(f"`{field}` must be a list or a comma-separated string, not {value!r}")


def _delegates(names: list[str]) -> tuple[str, ...] | None:
    """`Agent(a, b)` / `Task(a, b)`: delegation only to those agents."""
    for name in names:
        call = _CALL.match(name)
        if call and call.group(1).lower() in ("agent", "task"):
            return tuple(a.strip() for a in call.group(2).split(",") if a.strip())
    return None


def claude_fields(meta: dict[str, Any], path: Path, warnings: list[str]) -> dict[str, Any]:
    """The `AgentDefinition` fields of a Claude Code agent file."""
    fields: dict[str, Any] = {}
    tools = None if meta.get("tools") is None else listed(meta["tools"], "tools")
    granted = BUILTIN_TOOLS if tools is None else tool_names(tools, path, warnings)
    if tools is not None and (only := _delegates(tools)) is not None:
        fields["delegates"] = only
    if meta.get("disallowedTools") is not None:
        denied = set(tool_names(listed(meta["disallowedTools"], "disallowedTools"), path, warnings))
        granted = tuple(t for t in granted if t not in denied)
    mode = meta.get("permissionMode")
    if mode == "plan":
        fields["read_only"] = True
    elif mode == "dontAsk":
        granted = tuple(t for t in granted if t not in (*_WRITING, "run_command"))
    elif mode not in (None, "default", "acceptEdits", "bypassPermissions"):
        warnings.append(f"{path}: unknown permissionMode {mode!r}; treated as `default`")
    fields["tools"] = granted
    model = meta.get("model")
    if model == "inherit":
        fields["model"] = None
    elif isinstance(model, str) and model.startswith("claude-") and "/" not in model:
        fields["model"] = f"anthropic/{model}"  # a full Claude model id: Anthropic's API
    if meta.get("isolation") is not None:
        fields["isolation"] = meta["isolation"]
    if meta.get("maxTurns") is not None:
        fields["max_turns"] = meta["maxTurns"]
    return fields


def _tool_switches(value: dict[str, Any], path: Path, warnings: list[str]) -> tuple[str, ...]:
    """Read opencode's `tools: {write: false, "x_*": false}`: all on unless switched off."""
    enabled = dict.fromkeys(BUILTIN_TOOLS, True)
    for pattern, on in value.items():
        key = str(pattern).lower()
        matched = [t for t, host in _opencode_names() if fnmatch.fnmatchcase(host, key)]
        if not matched:
            warnings.append(f"{path}: the built-in agent has no tool {pattern!r}; ignored")
        for tool in matched:
            enabled[tool] = bool(on)
    return tuple(t for t, on in enabled.items() if on)


def _opencode_names() -> list[tuple[str, str]]:
    return [(tool, host) for host, tool in _ALIASES.items()] + [(t, t) for t in BUILTIN_TOOLS]


def _bash_policy(bash: object, tools: tuple[str, ...]) -> tuple[tuple[str, ...], Patterns]:
    """Read opencode's `permission.bash`: a string, or a map of command patterns to actions."""
    if isinstance(bash, str):
        if bash in ("deny", "ask"):
            return tuple(t for t in tools if t != "run_command"), Patterns()
        return tools, Patterns()
    if not isinstance(bash, dict):
        raise ValueError(f"`permission.bash` must be allow/ask/deny or a map, not {bash!r}")
    rules = {str(p): "deny" if v == "ask" else str(v) for p, v in bash.items()}
    allow = tuple(p for p, v in rules.items() if v == "allow" and p != "*")
    deny = tuple(p for p, v in rules.items() if v == "deny" and p != "*")
    default = rules.get("*", "allow")
    if default == "deny" and not allow:
        return tuple(t for t in tools if t != "run_command"), Patterns(deny=deny)
    return tools, Patterns(allow=allow if default == "deny" else (), deny=deny)


def opencode_fields(
    meta: dict[str, Any], path: Path, warnings: list[str], notes: list[str]
) -> dict[str, Any]:
    """The `AgentDefinition` fields of an opencode agent file."""
    fields: dict[str, Any] = {"name": path.stem}  # opencode names an agent by its file
    tools_value = meta.get("tools")
    if tools_value is not None and not isinstance(tools_value, dict):
        raise ValueError(f"`tools` must be a map of tool name to true/false, not {tools_value!r}")
    tools = _tool_switches(tools_value or {}, path, warnings)
    commands = Patterns()
    permission = meta.get("permission")
    if permission is not None:
        if not isinstance(permission, dict):
            raise ValueError(f"`permission` must be a map, not {permission!r}")
        if permission.get("edit") in ("deny", "ask"):
            tools = tuple(t for t in tools if t not in _WRITING)
        if "bash" in permission:
            tools, commands = _bash_policy(permission["bash"], tools)
        notes += [
            f"permission.{key}: {_NO_MEANING['opencode'][f'permission.{key}']}"
            for key in permission
            if f"permission.{key}" in _NO_MEANING["opencode"]
        ]
    fields["tools"] = tools
    fields["permission"] = Policy(commands=commands)
    steps = meta.get("steps", meta.get("maxSteps"))
    if steps is not None:
        fields["max_turns"] = steps
    return fields


def no_meaning(fmt: str, meta: dict[str, Any]) -> list[str]:
    """The documented fields of `meta` that have no meaning for outrider, with why."""
    table = _NO_MEANING.get(fmt, {})
    return [f"{key}: {table[key]}" for key in meta if key in table]
