"""Agent definitions: markdown files with YAML front matter; the body is the system prompt.

Read from `.outrider/agents/`, and — so users keep what they have — opencode's
`.opencode/agent/` and `.opencode/agents/`, and Claude Code's `.claude/agents/`, in the project
dir, then `agents/` in the user config dir. The first definition of a name wins. Documented
fields of each format are mapped onto one `AgentDefinition`; unknown fields are warnings, and a
broken file is reported with its path and reason while every other file still loads.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from .._paths import config_dir
from ._workspace import Patterns, Policy

__all__ = ["AgentDefinition", "AgentSet", "load_agents"]

Format = Literal["outrider", "opencode", "claude"]

_SOURCES: tuple[tuple[str, Format], ...] = (
    (".outrider/agents", "outrider"),
    (".opencode/agent", "opencode"),
    (".opencode/agents", "opencode"),
    (".claude/agents", "claude"),
)
_KNOWN = {
    "outrider": {"name", "description", "model", "tools", "temperature", "limit", "timeout",
                 "max_turns", "budget_tokens", "budget_cost", "workspace", "fallback_models",
                 "cli", "mode", "permission", "read_only"},
    "opencode": {"description", "model", "tools", "temperature", "mode", "permission", "prompt",
                 "top_p", "disable", "maxSteps", "steps", "name", "color"},
    "claude": {"name", "description", "tools", "model", "color", "permissionMode", "skills",
               "disallowedTools", "hooks"},
}  # fmt: skip


class AgentDefinition(BaseModel):
    """One sub-agent."""

    model_config = ConfigDict(frozen=True)
    name: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._-]+$")
    description: str = ""
    prompt: str = ""
    """The system prompt (the file's body)."""
    model: str | None = None
    """`provider/model`; None: the configured default."""
    tools: tuple[str, ...] | None = None
    """Allowed tools; None: the runner's default set."""
    temperature: float | None = Field(default=None, ge=0, le=2)
    limit: int = Field(default=3, ge=1, le=1000)
    """How many of its tasks may run at once (`agent:<name>` key)."""
    timeout: float | None = Field(default=None, gt=0)
    max_turns: int | None = Field(default=None, ge=1)
    budget_tokens: int | None = Field(default=None, ge=1)
    budget_cost: float | None = Field(default=None, gt=0)
    workspace: str | None = None
    fallback_models: tuple[str, ...] = ()
    read_only: bool = False
    cli: str | None = None
    """Run through this external agent CLI (`claude`, `opencode`, …) instead of the built-in
    runner."""
    mode: str | None = None
    permission: Policy = Field(default_factory=Policy)
    """Allow/deny globs for paths and commands (`read_only` is folded in)."""
    source: Path
    format: Format

    @property
    def policy(self) -> Policy:
        """The policy its tools enforce."""
        if self.read_only and not self.permission.read_only:
            return self.permission.model_copy(update={"read_only": True})
        return self.permission


@dataclass(slots=True)
class AgentSet:
    """What loading found: the agents, and every problem with a file."""

    agents: dict[str, AgentDefinition] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


def _split(text: str) -> tuple[dict[str, Any], str]:
    if not text.startswith("---"):
        return {}, text
    _, _, rest = text.partition("\n")
    head, sep, body = rest.partition("\n---")
    if not sep:
        raise ValueError("the front matter has no closing `---`")
    meta = yaml.safe_load(head) or {}
    if not isinstance(meta, dict):
        raise ValueError("the front matter is not a mapping")
    return meta, body.partition("\n")[2]


def _tools(value: object) -> tuple[str, ...] | None:
    """Claude Code: "Read, Grep"; opencode: {write: false, bash: true}; outrider: a list."""
    match value:
        case None:
            return None
        case str():
            return tuple(t.strip() for t in value.split(",") if t.strip())
        case list():
            return tuple(str(t) for t in value)
        case dict():
            return tuple(str(k) for k, on in value.items() if on)
    raise ValueError(
        f"`tools` must be a list, a comma-separated string or a mapping, not {value!r}"
    )


_TOOL_ALIASES = {
    "read": "read_file", "view": "read_file", "glob": "list_files", "list": "list_files",
    "ls": "list_files", "grep": "grep", "search": "grep", "write": "write_file",
    "edit": "edit_file", "multiedit": "edit_file", "patch": "edit_file", "bash": "run_command",
    "shell": "run_command", "task": "delegate", "agent": "delegate",
}  # fmt: skip
_BUILTIN_TOOLS = (
    "read_file", "list_files", "grep", "write_file", "edit_file", "run_command", "delegate",
)  # fmt: skip


def _builtin_tools(names: tuple[str, ...], path: Path, warnings: list[str]) -> tuple[str, ...]:
    """Claude Code's and opencode's tool names mapped onto the built-in agent's."""
    out: list[str] = []
    for name in names:
        mapped = name if name in _BUILTIN_TOOLS else _TOOL_ALIASES.get(name.lower())
        if mapped is None:
            warnings.append(f"{path}: the built-in agent has no tool {name!r}; ignored")
        elif mapped not in out:
            out.append(mapped)
    return tuple(out)


def _opencode_permission(value: dict[str, Any], fields: dict[str, Any]) -> None:
    """opencode: `edit: deny`, `bash: deny` or `bash: {"git *": allow, "*": ask}`."""
    removed: set[str] = set()
    if value.get("edit") in ("deny", "ask"):
        removed |= {"write_file", "edit_file"}
    bash = value.get("bash")
    if bash in ("deny", "ask"):
        removed.add("run_command")
    elif isinstance(bash, dict):  # "ask" has no one to ask in the background: deny
        rules = {str(p): "deny" if v == "ask" else str(v) for p, v in bash.items()}
        allow = tuple(p for p, v in rules.items() if v == "allow" and p != "*")
        deny = tuple(p for p, v in rules.items() if v == "deny" and p != "*")
        if rules.get("*") == "deny" and not allow:
            removed.add("run_command")
        elif rules.get("*") == "allow":
            allow = ()
        fields["permission"] = Policy(commands=Patterns(allow=allow, deny=deny))
    if removed:
        base = fields.get("tools") or _BUILTIN_TOOLS
        fields["tools"] = tuple(t for t in base if t not in removed)


def _definition(path: Path, fmt: Format, warnings: list[str]) -> AgentDefinition:
    meta, body = _split(path.read_text())
    unknown = sorted(set(meta) - _KNOWN[fmt])
    if unknown:
        warnings.append(f"{path}: ignoring unknown field(s) {', '.join(unknown)}")
    fields = {k: v for k, v in meta.items() if k in AgentDefinition.model_fields}
    fields["tools"] = _tools(meta.get("tools"))
    if fields["tools"] is not None and not meta.get("cli"):
        fields["tools"] = _builtin_tools(fields["tools"], path, warnings)
    if fmt == "claude":
        denied = _tools(meta.get("disallowedTools")) or ()
        if denied:
            base = fields["tools"] or _BUILTIN_TOOLS
            gone = set(_builtin_tools(denied, path, warnings))
            fields["tools"] = tuple(t for t in base if t not in gone)
        if meta.get("permissionMode") == "plan":
            fields["read_only"] = True
    if fmt == "opencode":
        fields["name"] = path.stem  # opencode names an agent by its file
        steps = meta.get("maxSteps", meta.get("steps"))
        if steps is not None:
            fields["max_turns"] = steps
        permission = fields.pop("permission", None)
        if isinstance(permission, dict):
            _opencode_permission(permission, fields)
    fields.setdefault("name", path.stem)
    if fmt == "claude" and fields.get("model") in ("inherit",):
        fields["model"] = None
    prompt = body.strip() or str(meta.get("prompt") or "")
    return AgentDefinition(**fields, prompt=prompt, source=path, format=fmt)


def load_agents(project: Path | None = None) -> AgentSet:
    """Every agent definition visible from `project` (default: the current directory)."""
    root = project or Path.cwd()
    found = AgentSet()
    dirs = [(root / d, fmt) for d, fmt in _SOURCES]
    dirs.append((config_dir() / "agents", "outrider"))
    for folder, fmt in dirs:
        if not folder.is_dir():
            continue
        for path in sorted(folder.glob("*.md")):
            try:
                agent = _definition(path, fmt, found.warnings)
            except ValidationError as exc:
                first = exc.errors()[0]
                where = ".".join(str(p) for p in first["loc"])
                found.errors.append(f"{path}: invalid `{where}`: {first['msg']}")
                continue
            except (ValueError, yaml.YAMLError, OSError, UnicodeDecodeError) as exc:
                reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
                found.errors.append(f"{path}: {reason}")
                continue
            if agent.name in found.agents:
                first_source = found.agents[agent.name].source
                found.warnings.append(
                    f"{path}: agent {agent.name!r} is already defined by {first_source}; skipped"
                )
                continue
            found.agents[agent.name] = agent
    return found
