from __future__ import annotations

from typing import TYPE_CHECKING

import anyio
import pytest
import sniffio

import outrider
from outrider import TaskState
from outrider.testing import ScriptedHandler

if TYPE_CHECKING:
    from pathlib import Path

S = "alice"


async def test_handler_runs_and_result_is_stored(orch: outrider.Orchestrator) -> None:
    @orch.handler("add")
    async def add(ctx: outrider.RunContext, a: int, b: int) -> dict[str, int]:
        ctx.progress(1, 1, "added")
        return {"sum": a + b}

    task = await orch.session(S).submit(outrider.call("add", a=2, b=3), label="add")
    assert task.state is TaskState.QUEUED
    (done,) = await orch.session(S).wait([task.id], timeout=5)
    assert done.state is TaskState.SUCCEEDED
    assert done.result == {"sum": 5}
    assert done.attempt == 1
    assert done.keys == ("handler:add",)
    assert await orch.session(S).result(task.id) == {"sum": 5}


async def test_sync_handler_runs_in_a_thread_and_reports(orch: outrider.Orchestrator) -> None:
    seen: list[outrider.Task] = []

    def count(ctx: outrider.RunContext, n: int) -> int:
        for i in range(n):
            ctx.progress(i + 1, n, f"{i + 1}/{n}")
            ctx.output(f"line {i}\n")
        return n

    orch.register_handler("count", count)
    task = await orch.session(S).submit(outrider.call("count", n=3), on_done=seen.append)
    (done,) = await orch.session(S).wait([task.id], timeout=5)
    assert done.state is TaskState.SUCCEEDED
    assert done.result == 3
    assert done.progress is not None
    assert done.progress.completed == 3
    assert seen
    assert seen[0].id == task.id
    assert seen[0].state is TaskState.SUCCEEDED
    assert "line 2" in await orch.session(S).tail(task.id)


async def test_handler_exception_fails_with_type_and_traceback(
    orch: outrider.Orchestrator,
) -> None:
    @orch.handler("boom")
    async def boom(ctx: outrider.RunContext) -> None:
        raise KeyError("missing")

    task = await orch.session(S).submit(outrider.call("boom"))
    (done,) = await orch.session(S).wait([task.id], timeout=5)
    assert done.state is TaskState.FAILED
    assert done.error is not None
    assert done.error.type == "KeyError"
    assert "missing" in done.error.message
    assert done.error.detail is not None
    assert "Traceback" in done.error.detail
    with pytest.raises(outrider.TaskFailed) as info:
        await orch.session(S).result(task.id)
    assert info.value.task.id == task.id


async def test_priority_then_fifo_under_a_limit(db: Path) -> None:
    async with outrider.Orchestrator(db, outrider.Settings(limits={"handler:gate": 1})) as orch:
        gates = ScriptedHandler(orch)
        first = await orch.session(S).submit(outrider.call("gate", name="first"))
        await gates.wait_started("first")
        low = await orch.session(S).submit(outrider.call("gate", name="low"), priority=1)
        mid1 = await orch.session(S).submit(outrider.call("gate", name="mid1"), priority=5)
        high = await orch.session(S).submit(outrider.call("gate", name="high"), priority=9)
        mid2 = await orch.session(S).submit(outrider.call("gate", name="mid2"), priority=5)
        listed = {t.id: t for t in await orch.session(S).list(states=["queued"])}
        assert [listed[t.id].position for t in (high, mid1, mid2, low)] == [1, 2, 3, 4]
        assert listed[low.id].waiting_for == "key 'handler:gate' (1/1 running)"
        for name in ("first", "high", "mid1", "mid2", "low"):
            await gates.wait_started(name)
            gates.open(name)
        await orch.session(S).wait([t.id for t in (first, low, mid1, high, mid2)], timeout=5)
        assert gates.order == ["first", "high", "mid1", "mid2", "low"]


async def test_full_key_does_not_block_other_keys(db: Path) -> None:
    async with outrider.Orchestrator(db, outrider.Settings(limits={"a": 1})) as orch:
        gates = ScriptedHandler(orch)
        await orch.session(S).submit(outrider.call("gate", name="a1"), keys=["a"])
        await gates.wait_started("a1")
        a2 = await orch.session(S).submit(outrider.call("gate", name="a2"), keys=["a"], priority=10)
        await orch.session(S).submit(outrider.call("gate", name="b1"), keys=["b"], priority=0)
        await gates.wait_started("b1")
        assert (await orch.session(S).get(a2.id)).state is TaskState.QUEUED
        status = orch.status()
        assert status.keys["a"].model_dump() == {"running": 1, "limit": 1, "queued": 1}
        assert status.keys["b"].running == 1
        gates.open("a1", "a2", "b1")


async def test_global_cap(db: Path) -> None:
    async with outrider.Orchestrator(
        db, outrider.Settings(max_running=2, default_limit=10)
    ) as orch:
        gates = ScriptedHandler(orch)
        tasks = [
            await orch.session(S).submit(outrider.call("gate", name=f"g{i}")) for i in range(3)
        ]
        await gates.wait_started("g0", "g1")
        third = await orch.session(S).get(tasks[2].id)
        assert third.state is TaskState.QUEUED
        assert third.waiting_for == "the global limit (2/2 running)"
        gates.open("g0", "g1", "g2")
        done = await orch.session(S).wait([t.id for t in tasks], timeout=5)
        assert all(t.state is TaskState.SUCCEEDED for t in done)


async def test_sessions_are_isolated(orch: outrider.Orchestrator) -> None:
    @orch.handler("noop")
    async def noop(ctx: outrider.RunContext) -> None:
        return None

    mine = await orch.session("alice").submit(outrider.call("noop"))
    await orch.session("alice").wait([mine.id], timeout=5)
    with pytest.raises(outrider.TaskNotFound) as foreign:
        await orch.session("bob").get(mine.id)
    with pytest.raises(outrider.TaskNotFound) as unknown:
        await orch.session("bob").get("t_doesnotexist")
    assert str(foreign.value).replace(mine.id, "X") == str(unknown.value).replace(
        "t_doesnotexist", "X"
    )
    assert await orch.session("bob").list() == []
    with pytest.raises(outrider.TaskNotFound):
        await orch.session("bob").cancel(mine.id)
    with pytest.raises(outrider.TaskNotFound):
        await orch.session("bob").wait([mine.id])
    with pytest.raises(outrider.TaskNotFound):
        await orch.session("bob").tail(mine.id)
    assert [t.id for t in await orch.session(S).list()] == [mine.id]
    with anyio.fail_after(5):
        bob_events = [e async for e in orch.session("bob").events(follow=False)]
    assert bob_events == []


async def test_queue_bound_rejects_and_stores_nothing(db: Path) -> None:
    async with outrider.Orchestrator(
        db, outrider.Settings(max_queued=2, limits={"handler:gate": 1})
    ) as orch:
        gates = ScriptedHandler(orch)
        await orch.session(S).submit(outrider.call("gate", name="r"))
        await gates.wait_started("r")
        await orch.session(S).submit(outrider.call("gate", name="q1"))
        await orch.session(S).submit(outrider.call("gate", name="q2"))
        with pytest.raises(outrider.QueueFull, match="max_queued"):
            await orch.session(S).submit(outrider.call("gate", name="q3"))
        assert len(await orch.session(S).list()) == 3
        results = await orch.session(S).submit_many(
            [{"spec": {"kind": "handler", "handler": "gate", "params": {"name": "q4"}}}]
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
        await orch.session(S).submit(outrider.shell("true"), **kwargs)  # type: ignore[arg-type]
    assert info.value.field == field
    assert field.split(".")[0] in str(info.value)
    assert await orch.session(S).list() == []


async def test_bad_specs(orch: outrider.Orchestrator) -> None:
    with pytest.raises(ValueError, match="empty"):
        outrider.shell("  ")
    with pytest.raises(ValueError, match="empty"):
        outrider.shell([])
    with pytest.raises(outrider.UserError, match="unknown handler 'nope'") as info:
        await orch.session(S).submit(outrider.call("nope"))
    assert info.value.field == "spec.handler"
    with pytest.raises(outrider.UserError, match="larger than") as big:
        await orch.session(S).submit(outrider.shell(["echo", *["x" * 110_000] * 10]))
    assert big.value.field == "spec"
    with pytest.raises(outrider.UserError, match="session"):
        await orch.session("").submit(outrider.shell("true"))
    with pytest.raises(ValueError, match="over the system's limit of 131071 bytes for one arg"):
        outrider.shell("x" * 400_000)  # it could never be run: refused before it is queued
    assert sum(orch.status().states.values()) == 0  # nothing was stored in any session


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
        outrider.Orchestrator(":memory:", outrider.Settings(**kwargs))
    assert info.value.field == field


async def test_submit_many_stores_good_items_and_reports_bad_ones(
    orch: outrider.Orchestrator,
) -> None:
    @orch.handler("noop")
    async def noop(ctx: outrider.RunContext) -> str:
        return "ok"

    results = await orch.session(S).submit_many(
        [
            {"spec": {"kind": "handler", "handler": "noop"}, "label": "good"},
            {"spec": {"kind": "handler", "handler": "noop"}, "priority": 42},
            {"spec": {"kind": "teleport"}},
            outrider.SubmitItem(spec=outrider.call("missing")),
            {"spec": {"kind": "shell", "command": "true"}, "label": "good2"},
        ],
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
    done = await orch.session(S).wait([t.id for t in tasks], timeout=10)
    assert [t.state for t in done] == [TaskState.SUCCEEDED, TaskState.SUCCEEDED]


async def test_closed_orchestrator_says_why(db: Path) -> None:
    orch = outrider.Orchestrator(db)
    with pytest.raises(outrider.Closed, match="enter it first"):
        await orch.session(S).submit(outrider.shell("true"))
    async with orch:
        pass
    with pytest.raises(outrider.Closed, match="closed"):
        await orch.session(S).submit(outrider.shell("true"))
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

            task = await orch.session(S).submit(outrider.call("library"))
            (done,) = await orch.session(S).wait([task.id], timeout=5)
            assert sniffio.current_async_library_cvar.get() is None
        assert done.result == "asyncio"
    finally:
        sniffio.current_async_library_cvar.reset(token)
