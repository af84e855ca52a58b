"""`outrider.AsyncClient`: one session of the daemon's HTTP API (the `Tasks` protocol).

The only hand-written client: `outrider.Client` is generated from this file by
`scripts/unasync.py` (`make lint` fails when the generated file is stale), so the two never
drift. Requests come from the op table in `outrider._wire`; error answers become the same
exceptions the in-process `Session` raises (`error_from_wire`), plus `AuthError` and
`DaemonError`.

The token is sent only to a daemon that first proved it holds it (`_local.check_proof`). With
`autostart=True`, every call that finds no daemon starts one in the background and is sent
again; calls that fail meanwhile wait and use the same daemon.
"""

from __future__ import annotations

import os
import time
from typing import TYPE_CHECKING, Any, Literal, TypeVar, final

import anyio
import httpx

from .._proof import challenge, token_id
from .._types._api import submit_item, task_outcome
from .._types._errors import DaemonError, error_from_wire
from .._wire import _ops as ops
from .._wire._bodies import MAX_WAIT
from .._wire._sse import SSEDecoder
from ._local import arun_blocking, check_proof, find_token, find_url, start_or_find

if TYPE_CHECKING:
    import builtins
    from collections.abc import AsyncIterator, Callable, Iterable, Sequence
    from types import TracebackType

    from pydantic import JsonValue
    from typing_extensions import Unpack

    from .._types._api import SubmitOptions
    from .._types._events import Event
    from .._types._task import (
        KeyStatus,
        Notice,
        NoticeWait,
        SessionSummary,
        Status,
        SubmitError,
        SubmitItem,
        Task,
        TaskSpec,
    )
    from .._types._worktrees import MergeHow, MergeResult, Worktree
    from .._wire._bodies import Health

__all__ = ["AsyncClient"]

T = TypeVar("T")
M = TypeVar("M", "Event", "Notice")
_LONG_POLL = 60.0
"""The longest one wait request is held; longer waits are several requests."""


_RECONNECT_PAUSE = 0.2
"""Seconds before a followed stream that its daemon ended is opened again (it may be stopping)."""


def _no_daemon(url: str, exc: Exception) -> DaemonError:
    return DaemonError(
        f"No outrider daemon at {url} ({exc}); start one with `outrider serve`, or let the CLI "
        "start it."
    )


def _json_or_none(response: httpx.Response) -> object:
    try:
        return response.json()
    except ValueError:
        return None


def _raise_for(
    response: httpx.Response, op: ops.Op[Any] | None = None, *, task_id: str | None = None
) -> None:
    if response.is_success:
        return
    try:
        body = response.json()["error"]
        kind, message, field = str(body["type"]), str(body["message"]), body.get("field")
    except (ValueError, KeyError, TypeError):
        kind, message, field = "HTTPError", response.text[:300], None
    raise error_from_wire(
        response.status_code, kind, message, field=field, task_id=op.task_id if op else task_id
    )


@final
class AsyncClient:
    """One session of the daemon, over HTTP; implements `outrider.Tasks`.

    Args:
        url: The daemon (default: the local one, see `outrider._client._local`).
        token: The bearer token (default: `$OUTRIDER_TOKEN` or the local token file).
        session: The session every call acts in.
        autostart: Start the local daemon in the background when it is not running.
        on_autostart: Called with the daemon's URL after starting it.
        timeout: Seconds for one HTTP request (long polls add their own wait).
        transport: An httpx transport to send requests through (tests).

    Cancellation: cancelling a call abandons its HTTP request; a submit that reached the
    daemon stays submitted.
    """

    def __init__(
        self,
        url: str | None = None,
        *,
        token: str | None = None,
        session: str = "default",
        autostart: bool = False,
        on_autostart: Callable[[str], None] | None = None,
        timeout: float = 30.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._url = find_url(url)
        self._token = find_token(token)
        self._session = session
        self._autostart = (
            autostart and url is None and transport is None and "OUTRIDER_URL" not in os.environ
        )
        self._on_autostart = on_autostart
        self._timeout = timeout
        self._http = httpx.AsyncClient(timeout=timeout, transport=transport)
        self._proven: str | None = None
        """The URL whose daemon proved it holds the token."""
        self._starting = anyio.Lock()
        self._starts = 0
        """How many daemons this client started (a failed call retries after a newer one)."""

    @property
    def session(self) -> str:
        """The session every call acts in."""
        return self._session

    @property
    def url(self) -> str:
        """The daemon's base URL."""
        return self._url

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the connection pool."""
        await self._http.aclose()

    # -- sending --------------------------------------------------------------------------

    def _headers(self, *, auth: bool = True) -> dict[str, str]:
        headers = {"X-Outrider-Session": self._session}
        if self._token and auth:
            headers["Authorization"] = f"Bearer {self._token}"
        return headers

    async def _prove(self) -> None:
        """Have the daemon prove it holds our token before it is sent (once per URL)."""
        if self._token is None or self._proven == self._url:
            return
        nonce = challenge()
        params = {"challenge": nonce, "token_id": token_id(self._token)}
        response = await self._http.get(self._url + "/health", params=params, timeout=self._timeout)
        check_proof(_json_or_none(response), url=self._url, token=self._token, nonce=nonce)
        self._proven = self._url

    async def _call(self, op: ops.Op[T]) -> T:
        for attempt in (1, 2):
            url, starts = self._url, self._starts
            try:
                if op.auth:
                    await self._prove()
                response = await self._http.request(
                    op.method, url + op.path, json=op.json, params=op.params,
                    headers=self._headers(auth=op.auth), timeout=self._timeout + op.hold,
                )  # fmt: skip
            except httpx.ConnectError as exc:
                if attempt == 1 and await self._start_once(starts):
                    continue
                raise _no_daemon(url, exc) from None
            _raise_for(response, op)
            return op.decode(response.json() if response.content else None)
        raise AssertionError("unreachable")

    async def _start_once(self, seen: int) -> bool:
        """Start the daemon if allowed; calls that failed meanwhile use the same one."""
        async with self._starting:
            if self._starts != seen:
                return True  # another call started it while this one failed
            if not self._autostart:
                return False
            self._url, started = await arun_blocking(start_or_find)
            self._token = find_token(None)
            self._starts += 1
        if started and self._on_autostart is not None:
            self._on_autostart(self._url)
        return True

    # -- the session's tasks --------------------------------------------------------------

    async def health(self) -> Health:
        """The daemon's liveness (`status`, `version`)."""
        return await self._call(ops.health())

    async def submit(self, spec: TaskSpec, /, **options: Unpack[SubmitOptions]) -> Task:
        """Store one task and queue it; see `outrider.Tasks.submit`."""
        return await self._call(ops.submit(submit_item(spec, options)))

    async def submit_many(
        self,
        items: Iterable[SubmitItem | JsonValue],
        /,
        *,
        group: str | None = None,
    ) -> builtins.list[Task | SubmitError]:
        """Store many tasks; one `Task` or `SubmitError` per item, in order."""
        return await self._call(ops.submit_many(items, group=group))

    async def run(
        self, spec: TaskSpec, /, *, wait: float | None = None, **options: Unpack[SubmitOptions]
    ) -> JsonValue:
        """Submit a task and wait for its result; see `outrider.Tasks.run`."""
        deadline = None if wait is None else time.monotonic() + wait
        hold = MAX_WAIT if wait is None else min(wait, MAX_WAIT)
        task = await self._call(ops.submit(submit_item(spec, options), wait=hold))
        if task.state.terminal:
            return task_outcome(task, wait)
        left = None if deadline is None else max(0.0, deadline - time.monotonic())
        return await self.result(task.id, timeout=left)

    async def get(self, task_id: str) -> Task:
        """One task of the session."""
        return await self._call(ops.get(task_id))

    async def list(
        self,
        *,
        states: Iterable[str] | None = None,
        group: str | None = None,
        limit: int | None = None,
    ) -> builtins.list[Task]:
        """The session's tasks in submission order."""
        return await self._call(ops.list_tasks(states=states, group=group, limit=limit))

    async def wait(
        self,
        task_ids: Sequence[str],
        *,
        timeout: float | None = None,
        return_when: Literal["all", "any"] = "all",
    ) -> builtins.list[Task]:
        """Wait until all (or any) of the tasks ended, or `timeout` seconds passed."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            left = _LONG_POLL if deadline is None else max(0.0, deadline - time.monotonic())
            op = ops.wait(task_ids, timeout=min(left, _LONG_POLL), return_when=return_when)
            answer = await self._call(op)
            if answer.done or (deadline is not None and time.monotonic() >= deadline):
                return answer.tasks

    async def result(self, task_id: str, *, timeout: float | None = None) -> JsonValue:
        """Wait for the task and return its result (raises like `outrider.Tasks.result`)."""
        (task,) = await self.wait([task_id], timeout=timeout)
        return task_outcome(task, timeout)

    async def cancel(self, task_id: str) -> Task:
        """Cancel a task and its children; returns it once it ended."""
        return await self._call(ops.cancel(task_id))

    async def cancel_all(self) -> builtins.list[Task]:
        """Cancel every unfinished task of the session."""
        return await self._call(ops.cancel_all())

    async def retry(self, task_id: str) -> Task:
        """Submit an ended task again as a new task."""
        return await self._call(ops.retry(task_id))

    async def tail(self, task_id: str, *, lines: int = 50) -> str:
        """The last `lines` lines of the task's output."""
        return await self._call(ops.tail(task_id, lines=lines))

    async def worktrees(self) -> builtins.list[Worktree]:
        """The worktrees of the session's writing tasks, oldest first."""
        return await self._call(ops.worktrees())

    async def prune_worktrees(self) -> builtins.list[Worktree]:
        """Apply the cleanup rules to the session's worktrees now; returns the ones changed."""
        return await self._call(ops.prune_worktrees())

    async def merge_task(self, task_id: str, *, how: MergeHow = "apply") -> MergeResult:
        """Bring an ended task's work from its worktree into its parent's checkout."""
        return await self._call(ops.merge_task(task_id, how=how))

    async def discard_task(self, task_id: str) -> Worktree:
        """Give up an ended task's work: its worktree and branch go (a `.patch` stays)."""
        return await self._call(ops.discard_task(task_id))

    async def transcript(self, task_id: str) -> JsonValue:
        """An agent task's transcript (models tried, full message history), or None."""
        return await self._call(ops.transcript(task_id))

    async def status(self) -> Status:
        """Counts per state and per key."""
        return await self._call(ops.status())

    async def set_limit(self, key: str, limit: int) -> KeyStatus:
        """Change a key's concurrency limit (the daemon's owner only)."""
        return await self._call(ops.set_limit(key, limit))

    async def notices(
        self, *, limit: int = 100, reader: str | None = None
    ) -> builtins.list[Notice]:
        """Unacknowledged completion notices of the session (or not yet `reader`'s)."""
        return await self._call(ops.notices(limit=limit, reader=reader))

    async def ack_notices(self, up_to: int, *, reader: str | None = None) -> None:
        """Acknowledge the session's notices with `seq <= up_to`."""
        await self._call(ops.ack_notices(up_to, reader=reader))

    async def next_notices(self, *, timeout: float, reader: str | None = None) -> NoticeWait:
        """The next notices, waiting up to `timeout` s; see `outrider.Tasks.next_notices`."""
        deadline = time.monotonic() + timeout
        while True:
            left = max(0.0, deadline - time.monotonic())
            found = await self._call(ops.next_notices(timeout=min(left, MAX_WAIT), reader=reader))
            if found.notices or found.superseded or time.monotonic() >= deadline:
                return found

    async def dashboard_login(self) -> str:
        """A one-time link that logs this token's principal in to the dashboard (`/ui`)."""
        return (await self._call(ops.dashboard_login())).url

    async def shutdown(self) -> None:
        """Ask the daemon to stop gracefully (its owner only)."""
        await self._call(ops.shutdown())

    # -- streams --------------------------------------------------------------------------

    def events(
        self,
        *,
        after: int = 0,
        follow: bool = True,
        all_sessions: bool = False,
        task_id: str | None = None,
        types: Iterable[str] | None = None,
        watch: bool = True,
    ) -> AsyncIterator[Event]:
        """The session's event stream from `seq > after`, following live (reconnects).

        `follow=False`: end after the events stored so far. `all_sessions`: the stream of
        every session of this token's principal instead. `task_id`, `types`: only that
        task's events, only events of these types. `watch=False`: output events without
        watching the tasks (see `Tasks.events`).
        """
        params: dict[str, Any] = {"all_sessions": all_sessions, "follow": follow}
        if not watch:
            params["watch"] = False
        if task_id is not None:
            params["task_id"] = task_id
        if types is not None:
            params["type"] = list(types)
        return self._follow(ops.EVENTS, after, params, task_id=task_id)

    async def sessions(self) -> builtins.list[SessionSummary]:
        """Every session of this token's principal, with its tasks per state."""
        return await self._call(ops.sessions())

    def follow_notices(self, *, after: int = 0) -> AsyncIterator[Notice]:
        """The session's unacknowledged notices, then each new one (reconnects).

        Reading does not acknowledge; a group's summary follows its tasks' notices.
        """
        return self._follow(ops.NOTICE_STREAM, after, {})

    async def _follow(
        self, stream: ops.Stream[M], after: int, params: dict[str, Any], task_id: str | None = None
    ) -> AsyncIterator[M]:
        last = after
        while True:
            try:
                await self._prove()
                async with self._http.stream(
                    "GET", self._url + stream.path, params={**params, "after": last},
                    headers=self._headers(), timeout=httpx.Timeout(self._timeout, read=None),
                ) as response:  # fmt: skip
                    if not response.is_success:
                        await response.aread()
                        _raise_for(response, task_id=task_id)
                    decoder = SSEDecoder()
                    async for line in response.aiter_lines():
                        if (data := decoder.feed(line)) is not None:
                            item = stream.model.model_validate_json(data)
                            last = item.seq
                            yield item
                if not params.get("follow", True):
                    return  # it ended after the stored ones, as asked
                # A followed stream ends only as its daemon stops: go on where it was if a
                # daemon answers again at this address, else `DaemonError` (as when cut off).
                await anyio.sleep(_RECONNECT_PAUSE)
            except httpx.RemoteProtocolError:
                continue
            except httpx.TransportError as exc:  # refused, reset, or timed out
                raise _no_daemon(self._url, exc) from None
