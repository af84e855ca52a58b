"""`outrider hook EVENT`: what a host runs on its own events to hand the model its notices.

A notice reaches the model exactly once per window: each hook reads as the window's reader
(the same reader its MCP bridge uses), prints the notices, and acknowledges them as that
reader only after they were written to the host. The events:

- `claude-start` (Claude Code `SessionStart`) and `claude-prompt` (`UserPromptSubmit`): the
  notices the window has not received, printed as context for the model; no wait.
- `claude-rewake` (Claude Code `Stop`, run with `asyncRewake`): waits in the background for the
  window's next notices and exits 2 with them on stderr, which wakes the idle model. It exits
  0 (waking nobody) when a newer waiter of the same window took over — every `Stop` starts
  one, and the newest wins — so it never loops: it exits 2 only with notices it then
  acknowledges.
- `stop` (Codex `Stop`, Gemini CLI `AfterAgent`): the pending notices as a `block` decision
  whose reason the model reads before it ends its turn; nothing when there are none (these
  hosts cannot be woken while idle).
- `next` and `ack` (the opencode plugin): `next` waits up to `--timeout` s and prints the
  `NoticeWait` as JSON; `ack --up-to N` acknowledges once the plugin prompted the session.

Who the window is: Claude Code hands its session id to hooks (stdin `session_id`) and to MCP
servers (`CLAUDE_CODE_SESSION_ID`), so both use `claude-<id>`. For other hosts the bridge
records its session under the host's process id (`bridge_record`), and a hook finds it by
walking up its own parents; `--session`/`--reader` name them outright.

Everything here imports the standard library and `_client._light` only: a hook on the prompt
path costs tens of milliseconds.
"""

from __future__ import annotations

import json
import os
import select
import sys
import threading
import time
from pathlib import Path

from .._paths import data_dir, open_private, private_dir
from .._types._errors import DaemonError, OutriderError

TYPE_CHECKING = False  # as `typing`'s: the commands that must start fast do not import typing
if TYPE_CHECKING:
    import argparse
    from collections.abc import Mapping, Sequence
    from typing import Any

    from .._client._light import LightClient

__all__ = ["bridge_record", "find_bridge", "main", "record_bridge"]

EVENTS = ("claude-start", "claude-prompt", "claude-rewake", "stop", "next", "ack")
_WAIT_CHUNK = 300.0
"""Seconds of one long poll (the daemon caps a wait; the rewake hook polls again)."""
_REWAKE_FOR = 24 * 3600.0
"""The longest a rewake hook waits in all."""
_RETRY = 1.0
"""Seconds between attempts to reach a daemon that is gone (it may be restarting)."""


def bridge_record(host_pid: int) -> Path:
    """Where the bridge started by process `host_pid` records its session and reader."""
    return data_dir() / "bridges" / f"{host_pid}.json"


def record_bridge(session: str, reader: str) -> Path | None:
    """Record this bridge's session under its parent (the host); None if it cannot."""
    path = bridge_record(os.getppid())
    try:
        private_dir(path.parent)
        fd = open_private(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
        with os.fdopen(fd, "w") as out:
            json.dump({"session": session, "reader": reader, "pid": os.getpid()}, out)
    except OSError:
        return None
    return path


def _parent(pid: int) -> int | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[-1].split()
    return int(fields[1]) if len(fields) > 1 else None


_LAUNCHERS = frozenset({"sh", "bash", "dash", "zsh", "ksh", "fish", "env", "timeout", "uv", "uvx"})
"""Processes between a host and its hook (a host runs hooks through a shell)."""


def _host_of_this_hook() -> int | None:
    """The process that ran this hook: its first parent that is not a shell or a launcher."""
    pid: int | None = os.getppid()
    for _ in range(8):
        if pid is None or pid <= 1:
            return None
        try:
            name = Path(f"/proc/{pid}/comm").read_text().strip()
        except OSError:
            return None
        if name not in _LAUNCHERS:
            return pid
        pid = _parent(pid)
    return None


def _end_with_host() -> None:
    """End this process as soon as its host ends (a waiting hook must not outlive it).

    A host that exits leaves its hook's shell and the hook running; the hook watches the host
    through a pidfd (in a daemon thread) and exits 0 when it goes: nobody is left to wake.
    """
    host = _host_of_this_hook()
    if host is None:
        return
    try:
        fd = os.pidfd_open(host)
    except ProcessLookupError:
        os._exit(0)
    except OSError:  # pragma: no cover - a kernel without pidfds (before 5.3)
        return

    def watch() -> None:
        select.select([fd], [], [])
        os._exit(0)

    threading.Thread(target=watch, name="host-watch", daemon=True).start()


def find_bridge(start: int | None = None) -> tuple[str, str] | None:
    """The session and reader of the bridge started by one of this process's parents."""
    pid: int | None = os.getppid() if start is None else start
    for _ in range(32):
        if pid is None or pid <= 1:
            return None
        try:
            found = json.loads(bridge_record(pid).read_text())
            return str(found["session"]), str(found["reader"])
        except (OSError, ValueError, KeyError, TypeError):
            pid = _parent(pid)
    return None


def _stdin_json() -> dict[str, Any]:
    if sys.stdin is None or sys.stdin.isatty():
        return {}
    try:
        found = json.loads(sys.stdin.read() or "{}")
    except ValueError:
        return {}
    return found if isinstance(found, dict) else {}


def _identity(given: argparse.Namespace, payload: Mapping[str, Any]) -> tuple[str, str] | None:
    if given.session:
        return given.session, given.reader or given.session
    host = payload.get("session_id")
    if given.event.startswith("claude-") and isinstance(host, str) and host:
        name = f"claude-{host}"[:64]
        return name, name
    return find_bridge()


def _pending(client: LightClient, reader: str) -> tuple[str, int]:
    """The window's notices as text, and the last seq (0: none)."""
    found = client.call("GET", "/v1/notices/next", params={"timeout": 0, "reader": reader})
    return str(found.get("text", "")), _last_seq(found)


def _last_seq(found: Mapping[str, Any]) -> int:
    return max((int(n["seq"]) for n in found.get("notices") or ()), default=0)


def _ack(client: LightClient, reader: str, up_to: int) -> None:
    client.call("POST", "/v1/notices/ack", {"up_to": up_to, "reader": reader})


def _deliver_now(client: LightClient, reader: str, event: str) -> int:
    text, up_to = _pending(client, reader)
    if not up_to:
        return 0
    if event == "stop":
        print(json.dumps({"decision": "block", "reason": text}, ensure_ascii=False))
    else:
        print(text)
    sys.stdout.flush()
    _ack(client, reader, up_to)
    return 0


def _rewake(client: LightClient, reader: str) -> int:
    """Wait for the window's next notices; exit 2 with them (Claude Code wakes the model)."""
    _end_with_host()
    deadline = time.monotonic() + _REWAKE_FOR
    while time.monotonic() < deadline:
        try:
            found = client.call("GET", "/v1/notices/next", params={
                "timeout": _WAIT_CHUNK, "reader": reader}, timeout=_WAIT_CHUNK + 30)  # fmt: skip
        except DaemonError:
            time.sleep(_RETRY)  # sleep-ok: the daemon is gone or restarting; poll for it
            continue
        if found.get("superseded"):
            return 0
        if up_to := _last_seq(found):
            sys.stderr.write(str(found["text"]) + "\n")
            sys.stderr.flush()
            _ack(client, reader, up_to)
            return 2
    return 0


def _parser() -> argparse.ArgumentParser:
    import argparse  # here: the bridge imports this module for `record_bridge`

    parser = argparse.ArgumentParser(prog="outrider hook", description=__doc__.split("\n")[0])
    parser.add_argument("event", choices=EVENTS)
    parser.add_argument("--session", help="The session (default: the host window's).")
    parser.add_argument("--reader", help="The reader (default: the session's window).")
    parser.add_argument("--timeout", type=float, default=_WAIT_CHUNK, help="`next`: seconds.")
    parser.add_argument("--up-to", type=int, help="`ack`: the last seq the model received.")
    return parser


def main(argv: Sequence[str]) -> int:
    """Run one hook; its exit code (2 wakes Claude Code's model in `claude-rewake`)."""
    given = _parser().parse_args(argv)
    payload = {} if given.event in ("next", "ack") else _stdin_json()
    identity = _identity(given, payload)
    if identity is None:
        return 0  # no outrider bridge in this window: nothing to deliver
    session, reader = identity
    from .._client._light import LightClient  # here: the bridge imports this module early

    client = LightClient(session)
    try:
        if given.event == "claude-rewake":
            return _rewake(client, reader)
        if given.event == "next":
            params = {"timeout": given.timeout, "reader": reader}
            found = client.call(
                "GET", "/v1/notices/next", params=params, timeout=given.timeout + 30
            )
            print(json.dumps({**found, "up_to": _last_seq(found)}, ensure_ascii=False))
            return 0
        if given.event == "ack":
            if given.up_to is None:
                print("error: give --up-to SEQ", file=sys.stderr)
                return 2
            _ack(client, reader, given.up_to)
            return 0
        return _deliver_now(client, reader, given.event)
    except OutriderError as exc:
        if given.event in ("next", "ack"):
            print(f"outrider: {exc}", file=sys.stderr)
            return 1
        if not isinstance(exc, DaemonError):  # no daemon: nothing this window could get now
            print(f"outrider: {exc}", file=sys.stderr)
        return 0
