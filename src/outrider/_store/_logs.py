"""TaskLog: a task's output log, capped, keeping the head and the tail.

Invariants:
- At most `cap_bytes` are on disk per task: the first `cap/2` bytes in `<id>.log`, then the
  tail in two rotating files `<id>.tail.0|1` of at most `cap/4` each. When the current tail
  file is full the other one is emptied and becomes current, so the last `cap/4` bytes or more
  are always kept. Readers show head, a marker with the number of bytes cut, then the tail.
- Every write goes straight to the file (unbuffered), so a reader sees output at once and a
  crash loses nothing already written.
- A retry appends to the same log; sizes and the total are read back from the files on open.
- Every file is 0600: output may hold what a task printed of its secrets.
"""

from __future__ import annotations

import contextlib
import json
import os
from typing import TYPE_CHECKING

from outrider._paths import open_private

if TYPE_CHECKING:
    from pathlib import Path

__all__ = ["TaskLog"]

_CAP = 10 * 1024 * 1024


class TaskLog:
    """Appends a task's output to its capped log files."""

    def __init__(self, directory: Path, task_id: str, *, cap_bytes: int = _CAP) -> None:
        self._dir = directory
        self._id = task_id
        self._head_cap = cap_bytes // 2
        self._tail_cap = max(1, cap_bytes // 4)
        self._head = directory / f"{task_id}.log"
        self._meta = directory / f"{task_id}.meta"
        meta = self._read_meta(directory, task_id)
        self._current: int = meta.get("current", 0)
        self._fd: int | None = None
        self._fd_path: Path | None = None
        self._sizes: dict[Path, int] = {}
        """What this writer knows each file holds: read once, then counted as it writes."""
        # The meta file is written once output reaches the tail; before that the head is all.
        on_disk = self._size(self._head) + self._size(self._tail_path(0))
        self.total_bytes: int = max(meta.get("total", 0), on_disk + self._size(self._tail_path(1)))

    @staticmethod
    def _read_meta(directory: Path, task_id: str) -> dict[str, int]:
        try:
            data = json.loads((directory / f"{task_id}.meta").read_text())
        except (OSError, ValueError):
            return {}
        return {k: int(v) for k, v in data.items()}

    def _tail_path(self, index: int) -> Path:
        return self._dir / f"{self._id}.tail.{index}"

    def _open(self, path: Path, *, truncate: bool = False) -> int:
        if self._fd_path != path or truncate:
            if self._fd is not None:
                os.close(self._fd)
            flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND | (os.O_TRUNC if truncate else 0)
            self._fd = open_private(path, flags)
            self._fd_path = path
            if truncate:
                self._sizes[path] = 0
        assert self._fd is not None
        return self._fd

    def _size(self, path: Path) -> int:
        size = self._sizes.get(path)
        if size is None:
            try:
                size = path.stat().st_size
            except FileNotFoundError:
                size = 0
            self._sizes[path] = size
        return size

    def _append(self, path: Path, data: memoryview) -> None:
        fd = self._open(path)
        size = self._size(path)
        while data:  # a regular file takes less than asked only when the disk fills
            written = os.write(fd, data)
            size += written
            self._sizes[path] = size
            data = data[written:]

    def write(self, data: bytes) -> None:
        """Append `data`, keeping within the cap."""
        if not data:
            return
        self.total_bytes += len(data)
        view = memoryview(data)
        head_room = self._head_cap - self._size(self._head)
        if head_room > 0:
            self._append(self._head, view[:head_room])
            view = view[head_room:]
        if not view:
            return
        while view:
            path = self._tail_path(self._current)
            room = self._tail_cap - self._size(path)
            if room <= 0:
                self._current = 1 - self._current
                self._open(self._tail_path(self._current), truncate=True)
                continue
            self._append(path, view[:room])
            view = view[room:]
        _write(self._meta, json.dumps({"total": self.total_bytes, "current": self._current}))

    def close(self) -> None:
        """Close the open file."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
            self._fd_path = None

    def last_lines(self, n: int) -> str:
        """The last `n` lines written."""
        return self.read(self._dir, self._id, lines=n)

    @staticmethod
    def read(directory: Path, task_id: str, *, lines: int | None = None) -> str:
        """The kept text: head, a cut marker, tail; or only its last `lines` lines."""
        meta = TaskLog._read_meta(directory, task_id)
        current = meta.get("current", 0)
        parts: list[bytes] = []
        for path in (
            directory / f"{task_id}.log",
            directory / f"{task_id}.tail.{1 - current}",
            directory / f"{task_id}.tail.{current}",
        ):
            with contextlib.suppress(FileNotFoundError):
                parts.append(path.read_bytes())
        head, tail = parts[0] if parts else b"", b"".join(parts[1:])
        kept = len(head) + len(tail)
        cut = meta.get("total", kept) - kept
        text = head.decode(errors="replace")
        if cut > 0:
            sep = "" if text.endswith("\n") or not text else "\n"
            text += f"{sep}[… {cut} bytes cut …]\n"
        text += tail.decode(errors="replace")
        if lines is None:
            return text
        if lines <= 0:
            return ""
        return "".join(text.splitlines(keepends=True)[-lines:])

    @staticmethod
    def remove(directory: Path, task_id: str) -> None:
        """Delete the task's log files and its transcript."""
        names = ("log", "meta", "tail.0", "tail.1", "transcript", "transcript.tmp",
                 "transcript.json")  # fmt: skip
        for name in (f"{task_id}.{suffix}" for suffix in names):
            with contextlib.suppress(FileNotFoundError):
                (directory / name).unlink()


def _write(path: Path, data: str | bytes) -> None:
    """Replace the content of `path` (created 0600)."""
    fd = open_private(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    with os.fdopen(fd, "wb") as out:
        out.write(data.encode() if isinstance(data, str) else data)
