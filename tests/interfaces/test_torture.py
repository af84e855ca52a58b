"""Crash torture: the daemon is killed with SIGKILL under HTTP load, five times, then checked.

Invariants, whatever the timing of the kills:
- no acknowledged task is lost, and none is stored twice;
- no task runs twice at the same time (each attempt takes a lock the previous attempt's
  processes would still hold: `flock -n` fails and says so);
- no process a task started survives the next start (every task runs for seconds, longer
  than a restart takes);
- every group that ended has exactly one `group.completed` summary, with the right counts;
- each task's events are complete: queued, then per attempt a start and a retry or its end.

Every other cycle the guardian dies with the daemon, so both the guardian and recovery at the
next start are what stops the leftovers.
"""

from __future__ import annotations

import itertools
import random
import time
from collections import Counter, defaultdict
from typing import TYPE_CHECKING

import anyio
import httpx
import psutil
import pytest

import outrider
from outrider import Event, Task, TaskState
from outrider._store._sqlite import SQLiteBackend
from outrider.runners._procs import MARKER_ENV, _environ_value
from outrider.testing import wait_until

from .conftest import Daemon, crash, launch, stop

if TYPE_CHECKING:
    from pathlib import Path

_GROUPS = itertools.count()
CYCLES = 5
BATCHES = 8
LEFT = "30.1"
"""How long what a task leaves behind sleeps: far longer than the task, and recognisable."""
SESSION = "torture"


def commands(work: Path, label: str) -> list[dict[str, object]]:
    """The kinds of task the load mixes: quick; one leaving a background child; one leaving a
    `setsid` escapee; one ignoring SIGTERM. Each but the first takes a lock that what it
    leaves behind holds on: a second attempt beside them cannot take it."""
    lock = f"flock -n {work}/{label}.lock"
    twice = f"|| echo {label} >> {work}/twice"
    return [
        {"kind": "shell", "command": "true"},
        {"kind": "shell", "command": f"{lock} sh -c 'sleep {LEFT} & sleep 1.5' {twice}"},
        {"kind": "shell", "command": f"{lock} sh -c '( setsid sleep {LEFT} & ); sleep 1' {twice}"},
        {"kind": "shell", "grace_period": 0.2,
         "command": f"{lock} sh -c \"trap '' TERM; sleep {LEFT} & sleep 1\" {twice}"},
    ]  # fmt: skip


def load(daemon: Daemon, work: Path, rng: random.Random, acked: dict[str, str],
         groups: dict[str, list[str]], seconds: float) -> None:  # fmt: skip
    """Submit small batches (at most `BATCHES`) for `seconds`, or until the daemon dies."""
    deadline = time.monotonic() + seconds
    with daemon.http(session=SESSION) as http:
        for _ in range(BATCHES):
            if time.monotonic() > deadline:
                return
            group = f"g{next(_GROUPS)}"  # never reused: a batch may be stored, yet unacknowledged
            labels = [f"{group}-{i}" for i in range(rng.randint(2, 5))]
            items = [
                {"spec": rng.choice(commands(work, label)), "label": label,
                 "max_attempts": rng.choice([1, 3])}
                for label in labels
            ]  # fmt: skip
            try:
                answer = http.post("/v1/tasks/batch", json={"items": items, "group": group})
            except httpx.TransportError:
                return  # killed mid-request: this batch may or may not be stored
            results = answer.json()["results"]
            groups[group] = [r["task"]["id"] for r in results]
            acked.update({r["task"]["label"]: r["task"]["id"] for r in results})


def sleeping(before: float) -> list[int]:
    """What tasks left behind (`sleep LEFT`), started before `before` and still alive."""
    return [
        proc.pid
        for proc in psutil.process_iter(["cmdline", "create_time", "status"])
        if proc.info["cmdline"] == ["sleep", LEFT] and proc.info["create_time"] < before
        and proc.info["status"] != psutil.STATUS_ZOMBIE
    ]  # fmt: skip


def recovered(daemon: Daemon) -> bool:
    return httpx.get(daemon.url + "/health").json()["status"] == "ok"


def marked(ids: set[str]) -> list[int]:
    """Live processes started by one of the tasks `ids`."""
    found = []
    for pid in psutil.pids():
        value = _environ_value(pid, MARKER_ENV)
        if value and value.rsplit(".", 1)[0] in ids:
            try:
                if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                    found.append(pid)
            except psutil.NoSuchProcess:
                pass
    return found


def check_lifecycle(task: Task, events: list[Event]) -> None:
    kinds = [e.type for e in events if e.type not in ("task.output", "task.progress")]
    assert kinds[0] == "task.queued", (task.id, kinds)
    assert kinds[-1] == f"task.{task.state}", (task.id, kinds)
    starts = [e.data.attempt for e in events if e.type == "task.started"]
    assert starts == list(range(1, task.attempt + 1)), (task.id, kinds)
    assert kinds.count("task.retrying") in (task.attempt - 1, task.attempt), (task.id, kinds)
    ends = {f"task.{s}" for s in TaskState if s.terminal}
    assert sum(k in ends for k in kinds) == 1, (task.id, kinds)


@pytest.mark.slow
def test_kill_9_under_load_loses_nothing_duplicates_nothing_and_leaves_nothing(
    tmp_path: Path,
) -> None:
    home, work = tmp_path / "home", tmp_path / "work"
    home.mkdir()
    work.mkdir()
    (home / "outrider.toml").write_text("shutdown_grace = 1\n[limits]\nshell = 64\n")
    rng = random.Random(14)
    acked: dict[str, str] = {}
    groups: dict[str, list[str]] = {}
    crashed_at = 0.0
    for cycle in range(CYCLES + 1):
        daemon = launch(home)
        try:
            anyio.run(lambda d=daemon: wait_until(lambda: recovered(d), timeout=30))  # type: ignore[misc]
            assert sleeping(crashed_at) == [], f"left by the run killed in cycle {cycle - 1}"
        except BaseException:
            stop(daemon)
            raise
        if cycle == CYCLES:
            break
        load(daemon, work, rng, acked, groups, seconds=rng.uniform(0.3, 0.8))
        crashed_at = time.time()
        crash(daemon, guardian_too=cycle % 2 == 1)
    try:
        with daemon.client(SESSION) as client:
            client.wait(list(acked.values()), timeout=60)
    finally:
        assert stop(daemon) == 0
    ids = set(acked.values())
    assert sleeping(time.time()) == []
    assert marked(ids) == []
    assert not (work / "twice").exists(), (work / "twice").read_text()
    tasks, events = anyio.run(read_store, home / "outrider.db")
    stored = Counter(t.label for t in tasks)
    assert set(acked) <= set(stored)  # nothing acknowledged is lost...
    assert [label for label, n in stored.items() if n > 1] == []  # ...or stored twice
    assert all(t.state.terminal for t in tasks)
    by_task: dict[str, list[Event]] = defaultdict(list)
    for event in events:
        by_task[event.task_id or ""].append(event)
    for task in tasks:
        check_lifecycle(task, by_task[task.id])
    summaries = Counter(e.group for e in events if e.type == "group.completed")
    for group in {t.group for t in tasks}:
        assert summaries[group] == 1, group
    assert [e.seq for e in events] == sorted({e.seq for e in events})


async def read_store(db: Path) -> tuple[list[Task], list[Event]]:
    """Every task and event of every session, as recovery left them."""
    async with outrider.Orchestrator(db):  # recovery runs; then the store is read as it is
        pass
    backend = SQLiteBackend(str(db))
    try:
        return backend.query(session=None), backend.events(session=None, after=0, limit=10**9)
    finally:
        backend.close()
