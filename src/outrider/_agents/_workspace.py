"""The built-in agent's file tools, confined to one workspace directory, and its permission policy.

Every path is checked where it really leads: a model's path is resolved (symlinks too) against
the workspace root and refused when it lands outside, and the policy is checked on both the
path as written and the resolved one, so a link never reaches what its target's name would be
refused. Listing and search walk the tree themselves: they never follow a link to a folder,
skip entries whose real path is outside or denied, and are bounded in entries, bytes and time.
Search uses the `regex` engine with a timeout and without holding the GIL, so a catastrophic
pattern ends with a note instead of stalling the process. These methods do blocking I/O: the
agent loop runs them in worker threads, never on the event loop.

The policy is checked here, in code, never left to the prompt:
- `read_only` refuses writing and editing files and running commands;
- `paths.deny` / `paths.allow`: globs relative to the root (`secrets/**`, `*.env`); deny wins,
  and when `allow` is given a path must match it;
- `commands.deny` / `commands.allow`: globs over each simple command of a line (`_commands`);
- `network`: whether commands may use the network (in the sandbox).

A stale-read guard: writing or editing a file that changed since this task last read or wrote
it (another task, or a command, wrote it meanwhile) is refused until the task reads it again.

A refusal is a `ToolRefused` whose message goes back to the model as the tool's answer.
"""

from __future__ import annotations

import fnmatch
import functools
import hashlib
import os
import re
import time
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict, Field

from ._commands import CommandRefused, check_command

if TYPE_CHECKING:
    import builtins
    from collections.abc import Iterator, Sequence

    import regex

__all__ = ["Patterns", "Policy", "ToolRefused", "Workspace"]

_MAX_READ = 100_000
_MAX_ENTRIES = 500
_MAX_MATCHES = 200
_MAX_WALK = 100_000
"""Entries a listing or search visits at most."""
_MAX_FILE_BYTES = 4 * 1024 * 1024
"""Files larger than this are not searched."""
_MAX_SEARCH_BYTES = 256 * 1024 * 1024
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
    network: bool = False
    """Whether its commands may use the network (the sandbox cuts it off otherwise)."""


@functools.lru_cache(maxsize=256)
def _glob(pattern: str) -> re.Pattern[str]:
    """A glob over `/`-separated relative paths: `*` within a name, `**/` any folders."""
    out, i = [], 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
        elif pattern.startswith("**", i):
            out.append(".*")
            i += 2
        elif pattern[i] == "*":
            out.append("[^/]*")
            i += 1
        elif pattern[i] == "?":
            out.append("[^/]")
            i += 1
        elif pattern[i] == "[" and (end := pattern.find("]", i + 2)) != -1:
            body = pattern[i + 1 : end].replace("\\", "\\\\")
            out.append("[^" + body[1:] + "]" if body.startswith("!") else "[" + body + "]")
            i = end + 1
        else:
            out.append(re.escape(pattern[i]))
            i += 1
    return re.compile("".join(out) + r"\Z")


@functools.lru_cache(maxsize=256)
def _reach(pattern: str) -> tuple[tuple[re.Pattern[str], ...], bool]:
    """Which folders can hold a glob's matches: a pattern per leading name, and a depth bound.

    Returns the patterns, and whether folders as deep as their number hold no match. A folder
    at depth d (its path has d names) can hold a match only if its i-th name matches the
    pattern's i-th component for each i up to d (the components before the first one with `**`
    or a `[` class, which say nothing of the names below them); and, if the pattern has
    neither, only if d is less than its number of components. So `src/*.py` walks `src` alone,
    and `*` the top folder alone.
    """
    parts = pattern.split("/")
    free = next((i for i, part in enumerate(parts) if "**" in part or "[" in part), None)
    leading = tuple(_glob(part) for part in parts[:free])
    return leading, free is None


class Workspace:
    """File operations under `root`, checked against `policy`.

    Args:
        root: The folder the tools are confined to.
        policy: What the agent may touch.
        search_timeout: Seconds a listing or search may take.
        hidden: outrider's own files and folders (its store, tokens, config), never touched
            even when the workspace holds them; a folder that holds the workspace itself (a
            worktree in the data dir) hides only what else it holds and is named here.
    """

    def __init__(
        self,
        root: Path,
        policy: Policy,
        *,
        search_timeout: float = 10.0,
        hidden: Sequence[Path] = (),
    ) -> None:
        self.root = root.resolve()
        self.policy = policy
        self.search_timeout = search_timeout
        resolved = (h.resolve() for h in hidden)
        self.hidden = tuple(h for h in resolved if not self.root.is_relative_to(h))
        self.seen: dict[Path, str] = {}
        """A digest of each file as this task last read or wrote it (the stale-read guard)."""

    def _is_hidden(self, path: Path) -> bool:
        return any(path == h or path.is_relative_to(h) for h in self.hidden)

    def _refusal(self, raw: str, *, write: bool = False) -> tuple[Path | None, str | None]:
        if write and self.policy.read_only:
            return None, "this agent is read-only"
        written = Path(os.path.normpath(self.root / raw))
        candidate = written.resolve()
        for path in (written, candidate):
            if path != self.root and not path.is_relative_to(self.root):
                return None, f"{raw!r} is outside the workspace ({self.root})"
        if self._is_hidden(written) or self._is_hidden(candidate):
            return None, f"{raw!r} is one of outrider's own files (its store, tokens or config)"
        for path in (written, candidate):
            rel = path.relative_to(self.root).as_posix()
            if rel != "." and not self._permits(rel, path.is_dir()):
                return None, f"the policy does not allow {rel!r}"
        return candidate, None

    def _permits(self, rel: str, is_dir: bool) -> bool:
        # A folder is also checked as `name/`, so `secrets/**` covers the folder itself.
        return self.policy.paths.permits(rel) and (
            not is_dir or self.policy.paths.permits(rel + "/")
        )

    def path(self, raw: str, *, write: bool = False) -> Path:
        """The real path of `raw`, if it is inside the workspace and allowed there.

        Raises:
            ToolRefused: Outside the workspace, denied by policy, or a write when read-only.
        """
        path, why = self._refusal(raw, write=write)
        if path is None:
            raise ToolRefused(f"refused: {why}")
        return path

    def rel(self, path: Path) -> str:
        """`path` relative to the root."""
        return path.relative_to(self.root).as_posix()

    def read(self, raw: str, offset: int = 0, limit: int | None = None) -> str:
        """Lines `offset`.. of a text file (at most 100 kB)."""
        path = self.path(raw)
        if not path.is_file():
            raise ToolRefused(f"error: {raw!r} is not a file")
        data = path.read_bytes()
        self.seen[path] = _digest(data)
        lines = data.decode(errors="replace").splitlines(keepends=True)
        chosen = lines[max(0, offset) : None if limit is None else max(0, offset) + limit]
        text = "".join(chosen)
        if len(text) > _MAX_READ:
            text = text[:_MAX_READ] + f"\n[… cut at {_MAX_READ} characters; read with offset]"
        return text

    def _walk(self, deadline: float, pattern: str) -> Iterator[tuple[str, str, bool]]:
        """(relative path, real path, is a folder) of allowed entries; links not followed.

        Only folders that can hold a match of `pattern` are entered (`_reach`). An entry that
        is no link is looked at by its directory entry alone (no `stat`): it is inside the root
        by construction, and only hidden paths inside the root can hide it (each is skipped
        where the walk meets it, so what it holds is never reached).

        Raises:
            TimeoutError: The deadline passed.
        """
        inside = frozenset(str(h) for h in self.hidden if h.is_relative_to(self.root))
        leading, bounded = _reach(pattern)
        pending, seen = [(str(self.root), "", 0)], 0
        while pending:
            folder, prefix, depth = pending.pop()
            try:
                entries = sorted(os.scandir(folder), key=lambda e: e.name)
            except OSError:
                continue
            for entry in entries:
                seen += 1
                if seen > _MAX_WALK or time.monotonic() > deadline:
                    raise TimeoutError(f"{seen} entries")
                if entry.name in _SKIP_DIRS:
                    continue
                rel = prefix + entry.name
                if entry.is_symlink():
                    if (linked := self._linked(Path(entry.path), rel)) is not None:
                        yield linked
                    continue
                if entry.path in inside:
                    continue
                is_dir = entry.is_dir(follow_symlinks=False)
                if not self._permits(rel, is_dir):
                    continue
                yield rel, entry.path, is_dir
                if is_dir and self._may_hold(leading, bounded, depth, entry.name):
                    pending.append((entry.path, rel + "/", depth + 1))

    @staticmethod
    def _may_hold(
        leading: tuple[re.Pattern[str], ...], bounded: bool, depth: int, name: str
    ) -> bool:
        """Whether folder `name`, met at `depth` (0: in the root), can hold a match."""
        if bounded and depth + 1 >= len(leading):
            return False
        return depth >= len(leading) or leading[depth].match(name) is not None

    def _linked(self, path: Path, rel: str) -> tuple[str, str, bool] | None:
        """A symbolic link met by `_walk`, if it and what it points to are allowed."""
        real = path.resolve()
        if real != self.root and not real.is_relative_to(self.root):
            return None
        is_dir = real.is_dir()
        if self._is_hidden(path) or self._is_hidden(real):
            return None
        if not self._permits(rel, is_dir) or not self._permits(self.rel(real), is_dir):
            return None
        return rel, str(real), is_dir

    def _matching(self, pattern: str) -> tuple[list[tuple[str, str, bool]], str | None]:
        """The allowed entries matching `pattern`, sorted, and a note if the walk was cut short."""
        if pattern.startswith("/") or ".." in Path(pattern).parts:
            raise ToolRefused(f"refused: {pattern!r} reaches outside the workspace")
        pattern = pattern.removeprefix("./")
        glob = _glob(pattern)
        deadline = time.monotonic() + self.search_timeout
        found: list[tuple[str, str, bool]] = []
        try:
            found.extend(entry for entry in self._walk(deadline, pattern) if glob.match(entry[0]))
        except TimeoutError as exc:
            return sorted(found), f"[… stopped after {exc} ({self.search_timeout:g} s bound)]"
        return sorted(found), None

    def list(self, pattern: str = "**/*") -> str:
        """Files and directories matching a glob, one per line (directories end in /)."""
        found, cut = self._matching(pattern)
        lines = [rel + ("/" if is_dir else "") for rel, _, is_dir in found[:_MAX_ENTRIES]]
        if len(found) > _MAX_ENTRIES:
            lines.append(f"[… {len(found) - _MAX_ENTRIES} more]")
        if cut:
            lines.append(cut)
        return "\n".join(lines) or "(nothing matches)"

    def grep(self, pattern: str, glob: str = "**/*") -> str:
        """`file:line: text` for every line matching a regular expression (bounded)."""
        import regex  # 80 ms to import: only when a search runs

        deadline = time.monotonic() + self.search_timeout
        try:
            compiled = regex.compile(pattern)
        except regex.error as exc:
            raise ToolRefused(f"error: invalid regular expression: {exc}") from None
        found, cut = self._matching(glob)
        hits: list[str] = []
        budget = _MAX_SEARCH_BYTES
        for rel, where, is_dir in found:
            real = Path(where)
            if is_dir or not real.is_file() or real.stat().st_size > _MAX_FILE_BYTES:
                continue
            try:
                text = real.read_text()
            except (UnicodeDecodeError, OSError):
                continue
            budget -= len(text)
            try:
                hits += _search(compiled, rel, text, deadline, _MAX_MATCHES - len(hits))
            except TimeoutError:
                cut = f"[… search stopped after {self.search_timeout:g} s in {rel}]"
                break
            if len(hits) >= _MAX_MATCHES:
                cut = f"[… stopped at {_MAX_MATCHES} matches]"
                break
            if budget <= 0:
                cut = f"[… stopped after {_MAX_SEARCH_BYTES // 2**20} MiB searched]"
                break
        return "\n".join([*hits, *([cut] if cut else [])]) or "(no matches)"

    def write(self, raw: str, content: str) -> str:
        """Create or replace a file."""
        path = self.path(raw, write=True)
        if path.is_file():
            self._check_fresh(raw, path, path.read_bytes())
        path.parent.mkdir(parents=True, exist_ok=True)
        data = content.encode()
        path.write_bytes(data)
        self.seen[path] = _digest(data)
        return f"wrote {len(data)} bytes to {self.rel(path)}"

    def edit(self, raw: str, old: str, new: str) -> str:
        """Replace the one occurrence of `old` by `new`."""
        path = self.path(raw, write=True)
        if not path.is_file():
            raise ToolRefused(f"error: {raw!r} is not a file")
        data = path.read_bytes()
        self._check_fresh(raw, path, data)
        text = data.decode()
        count = text.count(old) if old else 0
        if count != 1:
            raise ToolRefused(
                f"error: the text to replace occurs {count} times in {raw!r}; it must occur "
                "exactly once (include more context)"
            )
        edited = text.replace(old, new, 1).encode()
        path.write_bytes(edited)
        self.seen[path] = _digest(edited)
        return f"edited {self.rel(path)}"

    def _check_fresh(self, raw: str, path: Path, data: bytes) -> None:
        """Refuse to change a file that changed since this task last read or wrote it."""
        seen = self.seen.get(path)
        if seen is not None and seen != _digest(data):
            raise ToolRefused(
                f"refused: {raw!r} changed since you last read it (another task or a command "
                "wrote it); read it again, then make your change"
            )

    def check_command(self, command: str) -> None:
        """Refuse a command line the policy does not allow (see `_commands`)."""
        if self.policy.read_only:
            raise ToolRefused("refused: this agent is read-only and may not run commands")
        try:
            check_command(command, self.policy.commands, refuse_path=self._redirect_refusal)
        except CommandRefused as exc:
            raise ToolRefused(str(exc)) from None

    def _redirect_refusal(self, target: str, write: bool) -> str | None:
        outside = Path(target).is_absolute() and not Path(target).is_relative_to(self.root)
        if outside and not write:
            return None  # reading outside is the sandbox's to confine
        return self._refusal(target, write=write)[1]

    def denied(self, limit: int = 10_000) -> builtins.list[Path]:
        """Real paths inside the workspace that the path policy denies (to mask them)."""
        out: builtins.list[Path] = []
        pending = [self.root]
        while pending and len(out) < limit:
            folder = pending.pop()
            try:
                entries = list(os.scandir(folder))
            except OSError:
                continue
            for entry in entries:
                path = Path(entry.path)
                is_dir = entry.is_dir(follow_symlinks=False)
                if not self._permits(self.rel(path), is_dir):
                    out.append(path)
                elif is_dir and entry.name not in (".git", "node_modules", ".venv"):
                    pending.append(path)
        return out


def _digest(data: bytes) -> str:
    return hashlib.blake2b(data, digest_size=16).hexdigest()


def _search(
    compiled: regex.Pattern[str], rel: str, text: str, deadline: float, room: int
) -> list[str]:
    hits: list[str] = []
    for n, line in enumerate(text.splitlines(), 1):
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError
        if compiled.search(line, timeout=left, concurrent=True):
            hits.append(f"{rel}:{n}: {line[:300]}")
            if len(hits) >= room:
                break
    return hits
