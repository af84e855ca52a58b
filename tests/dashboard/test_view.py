"""What the dashboard shows, worked out from records: groups, trees, keys, the command line,
the timeline, transcripts, event lines, and the login pieces (pure functions, no I/O)."""

from __future__ import annotations

import hashlib
import json
import re
import shlex
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from outrider import Event, KeyStatus, Status, Task, TaskState, Usage
from outrider._http._auth import Tokens
from outrider._http._dashboard import _access
from outrider._http._dashboard._access import (
    LoginCodes,
    allowed_hosts,
    cookie_principal,
    cookie_value,
)
from outrider._http._dashboard._live import Changes, last_line, partial
from outrider._http._dashboard._render import event_text, row_html, turns_of
from outrider._http._dashboard._timeline import bars_of, chrome_trace, layout
from outrider._http._dashboard._view import (
    budget_of,
    cli_line,
    cost_text,
    forest,
    grouped,
    key_rows,
    model_of,
    row_of,
    tokens_text,
)

T0 = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
STATIC = Path(__file__).parents[2] / "src/outrider/_http/_dashboard"


def task(task_id: str, state: str = "succeeded", **fields: object) -> Task:
    at = T0 + timedelta(seconds=int(task_id.removeprefix("t") or 0))
    defaults: dict[str, object] = {
        "id": task_id, "session": "s", "spec": {"kind": "shell", "command": "true"},
        "state": state, "priority": 5, "keys": ("shell",), "created_at": at,
    }  # fmt: skip
    if state != "queued":
        defaults["started_at"] = at + timedelta(seconds=1)
    if TaskState(state).terminal:
        defaults["finished_at"] = at + timedelta(seconds=3)
    return Task.model_validate({**defaults, **fields})


_REQUIRED: dict[str, dict[str, object]] = {
    "task.queued": {"kind": "shell", "priority": 5, "keys": ["shell"]},
    "task.started": {"attempt": 1},
    "task.output": {"text": "", "total_bytes": 0},
    "task.retrying": {"attempt": 1, "max_attempts": 2, "delay": 1.0,
                      "error": {"type": "exit", "message": "code 1"}},
    "group.completed": {"group": "g", "total": 1},
}  # fmt: skip
"""What each payload needs, so a test names only what it is about."""


def event(seq: int, type_: str, task_id: str, at: float, /, **data: object) -> Event:
    payload = {**_REQUIRED.get(type_, {"state": type_.removeprefix("task.")}), **data}
    if type_ == "task.progress":
        payload = data
    return Event.model_validate({"seq": seq, "type": type_, "session": "s", "task_id": task_id,
                                 "at": T0 + timedelta(seconds=at), "data": payload})  # fmt: skip


def test_groups_put_unacknowledged_failures_first_and_order_each_group() -> None:
    tasks = [
        task("t1", "failed"), task("t2", "failed"), task("t3", "running"),
        task("t4", "queued", position=2), task("t5", "queued", position=1),
        task("t6", "timed_out", group="g"), task("t7"), task("t8", "running"),
    ]  # fmt: skip
    groups = grouped(tasks, {"t2", "t6"})  # t1's failure was acknowledged
    assert [t.id for t in groups["attention"]] == ["t6", "t2"]  # newest end first
    assert [t.id for t in groups["running"]] == ["t8", "t3"]  # newest start first
    assert [t.id for t in groups["queued"]] == ["t5", "t4"]  # next to start first
    assert [t.id for t in groups["done"]] == ["t7", "t1"]


def test_a_row_says_what_matters_for_the_tasks_state() -> None:
    usage = Usage(input_tokens=1200, output_tokens=300, requests=2, cost=0.0081)
    progress = {"completed": 2, "total": 10, "message": "turn 2"}
    running = row_of(task("t1", "running", usage=usage, progress=progress), "running", "line 9")
    assert (running.note, running.tokens, running.cost) == ("line 9", 1500, "$0.0081")
    assert running.progress == (2, 10, "turn 2")
    assert running.since is not None
    assert running.usage == "1200 in, 300 out, 2 requests"
    queued = row_of(task("t2", "queued", position=3, waiting_for="key 'x'"), "queued")
    assert (queued.position, queued.note, queued.since) == (3, "key 'x'", None)
    failed = row_of(task("t3", "failed", error={"type": "exit", "message": "code 1"},
                         progress=progress), "attention")  # fmt: skip
    assert (failed.note, failed.failed, failed.progress, failed.ended) == (
        "code 1", True, None, True,
    )  # fmt: skip
    shell_done = row_of(task("t4", result="a\nb\n\n"), "done")
    assert shell_done.note == "b"  # a command's last line
    agent = {"kind": "agent", "agent": "a", "prompt": "p"}
    answered = row_of(task("t5", result="Summary\n- one", spec=agent), "done")
    assert answered.note == "Summary"  # an answer's first line
    assert row_of(task("t6", result="x" * 300), "done").note.endswith("…")
    assert row_of(task("t7", result={"n": 1}), "done").note == ""


def test_a_row_is_drawn_once_for_as_long_as_it_shows_the_same() -> None:
    row_html.cache_clear()
    ended = row_of(task("t1", result="done <b>"), "done")
    first = row_html(ended, "/ui/s/me")
    assert 'id="t-t1"' in first
    assert "done &lt;b&gt;" in first  # drawn by the template: escaped
    assert row_html(row_of(task("t1", result="done <b>"), "done"), "/ui/s/me") is first
    assert row_html.cache_info().hits == 1
    moved = row_html(row_of(task("t1", result="done <b>"), "attention"), "/ui/s/me")
    assert "g-attention" in moved
    assert row_html.cache_info().misses == 2  # another group is another row


def test_the_forest_nests_by_parent_then_batch_with_each_trees_budget() -> None:
    usage = Usage(input_tokens=100, output_tokens=20, requests=1, cost=0.01)
    agent = {"kind": "agent", "agent": "lead", "prompt": "go"}
    tasks = [
        task("t1", group="old"),
        task(
            "t2", spec=agent, usage=usage, group="new", keys=("agent:lead", "model:scripted/lead")
        ),
        task("t3", parent="t2", usage=usage, spec={**agent, "agent": "helper", "model": "m/x"}),
        task("t4", parent="t3"),
        task("t5", parent="t_gone"),  # its parent was swept: a root
    ]
    groups = forest(tasks)
    assert [g.group for g in groups] == [None, "new", "old"]  # the newest first (t5 is)
    (lead,) = groups[1].roots
    assert [(n.task.id, n.depth) for n in lead.walk()] == [("t2", 0), ("t3", 1), ("t4", 2)]
    assert (groups[1].spent_tokens, groups[1].spent_cost) == (240, pytest.approx(0.02))
    budget = budget_of(lead, {"budget": {"tokens": 1000, "cost": 0.015}})
    assert budget is not None
    assert (budget.tokens_left, budget.cost_left) == (760, 0.0)
    assert budget_of(lead, {"budget": {"tokens": None, "cost": None}}) is None
    assert budget_of(lead, None) is None
    assert budget_of(lead, {"messages": []}) is None
    assert model_of(tasks[1]) == "scripted/lead"
    assert model_of(tasks[2]) == "m/x"
    assert model_of(tasks[0]) is None


def test_keys_list_the_busiest_first_with_what_queues_on_them() -> None:
    status = Status(
        states={}, running=2, max_running=64, queued=2, max_queued=100,
        keys={"idle": KeyStatus(running=0, limit=3, queued=0),
              "busy": KeyStatus(running=2, limit=2, queued=2)},
    )  # fmt: skip
    queued = [task("t2", "queued", position=2, keys=("busy",)),
              task("t1", "queued", position=1, keys=("busy",))]  # fmt: skip
    rows = key_rows(status, queued)
    assert [r.key for r in rows] == ["busy", "idle"]
    assert [t.id for t in rows[0].queued] == ["t1", "t2"]


def test_the_command_line_submits_the_same_task_again() -> None:
    shell = task(
        "t1", spec={"kind": "shell", "command": "echo 'hi there'", "cwd": "/w", "env": {"A": "1"}},
        label="greet", priority=7, timeout=30.0, keys=("shell",), session="me",
    )  # fmt: skip
    line = cli_line(shell)
    assert shlex.split(line) == [
        "outrider", "submit", "--session", "me", "--label", "greet", "--timeout", "30.0",
        "--priority", "7", "--cwd", "/w", "--env", "A=1", "echo 'hi there'",
    ]  # fmt: skip
    argv = task("t2", spec={"kind": "shell", "command": ["sh", "-c", "exit 4"]}, keys=("k",))
    assert shlex.split(cli_line(argv))[-6:] == ["--key", "k", "--", "sh", "-c", "exit 4"]
    fixer = {"kind": "agent", "agent": "fixer", "prompt": "Fix it", "workspace": "/p",
             "model": "openai/x"}  # fmt: skip
    agent = task("t3", spec=fixer, keys=("agent:fixer",))
    assert shlex.split(cli_line(agent))[4:] == [
        "--cwd", "/p", "--model", "openai/x", "--agent", "fixer", "Fix it",
    ]  # fmt: skip
    handler = task("t4", spec={"kind": "handler", "handler": "h", "params": {"n": 1}},
                   keys=("handler:h",), max_attempts=3)  # fmt: skip
    assert shlex.split(cli_line(handler))[4:] == [
        "--max-attempts", "3", "--handler", "h", "--params", '{"n":1}',
    ]  # fmt: skip
    raw = task("t5", spec={"kind": "cli_agent", "cli": "claude", "prompt": "x"}, session="me")
    assert cli_line(raw) == "outrider retry t5 --session me"


def test_timeline_bars_split_queued_from_running_and_retries() -> None:
    retried = task("t0", "succeeded", attempt=2, max_attempts=2)
    cancelled = task("t1", "cancelled")
    running = task("t2", "running", keys=("other",))
    events = [
        event(1, "task.queued", "t0", 0), event(2, "task.started", "t0", 1, attempt=1),
        event(3, "task.retrying", "t0", 2, attempt=1), event(4, "task.started", "t0", 4, attempt=2),
        event(5, "task.succeeded", "t0", 6), event(6, "task.queued", "t1", 1),
        event(7, "task.cancelled", "t1", 3), event(8, "task.started", "t2", 3, attempt=1),
    ]  # fmt: skip
    now = (T0 + timedelta(seconds=10)).timestamp()
    bars = bars_of([retried, cancelled, running], events, now=now)
    spans = [(b.task.id, b.kind, b.state, b.attempt, b.end - b.start) for b in bars]
    assert spans == [
        ("t0", "queued", "queued", 1, 1.0), ("t0", "run", "retrying", 1, 1.0),
        ("t0", "queued", "queued", 2, 2.0), ("t0", "run", "succeeded", 2, 2.0),
        ("t1", "queued", "cancelled", 1, 2.0),
        ("t2", "queued", "queued", 1, 1.0), ("t2", "run", "running", 1, 7.0),
    ]  # fmt: skip
    drawn = layout(bars, by="key")
    assert [name for name, _, _ in drawn.lanes] == ["other", "shell"]
    assert len({p.y for p in drawn.bars if p.bar.task.id in ("t0", "t1")}) == 2  # they overlap
    assert drawn.ticks[0].text == "0s"
    by_tree = layout(bars, by="tree")
    assert [name for name, _, _ in by_tree.lanes] == ["true"]  # each task is its own tree
    trace = chrome_trace(bars, session="s")
    events_out = trace["traceEvents"]
    assert isinstance(events_out, list)
    spans_out = [e for e in events_out if isinstance(e, dict) and e.get("ph") == "X"]
    assert len(spans_out) == len(bars)
    assert {e["cat"] for e in spans_out} == {"queued", "run"}
    json.dumps(trace)  # serialisable as it is


def test_a_transcript_reads_as_turns_with_their_usage() -> None:
    transcript = {
        "agent": "lead",
        "messages": [
            {"kind": "request", "parts": [{"part_kind": "system-prompt", "content": "Be brief."},
                                          {"part_kind": "user-prompt", "content": "Go"}]},
            {"kind": "response", "model_name": "scripted/lead",
             "usage": {"input_tokens": 1500, "output_tokens": 20},
             "parts": [{"part_kind": "text", "content": "Looking."},
                       {"part_kind": "tool-call", "tool_name": "read_file", "args": {"path": "a"}},
                       {"part_kind": "thinking", "content": "hmm"}]},
            {"kind": "request", "parts": [{"part_kind": "tool-return", "tool_name": "read_file",
                                           "content": "x" * 5000},
                                          {"part_kind": "retry-prompt", "content": "again"}]},
            {"kind": "response", "parts": [{"part_kind": "text", "content": "Done."}]},
            {"kind": "request", "parts": [{"part_kind": "user-prompt", "content": "More?"}]},
        ],
    }  # fmt: skip
    turns = turns_of(transcript)
    assert turns is not None
    assert [t.title for t in turns] == ["Task", "Turn 1", "Turn 2"]
    assert [p.kind for p in turns[0].parts] == ["system", "prompt"]
    first = turns[1]
    assert (first.model, first.usage) == ("scripted/lead", "1.5k in · 20 out")
    assert [p.kind for p in first.parts] == ["text", "call", "thinking", "answer", "retry"]
    assert first.parts[1].label == "→ read_file"
    assert len(first.parts[3].text) == 4000  # a long tool answer is clipped
    assert [p.kind for p in turns[2].parts] == ["text", "prompt"]
    assert turns_of(None) is None
    assert turns_of({"messages": [{"kind": "request", "parts": []}, 3]}) == []
    only_asked = turns_of({"messages": [{"kind": "request", "parts": [
        {"part_kind": "user-prompt", "content": "Go"}]}]})  # fmt: skip
    assert only_asked is not None
    assert [t.title for t in only_asked] == ["Task"]


@pytest.mark.parametrize(
    ("kind", "data", "text"),
    [
        ("task.queued", {"label": "x", "kind": "shell", "priority": 5, "keys": ["shell", "a"]},
         "label x, shell, priority 5, keys shell a"),
        ("task.queued", {"kind": "agent", "priority": 7, "keys": ["agent:r"]},
         "agent, priority 7, keys agent:r"),
        ("task.started", {"attempt": 2}, "attempt 2"),
        ("task.progress", {"completed": 2.0, "total": 50.0, "message": "turn 2",
                           "usage": {"input_tokens": 9, "output_tokens": 1}},
         "2/50 · turn 2 · 9 in / 1 out"),
        ("task.progress", {"completed": 3}, "3"),
        ("task.output", {"text": "a\nb", "total_bytes": 3}, "a b"),
        ("task.retrying", {"attempt": 1, "max_attempts": 2, "delay": 0.5,
                           "error": {"type": "exit", "message": "boom"}},
         "attempt 1 failed, again in 0.5s: boom"),
        ("task.failed", {"state": "failed", "error": {"type": "exit", "message": "code 1"}},
         "exit: code 1"),
        ("task.succeeded", {"state": "succeeded", "result_preview": "fine"}, "fine"),
        ("task.cancelled", {"state": "cancelled"}, ""),
        ("group.completed", {"group": "g", "succeeded": 3, "total": 3},
         "total 3, succeeded 3"),
        ("task.overlap", {"other": "t_2", "other_session": "s", "other_label": "fix",
                          "paths": ["a.py", "b.py"], "repo": "/r"},
         "changed the same files as fix in /r: a.py, b.py"),
        ("task.overlap", {"other": "t_2", "other_session": "s", "repo": "/r",
                          "paths": [f"{n}.py" for n in range(7)]},
         "changed the same files as t_2 in /r: 0.py, 1.py, 2.py, 3.py, 4.py …"),
    ],
)  # fmt: skip
def test_each_event_reads_as_one_line(kind: str, data: dict[str, object], text: str) -> None:
    assert event_text(event(1, kind, "t1", 0, **data)) == text


def test_numbers_and_output_lines_read_short() -> None:
    assert [tokens_text(n) for n in (950, 12_400, 3_100_000)] == ["950", "12.4k", "3.1M"]
    assert [cost_text(c) for c in (None, 0.01874, 12.5)] == ["", "$0.0187", "$12.50"]
    assert last_line("one\ntwo\n\n") == "two"
    assert last_line("progress 10%\rprogress 90%\n") == "progress 90%"
    assert last_line("\n \n") == ""
    assert partial("#a", "<b>x</b>", "innerHTML") == (
        '<hx-partial hx-target="#a" hx-swap="innerHTML"><b>x</b></hx-partial>'
    )


def test_changes_note_what_each_event_means_for_the_page() -> None:
    changes = Changes(0)
    changes.note(event(3, "task.output", "t1", 0, text="a\nb\n"), "s")
    changes.note(event(4, "task.progress", "t1", 0), "s")
    changes.note(event(5, "task.succeeded", "t2", 0), "s")
    other = event(9, "task.started", "t9", 0).model_copy(update={"session": "other"})
    changes.note(other, "s")
    assert (changes.last_seq, changes.lines, changes.changed) == (9, {"t1": "b"}, {"t1", "t2"})
    assert (changes.ended, changes.moved, changes.any) == ({"t2"}, True, True)


def test_a_login_code_works_once_and_expires() -> None:
    codes = LoginCodes()
    code = codes.mint("alice", now=100.0)
    assert codes.redeem(code, now=100.0 + _access.CODE_TTL - 1) == "alice"
    assert codes.redeem(code, now=101.0) is None  # used up
    late = codes.mint("alice", now=100.0)
    assert codes.redeem(late, now=100.0 + _access.CODE_TTL) is None
    assert codes.redeem("made-up") is None
    for _ in range(1_001):
        codes.mint("bob")
    assert len(codes._codes) == 1_000  # the oldest unused ones go


def test_a_cookie_is_the_principals_signed_and_dies_with_its_token_or_age() -> None:
    tokens = Tokens({"local": "t-local", "alice": "t-alice"})
    value = cookie_value(tokens, "alice", now=1000.0)
    assert cookie_principal(tokens, value, now=1000.0) == "alice"
    assert cookie_principal(tokens, value, now=1000.0 + _access.COOKIE_TTL) is None
    name, expires, mac = value.split(".")
    forged = f"{cookie_value(tokens, 'local', now=1000.0).split('.')[0]}.{expires}.{mac}"
    assert cookie_principal(tokens, forged, now=1000.0) is None
    assert cookie_principal(Tokens({"alice": "rotated"}), value, now=1000.0) is None
    for broken in (None, "", "a.b", "###.1.x", f"{name}.soon.{mac}", f"{name}.{expires}.@@"):
        assert cookie_principal(tokens, broken, now=1000.0) is None
    with pytest.raises(AssertionError):
        cookie_value(tokens, "nobody")


def test_the_hosts_that_name_the_daemon() -> None:
    assert allowed_hosts("127.0.0.1", 8765) == {"127.0.0.1:8765", "localhost:8765", "[::1]:8765"}
    assert allowed_hosts("::1", 80) == {"[::1]:80", "127.0.0.1:80", "localhost:80"}
    assert allowed_hosts("10.0.0.5", 8765) == {"10.0.0.5:8765"}
    assert allowed_hosts("box.lan", 1) == {"box.lan:1"}
    assert allowed_hosts("0.0.0.0", 1) is None  # every address: its names are not known
    assert allowed_hosts("::", 1) is None


def test_the_vendored_files_are_the_ones_vendor_md_names() -> None:
    table = (STATIC / "VENDOR.md").read_text()
    row = r"\| `static/([^`]+)` \|[^|]+\| ([0-9.]+) \|[^|]+\| `([0-9a-f]{64})` \|"
    rows = re.findall(row, table)
    assert {name for name, _, _ in rows} == {"htmx.min.js", "hx-sse.min.js"}
    for name, version, digest in rows:
        assert version == "4.0.1"
        assert hashlib.sha256((STATIC / "static" / name).read_bytes()).hexdigest() == digest
