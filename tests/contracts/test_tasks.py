"""The behaviour of one session's API, the same in process and over HTTP (see conftest)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import anyio
import pytest

import outrider
from outrider import (
    NotAllowed,
    QueueFull,
    TaskCancelled,
    TaskFailed,
    TaskNotFound,
    TaskState,
    Usage,
    UserError,
    call,
    shell,
)
from outrider.testing import wait_until

if TYPE_CHECKING:
    from outrider import RunContext

    from .conftest import World


def gate(name: str, result: str = "ok") -> outrider.HandlerSpec:
    return call("gate", name=name, result=result)


async def test_submit_answers_at_once_with_the_queue_position(world: World) -> None:
    tasks = await world.tasks()
    holder = await tasks.submit(gate("a"), keys=["hold"], label="holder")
    await world.gates.wait_started("a")
    second = await tasks.submit(gate("b"), keys=["hold"], label="second")
    third = await tasks.submit(gate("c"), keys=["hold"], priority=9)
    assert holder.session == second.session == "s"
    assert (second.state, second.position) == (TaskState.QUEUED, 1)
    assert (third.position, third.waiting_for) == (1, "key 'hold' (1/1 running)")
    assert (await tasks.get(second.id)).position == 2  # behind the priority-9 task
    world.gates.open("a", "b", "c")
    done = await tasks.wait([holder.id, second.id, third.id], timeout=10)
    assert [t.state for t in done] == [TaskState.SUCCEEDED] * 3
    assert [t.result for t in done] == ["a:ok", "b:ok", "c:ok"]


async def test_bad_options_name_the_field_and_store_nothing(world: World) -> None:
    tasks = await world.tasks()
    with pytest.raises(UserError) as caught:
        await tasks.submit(shell("true"), priority=42)
    assert caught.value.field == "priority"
    assert "42" in str(caught.value)
    with pytest.raises(UserError) as caught:
        await tasks.submit(shell("true"), depends_on=["t_nope"])
    assert caught.value.field == "depends_on"
    assert await tasks.list() == []


async def test_a_batch_item_fails_on_its_own(world: World) -> None:
    tasks = await world.tasks()
    good = {"spec": {"kind": "shell", "command": "echo ok"}}
    results = await tasks.submit_many(
        [good, {"spec": {"kind": "shell", "command": "true"}, "priority": 42}, 7, good],
        group="g",
    )
    assert [type(r).__name__ for r in results] == ["Task", "SubmitError", "SubmitError", "Task"]
    assert isinstance(results[1], outrider.SubmitError)
    assert (results[1].index, results[1].field) == (1, "priority")
    assert isinstance(results[2], outrider.SubmitError)
    assert results[2].index == 2
    assert "item 2" in results[2].message
    stored = [r for r in results if isinstance(r, outrider.Task)]
    assert {t.group for t in stored} == {"g"}
    await tasks.wait([t.id for t in stored], timeout=10)
    assert [t.id for t in await tasks.list(group="g", states=["succeeded"])] == [
        t.id for t in stored
    ]


async def test_run_delegates_and_waits_in_one_call(world: World) -> None:
    tasks = await world.tasks()
    assert await tasks.run(shell("echo done")) == "done\n"
    with pytest.raises(TaskFailed) as failed:
        await tasks.run(shell("echo no; exit 3"), label="fails")
    assert failed.value.task.exit_code == 3
    with pytest.raises(TimeoutError) as late:
        await tasks.run(gate("slow"), wait=0.05)
    (running,) = await tasks.list(states=["queued", "running"])
    assert running.id in str(late.value)
    world.gates.open("slow")
    assert await tasks.result(running.id, timeout=10) == "slow:ok"


async def test_wait_any_all_and_timeout(world: World) -> None:
    tasks = await world.tasks()
    fast = await tasks.submit(shell("true"))
    slow = await tasks.submit(gate("slow"))
    first = await tasks.wait([slow.id, fast.id], return_when="any", timeout=10)
    assert [t.state.terminal for t in first] == [False, True]
    still = await tasks.wait([slow.id], timeout=0.05)
    assert not still[0].state.terminal
    with pytest.raises(TimeoutError):
        await tasks.result(slow.id, timeout=0)
    world.gates.open("slow")
    assert [t.state for t in await tasks.wait([fast.id, slow.id])] == [TaskState.SUCCEEDED] * 2


async def test_cancel_a_running_task_its_children_and_the_rest(world: World) -> None:
    tasks = await world.tasks()
    parent = await tasks.submit(gate("parent"))
    child = await tasks.submit(gate("child"), parent=parent.id)
    queued = await tasks.submit(shell("true"), keys=["hold"], depends_on=[child.id])
    await world.gates.wait_started("parent", "child")
    ended = await tasks.cancel(parent.id)
    assert ended.state is TaskState.CANCELLED
    assert (await tasks.get(child.id)).state is TaskState.CANCELLED
    assert (await tasks.get(queued.id)).state is TaskState.CANCELLED
    assert (await tasks.cancel(parent.id)).state is TaskState.CANCELLED  # idempotent
    with pytest.raises(TaskCancelled):
        await tasks.result(parent.id)
    more = [await tasks.submit(gate(f"m{i}")) for i in range(2)]
    cancelled = await tasks.cancel_all()
    assert {t.id for t in cancelled} == {t.id for t in more}
    assert {t.state for t in cancelled} == {TaskState.CANCELLED}


async def test_retry_submits_an_ended_task_again(world: World) -> None:
    tasks = await world.tasks()
    first = await tasks.submit(shell("exit 2"), label="flaky", priority=7, timeout=60)
    await tasks.wait([first.id])
    again = await tasks.retry(first.id)
    assert again.id != first.id
    assert again.retry_of == first.id
    assert (again.label, again.priority, again.timeout, again.spec) == (
        "flaky", 7, 60, first.spec,
    )  # fmt: skip
    (ended,) = await tasks.wait([again.id], timeout=10)
    assert ended.state is TaskState.FAILED
    running = await tasks.submit(gate("r"))
    with pytest.raises(UserError) as caught:
        await tasks.retry(running.id)
    assert "only an ended task" in str(caught.value)
    world.gates.open("r")


async def test_output_tail_and_transcript(world: World) -> None:
    tasks = await world.tasks()
    task = await tasks.submit(shell("echo one; echo two"))
    await tasks.wait([task.id])
    assert await tasks.tail(task.id, lines=1) == "two\n"
    assert await tasks.transcript(task.id) is None


async def test_other_sessions_and_principals_see_nothing(world: World) -> None:
    mine = await world.tasks("mine")
    task = await mine.submit(shell("echo secret"))
    for other in (await world.tasks("other"), await world.tasks("mine", principal="alice")):
        with pytest.raises(TaskNotFound):
            await other.get(task.id)
        with pytest.raises(TaskNotFound):
            await other.cancel(task.id)
        with pytest.raises(TaskNotFound):
            await other.retry(task.id)
        assert await other.list() == []


async def test_limits_change_at_run_time_for_the_owner_only(world: World) -> None:
    owner = await world.tasks()
    load = await owner.set_limit("hold", 3)
    assert (load.limit, load.running) == (3, 0)
    assert (await owner.status()).keys["hold"].limit == 3
    with pytest.raises(UserError):
        await owner.set_limit("", 2)
    with pytest.raises(NotAllowed):
        await (await world.tasks(principal="alice")).set_limit("hold", 9)


async def test_a_full_queue_refuses_with_queue_full(world: World) -> None:
    tasks = await world.tasks()
    items = [{"spec": gate(f"q{i}").model_dump(), "keys": ["hold"]} for i in range(20)]
    assert all(isinstance(r, outrider.Task) for r in await tasks.submit_many(items))
    await world.gates.wait_started("q0")  # nineteen wait: room for one more (max_queued 20)
    await tasks.submit(gate("last"), keys=["hold"])
    with pytest.raises(QueueFull):
        await tasks.submit(shell("true"))
    refused = await tasks.submit_many([{"spec": {"kind": "shell", "command": "true"}}])
    assert isinstance(refused[0], outrider.SubmitError)
    assert refused[0].type == "QueueFull"
    await tasks.cancel_all()


async def test_notices_follow_and_acknowledge(world: World) -> None:
    tasks = await world.tasks()
    first = await tasks.submit(shell("true"), label="first")
    await tasks.wait([first.id])
    (notice,) = await tasks.notices()
    assert notice.task_id == first.id
    assert notice.state is TaskState.SUCCEEDED
    seen: list[outrider.Notice] = []
    with anyio.fail_after(10):
        async for item in tasks.follow_notices():
            seen.append(item)
            if len(seen) == 1:
                second = await tasks.submit(shell("exit 1"), label="second")
            else:
                break
    assert [n.task_id for n in seen] == [first.id, second.id]
    await tasks.ack_notices(seen[-1].seq)
    assert await tasks.notices() == []


async def test_events_resume_by_seq(world: World) -> None:
    tasks = await world.tasks()
    task = await tasks.submit(shell("echo hi"))
    await tasks.wait([task.id])
    types: list[str] = []
    last = 0
    with anyio.fail_after(10):
        async for event in tasks.events():
            types.append(event.type)
            if event.type == "task.started":
                last = event.seq
            if event.type == "task.succeeded":
                break
    assert types[0] == "task.queued"
    assert types[-1] == "task.succeeded"
    rest = [e async for e in tasks.events(after=last, follow=False)]
    assert [e.type for e in rest] == types[types.index("task.started") + 1 :]
    assert {e.session for e in rest} == {"s"}


async def test_events_of_one_task_and_of_some_types(world: World) -> None:
    tasks = await world.tasks()
    other = await world.tasks("other")
    gated = await tasks.submit(gate("a"), label="gated")
    await world.gates.wait_started("a")
    quick = await tasks.submit(shell("echo hi"), label="quick")
    await tasks.wait([quick.id])
    world.gates.open("a")
    await tasks.wait([gated.id])
    mine = [e async for e in tasks.events(follow=False, task_id=gated.id)]
    assert [e.type for e in mine] == ["task.queued", "task.started", "task.succeeded"]
    assert {e.task_id for e in mine} == {gated.id}
    ends = [e async for e in tasks.events(follow=False, types=["task.succeeded"])]
    assert [e.task_id for e in ends] == [quick.id, gated.id]
    with anyio.fail_after(10):  # followed, the stored part is filtered the same way
        follow = tasks.events(after=mine[0].seq, task_id=gated.id, types=["task.succeeded"])
        assert (await anext(aiter(follow))).seq == mine[-1].seq
    with pytest.raises(TaskNotFound):
        async for _ in other.events(task_id=gated.id):
            pass  # pragma: no cover
    with pytest.raises(UserError) as caught:
        async for _ in tasks.events(types=["task.exploded"]):
            pass  # pragma: no cover
    assert (caught.value.field or "").startswith("type")  # `types`, or the query's `type.0`
    assert "task.exploded" in str(caught.value)


async def test_sessions_count_tasks_and_unseen_failures_per_session(world: World) -> None:
    first = await world.tasks("first")
    second = await world.tasks("second")
    strangers = await world.tasks("first", principal="alice")
    await strangers.wait([(await strangers.submit(shell("exit 3"))).id])
    ok = await first.submit(shell("true"))
    bad = await first.submit(shell("exit 1"))
    held = await second.submit(gate("held"), label="held")
    await world.gates.wait_started("held")
    await first.wait([ok.id, bad.id])
    summaries = await first.sessions()
    assert [s.session for s in summaries] == ["first", "second"]
    one, two = summaries
    assert (one.states[TaskState.SUCCEEDED], one.states[TaskState.FAILED]) == (1, 1)
    assert one.unseen_failures == 1
    assert two.states[TaskState.RUNNING] == 1
    assert two.unseen_failures == 0
    last = [e async for e in first.events(follow=False)][-1]
    assert one.last_seq == last.seq
    assert one.last_at is not None
    await first.ack_notices(one.last_seq)
    assert [s.unseen_failures for s in await second.sessions()] == [0, 0]
    (theirs,) = await strangers.sessions()
    assert (theirs.session, theirs.unseen_failures) == ("first", 1)
    world.gates.open("held")
    await second.wait([held.id])


async def test_a_limited_list_is_the_newest_tasks_in_submission_order(world: World) -> None:
    tasks = await world.tasks()
    holder = await tasks.submit(gate("h"), keys=["hold"])
    await world.gates.wait_started("h")
    made = [(await tasks.submit(shell("true"), label=f"n{i}", keys=["hold"])).id for i in range(4)]
    assert [t.id for t in await tasks.list(limit=2)] == made[2:]
    assert [t.id for t in await tasks.list(limit=10)] == [holder.id, *made]
    assert [t.id for t in await tasks.list(states=["queued"], limit=3)] == made[1:]
    await tasks.cancel_all()
    world.gates.open("h")


async def test_each_reader_of_a_shared_session_receives_every_notice(world: World) -> None:
    tasks = await world.tasks()
    assert await tasks.notices(reader="window-a") == []  # both readers start here
    assert await tasks.notices(reader="window-b") == []
    task = await tasks.submit(shell("true"))
    await tasks.wait([task.id])
    (seen_by_a,) = await tasks.notices(reader="window-a")
    await tasks.ack_notices(seen_by_a.seq, reader="window-a")
    assert await tasks.notices() == []  # acknowledged: it reached a model
    assert await tasks.notices(reader="window-a") == []  # never again to window A
    (seen_by_b,) = await tasks.notices(reader="window-b")  # window B still receives it
    assert seen_by_b.task_id == task.id
    assert await tasks.notices(reader="window-c") == []  # a new reader starts at the acknowledged


async def test_next_notices_answers_when_a_task_ends(world: World) -> None:
    tasks = await world.tasks()
    empty = await tasks.next_notices(timeout=0, reader="w")
    assert (empty.notices, empty.superseded) == ([], False)
    task = await tasks.submit(gate("slow"))
    found: list[outrider.NoticeWait] = []
    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:

            async def wait() -> None:
                found.append(await tasks.next_notices(timeout=30, reader="w"))

            tg.start_soon(wait)
            await world.gates.wait_started("slow")
            await wait_until(lambda: bool(world.orch._core.readers._waiters), timeout=10)
            world.gates.open("slow")
    (notice,) = found[0].notices
    assert notice.task_id == task.id
    assert found[0].text.startswith("[outrider] 1 task finished:")
    assert f"⟦outrider seq={notice.seq}⟧" in found[0].text
    again = await tasks.next_notices(timeout=0, reader="w")
    assert again.notices == found[0].notices  # waiting acknowledges nothing


async def test_the_newest_waiter_wins(world: World) -> None:
    tasks = await world.tasks()
    results: list[outrider.NoticeWait] = []
    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:

            async def first() -> None:
                results.append(await tasks.next_notices(timeout=60, reader="w"))

            tg.start_soon(first)
            await wait_until(lambda: bool(world.orch._core.readers._waiters), timeout=10)
            results.append(await tasks.next_notices(timeout=0, reader="w"))
    superseded, newest = sorted(results, key=lambda r: r.superseded, reverse=True)
    assert superseded.superseded
    assert not newest.superseded


async def test_a_bad_reader_name_is_refused(world: World) -> None:
    tasks = await world.tasks()
    with pytest.raises(outrider.UserError, match="reader"):
        await tasks.notices(reader="no spaces")


async def test_a_live_tasks_get_is_its_stored_record_once_its_reports_are_stored(
    world: World,
) -> None:
    tasks = await world.tasks()
    release = anyio.Event()

    async def report(ctx: RunContext) -> str:
        ctx.progress(1, 2, "half way")
        ctx.usage(Usage(input_tokens=3, output_tokens=4, requests=1))
        ctx.output("a line\n")
        await release.wait()
        return "done"

    world.orch.register_handler("report", report)
    running = await tasks.submit(call("report"), keys=["hold"], label="reports")
    queued = await tasks.submit(gate("q"), keys=["hold"])
    with anyio.fail_after(10):
        async for _ in tasks.events(task_id=running.id, types=["task.progress"]):
            break  # its reports are stored
    got = {task_id: await tasks.get(task_id) for task_id in (running.id, queued.id)}
    stored = await world.orch._store.get_many(got)
    live = {"session", "position", "waiting_for"}  # the session as its caller names it
    for task_id, task in got.items():
        assert task.model_dump(exclude=live) == stored[task_id].model_dump(exclude=live)
    assert got[running.id].state is TaskState.RUNNING
    assert got[running.id].progress == outrider.Progress(completed=1, total=2, message="half way")
    assert (got[queued.id].state, got[queued.id].position) == (TaskState.QUEUED, 1)
    release.set()
    world.gates.open("q")
    done = await tasks.wait([running.id, queued.id], timeout=10)
    assert [t.result for t in done] == ["done", "q:ok"]
