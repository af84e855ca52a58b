"""The MCP tools' text: short lines for a model to read, full detail only when asked."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import outrider
from outrider import ErrorInfo, Notice, Task, TaskState, Usage
from outrider._core._notices import notices_block
from outrider._mcp._format import task_detail, task_line, tasks_table

START = datetime(2026, 1, 1, tzinfo=UTC)


def _task(**fields: Any) -> Task:
    base: dict[str, Any] = {
        "id": "t_1", "session": "s", "spec": outrider.shell("make"), "state": TaskState.SUCCEEDED,
        "priority": 5, "keys": ("shell",), "created_at": START,
    }  # fmt: skip
    return Task(**(base | fields))


def test_a_queued_line_says_its_place_and_why() -> None:
    line = task_line(_task(state=TaskState.QUEUED, position=2, waiting_for="key 'shell' (4/4)"))
    assert line == "t_1 · queued #2 (key 'shell' (4/4))"


def test_an_ended_line_has_time_exit_code_label_and_a_clipped_description() -> None:
    task = _task(
        state=TaskState.FAILED, started_at=START, finished_at=START + timedelta(seconds=90),
        exit_code=2, label="tests", description="Run   the\nwhole suite " + "x" * 100,
    )  # fmt: skip
    line = task_line(task)
    assert "failed 1m 30s exit 2 tests — 'Run the whole suite " in line
    assert line.endswith("…'")
    assert tasks_table([]) == "no tasks"
    assert tasks_table([task, task]).count("\n") == 1


def test_detail_shows_the_end_of_a_long_result_unless_full() -> None:
    task = _task(result="a" * 1000 + "b" * 2000, usage=Usage(input_tokens=5, output_tokens=7))
    short = task_detail(task, output="log line", full=False)
    assert "result (last 2000 chars; full=true for all):" in short
    assert "a" not in short.split("\n", 2)[2]
    assert "log line" not in short  # a success shows output only in full
    assert "tokens: 5 in, 7 out" in short
    full = task_detail(task, output="log line", full=True)
    assert "a" * 1000 in full
    assert "output (last lines):\nlog line" in full
    assert "(empty)" in task_detail(_task(result="  "), output=None, full=False)
    assert "result:\n{'k': 1}" in task_detail(_task(result={"k": 1}), output=None, full=False)


def test_detail_of_a_failure_has_the_error_and_its_trace_when_full() -> None:
    error = ErrorInfo(type="ValueError", message="bad input", detail="Traceback …\n")
    task = _task(state=TaskState.FAILED, error=error)
    assert "error: bad input" in task_detail(task, output="boom", full=False)
    assert "Traceback" not in task_detail(task, output=None, full=False)
    assert "Traceback" in task_detail(task, output=None, full=True)


def test_notices_are_counted_by_kind() -> None:
    one = Notice(seq=1, kind="task", task_id="t_1", text="t_1 ✓ build")
    batch = Notice(seq=2, kind="group", group="g", text="batch g: 3 succeeded")
    assert notices_block([one]).startswith("[outrider] 1 task finished:\n- t_1 ✓ build")
    block = notices_block([one, one, batch, batch])
    assert block.startswith("[outrider] 2 tasks finished, 2 batches finished:")
    assert block.endswith("(get_task_result with a task id for details)")
    assert "- t_1 ✓ build ⟦outrider seq=1⟧\n" in block
    assert notices_block([]) == ""
