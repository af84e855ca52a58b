"""Transcripts: an agent task's conversation, saved whole at every turn and read back whole.

Invariants:
- A save appends the whole transcript to the task's file as one record: a header (a marker, the
  length, a CRC-32) and the bytes. The transcript is the file's last whole record. A record cut
  short (a crash, a full disk) or not matching its CRC is never read, and the one before it
  stands: a reader sees one save or another, never a mix of two.
- An append is one `write` at the end of a file that exists: no file made, renamed or
  truncated, so a save of a transcript of some kilobytes costs tens of microseconds, where
  replacing the file cost about 0.4 ms of a thread's time and a hand-off to it.
- A writer's first save rewrites the file, and so does a save when the records before it
  outweigh it (more than twice its size and `_SLACK` more): a new file holding only the new
  record is renamed over the old one. So a record cut short by an earlier attempt's crash is
  never followed by others, and the file holds at most about three times the transcript plus
  `_SLACK`.
- A transcript written before records existed (`<id>.transcript.json`, one JSON document) is
  read when the task has no other.
- Files are 0600: a transcript holds what the model was told and what tools returned.
"""

from __future__ import annotations

import os
import struct
import zlib
from typing import TYPE_CHECKING

from outrider._paths import open_private

if TYPE_CHECKING:
    from pathlib import Path

__all__ = ["TranscriptWriter", "read_transcript", "transcript_path"]

_MARK = b"OTR\x01"
_HEAD = struct.Struct("<4sQI")
"""A record's header: the marker, the length of its bytes, their CRC-32."""
_SLACK = 64 * 1024
"""Bytes of older records a file may hold beyond twice its newest one before it is rewritten."""
_ON_LOOP_MAX = 256 * 1024
"""The largest append made on the caller's thread (see `TranscriptWriter.cheap`)."""


def transcript_path(directory: Path, task_id: str) -> Path:
    """Where an agent task's transcript (its message history, JSON, in records) is kept."""
    return directory / f"{task_id}.transcript"


class TranscriptWriter:
    """Saves one task's transcript (see the module docstring); one save at a time."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._size: int | None = None
        """What the file holds, as this writer made it (None: it has not saved yet)."""

    def cheap(self, size: int) -> bool:
        """Whether saving `size` bytes is an append small enough for an event loop's thread."""
        return size <= _ON_LOOP_MAX and not self._rewrites(size)

    def save(self, data: bytes) -> None:
        """Save `data` as the transcript: appended, or the file rewritten (see `cheap`)."""
        record = (_HEAD.pack(_MARK, len(data), zlib.crc32(data)), data)
        if self._rewrites(len(data)):
            tmp = self._path.with_name(self._path.name + ".tmp")
            self._write(tmp, os.O_TRUNC, record)
            os.replace(tmp, self._path)
            self._size = _HEAD.size + len(data)
        else:
            assert self._size is not None
            self._write(self._path, os.O_APPEND, record)
            self._size += _HEAD.size + len(data)

    def _rewrites(self, size: int) -> bool:
        return self._size is None or self._size > 2 * (_HEAD.size + size) + _SLACK

    def _write(self, path: Path, flag: int, record: tuple[bytes, bytes]) -> None:
        fd = open_private(path, os.O_WRONLY | os.O_CREAT | flag)
        try:
            todo = sum(len(part) for part in record)
            written = os.writev(fd, record)
            if written < todo:  # a regular file takes less only as its disk fills
                rest = memoryview(b"".join(record))[written:]
                while rest:
                    rest = rest[os.write(fd, rest) :]
        except OSError:
            self._size = None  # a record may be cut short: the next save starts a new file
            raise
        finally:
            os.close(fd)


def read_transcript(path: Path) -> bytes | None:
    """The transcript saved last at `path` (None if there is none)."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        try:  # one JSON document, as written before records
            return path.with_name(path.name + ".json").read_bytes()
        except FileNotFoundError:
            return None
    view, at, last = memoryview(raw), 0, None
    while at + _HEAD.size <= len(raw):
        mark, size, crc = _HEAD.unpack_from(raw, at)
        body = view[at + _HEAD.size : at + _HEAD.size + size]
        if mark != _MARK or len(body) < size or zlib.crc32(body) != crc:
            break  # cut short or damaged: the record before it is the transcript
        last, at = body, at + _HEAD.size + size
    return None if last is None else bytes(last)
