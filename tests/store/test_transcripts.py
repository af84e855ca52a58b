"""Transcripts: every save appended as a checked record, the last whole one read, never a mix."""

from __future__ import annotations

import errno
import os
import stat
from typing import TYPE_CHECKING

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from outrider._store import _transcripts
from outrider._store._logs import TaskLog
from outrider._store._transcripts import TranscriptWriter, read_transcript, transcript_path

if TYPE_CHECKING:
    from pathlib import Path

_SLACK = _transcripts._SLACK
_HEAD = _transcripts._HEAD.size


def _doc(n: int, size: int) -> bytes:
    """Save number `n`, `size` bytes of JSON (each save tells which it is)."""
    body = b'{"save":%d,"pad":"' % n
    return body + b"x" * max(0, size - len(body) - 2) + b'"}'


sizes = st.lists(
    st.one_of(st.integers(30, 3_000), st.integers(20_000, 120_000)), min_size=1, max_size=12
)
_SETTINGS = settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@_SETTINGS
@given(sizes=sizes, restart_at=st.integers(0, 12))
def test_the_last_save_is_read_and_the_file_stays_bounded(
    tmp_path_factory: pytest.TempPathFactory, sizes: list[int], restart_at: int
) -> None:
    path = transcript_path(tmp_path_factory.mktemp("t"), "t_1")
    writer = TranscriptWriter(path)
    for n, size in enumerate(sizes):
        if n == restart_at:  # a new attempt, or a new daemon: a new writer
            writer = TranscriptWriter(path)
        writer.save(_doc(n, size))
        assert read_transcript(path) == _doc(n, size)
        assert path.stat().st_size <= 3 * (_HEAD + size) + _SLACK


@_SETTINGS
@given(sizes=sizes, cut=st.floats(0, 1))
def test_a_file_cut_anywhere_reads_as_the_last_whole_save_before_the_cut(
    tmp_path_factory: pytest.TempPathFactory, sizes: list[int], cut: float
) -> None:
    """A crash or a full disk in the middle of a save: one save or another, never a mix."""
    path = transcript_path(tmp_path_factory.mktemp("t"), "t_1")
    writer = TranscriptWriter(path)
    ends: dict[int, bytes] = {}  # where each save's record ends in the file: what it saved
    for n, size in enumerate(sizes):
        before = path.stat().st_ino if path.exists() else None
        writer.save(_doc(n, size))
        if path.stat().st_ino != before:  # a new file: only this save is in it
            ends.clear()
        ends[path.stat().st_size] = _doc(n, size)
    whole = path.read_bytes()
    at = int(cut * len(whole))
    path.write_bytes(whole[:at])
    whole_before_cut = [end for end in ends if end <= at]
    expected = ends[max(whole_before_cut)] if whole_before_cut else None
    assert read_transcript(path) == expected


def test_a_damaged_record_is_not_read_and_a_new_writer_starts_a_clean_file(
    tmp_path: Path,
) -> None:
    path = transcript_path(tmp_path, "t_1")
    writer = TranscriptWriter(path)
    writer.save(b'{"save":1}')
    writer.save(b'{"save":2}')
    raw = bytearray(path.read_bytes())
    raw[-3] ^= 0xFF  # a bit flipped in the last save's bytes
    path.write_bytes(bytes(raw))
    assert read_transcript(path) == b'{"save":1}'

    again = TranscriptWriter(path)  # the next attempt: its saves must not land behind the damage
    again.save(b'{"save":3}')
    again.save(b'{"save":4}')
    assert read_transcript(path) == b'{"save":4}'


def test_saves_append_to_the_same_file_until_it_outweighs_the_transcript(
    tmp_path: Path,
) -> None:
    path = transcript_path(tmp_path, "t_1")
    writer = TranscriptWriter(path)
    assert not writer.cheap(100)  # the first save makes the file
    writer.save(_doc(0, 100))
    inode = path.stat().st_ino
    saves = 1
    while writer.cheap(100):
        writer.save(_doc(saves, 100))
        saves += 1
        assert path.stat().st_ino == inode  # appended: no new file
    assert saves > _SLACK // (_HEAD + 100)  # about 600 saves of 100 bytes per file
    writer.save(_doc(saves, 100))  # the old records outweigh it: a new file
    assert path.stat().st_ino != inode
    assert path.stat().st_size == _HEAD + 100
    assert read_transcript(path) == _doc(saves, 100)
    assert not writer.cheap(_transcripts._ON_LOOP_MAX + 1)  # too large for an event loop


def test_a_full_disk_mid_save_loses_only_that_save(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = transcript_path(tmp_path, "t_1")
    writer = TranscriptWriter(path)
    writer.save(b'{"save":1}')
    writer.save(b'{"save":2}')

    def disk_fills(fd: int, parts: list[bytes]) -> int:  # the disk has room for 9 bytes
        os.write(fd, b"".join(parts)[:9])
        raise OSError(errno.ENOSPC, "No space left on device")

    with monkeypatch.context() as patch:
        patch.setattr(_transcripts.os, "writev", disk_fills)
        with pytest.raises(OSError, match="No space"):
            writer.save(b'{"save":3}')
    assert read_transcript(path) == b'{"save":2}'
    writer.save(b'{"save":4}')  # room again: not written behind the cut record
    assert read_transcript(path) == b'{"save":4}'


def test_a_transcript_written_as_one_document_still_reads(tmp_path: Path) -> None:
    path = transcript_path(tmp_path, "t_1")
    assert read_transcript(path) is None
    (tmp_path / "t_1.transcript.json").write_bytes(b'{"messages": []}')  # an earlier version's
    assert read_transcript(path) == b'{"messages": []}'
    TranscriptWriter(path).save(b'{"messages": [1]}')  # the attempt that resumes from it
    assert read_transcript(path) == b'{"messages": [1]}'
    path.write_bytes(b"")
    assert read_transcript(path) is None


def test_transcripts_are_private_and_removed_with_the_log(tmp_path: Path) -> None:
    path = transcript_path(tmp_path, "t_1")
    TranscriptWriter(path).save(b"{}")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    path.with_name(path.name + ".tmp").write_bytes(b"left by a crash")
    (tmp_path / "t_1.transcript.json").write_bytes(b"{}")  # an earlier version's
    TaskLog.remove(tmp_path, "t_1")
    assert list(tmp_path.iterdir()) == []
