from __future__ import annotations

from typing import TYPE_CHECKING

import anyio
import pytest
import sniffio

import outrider
from outrider import TaskState

from .gates import Gates

if TYPE_CHECKING:
    from pathlib import Path

S = "alice"


async def test_handler_runs_and_result_is_stored(orch: outrider.Orchestrator) -> None:
    @orch.handler("add")
    async def add(ctx: outrider.RunContext, a: int, b: int) -> dict[str, int]:
        ctx.progress(1, 1, "added")
        return {"sum": a + b}

    task = await orch.submit(outrider.call("add", a=2, b=3), session=S, label="add")
    assert task.state is TaskState.QUEUED
    (done,) = await orch.wait([task.id], session=S, timeout=5)
    assert done.state is TaskState.SUCCEEDED
    assert done.result == {"sum": 5}
    assert done.attempt == 1
    assert done.keys == ("handler:add",)
    assert await orch.result(task.id, session=S) == {"sum": 5}


async def test_sync_handler_runs_in_a_thread_and_reports(orch: outrider.Orchestrator) -> None:
    seen: list[outrider.Task] = []

    def count(ctx: outrider.RunContext, n: int) -> int:
        for i in range(n):
            ctx.progress(i + 1, n, f"{i + 1}/{n}")
            ctx.output(f"line {i}\n")
        return n

    orch.register_handler("count", count)
    task = await orch.submit(outrider.call("count", n=3), session=S, on_done=seen.append)
    (done,) = await orch.wait([task.id], session=S, timeout=5)
    assert done.state is TaskState.SUCCEEDED
    assert done.result == 3
    assert done.progress is not None
    assert done.progress.completed == 3
    assert seen
    assert seen[0].id == task.id
    assert seen[0].state is TaskState.SUCCEEDED
    assert "line 2" in await orch.tail(task.id, session=S)


async def test_handler_exception_fails_with_type_and_traceback(
    orch: outrider.Orchestrator,
) -> None:
    @orch.handler("boom")
    async def boom(ctx: outrider.RunContext) -> None:
        raise KeyError("missing")

    task = await orch.submit(outrider.call("boom"), session=S)
    (done,) = await orch.wait([task.id], session=S, timeout=5)
    assert done.state is TaskState.FAILED
    assert done.error is not None
    assert done.error.type == "KeyError"
    assert "missing" in done.error.message
    assert done.error.detail is not None
    assert "Traceback" in done.error.detail
    with pytest.raises(outrider.TaskFailed) as info:
        await orch.result(task.id, session=S)
    assert info.value.task.id == task.id


async def test_priority_then_fifo_under_a_limit(db: Path) -> None:
    async with outrider.Orchestrator(db, limits={"handler:gate": 1}) as orch:
        gates = Gates(orch)
        first = await orch.submit(outrider.call("gate", name="first"), session=S)
        await gates.wait_started("first")
        low = await orch.submit(outrider.call("gate", name="low"), session=S, priority=1)
        mid1 = await orch.submit(outrider.call("gate", name="mid1"), session=S, priority=5)
        high = await orch.submit(outrider.call("gate", name="high"), session=S, priority=9)
        mid2 = await orch.submit(outrider.call("gate", name="mid2"), session=S, priority=5)
        listed = {t.id: t for t in await orch.list(session=S, states=["queued"])}
        assert [listed[t.id].position for t in (high, mid1, mid2, low)] == [1, 2, 3, 4]
        assert listed[low.id].waiting_for == "key 'handler:gate' (1/1 running)"
        for name in ("first", "high", "mid1", "mid2", "low"):
            await gates.wait_started(name)
            gates.open(name)
        await orch.wait([t.id for t in (first, low, mid1, high, mid2)], session=S, timeout=5)
        assert gates.order == ["first", "high", "mid1", "mid2", "low"]


async def test_full_key_does_not_block_other_keys(db: Path) -> None:
    async with outrider.Orchestrator(db, limits={"a": 1}) as orch:
        gates = Gates(orch)
        await orch.submit(outrider.call("gate", name="a1"), session=S, keys=["a"])
        await gates.wait_started("a1")
        a2 = await orch.submit(outrider.call("gate", name="a2"), session=S, keys=["a"], priority=10)
        await orch.submit(outrider.call("gate", name="b1"), session=S, keys=["b"], priority=0)
        await gates.wait_started("b1")
        assert (await orch.get(a2.id, session=S)).state is TaskState.QUEUED
        status = orch.status()
        assert status.keys["a"].model_dump() == {"running": 1, "limit": 1, "queued": 1}
        assert status.keys["b"].running == 1
        gates.open("a1", "a2", "b1")


async def test_global_cap(db: Path) -> None:
    async with outrider.Orchestrator(db, max_running=2, default_limit=10) as orch:
        gates = Gates(orch)
        tasks = [
            await orch.submit(outrider.call("gate", name=f"g{i}"), session=S) for i in range(3)
        ]
        await gates.wait_started("g0", "g1")
        third = await orch.get(tasks[2].id, session=S)
        assert third.state is TaskState.QUEUED
        assert third.waiting_for == "the global limit (2/2 running)"
        gates.open("g0", "g1", "g2")
        done = await orch.wait([t.id for t in tasks], session=S, timeout=5)
        assert all(t.state is TaskState.SUCCEEDED for t in done)


async def test_sessions_are_isolated(orch: outrider.Orchestrator) -> None:
    @orch.handler("noop")
    async def noop(ctx: outrider.RunContext) -> None:
        return None

    mine = await orch.submit(outrider.call("noop"), session="alice")
    await orch.wait([mine.id], session="alice", timeout=5)
    with pytest.raises(outrider.TaskNotFound) as foreign:
        await orch.get(mine.id, session="bob")
    with pytest.raises(outrider.TaskNotFound) as unknown:
        await orch.get("t_doesnotexist", session="bob")
    assert str(foreign.value).replace(mine.id, "X") == str(unknown.value).replace(
        "t_doesnotexist", "X"
    )
    assert await orch.list(session="bob") == []
    with pytest.raises(outrider.TaskNotFound):
        await orch.cancel(mine.id, session="bob")
    with pytest.raises(outrider.TaskNotFound):
        await orch.wait([mine.id], session="bob")
    with pytest.raises(outrider.TaskNotFound):
        await orch.tail(mine.id, session="bob")
    assert [t.id for t in await orch.list(session=None)] == [mine.id]
    with anyio.fail_after(5):
        bob_events = [e async for e in orch.events(session="bob", follow=False)]
    assert bob_events == []


async def test_queue_bound_rejects_and_stores_nothing(db: Path) -> None:
    async with outrider.Orchestrator(db, max_queued=2, limits={"handler:gate": 1}) as orch:
        gates = Gates(orch)
        await orch.submit(outrider.call("gate", name="r"), session=S)
        await gates.wait_started("r")
        await orch.submit(outrider.call("gate", name="q1"), session=S)
        await orch.submit(outrider.call("gate", name="q2"), session=S)
        with pytest.raises(outrider.QueueFull, match="max_queued"):
            await orch.submit(outrider.call("gate", name="q3"), session=S)
        assert len(await orch.list(session=S)) == 3
        results = await orch.submit_many(
            [{"spec": {"kind": "handler", "handler": "gate", "params": {"name": "q4"}}}],
            session=S,
        )
        assert isinstance(results[0], outrider.SubmitError)
        assert results[0].type == "QueueFull"
        gates.open("r", "q1", "q2")


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"priority": 11}, "priority"),
        ({"priority": -1}, "priority"),
        ({"timeout": 0}, "timeout"),
        ({"ttl": -5}, "ttl"),
        ({"keys": [""]}, "keys.0"),
        ({"keys": []}, "keys"),
        ({"max_attempts": 0}, "max_attempts"),
        ({"depends_on": ["t_nope"]}, "depends_on"),
        ({"parent": "t_nope"}, "parent"),
    ],
)
async def test_bad_options_name_the_field(
    orch: outrider.Orchestrator, kwargs: dict[str, object], field: str
) -> None:
    with pytest.raises(outrider.UserError) as info:
        await orch.submit(outrider.shell("true"), session=S, **kwargs)  # type: ignore[arg-type]
    assert info.value.field == field
    assert field.split(".")[0] in str(info.value)
    assert await orch.list(session=S) == []


async def test_bad_specs(orch: outrider.Orchestrator) -> None:
    with pytest.raises(ValueError, match="empty"):
        outrider.shell("  ")
    with pytest.raises(ValueError, match="empty"):
        outrider.shell([])
    with pytest.raises(outrider.UserError, match="unknown handler 'nope'") as info:
        await orch.submit(outrider.call("nope"), session=S)
    assert info.value.field == "spec.handler"
    with pytest.raises(outrider.UserError, match="larger than") as big:
        await orch.submit(outrider.shell(["echo", *["x" * 110_000] * 10]), session=S)
    assert big.value.field == "spec"
    with pytest.raises(outrider.UserError, match="session"):
        await orch.submit(outrider.shell("true"), session="")
    with pytest.raises(ValueError, match="over the system's limit of 131071 bytes for one arg"):
        outrider.shell("x" * 400_000)  # it could never be run: refused before it is queued
    assert await orch.list(session=None) == []


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"limits": {"shell": 0}}, "limits.shell"),
        ({"limits": {"": 2}}, "limits"),
        ({"max_running": 0}, "max_running"),
        ({"default_limit": 0}, "default_limit"),
        ({"max_queued": 0}, "max_queued"),
    ],
)
def test_bad_config(kwargs: dict[str, object], field: str) -> None:
    with pytest.raises(outrider.UserError) as info:
        outrider.Orchestrator(":memory:", **kwargs)  # type: ignore[arg-type]
    assert info.value.field == field


async def test_submit_many_stores_good_items_and_reports_bad_ones(
    orch: outrider.Orchestrator,
) -> None:
    @orch.handler("noop")
    async def noop(ctx: outrider.RunContext) -> str:
        return "ok"

    results = await orch.submit_many(
        [
            {"spec": {"kind": "handler", "handler": "noop"}, "label": "good"},
            {"spec": {"kind": "handler", "handler": "noop"}, "priority": 42},
            {"spec": {"kind": "teleport"}},
            outrider.SubmitItem(spec=outrider.call("missing")),
            {"spec": {"kind": "shell", "command": "true"}, "label": "good2"},
        ],
        session=S,
        group="batch",
    )
    kinds = [type(r).__name__ for r in results]
    assert kinds == ["Task", "SubmitError", "SubmitError", "SubmitError", "Task"]
    errors = [r for r in results if isinstance(r, outrider.SubmitError)]
    assert [(e.index, e.field) for e in errors] == [
        (1, "priority"),
        (2, "spec"),
        (3, "spec.handler"),
    ]
    tasks = [r for r in results if isinstance(r, outrider.Task)]
    assert all(t.group == "batch" for t in tasks)
    done = await orch.wait([t.id for t in tasks], session=S, timeout=10)
    assert [t.state for t in done] == [TaskState.SUCCEEDED, TaskState.SUCCEEDED]


async def test_closed_orchestrator_says_why(db: Path) -> None:
    orch = outrider.Orchestrator(db)
    with pytest.raises(outrider.Closed, match="enter it first"):
        await orch.submit(outrider.shell("true"), session=S)
    async with orch:
        pass
    with pytest.raises(outrider.Closed, match="closed"):
        await orch.submit(outrider.shell("true"), session=S)
    with pytest.raises(outrider.Closed, match="closed"):
        async with orch:
            pass


async def test_runs_have_the_async_library_pinned_and_the_host_context_is_untouched(
    db: Path,
) -> None:
    # The test runner pins it for the test; start from an unpinned host, as under asyncio.run.
    token = sniffio.current_async_library_cvar.set(None)
    try:
        async with outrider.Orchestrator(db) as orch:

            @orch.handler("library")
            async def library(ctx: outrider.RunContext) -> str | None:
                return sniffio.current_async_library_cvar.get()

            task = await orch.submit(outrider.call("library"), session=S)
            (done,) = await orch.wait([task.id], session=S, timeout=5)
            assert sniffio.current_async_library_cvar.get() is None
        assert done.result == "asyncio"
    finally:
        sniffio.current_async_library_cvar.reset(token)
