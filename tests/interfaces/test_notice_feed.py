"""The stdio bridge's notice feed, over a real orchestrator's session."""

from __future__ import annotations

from typing import TYPE_CHECKING

import anyio

import outrider
from outrider._mcp._tools import NOTICES_PER_ANSWER, NoticeFeed
from outrider.testing import wait_until

if TYPE_CHECKING:
    from pathlib import Path


async def test_the_feed_follows_folds_and_acknowledges_when_due(tmp_path: Path) -> None:
    async with (
        outrider.Orchestrator(tmp_path / "o.db") as orch,
        anyio.create_task_group() as tg,
    ):
        view = orch.session("bridge", owner="local")
        stored = "local/bridge"

        async def ended(*commands: str, group: str | None = None) -> outrider.Task:
            items = [{"spec": outrider.shell(c)} for c in commands]
            tasks = await orch.session(stored).submit_many(items, group=group)
            await orch.session(stored).wait([t.id for t in tasks if isinstance(t, outrider.Task)])
            assert isinstance(tasks[-1], outrider.Task)
            return tasks[-1]

        async def arrived(*task_ids: str | None) -> None:  # the feed reads in another thread
            await wait_until(lambda: [n.task_id for n in feed.pending()] == list(task_ids))

        early = await ended("exit 3")  # before the feed starts: read from the store
        feed = NoticeFeed(ack_every=3600)
        tg.start_soon(feed.follow, view)
        await arrived(early.id)

        live = await ended("true")
        await arrived(early.id, live.id)
        carried = feed.pending()
        feed.carried(carried)
        assert feed.pending() == []
        await feed.flush(view)  # the first one is due at once
        assert await view.notices() == []

        late = await ended("true")
        await arrived(late.id)
        feed.carried(feed.pending())
        await feed.flush(view)  # not due: an hour must pass
        assert [n.task_id for n in await view.notices()] == [late.id]
        await feed.flush(view, now=True)  # on the way out
        assert await view.notices() == []

        await ended("true", "true", group="pair")
        await arrived(None)
        (summary,) = feed.pending()  # the group's summary stands for its tasks
        assert summary.kind == "group"
        assert summary.counts["total"] == 2
        feed.acknowledged(summary.seq)
        assert feed.pending() == []
        tg.cancel_scope.cancel()


async def test_an_answer_carries_at_most_its_share_of_notices(tmp_path: Path) -> None:
    async with (
        outrider.Orchestrator(tmp_path / "o.db") as orch,
        anyio.create_task_group() as tg,
    ):

        @orch.handler("noop")
        async def noop(ctx: outrider.RunContext) -> None:
            return None

        view = orch.session("many", owner="local")
        count = NOTICES_PER_ANSWER + 10
        tasks = await orch.session("local/many").submit_many(
            [{"spec": outrider.call("noop")}] * count
        )
        await orch.session("local/many").wait([t.id for t in tasks if isinstance(t, outrider.Task)])
        feed = NoticeFeed()
        tg.start_soon(feed.follow, view)
        await wait_until(lambda: len(feed.pending()) == NOTICES_PER_ANSWER)
        first = feed.pending()
        feed.carried(first)
        await wait_until(lambda: len(feed.pending()) == 10)
        rest = feed.pending()
        assert min(n.seq for n in rest) > max(n.seq for n in first)
        tg.cancel_scope.cancel()
