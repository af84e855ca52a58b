"""Task logs: capped on disk, head and tail kept, the cut marked, readable while written."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from outrider._store._logs import TaskLog

if TYPE_CHECKING:
    from pathlib import Path

    import pytest

CAP = 40  # head 20 bytes, two tail files of 10


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    chunks=st.lists(st.text(alphabet="ab\n", max_size=25).map(str.encode), max_size=12),
    reopen_at=st.integers(min_value=0, max_value=12),
)
def test_the_log_keeps_head_and_tail_within_its_cap(
    tmp_path_factory: pytest.TempPathFactory, chunks: list[bytes], reopen_at: int
) -> None:
    folder = tmp_path_factory.mktemp("logs")
    log = TaskLog(folder, "t_1", cap_bytes=CAP)
    for index, chunk in enumerate(chunks):
        if index == reopen_at:  # a retry appends to the same log
            log.close()
            log = TaskLog(folder, "t_1", cap_bytes=CAP)
        log.write(chunk)
    log.close()
    written = b"".join(chunks)
    on_disk = sum(p.stat().st_size for p in folder.iterdir() if not p.name.endswith(".meta"))
    assert on_disk <= CAP
    text = TaskLog.read(folder, "t_1")
    match = re.search(r"\[… (\d+) bytes cut …\]\n", text)
    if match is None:
        assert len(written) <= CAP
        assert text == written.decode()
        return
    cut = int(match.group(1))
    head = written[: CAP // 2].decode()
    assert text[: match.start()] == head + ("" if head.endswith("\n") else "\n")
    kept_tail = len(written) - CAP // 2 - cut
    assert CAP // 4 <= kept_tail <= CAP // 2
    assert text[match.end() :] == written[len(written) - kept_tail :].decode()


def test_last_lines_and_removal(tmp_path: Path) -> None:
    log = TaskLog(tmp_path, "t_2")
    log.write(b"one\ntwo\nthree\n")
    log.write(b"")
    assert log.last_lines(2) == "two\nthree\n"
    assert log.last_lines(0) == ""
    assert log.total_bytes == 14
    log.close()
    TaskLog.remove(tmp_path, "t_2")
    assert list(tmp_path.iterdir()) == []
    assert TaskLog.read(tmp_path, "t_2") == ""


def test_a_damaged_meta_file_falls_back_to_what_is_on_disk(tmp_path: Path) -> None:
    (tmp_path / "t_3.meta").write_text("{not json")
    (tmp_path / "t_3.log").write_bytes(b"kept\n")
    assert TaskLog.read(tmp_path, "t_3") == "kept\n"
    log = TaskLog(tmp_path, "t_3")
    assert log.total_bytes == 5  # what is on disk
    log.close()


def test_writes_count_what_they_wrote_instead_of_asking_the_disk(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pathlib import Path as RealPath

    real_stat = RealPath.stat
    asked: list[str] = []

    def counting_stat(self: RealPath, **kwargs: bool) -> object:
        asked.append(self.name)
        return real_stat(self, **kwargs)

    log = TaskLog(tmp_path, "t_1", cap_bytes=CAP)
    monkeypatch.setattr(RealPath, "stat", counting_stat)
    for _ in range(50):  # through the head and around both tail files, many times
        log.write(b"abc\n")
    log.close()
    monkeypatch.undo()
    assert asked == []
    assert TaskLog.read(tmp_path, "t_1").endswith("abc\n")
