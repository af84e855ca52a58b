"""How soon a finished task wakes an idle parent, inside the real hosts.

Run: uv run python bench/hosts.py  [--quick]

Claude Code (`--input-format stream-json`, the `Stop` hook with `asyncRewake`) and opencode
(`opencode serve`, the plugin), installed with `outrider install`, their model the scripted
fake provider on 127.0.0.1 (`tests/fakellm.py`). The parent delegates a task whose last line of
output is the time it ended (`time.time()` in the task's process) and goes idle; the figure is
from that moment to the fake provider receiving the woken turn's request that carries the
notice. The hosts come from `.cache/hosts` (or `$OUTRIDER_HOSTS_DIR`), as for the tests.
"""

from __future__ import annotations

import re
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.fakellm import Call, FakeLLM, Reply
from tests.hosts import test_claude_code as claude
from tests.hosts import test_opencode as opencode
from tests.hosts.conftest import host_binary

ROUNDS = 3 if "--quick" in sys.argv else 8
STAMP = "sleep 0.5; python3 -c 'import time; print(time.time())'"
_ENDED = re.compile(r"(\d{10}\.\d+)\s*⟦outrider seq=")


class Stamps:
    """The scripted model: delegates the stamping task; notes when each woken turn arrives."""

    def __init__(self, tool: str) -> None:
        self.tool = tool
        self.waits: list[float] = []

    def __call__(self, call: Call) -> Reply:
        now = time.time()
        text = call.last_user_text
        if "delegate stamp" in text:
            return Reply.tool(self.tool, description="stamp", command=STAMP)
        if (found := _ENDED.search(text)) and "tool_result" not in str(call.body["messages"][-1]):
            self.waits.append(now - float(found[1]))
        return Reply.say("noted")


def claude_code() -> list[float]:
    stamps = Stamps(f"{claude.TOOL}delegate_task")
    fake = FakeLLM()
    fake.responder = stamps
    with fake, tempfile.TemporaryDirectory() as tmp:
        fixture: Any = claude.project.__wrapped__  # type: ignore[attr-defined]
        setup = fixture(Path(tmp), fake)
        folder, env = next(setup)
        window = claude.Window(host_binary("claude"), env, folder)
        try:
            for _ in range(ROUNDS):
                window.turn("delegate stamp")
                window.results.get(timeout=60)  # the woken turn's result
        finally:
            window.close()
            next(setup, None)
    return stamps.waits


def opencode_serve() -> list[float]:
    stamps = Stamps("outrider_delegate_task")
    opencode.respond = stamps  # the fixture's model
    with tempfile.TemporaryDirectory() as tmp:
        fixture: Any = opencode.served.__wrapped__  # type: ignore[attr-defined]
        setup = fixture(host_binary("opencode"), Path(tmp))
        _server, url, _fake, _project, _data = next(setup)
        try:
            with httpx.Client(base_url=url, timeout=60) as api:
                session = api.post("/session", json={}).json()["id"]
                model = {"providerID": "fake", "modelID": "m1"}
                for n in range(ROUNDS):
                    turn = {"parts": [{"type": "text", "text": "delegate stamp"}], "model": model}
                    api.post(f"/session/{session}/message", json=turn)
                    deadline = time.monotonic() + 60
                    while len(stamps.waits) <= n and time.monotonic() < deadline:
                        time.sleep(0.05)  # sleep-ok: the woken turn comes from opencode's process
        finally:
            next(setup, None)
    return stamps.waits


def main() -> None:
    for name, run in (("Claude Code", claude_code), ("opencode", opencode_serve)):
        waits = run()
        shown = ", ".join(f"{w * 1000:.0f}" for w in waits)
        middle = statistics.median(waits) * 1000 if waits else float("nan")
        top = max(waits) * 1000 if waits else float("nan")
        print(f"{name}: task end → woken turn: median {middle:.0f} ms, max {top:.0f} ms "
              f"({len(waits)} of {ROUNDS}: {shown} ms); target ≤ 1000 ms")  # fmt: skip


if __name__ == "__main__":
    main()
