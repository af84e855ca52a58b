"""The ReadyQueue's delayed entries, case by case (the property test covers them at random)."""

from __future__ import annotations

from outrider._core._queue import Entry, ReadyQueue


def test_an_entry_removed_during_its_backoff_never_starts() -> None:
    queue = ReadyQueue(max_running=4, limits={}, default_limit=3)
    queue.push(Entry(task_id="t", priority=5, seq=1, keys=("k",), uses_processes=False,
                     ready_deadline=10.0))  # fmt: skip
    assert queue.pop_ready(5.0) == []
    assert queue.remove("t") is not None
    assert queue.pop_ready(20.0) == []
    assert queue.next_deadline() is None
