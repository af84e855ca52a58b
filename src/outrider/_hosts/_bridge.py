"""`outrider mcp`: the stdio bridge between an agent host and the daemon's MCP endpoint.

The tools run in the daemon (`/mcp`); the bridge only relays. It answers `initialize`, `ping`
and `tools/list` itself, from the manifest written from the daemon's own server
(`mcp_tools.json`, kept current by `scripts/mcp_manifest.py`), so a host gets its handshake and
tool list at once, whether or not a daemon runs; every other request goes to the daemon as one
self-contained HTTP request (the protocol revision without MCP sessions), and what comes back
(progress notifications, then the answer) is written to stdout as it arrives. Nothing here
imports the HTTP stack, pydantic or the engine, and the first answer goes out before even the
light client (`_client._light`, its sockets and hashes) is imported: only then does the bridge
record its window for the hooks and warm up. It answers in a few tens of milliseconds.

Who calls (sent with every request):
- the session: `--session`, else the host's own session id (`claude-$CLAUDE_CODE_SESSION_ID`),
  else `$OUTRIDER_SESSION` (the opencode plugin sets it for its process), else one per
  bridge process: a window never shares a session by accident;
- the reader of the session's notices (the window): `$OUTRIDER_READER`, else the host's session
  id, else this process's; the host's hooks and plugin read as the same reader, so no channel
  repeats to the model what another carried;
- the host's directory (the bridge's working directory): where work runs unless it says.

The daemon: a bridge that finds none starts one in the background at once (fully detached, see
`outrider._client._local`), and again on any later call that finds it gone; the answer that
follows says so. A call the daemon dropped midway answers that it did, never hangs.
"""

from __future__ import annotations

import json
import os
import sys
import threading
from pathlib import Path
from urllib.parse import quote

from .._paths import find_config_file
from .._types._errors import OutriderError, UserError
from .._types._names import check_session_name
from .._version import __version__
from .._wire._sse import SSEDecoder

TYPE_CHECKING = False  # as `typing`'s: the commands that must start fast do not import typing
if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Mapping, Sequence
    from typing import IO, Any

    from .._client._light import LightClient, Reply

__all__ = ["Bridge", "identity", "load_manifest", "selected_tools"]

_MANIFEST = Path(__file__).with_name("mcp_tools.json")
_PROTOCOL_KEY = "io.modelcontextprotocol/protocolVersion"
_CAPABILITIES_KEY = "io.modelcontextprotocol/clientCapabilities"
_INFO_KEY = "io.modelcontextprotocol/clientInfo"
_METHOD_NOT_FOUND = -32601
_INTERNAL_ERROR = -32603
_CALL_TIMEOUT = 3600.0
"""Seconds a relayed call may take (the daemon answers blocking calls within `mcp_wait`)."""
_STOPPED = (
    "The daemon stopped during this call; call again (list_tasks shows whether the work was "
    "stored before it stopped)."
)


def load_manifest() -> dict[str, Any]:
    """The protocol versions, instructions and tools the daemon serves (`mcp_tools.json`)."""
    manifest: dict[str, Any] = json.loads(_MANIFEST.read_text())
    return manifest


def selected_tools(
    manifest: Mapping[str, Any], given: str | None, config: Path | None
) -> list[dict[str, Any]]:
    """The tools to offer: `--tools`, else `OUTRIDER_MCP_TOOLS`, else the config's `mcp_tools`.

    Raises:
        UserError: An unknown tool name, or an unreadable setting; the message names it.
    """
    names: object = manifest["default_tools"]
    if given:
        names = [n.strip() for n in given.split(",") if n.strip()]
    elif env := os.environ.get("OUTRIDER_MCP_TOOLS"):
        try:
            names = json.loads(env)
        except ValueError as exc:
            raise UserError(f"Invalid `OUTRIDER_MCP_TOOLS`: not JSON ({exc}).") from None
    elif (file := find_config_file(config)) is not None:
        names = _configured(file, names)
    by_name = {tool["name"]: tool for tool in manifest["tools"]}
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise UserError(f"Invalid `mcp_tools`: give a list of tool names, not {names!r}.")
    unknown = [n for n in names if n not in by_name]
    if unknown or not names:
        raise UserError(
            f"Invalid `mcp_tools`: unknown {', '.join(unknown) or '(none given)'}; allowed: "
            f"{', '.join(by_name)}.",
            field="mcp_tools",
        )
    return [by_name[n] for n in names]


def _configured(file: Path, default: object) -> object:
    import tomllib  # only when a config file is there

    try:
        return tomllib.loads(file.read_text()).get("mcp_tools", default)
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise UserError(f"Cannot read the config file {file}: {exc}.") from None


def identity(explicit: str | None, environ: Mapping[str, str]) -> tuple[str, str]:
    """The session and the notice reader of this bridge (see the module docstring)."""
    own = f"{'opencode' if environ.get('OPENCODE') else 'mcp'}-{os.urandom(6).hex()}"
    host = environ.get("CLAUDE_CODE_SESSION_ID")
    host_name = f"claude-{host}"[:64] if host else None
    session = explicit or host_name or environ.get("OUTRIDER_SESSION") or own
    reader = environ.get("OUTRIDER_READER") or host_name or (own if explicit else session)
    return session, reader


class Bridge:
    """Relays one host's MCP messages (stdin → daemon → stdout).

    Args:
        client: Makes the client of the daemon, in the bridge's session (on the first call
            that needs it: the handshake is answered before the HTTP client is imported).
        manifest: `load_manifest()`.
        tools: The tools to list (`selected_tools`).
        reader: The window reading the session's notices.
        cwd: The host's directory.
        out: Where messages to the host go (stdout).
    """

    def __init__(
        self,
        client: Callable[[], LightClient],
        manifest: Mapping[str, Any],
        tools: Sequence[Mapping[str, Any]],
        *,
        reader: str,
        cwd: str,
        out: IO[bytes],
    ) -> None:
        self._make_client = client
        self._client: LightClient | None = None
        self._manifest = manifest
        self._tools = list(tools)
        self._headers = {
            "Accept": "application/json, text/event-stream",
            "MCP-Protocol-Version": manifest["daemon_protocol_version"],
            "X-Outrider-Reader": reader,
            "X-Outrider-Cwd": quote(cwd),
        }
        self._out = out
        self._lock = threading.Lock()
        self._envelope: dict[str, Any] = {_CAPABILITIES_KEY: {}}
        self._active: dict[str, Reply] = {}
        self._cancelled: set[str] = set()
        self._note: str | None = None

    # -- the host's side ----------------------------------------------------------------

    def serve(self, stdin: IO[bytes], *, then: Callable[[], object] | None = None) -> None:
        """Relay until the host closes stdin (work in flight is abandoned with the process).

        `then` runs once the first message is answered: the host's handshake does not share
        the interpreter with work that can wait (the HTTP client's import, the daemon's start).
        """
        for line in stdin:
            if line.strip():
                self._receive(line)
            if then is not None:
                then()
                then = None

    def _receive(self, line: bytes) -> None:
        try:
            message = json.loads(line)
        except ValueError:
            self._error({"id": None}, -32700, "Parse error: not JSON.")
            return
        if isinstance(message, dict):
            self._handle(message)

    @property
    def client(self) -> LightClient:
        """The client of the daemon (made once, by the first caller)."""
        with self._lock:
            if self._client is None:
                self._client = self._make_client()
            return self._client

    def started(self, url: str) -> None:
        """The client started a daemon: say so on stderr and in the next tool answer."""
        print(f"outrider: started the daemon at {url}", file=sys.stderr, flush=True)
        with self._lock:
            self._note = (
                f"[outrider] No daemon was running, so one was started at {url}; tasks that were "
                "running when the last one stopped were recovered (list_tasks shows them)."
            )

    def _handle(self, message: dict[str, Any]) -> None:
        method = message.get("method")
        if "id" not in message:
            if method == "notifications/cancelled":
                self._cancel(message.get("params") or {})
            return  # the other notifications need no answer
        if method == "initialize":
            self._answer(message, self._initialize(message.get("params") or {}))
        elif method == "tools/list":
            self._answer(message, {"tools": self._tools})
        elif method == "ping":
            self._answer(message, {})
        elif method == "server/discover":  # this bridge speaks the initialize handshake
            self._error(message, _METHOD_NOT_FOUND, f"Method not found: {method}")
        else:
            threading.Thread(target=self._relay, args=(message,), daemon=True).start()

    def _initialize(self, params: Mapping[str, Any]) -> dict[str, Any]:
        versions: list[str] = self._manifest["protocol_versions"]
        asked = params.get("protocolVersion")
        self._envelope = {
            _CAPABILITIES_KEY: params.get("capabilities") or {},
            **({_INFO_KEY: params["clientInfo"]} if params.get("clientInfo") else {}),
        }
        return {
            "protocolVersion": asked if asked in versions else versions[-1],
            "capabilities": {"tools": {"listChanged": False}, "logging": {}},
            "serverInfo": {"name": "outrider", "version": __version__},
            "instructions": self._manifest["instructions"],
        }

    def _cancel(self, params: Mapping[str, Any]) -> None:
        key = json.dumps(params.get("requestId"))
        with self._lock:
            self._cancelled.add(key)
            reply = self._active.get(key)
        if reply is not None:
            reply.close()  # the daemon sees the request go and stops its work

    # -- the daemon's side --------------------------------------------------------------

    def _relay(self, message: dict[str, Any]) -> None:
        key = json.dumps(message["id"])
        try:
            reply = self.client.send(
                "POST", "/mcp", self._envelope_of(message), headers=self._headers_of(message),
                timeout=_CALL_TIMEOUT,
            )  # fmt: skip
        except OutriderError as exc:
            self._failed(message, str(exc))
            return
        except (OSError, ValueError):  # it went away between taking the call and answering
            self._failed(message, _STOPPED)
            return
        with self._lock:
            self._active[key] = reply
        try:
            for answer in _messages(reply):
                if "id" in answer:
                    answer["id"] = message["id"]
                    self._deliver(message, answer)
                else:
                    self._write(answer)
        except (OSError, ValueError):  # the connection failed, or the answer broke off
            if key not in self._cancelled:
                self._failed(message, _STOPPED)
        finally:
            with self._lock:
                self._active.pop(key, None)
                self._cancelled.discard(key)
            reply.close()

    def _envelope_of(self, message: Mapping[str, Any]) -> dict[str, Any]:
        params = dict(message.get("params") or {})
        version = self._manifest["daemon_protocol_version"]
        params["_meta"] = {_PROTOCOL_KEY: version, **self._envelope, **(params.get("_meta") or {})}
        return {"jsonrpc": "2.0", "id": message["id"], "method": message["method"],
                "params": params}  # fmt: skip

    def _headers_of(self, message: Mapping[str, Any]) -> dict[str, str]:
        headers = {**self._headers, "Mcp-Method": str(message["method"])}
        name = (message.get("params") or {}).get("name")
        if message["method"] == "tools/call" and isinstance(name, str) and name.isascii():
            headers["Mcp-Name"] = name
        return headers

    def _deliver(self, request: Mapping[str, Any], answer: dict[str, Any]) -> None:
        """Write the daemon's answer, with the note that a daemon was started, if there is one."""
        result = answer.get("result")
        note = None
        if request["method"] == "tools/call":
            with self._lock:
                note, self._note = self._note, None
        if note and isinstance(result, dict):
            _prepend(result, note)
        self._write(answer)

    def _failed(self, request: Mapping[str, Any], text: str) -> None:
        """A call that got no answer: a tool error the model reads, else a protocol error."""
        if request["method"] == "tools/call":
            self._answer(request, _error_result(text))
        else:
            self._error(request, _INTERNAL_ERROR, text)

    # -- writing ------------------------------------------------------------------------

    def _answer(self, request: Mapping[str, Any], result: object) -> None:
        self._write({"jsonrpc": "2.0", "id": request["id"], "result": result})

    def _error(self, request: Mapping[str, Any], code: int, message: str) -> None:
        self._write({"jsonrpc": "2.0", "id": request["id"],
                     "error": {"code": code, "message": message}})  # fmt: skip

    def _write(self, message: Mapping[str, Any]) -> None:
        data = json.dumps(message, ensure_ascii=False, separators=(",", ":")).encode() + b"\n"
        with self._lock:
            self._out.write(data)
            self._out.flush()


def _messages(reply: Reply) -> Iterator[dict[str, Any]]:
    """The JSON-RPC messages of the daemon's answer: one JSON body, or an SSE stream of them."""
    kind = reply.headers.get("content-type", "")
    if kind.startswith("text/event-stream"):
        decoder = SSEDecoder()
        for raw in reply.response:
            if (data := decoder.feed(raw.decode().rstrip("\r\n"))) is not None:
                yield json.loads(data)
        return
    body = reply.json()
    if isinstance(body, dict) and "jsonrpc" in body:
        yield body
    elif isinstance(body, dict) and isinstance(body.get("error"), dict):  # refused before MCP
        yield {"id": None, "result": _error_result(str(body["error"].get("message")))}
    else:
        raise ValueError(f"unexpected answer from the daemon (HTTP {reply.status})")


def _error_result(text: str) -> dict[str, Any]:
    return {"content": [{"type": "text", "text": text}],
            "structuredContent": {"answer": text, "error": text}, "isError": True}  # fmt: skip


def _prepend(result: dict[str, Any], note: str) -> None:
    """Put `note` before a tool answer's text, where every host shows it."""
    content = result.get("content")
    if isinstance(content, list) and content and content[0].get("type") == "text":
        content[0]["text"] = f"{note}\n\n{content[0]['text']}"
    structured = result.get("structuredContent")
    if isinstance(structured, dict) and isinstance(structured.get("answer"), str):
        structured["answer"] = f"{note}\n\n{structured['answer']}"


def main(session: str | None, tools: str | None, config: Path | None) -> int:
    """Run the bridge on stdin/stdout; 2 for a bad setting (one line on stderr)."""
    manifest = load_manifest()
    try:
        offered = selected_tools(manifest, tools, config)
        name, reader = identity(session, os.environ)
        check_session_name(name)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    bridge: Bridge | None = None
    record: list[Path | None] = []  # written once the handshake is answered

    def client() -> LightClient:
        from .._client._light import LightClient

        assert bridge is not None
        return LightClient(name, autostart=True, on_start=bridge.started)

    def after_handshake() -> None:
        from ._hooks import record_bridge

        assert bridge is not None
        record.append(record_bridge(name, reader))  # the host's hooks find this window's session
        threading.Thread(target=_warm_up, args=(bridge, reader), daemon=True).start()

    bridge = Bridge(client, manifest, offered, reader=reader, cwd=os.getcwd(),
                    out=sys.stdout.buffer)  # fmt: skip
    try:
        bridge.serve(sys.stdin.buffer, then=after_handshake)
    finally:
        for path in record:
            if path is not None:
                path.unlink(missing_ok=True)
    return 0


def _warm_up(bridge: Bridge, reader: str) -> None:
    """Find (or start) the daemon now, so the first call does not wait for it.

    Reading the notices as this window's reader makes the daemon start the window's delivery
    cursor now: what ends from here on reaches this window even if another window of the same
    session acknowledges it first.
    """
    try:
        bridge.client.call("GET", "/v1/notices", params={"limit": 1, "reader": reader})
    except OutriderError as exc:
        print(f"outrider: {exc}", file=sys.stderr, flush=True)
