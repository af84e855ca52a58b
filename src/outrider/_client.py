"""`outrider.Client` and `outrider.AsyncClient`: the daemon's HTTP API from Python.

Both share one request table and one response decoder; they differ only in how they send.
Errors come back as the same exceptions the embedded Orchestrator raises (`UserError` with its
`field`, `TaskNotFound`, `QueueFull`, `Closed`), plus `AuthError` and `DaemonError`.

Finding the daemon: `url` (else `$OUTRIDER_URL`, else the running daemon's `daemon.json`,
else `http://127.0.0.1:8765`); the token: `token` (else `$OUTRIDER_TOKEN`, else the token file
in the data dir). With `autostart=True` a missing daemon is started in the background.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import select
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, TypeVar, final

import anyio.to_thread
import httpx
from pydantic import JsonValue, TypeAdapter

from ._errors import (
    AuthError,
    Closed,
    DaemonError,
    OutriderError,
    QueueFull,
    StoreError,
    StoreUnavailable,
    TaskNotFound,
    UserError,
)
from ._models import Event, Notice, Status, SubmitError, SubmitItem, Task, TaskSpec
from ._orchestrator import task_outcome
from ._paths import daemon_file, data_dir, open_private, private_dir, token_file
from ._proof import challenge, token_id, valid

if TYPE_CHECKING:
    import builtins
    from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Mapping, Sequence
    from pathlib import Path
    from types import TracebackType

__all__ = ["AsyncClient", "Client", "start_daemon"]

DEFAULT_URL = "http://127.0.0.1:8765"
_LONG_POLL = 60.0
_TASKS = TypeAdapter(list[Task])
_NOTICES = TypeAdapter(list[Notice])
_Streamed = TypeVar("_Streamed", Event, Notice)


def _find_url(url: str | None) -> str:
    if url:
        return url.rstrip("/")
    if env := os.environ.get("OUTRIDER_URL"):
        return env.rstrip("/")
    if (recorded := _recorded_daemon()) is not None:
        return recorded
    port = os.environ.get("OUTRIDER_PORT", "8765")
    return f"http://127.0.0.1:{port}" if port != "0" else DEFAULT_URL


def _recorded_daemon() -> str | None:
    """The URL in `daemon.json` if the daemon that wrote it still runs (a dead one's is stale)."""
    try:
        record = json.loads(daemon_file().read_text())
        url, pid = str(record["url"]), int(record["pid"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:  # alive, another user's: the proof decides
        pass
    return url


@contextlib.contextmanager
def _start_lock(path: Path, wait: float) -> Iterator[None]:
    """One client at a time starts the daemon; the others wait and then use it."""
    fd = open_private(path, os.O_RDWR | os.O_CREAT)
    try:
        deadline = time.monotonic() + wait
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise DaemonError(
                        f"Another client is starting the daemon and did not finish in {wait:.0f}s; "
                        f"see {path.with_name('daemon.log')}."
                    ) from None
                time.sleep(0.05)
        yield
    finally:
        os.close(fd)


def _find_token(token: str | None) -> str | None:
    if token:
        return token
    if env := os.environ.get("OUTRIDER_TOKEN"):
        return env
    with contextlib.suppress(OSError):
        return token_file().read_text().strip() or None
    return None


def start_daemon(*, wait: float = 20.0) -> str:
    """Start `outrider serve` in the background and return its URL once it listens.

    Clients starting it at the same time take turns: the first starts it, the others find it
    running (`daemon.json`) and use it.

    Raises:
        DaemonError: It exited or did not get ready within `wait` seconds; the message holds
            the end of its log.
    """
    return _start_or_find(wait)[0]


def _start_or_find(wait: float) -> tuple[str, bool]:
    """The daemon's URL, and whether this call started it (else another client had)."""
    log_path = data_dir() / "daemon.log"
    try:
        private_dir(log_path.parent)
        with _start_lock(log_path.with_name("daemon.start.lock"), wait):
            if (running := _recorded_daemon()) is not None:
                return running, False
            return _spawn_daemon(log_path, wait), True
    except OSError as exc:
        raise DaemonError(
            f"Cannot start the daemon: {exc.strerror} ({exc.filename}); make the data dir "
            "writable, or set OUTRIDER_HOME to one that is."
        ) from None


def _spawn_daemon(log_path: Path, wait: float) -> str:
    log = open_private(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    read_fd, write_fd = os.pipe()
    try:
        process = subprocess.Popen(
            [sys.executable, "-m", "outrider._cli", "serve", "--ready-fd", str(write_fd)],
            stdin=subprocess.DEVNULL, stdout=log, stderr=log, pass_fds=(write_fd,),
            start_new_session=True, close_fds=True,
        )  # fmt: skip
    finally:
        os.close(log)
        os.close(write_fd)
    # The daemon outlives this call; a waiter thread reaps it should it exit while we live.
    threading.Thread(target=process.wait, name="outrider-daemon-reaper", daemon=True).start()
    try:
        line = b""
        deadline = time.monotonic() + wait
        while not line.endswith(b"\n"):
            remaining = deadline - time.monotonic()
            ready, _, _ = select.select([read_fd], [], [], max(0.0, remaining))
            if not ready:
                raise DaemonError(f"The daemon did not get ready in {wait:.0f}s; see {log_path}.")
            chunk = os.read(read_fd, 4096)
            if not chunk:
                tail = log_path.read_text(errors="replace").strip().splitlines()[-5:]
                raise DaemonError(
                    "The daemon failed to start: " + (" | ".join(tail) or f"see {log_path}")
                )
            line += chunk
    finally:
        os.close(read_fd)
    return line.decode().strip()


@dataclass(slots=True)
class _Call:
    method: str
    path: str
    json: Any = None
    params: Mapping[str, Any] | None = None
    timeout: float | None = None
    task_id: str | None = field(default=None)
    auth: bool = True
    """Whether the call carries the token (then the daemon must first prove it holds it)."""


def _raise_for(response: httpx.Response, call: _Call) -> None:
    if response.is_success:
        return
    try:
        body = response.json()["error"]
        kind, message, fld = str(body["type"]), str(body["message"]), body.get("field")
    except (ValueError, KeyError, TypeError):
        kind, message, fld = "HTTPError", response.text[:300], None
    exc: OutriderError
    match response.status_code, kind:
        case 401, _:
            exc = AuthError(message)
        case 400, _:
            exc = UserError(message, field=fld)
        case 404, "TaskNotFound":
            exc = TaskNotFound(call.task_id or "?")
            exc.args = (message,)
        case 429, _:
            exc = QueueFull(0)
            exc.args = (message,)
        case 503, "StoreUnavailable":
            exc = StoreUnavailable(message)
        case 503, "StoreError":
            exc = StoreError(message)
        case 503, _:
            exc = Closed(message)
        case _:
            exc = DaemonError(f"{call.method} {call.path}: HTTP {response.status_code}: {message}")
    raise exc


def _submit_body(spec: TaskSpec, options: dict[str, Any]) -> dict[str, Any]:
    body = {k: v for k, v in options.items() if v is not None}
    if "keys" in body:
        body["keys"] = list(body["keys"])
    if "depends_on" in body:
        body["depends_on"] = list(body["depends_on"])
    body["spec"] = spec.model_dump(mode="json")
    return body


def _items_body(items: Iterable[SubmitItem | Mapping[str, object]]) -> list[Any]:
    return [
        i.model_dump(mode="json", exclude_none=True) if isinstance(i, SubmitItem) else dict(i)
        for i in items
    ]


def _batch_results(data: Any) -> list[Task | SubmitError]:
    out: list[Task | SubmitError] = []
    for entry in data["results"]:
        if entry.get("task") is not None:
            out.append(Task.model_validate(entry["task"]))
        else:
            out.append(SubmitError.model_validate(entry["error"]))
    return out


def _no_daemon(url: str, exc: Exception) -> DaemonError:
    return DaemonError(
        f"No outrider daemon at {url} ({exc}); start one with `outrider serve`, or let the CLI "
        "start it."
    )


class _SSEDecoder:
    """Turns `text/event-stream` lines into events (comments and pings are skipped)."""

    def __init__(self) -> None:
        self._data: list[str] = []

    def feed(self, line: str) -> str | None:
        """The data of the message that `line` completes, if it completes one."""
        if line == "":
            if not self._data:
                return None
            data, self._data = "\n".join(self._data), []
            return data
        if line.startswith(":"):
            return None
        name, _, value = line.partition(":")
        if name == "data":
            self._data.append(value.removeprefix(" "))
        return None


def _wait_done(tasks: list[Task], return_when: str) -> bool:
    ended = [t.state.terminal for t in tasks]
    return all(ended) if return_when == "all" else any(ended)


class _Base:
    def __init__(
        self,
        url: str | None,
        token: str | None,
        session: str,
        autostart: bool,
        on_autostart: Callable[[str], None] | None,
    ) -> None:
        self._on_autostart = on_autostart
        self._url = _find_url(url)
        self._token = _find_token(token)
        self._session = session
        self._autostart = autostart and url is None and "OUTRIDER_URL" not in os.environ
        self._proven: str | None = None
        """The URL whose daemon proved it holds the token (`outrider._proof`)."""

    @property
    def session(self) -> str:
        """The session every call acts in."""
        return self._session

    @property
    def url(self) -> str:
        """The daemon's base URL."""
        return self._url

    def _headers(self, *, auth: bool = True) -> dict[str, str]:
        headers = {"X-Outrider-Session": self._session}
        if self._token and auth:
            headers["Authorization"] = f"Bearer {self._token}"
        return headers

    def _challenge(self) -> tuple[dict[str, str], str] | None:
        """The `/health` query by which the daemon proves it holds our token, unless it did."""
        if self._token is None or self._proven == self._url:
            return None
        nonce = challenge()
        return {"challenge": nonce, "token_id": token_id(self._token)}, nonce

    def _check_proof(self, response: httpx.Response, nonce: str) -> None:
        """Accept the daemon only if it proved it holds our token (then it may be sent).

        Raises:
            AuthError: It is a daemon, and it does not know the token.
            DaemonError: It did not prove it is the daemon holding the token.
        """
        assert self._token is not None
        try:
            doc = response.json()
        except ValueError:
            doc = None
        answer = doc.get("proof", "absent") if isinstance(doc, dict) else "absent"
        if answer is None:
            raise AuthError(
                f"The daemon at {self._url} does not know this token (it was not sent); use "
                "the token from its data dir (`OUTRIDER_TOKEN` or the `token` file)."
            )
        url = httpx.URL(self._url)
        port = url.port or (443 if url.scheme == "https" else 80)
        if not valid(answer, self._token, nonce, port):
            raise DaemonError(
                f"The server at {self._url} did not prove it is the outrider daemon that holds "
                "your token, so the token was not sent; another program may have its address "
                f"(a dead daemon's {daemon_file()}). Stop that program, or remove the file."
            )
        self._proven = self._url

    def _started(self) -> None:
        self._url, started = _start_or_find(20.0)
        self._token = _find_token(None)
        if started and self._on_autostart is not None:
            self._on_autostart(self._url)


@final
class Client(_Base):
    """A synchronous client of the daemon; one session per client.

    Args:
        url: The daemon (default: found as the module says).
        token: The bearer token (default: `$OUTRIDER_TOKEN` or the local token file).
        session: The session to act in.
        autostart: Start the daemon in the background when it is not running.
        on_autostart: Called with the daemon's URL after starting it.
        timeout: Seconds for one HTTP request (long polls add their own wait).
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
    ) -> None:
        super().__init__(url, token, session, autostart, on_autostart)
        self._timeout = timeout
        self._http = httpx.Client(timeout=timeout)

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Close the connection pool."""
        self._http.close()

    def _prove(self) -> None:
        if (pending := self._challenge()) is not None:
            params, nonce = pending
            response = self._http.get(self._url + "/health", params=params, timeout=self._timeout)
            self._check_proof(response, nonce)

    def _send(self, call: _Call) -> httpx.Response:
        timeout = self._timeout + (call.timeout or 0)
        for attempt in (1, 2):
            try:
                if call.auth:
                    self._prove()
                response = self._http.request(
                    call.method, self._url + call.path, json=call.json, params=call.params,
                    headers=self._headers(auth=call.auth), timeout=timeout,
                )  # fmt: skip
            except httpx.ConnectError as exc:
                if self._autostart and attempt == 1:
                    self._started()
                    continue
                raise _no_daemon(self._url, exc) from None
            _raise_for(response, call)
            return response
        raise AssertionError("unreachable")

    def _json(self, call: _Call) -> Any:
        return self._send(call).json()

    def health(self) -> dict[str, str]:
        """`{"status": "ok", "version": ...}` if the daemon is up."""
        result: dict[str, str] = self._json(_Call("GET", "/health", auth=False))
        return result

    def submit(self, spec: TaskSpec, **options: Any) -> Task:
        """Store a task (options as `Orchestrator.submit`, without callbacks)."""
        body = _submit_body(spec, options)
        return Task.model_validate(self._json(_Call("POST", "/v1/tasks", json=body)))

    def submit_many(
        self, items: Iterable[SubmitItem | Mapping[str, object]], *, group: str | None = None
    ) -> builtins.list[Task | SubmitError]:
        """Store many tasks; one `Task` or `SubmitError` per item, in order."""
        body = {"items": _items_body(items), "group": group}
        return _batch_results(self._json(_Call("POST", "/v1/tasks/batch", json=body)))

    def get(self, task_id: str) -> Task:
        """One task of the session."""
        return Task.model_validate(
            self._json(_Call("GET", f"/v1/tasks/{task_id}", task_id=task_id))
        )

    def list(
        self,
        *,
        states: Sequence[str] | None = None,
        group: str | None = None,
        limit: int | None = None,
    ) -> builtins.list[Task]:
        """The session's tasks in submission order."""
        params = {"state": list(states or []), "group": group, "limit": limit}
        data = self._json(_Call("GET", "/v1/tasks", params=_clean(params)))
        return _TASKS.validate_python(data["tasks"])

    def wait(
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
            call = _wait_call(task_ids, min(left, _LONG_POLL), return_when)
            data = self._json(call)
            tasks = _TASKS.validate_python(data["tasks"])
            if data["done"] or (deadline is not None and time.monotonic() >= deadline):
                return tasks

    def result(self, task_id: str, *, timeout: float | None = None) -> JsonValue:
        """Wait for the task and return its result (raises like `Orchestrator.result`)."""
        (task,) = self.wait([task_id], timeout=timeout)
        return task_outcome(task, timeout)

    def cancel(self, task_id: str) -> Task:
        """Cancel a task and its children; returns it once it ended."""
        call = _Call("POST", f"/v1/tasks/{task_id}/cancel", task_id=task_id)
        return Task.model_validate(self._json(call))

    def tail(self, task_id: str, *, lines: int = 50) -> str:
        """The last `lines` lines of the task's output."""
        call = _Call("GET", f"/v1/tasks/{task_id}/output", params={"lines": lines},
                     task_id=task_id)  # fmt: skip
        return str(self._json(call)["output"])

    def transcript(self, task_id: str) -> JsonValue:
        """An agent task's transcript (models tried, full message history), or None."""
        call = _Call("GET", f"/v1/tasks/{task_id}/transcript", task_id=task_id)
        doc: JsonValue = self._json(call)["transcript"]
        return doc

    def status(self) -> Status:
        """Counts per state and per key."""
        return Status.model_validate(self._json(_Call("GET", "/v1/status")))

    def notices(self, *, limit: int = 100) -> builtins.list[Notice]:
        """Unacknowledged completion notices of the session."""
        data = self._json(_Call("GET", "/v1/notices", params={"limit": limit}))
        return _NOTICES.validate_python(data["notices"])

    def ack_notices(self, up_to: int) -> None:
        """Acknowledge the session's notices with `seq <= up_to`."""
        self._send(_Call("POST", "/v1/notices/ack", json={"up_to": up_to}))

    def events(self, *, after: int = 0, all_sessions: bool = False) -> Iterator[Event]:
        """The session's event stream from `seq > after`, following live (reconnects).

        `all_sessions`: the stream of every session of this token's principal instead.
        """
        return self._follow("/v1/events", Event, after, {"all_sessions": all_sessions})

    def follow_notices(self, *, after: int = 0) -> Iterator[Notice]:
        """The session's unacknowledged notices, then each new one as it happens (reconnects).

        Reading does not acknowledge; a group's summary follows its tasks' notices.
        """
        return self._follow("/v1/notices/stream", Notice, after, {})

    def _follow(
        self, path: str, model: type[_Streamed], after: int, params: dict[str, Any]
    ) -> Iterator[_Streamed]:
        last = after
        while True:
            try:
                self._prove()
                with self._http.stream(
                    "GET", self._url + path, params={**params, "after": last},
                    headers=self._headers(), timeout=httpx.Timeout(self._timeout, read=None),
                ) as response:  # fmt: skip
                    if not response.is_success:
                        response.read()
                        _raise_for(response, _Call("GET", path))
                    decoder = _SSEDecoder()
                    for line in response.iter_lines():
                        if (data := decoder.feed(line)) is not None:
                            item = model.model_validate_json(data)
                            last = item.seq
                            yield item
                return
            except httpx.RemoteProtocolError:
                continue
            except httpx.TransportError as exc:  # refused, reset, or timed out
                raise _no_daemon(self._url, exc) from None

    def shutdown(self) -> None:
        """Ask the daemon to stop gracefully."""
        self._send(_Call("POST", "/v1/shutdown"))


@final
class AsyncClient(_Base):
    """The asynchronous client; same methods as `Client`, awaited.

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
    ) -> None:
        super().__init__(url, token, session, autostart, on_autostart)
        self._timeout = timeout
        self._http = httpx.AsyncClient(timeout=timeout)
        self._starting = anyio.Lock()
        self._starts = 0
        """How many daemons this client started (calls that failed before one retry after)."""

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

    async def _prove(self) -> None:
        if (pending := self._challenge()) is not None:
            params, nonce = pending
            response = await self._http.get(
                self._url + "/health", params=params, timeout=self._timeout
            )
            self._check_proof(response, nonce)

    async def _send(self, call: _Call) -> httpx.Response:
        timeout = self._timeout + (call.timeout or 0)
        for attempt in (1, 2):
            url, starts = self._url, self._starts
            try:
                if call.auth:
                    await self._prove()
                response = await self._http.request(
                    call.method, url + call.path, json=call.json, params=call.params,
                    headers=self._headers(auth=call.auth), timeout=timeout,
                )  # fmt: skip
            except httpx.ConnectError as exc:
                if attempt == 1 and await self._start_once(starts):
                    continue
                raise _no_daemon(url, exc) from None
            _raise_for(response, call)
            return response
        raise AssertionError("unreachable")

    async def _start_once(self, seen: int) -> bool:
        """Start the daemon if allowed; calls that failed meanwhile wait and use the same one."""
        async with self._starting:
            if self._starts != seen:
                return True  # another call started it while this one failed
            if not self._autostart:
                return False
            await anyio.to_thread.run_sync(self._started)
            self._starts += 1
            return True

    async def _json(self, call: _Call) -> Any:
        return (await self._send(call)).json()

    async def health(self) -> dict[str, str]:
        """`{"status": "ok", "version": ...}` if the daemon is up."""
        result: dict[str, str] = await self._json(_Call("GET", "/health", auth=False))
        return result

    async def submit(self, spec: TaskSpec, **options: Any) -> Task:
        """Store a task (options as `Orchestrator.submit`, without callbacks)."""
        body = _submit_body(spec, options)
        return Task.model_validate(await self._json(_Call("POST", "/v1/tasks", json=body)))

    async def submit_many(
        self, items: Iterable[SubmitItem | Mapping[str, object]], *, group: str | None = None
    ) -> builtins.list[Task | SubmitError]:
        """Store many tasks; one `Task` or `SubmitError` per item, in order."""
        body = {"items": _items_body(items), "group": group}
        return _batch_results(await self._json(_Call("POST", "/v1/tasks/batch", json=body)))

    async def get(self, task_id: str) -> Task:
        """One task of the session."""
        call = _Call("GET", f"/v1/tasks/{task_id}", task_id=task_id)
        return Task.model_validate(await self._json(call))

    async def list(
        self,
        *,
        states: Sequence[str] | None = None,
        group: str | None = None,
        limit: int | None = None,
    ) -> builtins.list[Task]:
        """The session's tasks in submission order."""
        params = {"state": [str(s) for s in states or []], "group": group, "limit": limit}
        data = await self._json(_Call("GET", "/v1/tasks", params=_clean(params)))
        return _TASKS.validate_python(data["tasks"])

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
            call = _wait_call(task_ids, min(left, _LONG_POLL), return_when)
            data = await self._json(call)
            tasks = _TASKS.validate_python(data["tasks"])
            if data["done"] or (deadline is not None and time.monotonic() >= deadline):
                return tasks

    async def result(self, task_id: str, *, timeout: float | None = None) -> JsonValue:
        """Wait for the task and return its result (raises like `Orchestrator.result`)."""
        (task,) = await self.wait([task_id], timeout=timeout)
        return task_outcome(task, timeout)

    async def cancel(self, task_id: str) -> Task:
        """Cancel a task and its children; returns it once it ended."""
        call = _Call("POST", f"/v1/tasks/{task_id}/cancel", task_id=task_id)
        return Task.model_validate(await self._json(call))

    async def tail(self, task_id: str, *, lines: int = 50) -> str:
        """The last `lines` lines of the task's output."""
        call = _Call("GET", f"/v1/tasks/{task_id}/output", params={"lines": lines},
                     task_id=task_id)  # fmt: skip
        return str((await self._json(call))["output"])

    async def transcript(self, task_id: str) -> JsonValue:
        """An agent task's transcript (models tried, full message history), or None."""
        call = _Call("GET", f"/v1/tasks/{task_id}/transcript", task_id=task_id)
        doc: JsonValue = (await self._json(call))["transcript"]
        return doc

    async def status(self) -> Status:
        """Counts per state and per key."""
        return Status.model_validate(await self._json(_Call("GET", "/v1/status")))

    async def notices(self, *, limit: int = 100) -> builtins.list[Notice]:
        """Unacknowledged completion notices of the session."""
        data = await self._json(_Call("GET", "/v1/notices", params={"limit": limit}))
        return _NOTICES.validate_python(data["notices"])

    async def ack_notices(self, up_to: int) -> None:
        """Acknowledge the session's notices with `seq <= up_to`."""
        await self._send(_Call("POST", "/v1/notices/ack", json={"up_to": up_to}))

    def events(self, *, after: int = 0, all_sessions: bool = False) -> AsyncIterator[Event]:
        """The session's event stream from `seq > after`, following live (reconnects).

        `all_sessions`: the stream of every session of this token's principal instead.
        """
        return self._follow("/v1/events", Event, after, {"all_sessions": all_sessions})

    def follow_notices(self, *, after: int = 0) -> AsyncIterator[Notice]:
        """The session's unacknowledged notices, then each new one as it happens (reconnects).

        Reading does not acknowledge; a group's summary follows its tasks' notices.
        """
        return self._follow("/v1/notices/stream", Notice, after, {})

    async def _follow(
        self, path: str, model: type[_Streamed], after: int, params: dict[str, Any]
    ) -> AsyncIterator[_Streamed]:
        last = after
        while True:
            try:
                await self._prove()
                async with self._http.stream(
                    "GET", self._url + path, params={**params, "after": last},
                    headers=self._headers(), timeout=httpx.Timeout(self._timeout, read=None),
                ) as response:  # fmt: skip
                    if not response.is_success:
                        await response.aread()
                        _raise_for(response, _Call("GET", path))
                    decoder = _SSEDecoder()
                    async for line in response.aiter_lines():
                        if (data := decoder.feed(line)) is not None:
                            item = model.model_validate_json(data)
                            last = item.seq
                            yield item
                return
            except httpx.RemoteProtocolError:
                continue
            except httpx.TransportError as exc:  # refused, reset, or timed out
                raise _no_daemon(self._url, exc) from None

    async def shutdown(self) -> None:
        """Ask the daemon to stop gracefully."""
        await self._send(_Call("POST", "/v1/shutdown"))


def _clean(params: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in params.items() if v not in (None, [])}


def _wait_call(task_ids: Sequence[str], poll: float, return_when: str) -> _Call:
    body = {"task_ids": list(task_ids), "timeout": poll, "return_when": return_when}
    only = task_ids[0] if len(task_ids) == 1 else None
    return _Call("POST", "/v1/wait", json=body, timeout=poll, task_id=only)
