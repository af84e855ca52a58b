"""Agent definitions: markdown files with YAML front matter; the body is the system prompt.

Where they are found, nearest first (the first definition of a name wins):
- in the project: `.outrider/agents/`, opencode's `.opencode/agent/` and `.opencode/agents/`,
  and Claude Code's `.claude/agents/`, in the directory a task is delegated from and each parent
  up to the repository root (the first folder holding `.git`);
- for the user: `agents/` in outrider's config dir, `~/.config/opencode/agent(s)/` and
  `~/.claude/agents/`.

Each format's documented fields are read the way its host reads them (`_formats`); unknown
fields are warnings; a broken file is reported with its path and reason while every other file
still loads. `AgentCatalog` re-reads a directory's files when one is added, changed or removed
(checked by their modification times), so the next task sees an edited file without a restart.
"""

from __future__ import annotations

import os
import re
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from .._paths import config_dir
from .._types._worktrees import Isolation, MergePolicy
from ._formats import (
    BUILTIN_TOOLS,
    KNOWN_FIELDS,
    claude_fields,
    listed,
    no_meaning,
    opencode_fields,
    tool_names,
)
from ._workspace import Policy

__all__ = ["AgentCatalog", "AgentDefinition", "AgentSet", "agent_dirs", "load_agents"]

Format = Literal["outrider", "opencode", "claude"]

_PROJECT: tuple[tuple[str, Format], ...] = (
    (".outrider/agents", "outrider"),
    (".opencode/agent", "opencode"),
    (".opencode/agents", "opencode"),
    (".claude/agents", "claude"),
)


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
    """Allowed tools; None: every tool; empty: none."""
    delegates: tuple[str, ...] | None = None
    """The agents `delegate` may hand work to; None: any."""
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, gt=0, le=1)
    limit: int = Field(default=3, ge=1, le=1000)
    """How many of its tasks may run at once (`agent:<name>` key), unless the operator set
    that key's limit (`limits`)."""
    timeout: float | None = Field(default=None, gt=0)
    max_turns: int | None = Field(default=None, ge=1)
    budget_tokens: int | None = Field(default=None, ge=1)
    budget_cost: float | None = Field(default=None, gt=0)
    workspace: str | None = None
    fallback_models: tuple[str, ...] = ()
    read_only: bool = False
    isolation: Isolation | None = None
    """`worktree` or `none`: where its tasks write (default: a worktree in a git repository)."""
    setup: str | None = Field(default=None, min_length=1)
    """A shell command run in each new worktree of its tasks before they start (`uv sync`)."""
    merge: MergePolicy = "manual"
    """`auto-if-clean`: a task's work is applied to its folder as it ends, if it merges cleanly."""
    cli: str | None = None
    """Run through this external agent CLI (`claude`, `opencode`, …) instead of the built-in
    runner."""
    mode: str | None = None
    """opencode's `primary`, `subagent` or `all`; every mode runs as a sub-agent here."""
    permission: Policy = Field(default_factory=Policy)
    """Allow/deny globs for paths and commands (`read_only` is folded in)."""
    notes: tuple[str, ...] = ()
    """Documented fields of the file's format that have no meaning here, with why."""
    source: Path
    format: Format

    @property
    def writes(self) -> bool:
        """Whether its tasks can change files (not read-only, with a writing tool)."""
        tools = BUILTIN_TOOLS if self.tools is None else self.tools
        writing = ("write_file", "edit_file", "run_command")
        return not self.policy.read_only and any(t in writing for t in tools)

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
    disabled: list[str] = field(default_factory=list)
    """Names of agents whose file says `disable: true`."""


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


_FILE_PROMPT = re.compile(r"^\{file:(.+)\}$")


def _prompt(meta: dict[str, Any], body: str, path: Path) -> str:
    if body.strip():
        return body.strip()
    prompt = str(meta.get("prompt") or "")
    if match := _FILE_PROMPT.match(prompt.strip()):
        return (path.parent / match.group(1)).expanduser().read_text().strip()
    return prompt


def _definition(path: Path, fmt: Format, found: AgentSet) -> AgentDefinition | None:
    meta, body = _split(path.read_text())
    unknown = sorted(set(meta) - KNOWN_FIELDS[fmt])
    if unknown:
        found.warnings.append(f"{path}: ignoring unknown field(s) {', '.join(unknown)}")
    fields = {k: v for k, v in meta.items() if k in AgentDefinition.model_fields}
    for own in ("prompt", "source", "format", "notes"):
        fields.pop(own, None)
    notes = no_meaning(fmt, meta)
    match fmt:
        case "claude":
            fields |= claude_fields(meta, path, found.warnings)
        case "opencode":
            if meta.get("disable") is True:
                found.disabled.append(path.stem)
                return None
            fields |= opencode_fields(meta, path, found.warnings, notes)
        case "outrider":
            if fields.get("tools") is not None and not meta.get("cli"):
                fields["tools"] = tool_names(listed(meta["tools"], "tools"), path, found.warnings)
    fields.setdefault("name", path.stem)
    fields["notes"] = tuple(notes)
    prompt = _prompt(meta, body, path)
    return AgentDefinition(**fields, prompt=prompt, source=path, format=fmt)


def agent_dirs(project: Path | None = None) -> list[tuple[Path, Format]]:
    """The folders agents are read from for `project` (default: here), nearest first."""
    start = (project or Path.cwd()).expanduser().resolve()
    dirs: list[tuple[Path, Format]] = []
    for folder in (start, *start.parents):
        dirs += [(folder / d, fmt) for d, fmt in _PROJECT]
        if (folder / ".git").exists():
            break
    opencode = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config") / "opencode"
    dirs += [
        (config_dir() / "agents", "outrider"),
        (opencode / "agent", "opencode"),
        (opencode / "agents", "opencode"),
        (Path.home() / ".claude" / "agents", "claude"),
    ]
    return dirs


def _load_file(path: Path, fmt: Format, found: AgentSet) -> None:
    try:
        agent = _definition(path, fmt, found)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        found.errors.append(f"{path}: invalid `{where}`: {first['msg']}")
        return
    except (ValueError, yaml.YAMLError, OSError, UnicodeDecodeError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        found.errors.append(f"{path}: {reason}")
        return
    if agent is None:
        return
    if agent.name in found.agents:
        first_source = found.agents[agent.name].source
        found.warnings.append(
            f"{path}: agent {agent.name!r} is already defined by {first_source}; skipped"
        )
        return
    found.agents[agent.name] = agent


def load_agents(project: Path | None = None) -> AgentSet:
    """Every agent definition visible from `project` (default: the current directory)."""
    found = AgentSet()
    for folder, fmt in agent_dirs(project):
        if folder.is_dir():
            for path in sorted(folder.glob("*.md")):
                _load_file(path, fmt, found)
    return found


def _signature(project: Path | None) -> tuple[tuple[str, int, int], ...]:
    """What changes when an agent file is added, edited or removed (stat calls only)."""
    out: list[tuple[str, int, int]] = []
    for folder, _ in agent_dirs(project):
        try:
            entries = list(os.scandir(folder))
        except OSError:
            continue
        for entry in entries:
            if entry.name.endswith(".md"):
                try:
                    stat = entry.stat()
                except OSError:
                    continue
                out.append((entry.path, stat.st_mtime_ns, stat.st_size))
    return tuple(sorted(out))


class AgentCatalog:
    """The agents visible from each directory, re-read when their files change.

    Thread-safe; each lookup costs a few `stat` calls, a reload reads the files.
    """

    def __init__(self) -> None:
        self._cache: dict[Path, tuple[tuple[tuple[str, int, int], ...], AgentSet]] = {}
        self._lock = threading.Lock()

    def load(self, project: Path | None = None) -> AgentSet:
        """The agents visible from `project` (default: the current directory), fresh."""
        key = (project or Path.cwd()).expanduser().resolve()
        signature = _signature(key)
        with self._lock:
            cached = self._cache.get(key)
            if cached is not None and cached[0] == signature:
                return cached[1]
        found = load_agents(key)
        with self._lock:
            self._cache[key] = (signature, found)
        return found
