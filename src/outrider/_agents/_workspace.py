"""The built-in agent's file tools, confined to one workspace directory, and its permission policy.

Every path a model gives is resolved (symlinks too) against the workspace root and refused when
it lands outside. The policy is checked here, in code, never left to the prompt:
- `read_only` refuses writing and editing files and running commands;
- `paths.deny` / `paths.allow`: globs relative to the root (`secrets/**`, `*.env`); deny wins,
  and when `allow` is given a path must match it;
- `commands.deny` / `commands.allow`: globs over the whole command line (`git push*`,
  `pytest *`), the same way.

A refusal is a `ToolRefused` whose message goes back to the model as the tool's answer.
"""

from __future__ import annotations

import fnmatch
import re
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["Patterns", "Policy", "ToolRefused", "Workspace"]

_MAX_READ = 100_000
_MAX_ENTRIES = 500
_MAX_MATCHES = 200
_SKIP_DIRS = frozenset({".git", ".hg", ".venv", "node_modules", "__pycache__", ".mypy_cache"})


class ToolRefused(Exception):
    """A tool call the workspace or policy refuses; the message is for the model."""


class Patterns(BaseModel):
    """Allow and deny globs; deny wins; an empty allow list allows everything."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    allow: tuple[str, ...] = ()
    deny: tuple[str, ...] = ()

    def permits(self, value: str) -> bool:
        """Whether `value` passes."""
        if any(fnmatch.fnmatchcase(value, p) for p in self.deny):
            return False
        return not self.allow or any(fnmatch.fnmatchcase(value, p) for p in self.allow)


class Policy(BaseModel):
    """What an agent may touch."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    read_only: bool = False
    paths: Patterns = Field(default_factory=Patterns)
    commands: Patterns = Field(default_factory=Patterns)


class Workspace:
    """File operations under `root`, checked against `policy`."""

    def __init__(self, root: Path, policy: Policy) -> None:
        self.root = root.resolve()
        self.policy = policy

    def path(self, raw: str, *, write: bool = False) -> Path:
        """The absolute path of `raw`, if it is inside the workspace and allowed.

        Raises:
            ToolRefused: Outside the workspace, denied by policy, or a write when read-only.
        """
        if write and self.policy.read_only:
            raise ToolRefused("refused: this agent is read-only")
        candidate = (self.root / raw).resolve()
        if candidate != self.root and not candidate.is_relative_to(self.root):
            raise ToolRefused(f"refused: {raw!r} is outside the workspace ({self.root})")
        rel = candidate.relative_to(self.root).as_posix()
        if rel != "." and not self.policy.paths.permits(rel):
            raise ToolRefused(f"refused: the policy does not allow {rel!r}")
        return candidate

    def rel(self, path: Path) -> str:
        """`path` relative to the root."""
        return path.relative_to(self.root).as_posix()

    def read(self, raw: str, offset: int = 0, limit: int | None = None) -> str:
        """Lines `offset`.. of a text file (at most 100 kB)."""
        path = self.path(raw)
        if not path.is_file():
            raise ToolRefused(f"error: {raw!r} is not a file")
        lines = path.read_text(errors="replace").splitlines(keepends=True)
        chosen = lines[max(0, offset) : None if limit is None else max(0, offset) + limit]
        text = "".join(chosen)
        if len(text) > _MAX_READ:
            text = text[:_MAX_READ] + f"\n[… cut at {_MAX_READ} characters; read with offset]"
        return text

    def _files(self, pattern: str) -> list[Path]:
        out: list[Path] = []
        for path in sorted(self.root.glob(pattern)):
            rel = path.relative_to(self.root)
            if any(part in _SKIP_DIRS for part in rel.parts):
                continue
            if not path.resolve().is_relative_to(self.root):
                continue
            # A folder is checked as `name/`, so `secrets/**` hides the folder too.
            if not self.policy.paths.permits(rel.as_posix() + ("/" if path.is_dir() else "")):
                continue
            out.append(path)
        return out

    def list(self, pattern: str = "**/*") -> str:
        """Files and directories matching a glob, one per line (directories end in /)."""
        if pattern.startswith("/") or ".." in Path(pattern).parts:
            raise ToolRefused(f"refused: {pattern!r} reaches outside the workspace")
        found = self._files(pattern)
        lines = [self.rel(p) + ("/" if p.is_dir() else "") for p in found[:_MAX_ENTRIES]]
        if len(found) > _MAX_ENTRIES:
            lines.append(f"[… {len(found) - _MAX_ENTRIES} more]")
        return "\n".join(lines) or "(nothing matches)"

    def grep(self, pattern: str, glob: str = "**/*") -> str:
        """`file:line: text` for every line matching a regular expression."""
        if glob.startswith("/") or ".." in Path(glob).parts:
            raise ToolRefused(f"refused: {glob!r} reaches outside the workspace")
        try:
            regex = re.compile(pattern)
        except re.error as exc:
            raise ToolRefused(f"error: invalid regular expression: {exc}") from None
        hits: list[str] = []
        for path in self._files(glob):
            if not path.is_file():
                continue
            try:
                text = path.read_text()
            except (UnicodeDecodeError, OSError):
                continue
            for n, line in enumerate(text.splitlines(), 1):
                if regex.search(line):
                    hits.append(f"{self.rel(path)}:{n}: {line[:300]}")
                    if len(hits) >= _MAX_MATCHES:
                        return "\n".join([*hits, f"[… stopped at {_MAX_MATCHES} matches]"])
        return "\n".join(hits) or "(no matches)"

    def write(self, raw: str, content: str) -> str:
        """Create or replace a file."""
        path = self.path(raw, write=True)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content)
        return f"wrote {len(content.encode())} bytes to {self.rel(path)}"

    def edit(self, raw: str, old: str, new: str) -> str:
        """Replace the one occurrence of `old` by `new`."""
        path = self.path(raw, write=True)
        if not path.is_file():
            raise ToolRefused(f"error: {raw!r} is not a file")
        text = path.read_text()
        count = text.count(old) if old else 0
        if count != 1:
            raise ToolRefused(
                f"error: the text to replace occurs {count} times in {raw!r}; it must occur "
                "exactly once (include more context)"
            )
        path.write_text(text.replace(old, new, 1))
        return f"edited {self.rel(path)}"

    def check_command(self, command: str) -> None:
        """Refuse a command the policy does not allow."""
        if self.policy.read_only:
            raise ToolRefused("refused: this agent is read-only and may not run commands")
        if not self.policy.commands.permits(command.strip()):
            raise ToolRefused(f"refused: the policy does not allow the command {command!r}")
