"""The dashboard in a real browser: Debian's chromium driven by Playwright, against a real daemon.

Skipped, with the reason, where chromium is not installed (`.ci/run` installs it). Playwright
drives the system chromium through `executable_path`; nothing is downloaded. Each test saves a
screenshot of what it looked at in its pytest tmp dir (`shots/`, light and dark), for a person
to look at.
"""

from __future__ import annotations

import os
import shutil
import socket
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, TypeVar

import anyio
import psutil
import pytest

import outrider
from outrider import TaskState, shell
from outrider._cli._demo import prepare, submit_demo
from outrider.testing import wait_until

from ..interfaces.conftest import launch, stop

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Iterator
    from pathlib import Path

    from playwright.sync_api import Browser, BrowserContext, Page

    from ..interfaces.conftest import Daemon

pytestmark = pytest.mark.browser

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
if CHROMIUM is None and os.environ.get("CI"):  # .ci/run installs it: there it must be found
    pytest.fail("chromium must be installed in CI (.ci/run installs it)", pytrace=False)
if CHROMIUM is None:
    pytest.skip(
        "chromium is not installed (apt-get install chromium): the browser tests need it",
        allow_module_level=True,
    )

from playwright.sync_api import expect, sync_playwright  # noqa: E402  # only with chromium

ALICE = "alice-browser-token"
T = TypeVar("T")


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    assert CHROMIUM is not None
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=CHROMIUM, args=["--no-sandbox", "--disable-dev-shm-usage"]
        )
        yield launched
        launched.close()


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _home(tmp: Path) -> Path:
    (tmp / "alice.token").write_text(ALICE + "\n")
    (tmp / "outrider.toml").write_text(
        f'shutdown_grace = 1\n[principals.alice]\ntoken_file = "{tmp / "alice.token"}"\n'
    )
    return tmp


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    running = launch(_home(tmp_path_factory.mktemp("browser-home")))
    yield running
    assert stop(running) == 0


def log_in(context: BrowserContext, daemon: Daemon, token: str | None = None) -> Page:
    """A page of `context`, logged in with `token`'s principal (default: the owner)."""
    with daemon.client(token=token) as client:
        url = client.dashboard_login()
    page = context.new_page()
    page.goto(url)
    page.wait_for_url("**/ui/s/**")
    return page


def shoot(page: Page, folder: Path, name: str) -> None:
    """A screenshot of the whole page, for a person to look at."""
    folder.mkdir(exist_ok=True)
    expect(page.locator("body")).to_be_visible()
    page.screenshot(path=folder / f"{name}.png", full_page=True)


def off_the_loop(fn: Callable[[], Awaitable[T]]) -> T:
    """Run async `fn` in a thread of its own: Playwright's sync API holds this thread's loop."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(anyio.run, fn).result()


def rows(page: Page) -> list[str]:
    found: list[str] = page.locator("tr.task").evaluate_all("rows => rows.map(r => r.id)")
    return found


def header_edges(page: Page) -> list[float]:
    """Where each column of the task groups starts."""
    edges: list[float] = page.locator("thead th").evaluate_all(
        "cells => cells.map(c => c.getBoundingClientRect().left)"
    )
    return edges


def fits(page: Page) -> bool:
    """Whether the page needs no sideways scrolling."""
    wide: bool = page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    return wide


def test_the_login_link_works_once_and_each_principal_sees_only_its_own(
    browser: Browser, daemon: Daemon, tmp_path: Path
) -> None:
    with daemon.client("default") as mine, daemon.client("default", token=ALICE) as theirs:
        own = mine.submit(shell("echo mine"), label="mine")
        foreign = theirs.submit(shell("echo theirs"), label="theirs")
        mine.wait([own.id])
        theirs.wait([foreign.id])
        url = mine.dashboard_login()
    context = browser.new_context()
    page = context.new_page()
    page.goto(url)
    page.wait_for_url("**/ui/s/default")
    expect(page.locator(f"#t-{own.id}")).to_be_visible()
    expect(page.locator(f"#t-{foreign.id}")).to_have_count(0)
    again = browser.new_context().new_page()
    response = again.goto(url)
    assert response is not None
    assert response.status == 401
    expect(again.locator("h1")).to_have_text("Log in")
    shoot(again, tmp_path / "shots", "login-used")
    alice = log_in(browser.new_context(), daemon, ALICE)
    expect(alice.locator(f"#t-{foreign.id}")).to_be_visible()
    expect(alice.locator(f"#t-{own.id}")).to_have_count(0)
    denied = alice.goto(alice.url.split("/ui/")[0] + f"/ui/s/default/t/{own.id}")
    assert denied is not None
    assert denied.status == 404


def test_every_page_reads_as_plain_html_without_script(
    browser: Browser, daemon: Daemon, tmp_path: Path
) -> None:
    with daemon.client("plain") as client:
        task = client.submit(shell("echo plain words"), label="plain one")
        client.wait([task.id])
    page = log_in(browser.new_context(java_script_enabled=False), daemon)
    page.goto(page.url.split("/ui/")[0] + "/ui/s/plain")
    expect(page.locator(f"#g-done #t-{task.id}")).to_contain_text("plain words")
    expect(page.locator("#live-state")).to_contain_text("no live updates or actions")
    expect(page.get_by_role("button", name="Retry")).to_be_hidden()  # it would need htmx
    for view in ("Tree", "Keys", "Timeline", "Tasks"):
        page.get_by_role("link", name=view, exact=True).click()
        expect(page.locator("main")).to_be_visible()
    page.locator(f"#t-{task.id} td.name a").click()
    expect(page.locator("#output")).to_contain_text("plain words")
    expect(page.locator("#events")).to_contain_text("succeeded")
    expect(page.locator("#pause")).to_be_hidden()
    shoot(page, tmp_path / "shots", "task-without-script")


_COUNTER = (
    "for i in $(seq 1 400); do echo line $i of a stream of output long enough to wrap onto "
    "lines of its own, were a row let to grow, and it must not; sleep 0.05; done"
)


def test_a_new_task_appears_live_and_its_output_grows(
    browser: Browser, daemon: Daemon, tmp_path: Path
) -> None:
    page = log_in(browser.new_context(), daemon)
    page.goto(page.url.split("/ui/")[0] + "/ui/s/live-one")
    expect(page.locator("#g-running tr.empty")).to_be_visible()
    with daemon.client("live-one") as client:
        task = client.submit(shell(f"sleep 1; {_COUNTER}"), label="counter")
        row = page.locator(f"#g-running #t-{task.id}")
        expect(row).to_be_visible()  # no reload: the page's stream brought it
        line = page.locator(f"#o-{task.id}")
        before, columns = row.bounding_box(), header_edges(page)
        expect(line).to_contain_text("line")
        expect(line).not_to_have_text(line.inner_text())  # a newer line replaced it
        assert row.bounding_box() == before  # no layout jump: same place, same size
        assert header_edges(page) == columns
        shoot(page, tmp_path / "shots", "tasks-live")
        page.locator(f"#t-{task.id} td.name a").click()
        page.wait_for_url(f"**/t/{task.id}")
        output = page.locator("#output")
        expect(output).to_contain_text("line 3")
        first = output.inner_text().count("\n")
        expect(output).to_contain_text("line 40")  # it grows while we watch
        assert output.inner_text().count("\n") > first
        shoot(page, tmp_path / "shots", "task-live")
        client.cancel(task.id)


def test_cancel_from_the_page_leaves_no_process(
    browser: Browser, daemon: Daemon, tmp_path: Path
) -> None:
    page = log_in(browser.new_context(), daemon)
    with daemon.client("cancel-me") as client:
        task = client.submit(shell("sleep 61 & sleep 62 & wait"), label="sleepers")
        page.goto(page.url.split("/ui/")[0] + "/ui/s/cancel-me")

        def sleepers() -> list[int]:
            return [p.pid for p in psutil.process_iter(["cmdline"])
                    if p.info["cmdline"] in (["sleep", "61"], ["sleep", "62"])]  # fmt: skip

        off_the_loop(lambda: wait_until(lambda: len(sleepers()) == 2, timeout=20))
        page.once("dialog", lambda dialog: dialog.accept())
        page.locator(f"#t-{task.id} button", has_text="Cancel").click()
        expect(page.locator("#flash")).to_contain_text("is cancelled")
        expect(page.locator(f"#g-done #t-{task.id}")).to_be_visible()
        assert client.get(task.id).state is TaskState.CANCELLED
        assert sleepers() == []
        shoot(page, tmp_path / "shots", "cancelled")


def test_a_post_without_htmx_or_from_another_origin_is_refused_and_pause_resumes(
    browser: Browser, daemon: Daemon
) -> None:
    context = browser.new_context()
    page = log_in(context, daemon)
    with daemon.client("posts") as client:
        task = client.submit(shell("sleep 60"), label="kept")
        page.goto(page.url.split("/ui/")[0] + "/ui/s/posts")
        cancel = f"/ui/s/posts/t/{task.id}/cancel"
        plain = page.evaluate(
            "url => fetch(url, {method: 'POST'}).then(r => r.status)", cancel
        )  # the page's own origin and cookie, but no HX-Request
        assert plain == 403
        foreign = context.request.post(
            page.url.split("/ui/")[0] + cancel,
            headers={"HX-Request": "true", "Origin": "http://evil.example"},
        )
        assert foreign.status == 403
        assert client.get(task.id).state is TaskState.RUNNING
        client.cancel(task.id)
        expect(page.locator(f"#g-done #t-{task.id}")).to_be_visible()
        page.locator("#pause").click()  # paused: the stream is closed until resumed
        expect(page.locator("body")).to_have_class("paused")
        expect(page.locator("#live")).to_have_count(0)
        later = client.submit(shell("true"), label="while paused")
        client.wait([later.id])
        expect(page.locator(f"#t-{later.id}")).to_have_count(0)
        page.locator("#pause").click()  # resumed: it catches up from where it paused
        expect(page.locator(f"#g-done #t-{later.id}")).to_be_visible()
        expect(page.locator("body")).not_to_have_class("paused")


def test_a_reconnect_after_a_daemon_restart_shows_no_duplicate_rows(
    browser: Browser, tmp_path: Path
) -> None:
    (tmp_path / "home").mkdir()
    home, port = _home(tmp_path / "home"), _free_port()
    first = launch(home, port)
    try:
        with first.client("restart") as client:
            ids = [client.submit(shell(f"echo {i}"), label=f"before-{i}").id for i in range(3)]
            client.wait(ids)
        page = log_in(browser.new_context(), first)
        page.goto(page.url.split("/ui/")[0] + "/ui/s/restart")
        expect(page.locator("#g-done tr.task")).to_have_count(3)
        with first.client("restart") as client:
            late = client.submit(shell("echo late"), label="late")
            client.wait([late.id])
        expect(page.locator("#g-done tr.task")).to_have_count(4)
        assert stop(first) == 0
        expect(page.locator("body")).to_have_class("connecting")
    finally:
        stop(first)
    second = launch(home, port)
    try:
        with second.client("restart") as client:
            after = client.submit(shell("echo after"), label="after")
            client.wait([after.id])
        expect(page.locator(f"#g-done #t-{after.id}")).to_be_visible(timeout=30_000)
        ids_shown = rows(page)
        assert len(ids_shown) == len(set(ids_shown)) == 5
        expect(page.locator("body")).not_to_have_class("connecting")
        shoot(page, tmp_path / "shots", "after-restart")
    finally:
        assert stop(second) == 0


def test_every_page_looks_right_in_light_and_dark(
    browser: Browser, daemon: Daemon, tmp_path: Path
) -> None:
    sample = prepare(tmp_path)

    async def submit() -> list[str]:
        async with outrider.AsyncClient(daemon.url, token=daemon.token, session="demo") as tasks:
            return [t.id for t in await submit_demo(tasks, sample, "demo-shots")]

    with daemon.client("demo") as client:
        top = off_the_loop(submit)
        broken = client.submit(shell("echo oops >&2; exit 3"), label="broken step")
        client.wait([*top, broken.id], timeout=120)
        client.set_limit("narrow", 1)
        holder = client.submit(shell("sleep 60"), label="holds the key", keys=["narrow"])
        waiting = client.submit(shell("true"), label="waits its turn", keys=["narrow"])
        lead = next(t for t in client.list() if t.kind == "agent" and t.parent is None)
    try:
        for scheme in ("light", "dark"):
            context = browser.new_context(viewport={"width": 1280, "height": 800},
                                          color_scheme=scheme)  # fmt: skip
            page = log_in(context, daemon)
            root = page.url.split("/ui/")[0] + "/ui/s/demo"
            pages = {
                "tasks": "", "tree": "/tree", "keys": "/keys", "timeline": "/timeline",
                "timeline-by-tree": "/timeline?by=tree", "task": f"/t/{lead.id}",
            }  # fmt: skip
            for name, path in pages.items():
                page.goto(root + path)
                expect(page.locator("#live")).to_have_count(1)
                assert fits(page), f"the {name} page scrolls sideways at 1280 px"
                shoot(page, tmp_path / "shots", f"{name}-{scheme}")
            expect(page.locator("#transcript .turn")).to_have_count(4)
            page.goto(root)
            expect(page.locator(f"#g-attention #t-{broken.id}")).to_be_visible()
            expect(page.locator(f"#g-queued #t-{waiting.id}")).to_contain_text("#1")
            context.close()
        laptop = log_in(browser.new_context(viewport={"width": 1024, "height": 640}), daemon)
        for name, path in {"tasks": "", "task": f"/t/{lead.id}", "keys": "/keys"}.items():
            laptop.goto(laptop.url.split("/ui/")[0] + "/ui/s/demo" + path)
            assert fits(laptop), f"the {name} page scrolls sideways on a small laptop"
            shoot(laptop, tmp_path / "shots", f"{name}-1024")
    finally:
        with daemon.client("demo") as client:
            client.cancel(holder.id)
    assert len(list((tmp_path / "shots").glob("*.png"))) == 15
