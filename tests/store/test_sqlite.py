"""The SQLite backend: batched writes, per-change failure, event sequence numbers."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING

import anyio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import outrider
from outrider._store import _store
from outrider._store._sqlite import (
    AddEvent,
    Change,
    EndAttempt,
    InsertTask,
    SetNoticeCursor,
    SQLiteBackend,
    StartAttempt,
    UpdateTask,
)
from outrider._types._errors import Closed, StoreError
from outrider._types._events import TaskEnded, TaskProgress, TaskQueued, TaskStarted
from outrider._types._task import ErrorInfo, Task, TaskState, Usage
from outrider.testing import wait_until

if TYPE_CHECKING:
    from pathlib import Path

    import pytest


def _task(n: int) -> Task:
    return Task(
        id=f"t_{n:018d}", session="s", spec=outrider.call("h", n=n), state=TaskState.QUEUED,
        priority=5, keys=("handler:h",), created_at=datetime.fromtimestamp(1_800_000_000, UTC),
    )  # fmt: skip


def _queued(n: int = 0) -> TaskQueued:
    return TaskQueued(kind="handler", label=f"n{n}", priority=5, keys=["handler:h"])


def _open(path: Path) -> SQLiteBackend:
    backend = SQLiteBackend(str(path))
    backend.migrate()
    return backend


def _dump(backend: SQLiteBackend) -> list[list[tuple[object, ...]]]:
    conn = backend._conn
    return [
        conn.execute("SELECT * FROM tasks ORDER BY seq").fetchall(),
        conn.execute("SELECT * FROM attempts ORDER BY task_id, attempt").fetchall(),
        conn.execute("SELECT * FROM events ORDER BY seq").fetchall(),
        conn.execute("SELECT * FROM notice_cursors ORDER BY session").fetchall(),
    ]


def _lifecycle(task: Task, seq: int) -> list[Change]:
    tid, at = task.id, 1_800_000_001.0
    return [
        [InsertTask(task, seq), AddEvent("task.queued", "s", at, tid, None, _queued(seq))],
        [UpdateTask(tid, {"state": TaskState.RUNNING, "attempt": 1}), StartAttempt(tid, 1, at)],
        [UpdateTask(tid, {"progress": None, "usage": None})],
        [
            UpdateTask(tid, {"state": TaskState.FAILED, "error": ErrorInfo(type="x", message="m"),
                             "result": {"a": [1, 2]}, "exit_code": 3}),
            EndAttempt(tid, 1, at + 1, "failed", ErrorInfo(type="x", message="m")),
            AddEvent("task.failed", "s", at + 1, tid, "g",
                     TaskEnded(state=TaskState.FAILED, exit_code=3)),
        ],
        [SetNoticeCursor("s", seq)],
    ]  # fmt: skip


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(cuts=st.lists(st.integers(min_value=1, max_value=6), min_size=1, max_size=12))
def test_batched_writes_store_what_change_by_change_writes(
    tmp_path_factory: pytest.TempPathFactory, cuts: list[int]
) -> None:
    """However the changes are cut into batches, the fast path stores what savepoints store."""
    changes = [c for n in range(4) for c in _lifecycle(_task(n), n + 1)]
    folder = tmp_path_factory.mktemp("db")
    fast, slow = _open(folder / "fast.db"), _open(folder / "slow.db")
    start = 0
    for size in [*cuts, len(changes)]:
        batch = changes[start : start + size]
        if not batch:
            break
        fast_events = fast._apply_batched(batch)
        slow_events = slow._apply_one_by_one(batch)
        assert fast_events == slow_events
        start += size
    assert _dump(fast) == _dump(slow)
    fast.close()
    slow.close()


def test_a_bad_change_fails_alone_and_leaves_nothing_half_written(tmp_path: Path) -> None:
    backend = _open(tmp_path / "x.db")
    good, twin = _task(1), _task(2)
    results = backend.apply(
        [
            [InsertTask(good, 1), AddEvent("task.queued", "s", 1.0, good.id, None, _queued())],
            [
                AddEvent("task.started", "s", 2.0, "t_x", None, TaskStarted(attempt=1)),
                UpdateTask("t_nobody", {"attempt": 1}),
            ],
            [InsertTask(twin, 2), AddEvent("task.queued", "s", 3.0, twin.id, None, _queued())],
            [InsertTask(good, 3)],  # the same id again
        ]
    )
    assert [type(r) for r in results] == [list, StoreError, list, StoreError]
    assert "no task 't_nobody'" in str(results[1])
    stored = backend._conn.execute("SELECT seq, task_id FROM events ORDER BY seq").fetchall()
    assert [tid for _, tid in stored] == [good.id, twin.id]
    returned = [e for r in results if isinstance(r, list) for e in r]
    assert [(e.seq, e.op.task_id) for e in returned] == stored
    assert returned[0].event().task_id == good.id
    assert backend.get_many([good.id, twin.id]).keys() == {good.id, twin.id}
    backend.close()


def test_values_read_back_as_they_were_written(tmp_path: Path) -> None:
    """JSON columns (keys, dependencies, event data) keep text, numbers and nesting exactly."""
    backend = _open(tmp_path / "x.db")
    task = _task(1).model_copy(
        update={"keys": ("handler:h", "modèle:ü"), "depends_on": ("t_a", "t_b"), "label": "größe",
                "result": {"nested": {"a": [1, 2.5, None, True]}, "empty": [], "ratio": 0.1}}
    )  # fmt: skip
    usage = Usage(input_tokens=2**40, cost=-2.5e-300)
    data = TaskProgress(completed=0.1, total=1e300, message='é ✓ "q"\n', usage=usage)
    unstorable = TaskStarted.model_construct(attempt=object())  # type: ignore[arg-type]
    results = backend.apply(
        [
            [InsertTask(task, 1), AddEvent("task.progress", "s", 1.0, task.id, None, data)],
            [AddEvent("task.started", "s", 2.0, task.id, None, unstorable)],
        ]
    )
    assert isinstance(results[0], list)
    assert isinstance(results[1], StoreError)
    assert backend.get_many([task.id]) == {task.id: task}
    (event,) = backend.events(session=None, after=0, limit=10)
    assert event.data == data
    backend.close()


def test_event_numbers_only_grow_even_after_a_sweep(tmp_path: Path) -> None:
    backend = _open(tmp_path / "x.db")
    first = backend.apply(
        [[AddEvent("task.queued", "s", 1.0, "t_a", None, _queued())] for _ in range(3)]
    )
    backend.sweep(before=10.0)
    assert backend.events(session=None, after=0, limit=10) == []
    (after,) = backend.apply([[AddEvent("task.queued", "s", 20.0, "t_b", None, _queued())]])
    seqs = [e.seq for r in first if isinstance(r, list) for e in r]
    assert seqs == [1, 2, 3]
    assert isinstance(after, list)
    assert after[0].seq == 4
    backend.close()
    reopened = _open(tmp_path / "x.db")
    (again,) = reopened.apply([[AddEvent("task.queued", "s", 21.0, "t_c", None, _queued())]])
    assert isinstance(again, list)
    assert again[0].seq == 5
    reopened.close()


async def test_the_wal_is_copied_into_the_database_off_the_write_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_store, "_CHECKPOINT_EVERY", 10)
    db = tmp_path / "o.db"
    async with outrider.Orchestrator(db) as orch:

        @orch.handler("noop")
        async def noop(ctx: outrider.RunContext) -> None:
            return None

        before = db.stat().st_size
        items = [outrider.SubmitItem(spec=outrider.call("noop")) for _ in range(40)]
        tasks = await orch.session("s").submit_many(items)
        await orch.session("s").wait([t.id for t in tasks if isinstance(t, Task)])
        # Commits never checkpoint; the store's own checkpointer grows the database file.
        await wait_until(lambda: db.stat().st_size > before, timeout=10)


async def test_a_commits_follow_up_runs_after_it_in_order_even_if_its_caller_is_cancelled(
    tmp_path: Path,
) -> None:
    store = _store.Store(tmp_path / "o.db")
    await store.open()
    seen: list[tuple[str, list[type]]] = []

    def note(name: str) -> _store.Then:
        return lambda results: seen.append((name, [type(r) for r in results]))

    first, second = _task(1), _task(2)
    async with anyio.create_task_group() as tg:
        await tg.start(store.run)
        with anyio.CancelScope() as scope:
            scope.cancel()  # the caller gives up at once; its change is queued already
            await store.commit_many([[InsertTask(first, 1)]], then=note("cancelled caller"))
        duplicate = [InsertTask(first, 3)]  # fails alone: the id exists
        await store.commit_then([duplicate, [InsertTask(second, 2)]], note("no caller"), wait=False)
        assert "no caller" not in dict(seen)  # queued, not waited for
        await store.commit([AddEvent("task.queued", "s", 1.0, first.id, None, _queued())])
        assert seen == [("cancelled caller", [list]), ("no caller", [StoreError, list])]
        store.stop()
    await store.commit_then([[InsertTask(_task(4), 4)]], note("closed"), wait=False)
    await store.aclose()
    assert seen[2:] == [("closed", [Closed])]  # told, though nothing was stored


def _finished(n: int, at: float) -> Task:
    return _task(n).model_copy(
        update={"state": TaskState.SUCCEEDED, "finished_at": datetime.fromtimestamp(at, UTC)}
    )


def test_a_sweep_deletes_in_batches_and_keeps_what_is_unfinished_or_recent(tmp_path: Path) -> None:
    backend = _open(tmp_path / "x.db")
    old = [_finished(n, 5.0) for n in range(5)]
    kept = [_task(10), _finished(11, 50.0)]
    backend.apply([[InsertTask(t, n + 1)] for n, t in enumerate([*old, *kept])])
    backend.apply(
        [[AddEvent("task.queued", "s", 1.0, t.id, None, _queued())] for t in [*old, *kept]]
    )
    batches: list[list[str]] = []
    more = True
    while more:
        ids, more = backend.sweep(before=10.0, batch=2)
        batches.append(ids)
    assert [len(b) for b in batches] == [2, 2, 1, 0]  # the last batch finds the events done
    assert sorted(i for b in batches for i in b) == [t.id for t in old]
    assert set(backend.get_many(t.id for t in [*old, *kept])) == {t.id for t in kept}
    assert {e.task_id for e in backend.events(session=None, after=0, limit=50)} == {kept[0].id}
    backend.close()


async def test_the_store_sweeps_every_batch_letting_commits_in_between(tmp_path: Path) -> None:
    store = _store.Store(str(tmp_path / "x.db"))
    await store.open()
    async with anyio.create_task_group() as tg:
        tg.start_soon(store.run)
        await store.commit_many([[InsertTask(_finished(n, 5.0), n + 1)] for n in range(450)])
        calls: list[int] = []
        sweep_batch = store.backend.sweep

        def counted(before: float) -> tuple[list[str], bool]:
            calls.append(1)
            return sweep_batch(before)

        store.backend.sweep = counted  # type: ignore[method-assign]
        deleted = await store.sweep(10.0)
        assert len(deleted) == 450
        assert len(calls) == 5  # 4 x 100, then 50: the writer may take the lock between them
        store.stop()
    await store.aclose()
