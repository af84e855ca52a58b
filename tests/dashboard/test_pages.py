"""The dashboard over HTTP: login, who sees what, the checks on every request, each page,
the actions and the live stream (a real server on 127.0.0.1; the browser tests are apart)."""

from __future__ import annotations

import contextlib
import json
import re
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import anyio
import pytest

import outrider
from outrider import TaskState, shell
from outrider._cli._demo import PLAN
from outrider._executors._nodes import NodePool
from outrider._http._auth import LOCAL
from outrider._http._dashboard import _screens
from outrider.testing import FakeNodes, ScriptedHandler, wait_until
from tests.executors.probe import LocalHost, Probe

from ..contracts.conftest import serving
from .conftest import Site

if TYPE_CHECKING:
    from collections.abc import AsyncIterator
    from pathlib import Path

    import httpx

    from outrider.runners import RunContext

HX = {"HX-Request": "true"}


def origin(site: Site) -> dict[str, str]:
    return {**HX, "Origin": site.url}


async def team(site: Site, session: str = "default") -> outrider.Task:
    """The demo's scripted agent team, run to its end."""
    tasks = site.orch.session(session, owner=LOCAL)
    lead = await tasks.submit(
        outrider.agent("demo-lead", PLAN, workspace=str(site.sample)), label="team"
    )
    (done,) = await tasks.wait([lead.id], timeout=60)
    assert done.state is TaskState.SUCCEEDED, done.error
    return done


async def test_a_login_link_works_once_and_sets_a_strict_cookie_for_ui_only(site: Site) -> None:
    url = await site.login_url()
    assert url.startswith(site.url + "/ui/login?code=")
    browser = await site.browser(None)
    first = await browser.get(url)
    assert first.status_code == 200
    assert 'http-equiv="refresh" content="0; url=/ui/"' in first.text
    cookie = first.headers["set-cookie"].lower()
    for part in ("outrider_ui=", "httponly", "samesite=strict", "path=/ui", "max-age=604800"):
        assert part in cookie
    again = await site.browser(None)
    used = await again.get(url)
    assert used.status_code == 401
    assert "used already or has expired" in used.text
    assert "outrider dashboard" in used.text
    home = await browser.get("/ui/")
    assert home.status_code == 303
    assert home.headers["location"] == "/ui/s/default"
    assert (await browser.get("/ui/s/default")).status_code == 200


async def test_without_a_login_every_page_is_401_and_the_api_keeps_its_token(site: Site) -> None:
    stranger = await site.browser(None)
    for path in ("/ui/", "/ui/s/default", "/ui/s/default/tree", "/ui/s/default/live"):
        answer = await stranger.get(path)
        assert answer.status_code == 401, path
        assert "not logged in" in answer.text
    stranger.cookies.set("outrider_ui", "bG9jYWw.9999999999.AAAA", path="/ui")
    assert (await stranger.get("/ui/s/default")).status_code == 401
    assert (await stranger.get("/ui/static/htmx.min.js")).status_code == 200  # public files
    assert (await stranger.post("/v1/dashboard/login")).status_code == 401  # needs the token
    logged_in = await site.browser()
    assert (await logged_in.get("/v1/tasks")).status_code == 401  # the cookie is for /ui only


async def test_another_host_name_is_refused(site: Site) -> None:
    browser = await site.browser()
    port = urlsplit(site.url).port
    for host in (f"evil.example:{port}", "127.0.0.1:1", ""):
        answer = await browser.get("/ui/s/default", headers={"Host": host})
        assert answer.status_code == 403, host
    assert (await browser.get("/ui/s/default", headers={"Host": f"localhost:{port}"})).is_success


async def test_actions_need_htmx_and_this_origin_and_foreign_tasks_are_404(site: Site) -> None:
    mine = site.orch.session("default", owner=LOCAL)
    held = await mine.submit(outrider.call("gate", name="held"), label="held")
    await site.gates.wait_started("held")
    child = await mine.submit(shell("sleep 30"), label="its child", parent=held.id)
    browser = await site.browser()
    cancel = f"/ui/s/default/t/{held.id}/cancel"
    refused = [
        await browser.post(cancel),
        await browser.post(cancel, headers=HX),
        await browser.post(cancel, headers={**HX, "Origin": "http://evil.example"}),
        await browser.post(cancel, headers={"Origin": site.url}),
    ]
    assert [r.status_code for r in refused] == [403, 403, 403, 403]
    assert (await mine.get(held.id)).state is TaskState.RUNNING
    alice = await site.browser("alice")
    assert (await alice.get(f"/ui/s/default/t/{held.id}")).status_code == 404
    foreign = await alice.post(cancel, headers=origin(site))
    assert foreign.status_code == 404
    assert held.id not in (await alice.get("/ui/s/default")).text
    done = await browser.post(cancel, headers=origin(site))
    assert done.status_code == 200
    assert "is cancelled" in done.text
    assert (await mine.get(held.id)).state is TaskState.CANCELLED
    assert (await mine.get(child.id)).state is TaskState.CANCELLED  # a cancel cascades
    again = await browser.post(f"/ui/s/default/t/{held.id}/retry", headers=origin(site))
    assert again.status_code == 200
    (new_id,) = re.findall(r"t_[0-9a-z]+", again.text)
    assert (await mine.get(new_id)).retry_of == held.id
    site.gates.open("held")
    running = await browser.post(f"/ui/s/default/t/{new_id}/retry", headers=origin(site))
    assert running.status_code in (200, 400)  # it may have ended already; if not, refused


async def test_acknowledging_and_setting_a_limit(site: Site) -> None:
    mine = site.orch.session("default", owner=LOCAL)
    failed = await mine.submit(shell("exit 2"), label="broken")
    await mine.wait([failed.id])
    browser = await site.browser()
    page = (await browser.get("/ui/s/default")).text
    attention = page.split('id="g-attention"')[1].split("</tbody>")[0]
    assert failed.id in attention
    acked = await browser.post("/ui/s/default/ack", headers=origin(site))
    assert acked.headers["HX-Refresh"] == "true"
    assert "Acknowledged 1 notice." in acked.text
    page = (await browser.get("/ui/s/default")).text
    assert failed.id in page.split('id="g-done"')[1]
    assert await mine.notices() == []
    form = {"key": "shell", "limit": "5"}
    limited = await browser.post("/ui/s/default/limits", data=form, headers=origin(site))
    assert limited.status_code == 200
    assert "shell: limit 5" in limited.text
    assert site.orch.status().keys["shell"].limit == 5
    bad = await browser.post("/ui/s/default/limits", data={"key": "x"}, headers=origin(site))
    assert bad.status_code == 400
    alice = await site.browser("alice")
    refused = await alice.post("/ui/s/default/limits", data=form, headers=origin(site))
    assert refused.status_code == 403
    assert "Only the daemon&#39;s owner" in refused.text


async def test_every_page_shows_the_sessions_work(site: Site) -> None:
    lead = await team(site)
    mine = site.orch.session("default", owner=LOCAL)
    other = site.orch.session("other", owner=LOCAL)
    await other.wait([(await other.submit(shell("exit 1"))).id])
    queued_behind = await mine.submit(outrider.call("gate", name="hold"), keys=["hold"])
    waiting = await mine.submit(shell("echo later"), keys=["hold"], label="waits")
    await site.gates.wait_started("hold")
    browser = await site.browser()
    tasks = (await browser.get("/ui/s/default")).text
    assert 'class="badge"' in tasks  # the other session's unseen failure
    assert "team" in tasks.split('id="g-done"')[1]
    assert "scripted/lead" in tasks
    queued = tasks.split('id="g-queued"')[1].split("</tbody>")[0]
    assert waiting.id in queued
    assert "#1" in queued
    assert "key &#39;hold&#39; (1/1 running)" in queued
    assert queued_behind.id in tasks.split('id="g-running"')[1].split("</tbody>")[0]
    tree = (await browser.get("/ui/s/default/tree")).text
    assert re.search(r"[0-9.]+k of 20.0k tokens left", tree)
    assert "demo-reader ← demo-lead" in tree
    assert 'class="node d2' in tree  # the tester's command, two levels down
    keys = (await browser.get("/ui/s/default/keys")).text
    assert "<code>hold</code>" in keys
    assert "waits" in keys.split("<code>hold</code>")[1]
    for by in ("key", "tree"):
        timeline = (await browser.get(f"/ui/s/default/timeline?by={by}")).text
        assert timeline.count('class="bar r s-succeeded"') >= 4
        assert 'class="bar q' in timeline
    trace = await browser.get("/ui/s/default/timeline.json")
    assert "attachment" in trace.headers["content-disposition"]
    assert any(e.get("ph") == "X" for e in trace.json()["traceEvents"])
    detail = (await browser.get(f"/ui/s/default/t/{lead.id}")).text
    for shown in ("Turn 1", "→ delegate", "Summary of the team", "succeeded", "--agent demo-lead",
                  "<dt>Last progress</dt>", '<span class="m">scripted/lead</span>'):  # fmt: skip
        assert shown in detail, shown
    assert "Content-Security-Policy" not in detail
    csp = (await browser.get(f"/ui/s/default/t/{lead.id}")).headers["content-security-policy"]
    assert "script-src 'self'" in csp
    assert (await browser.get("/ui/s/default/t/t_nope")).status_code == 404
    assert (await browser.get("/ui/s/bad%20name")).status_code == 400
    site.gates.open("hold")
    await mine.wait([waiting.id])


# -- the live stream ----------------------------------------------------------------------


async def messages(response: httpx.Response) -> AsyncIterator[tuple[str, str]]:
    """(id, data) of each Server-Sent Event with data."""
    event_id, data = "", []
    async for line in response.aiter_lines():
        if line == "":
            if data:
                yield event_id, "\n".join(data)
            data = []
        elif line.startswith("id:"):
            event_id = line[3:].strip()
        elif line.startswith("data:"):
            data.append(line[5:].removeprefix(" "))


def live_url(page: str) -> str:
    found = re.search(r'hx-sse:connect="([^"]+)"', page)
    assert found is not None
    return found[1].replace("&amp;", "&")


async def test_the_stream_sends_changes_as_fragments_and_resumes(site: Site) -> None:
    mine = site.orch.session("default", owner=LOCAL)
    browser = await site.browser()
    url = live_url((await browser.get("/ui/s/default")).text)
    seen: list[tuple[str, str]] = []
    with anyio.fail_after(30):
        async with browser.stream("GET", url) as response:
            assert response.headers["content-type"].startswith("text/event-stream")
            task = await mine.submit(
                shell("for i in $(seq 1 40); do echo line $i; sleep 0.01; done"), label="chatty"
            )
            async for event_id, data in messages(response):
                seen.append((event_id, data))
                if 'hx-target="#g-done"' in data and task.id in data:
                    break
    assert [int(i) for i, _ in seen] == sorted(int(i) for i, _ in seen)
    for _, data in seen:  # one update per task and element in each message: coalesced
        targets = re.findall(r'hx-target="([^"]+)" hx-swap="(?:outerHTML|innerHTML)"', data)
        assert len(targets) == len(set(targets)), targets
    everything = "".join(d for _, d in seen)
    assert f'id="t-{task.id}"' in everything
    middle = seen[0][0]
    with anyio.fail_after(30):  # a page that comes back resumes after what it saw
        async with browser.stream("GET", url, headers={"Last-Event-ID": middle}) as response:
            async for event_id, data in messages(response):
                assert int(event_id) > int(middle)
                assert task.id in data
                break


async def test_the_task_pages_stream_follows_its_output_and_a_foreign_one_is_404(
    site: Site,
) -> None:
    mine = site.orch.session("default", owner=LOCAL)
    held = await mine.submit(outrider.call("gate", name="talk"), label="talker")
    await site.gates.wait_started("talk")
    browser = await site.browser()
    page = (await browser.get(f"/ui/s/default/t/{held.id}")).text
    url = live_url(page)
    alice = await site.browser("alice")
    assert (await alice.get(url.replace("/s/default/", "/s/default/"))).status_code == 404
    with anyio.fail_after(30):
        async with browser.stream("GET", url) as response:
            site.gates.open("talk")
            async for _, data in messages(response):
                if 'hx-target="#head"' in data:
                    assert "succeeded" in data
                    break


@contextlib.asynccontextmanager
async def running(site: Site) -> AsyncIterator[tuple[outrider.Task, RunContext]]:
    """A task that runs until the block ends, and its run's context."""
    contexts: list[RunContext] = []
    release = anyio.Event()

    async def look(ctx: RunContext) -> None:
        contexts.append(ctx)
        await release.wait()

    site.orch.register_handler("look", look)
    held = await site.orch.session("default", owner=LOCAL).submit(outrider.call("look"))
    await wait_until(lambda: bool(contexts))
    try:
        yield held, contexts[0]
    finally:
        release.set()


async def test_a_page_watches_only_the_task_whose_output_it_shows(site: Site) -> None:
    """An open page does not make every agent stream its answers; a task's own page does."""
    async with running(site) as (held, ctx):
        mine = site.orch.session("default", owner=LOCAL)
        browser = await site.browser()
        for view in ("", "/tree", "/keys", "/timeline"):
            url = live_url((await browser.get(f"/ui/s/default{view}")).text)
            rendered_at = int(re.findall(r"after=(\d+)", url)[0])
            with anyio.fail_after(30):
                async with browser.stream("GET", url) as response:
                    await mine.submit(shell("echo out"))
                    async for event_id, _ in messages(response):
                        if int(event_id) > rendered_at:  # it follows the events that came since
                            break
                    assert not ctx.watched, view
        url = live_url((await browser.get(f"/ui/s/default/t/{held.id}")).text)
        with anyio.fail_after(30):
            async with browser.stream("GET", url) as response:
                await wait_until(lambda: ctx.watched)
        await wait_until(lambda: not ctx.watched)  # the page left: nobody watches it


async def test_an_event_stream_watches_unless_asked_not_to(site: Site) -> None:
    api = await site.api()
    async with running(site) as (held, ctx):
        for query, watches in (("?watch=false", False), ("", True)):
            with anyio.fail_after(30):
                async with api.stream("GET", f"/v1/events{query}") as response:
                    async for _, data in messages(response):  # the stored ones: it follows
                        if held.id in data:
                            break
                    if watches:
                        await wait_until(lambda: ctx.watched)
                    assert ctx.watched is watches
            await wait_until(lambda: not ctx.watched)


async def test_the_other_pages_streams_redraw_them(site: Site) -> None:
    mine = site.orch.session("default", owner=LOCAL)
    browser = await site.browser()
    for view, element in (("tree", "#tree"), ("keys", "#keys"), ("timeline", "#timeline")):
        url = live_url((await browser.get(f"/ui/s/default/{view}")).text)
        with anyio.fail_after(30):
            async with browser.stream("GET", url) as response:
                task = await mine.submit(shell("true"), keys=[f"key-of-{view}"])
                shows = task.id if view != "keys" else f"<code>key-of-{view}</code>"
                async for _, data in messages(response):
                    if f'hx-target="{element}"' in data and shows in data:
                        break


@pytest.mark.parametrize("path", ["/ui/s/default/timeline.json", "/ui/s/default/keys"])
async def test_pages_of_an_empty_session_render(site: Site, path: str) -> None:
    browser = await site.browser()
    answer = await browser.get(path)
    assert answer.status_code == 200
    if path.endswith(".json"):
        assert json.loads(answer.text)["traceEvents"][0]["ph"] == "M"


async def test_acknowledge_all_takes_every_notice_however_many(site: Site) -> None:
    async def boom() -> None:
        raise RuntimeError("boom")

    site.orch.register_handler("boom", boom)
    mine = site.orch.session("many", owner=LOCAL)
    items = [outrider.SubmitItem(spec=outrider.call("boom")) for _ in range(1_001)]
    failed = [t.id for t in await mine.submit_many(items) if isinstance(t, outrider.Task)]
    await mine.wait(failed)
    browser = await site.browser()
    acked = await browser.post("/ui/s/many/ack", headers=origin(site))
    assert "Acknowledged 1001 notices." in acked.text
    assert await mine.notices() == []
    await mine.wait([(await mine.submit(outrider.call("boom"))).id])
    one = await browser.post("/ui/s/many/ack", headers=origin(site))
    assert "Acknowledged 1 notice." in one.text


async def test_a_tasks_output_reaches_the_page_as_text_never_as_markup(site: Site) -> None:
    mine = site.orch.session("default", owner=LOCAL)
    hostile = '<button hx-post="/ui/s/default/ack" hx-trigger="load">x</button>'
    chatty = await mine.submit(shell(f"echo '{hostile}'; sleep 30"), label="hostile")
    browser = await site.browser()

    async def wrote() -> bool:
        return "button" in await mine.tail(chatty.id)

    await wait_until(wrote, timeout=20)  # another process's output: it wrote before the page
    page = (await browser.get("/ui/s/default")).text
    assert hostile not in page
    found: list[str] = []
    with anyio.fail_after(30):
        async with browser.stream("GET", live_url(page)) as response:  # the running tail
            async for _, data in messages(response):
                found.append(data)
                if f'hx-target="#o-{chatty.id}"' in data:
                    break
        later = await mine.submit(shell(f"sleep 1; echo '{hostile}'; sleep 30"), label="late")
        async with browser.stream("GET", live_url(page)) as response:  # a line as it comes
            async for _, data in messages(response):
                found.append(data)
                if f'hx-target="#o-{later.id}"' in data:
                    break
    shown = "".join(found)
    assert 'hx-trigger="load"' not in shown
    assert shown.count("&lt;button hx-post=") >= 2  # shown as text, where it was written
    await mine.cancel_all()


async def test_the_timeline_reads_the_events_of_the_tasks_it_shows_only(
    site: Site, monkeypatch: pytest.MonkeyPatch
) -> None:
    mine = site.orch.session("long", owner=LOCAL)
    done = [t.id for t in await mine.submit_many(
        [outrider.SubmitItem(spec=shell(f"echo {i}"), label=f"run {i}") for i in range(5)]
    ) if isinstance(t, outrider.Task)]  # fmt: skip
    await mine.wait(done)
    monkeypatch.setattr(_screens, "TIMELINE_TASKS", 2)
    read: list[int] = []
    screen = _screens.TimelineScreen(mine, "long")
    original = mine.events

    def counted(**options: object) -> AsyncIterator[outrider.Event]:
        async def each() -> AsyncIterator[outrider.Event]:
            async for event in original(**options):  # type: ignore[arg-type]
                read.append(event.seq)
                yield event

        return each()

    monkeypatch.setattr(mine, "events", counted)
    bars, total = await screen.bars()
    assert total == 5
    assert {b.task.label for b in bars} == {"run 3", "run 4"}
    assert {(b.task.label, b.kind) for b in bars} >= {("run 4", "queued"), ("run 4", "run")}
    first_shown = min(e.seq for e in [e async for e in original(follow=False)]
                      if e.task_id == done[3])  # fmt: skip
    assert min(read) >= first_shown  # nothing older than the oldest task shown was read


async def test_the_keys_page_lists_the_cluster_nodes_and_what_runs_there(tmp_path: Path) -> None:
    nodes = FakeNodes()
    nodes.add("node-a", slots=3, labels={"gpu": "yes"})
    pool = NodePool("tests.executors.probe:runners", nodes=nodes)
    async with outrider.Orchestrator(
        tmp_path / "o.db", runners=[Probe(LocalHost({}))], executors={"shell": pool}
    ) as orch:
        session = orch.session("default", owner=LOCAL)
        task = await session.submit(outrider.ShellSpec(command="wait"))
        await wait_until(lambda: orch.status().nodes[0].running == 1, timeout=30)
        async with serving(orch) as url:
            site = Site(url, orch, ScriptedHandler(orch), tmp_path)
            async with site.stack:
                keys = (await (await site.browser()).get("/ui/s/default/keys")).text
        await session.cancel(task.id)
    row = keys.split('id="nodes"')[1].split('id="n-node-a"')[1].split("</tr>")[0]
    assert re.findall(r'<td class="num">(\d+)</td>', row) == ["1", "3"]
    assert "<code>gpu=yes</code>" in row
    assert "alive" in row
