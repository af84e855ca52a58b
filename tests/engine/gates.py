"""A handler whose steps the test controls, for ordering tests without sleeps."""

from __future__ import annotations

from collections import defaultdict
from typing import TYPE_CHECKING

import anyio

if TYPE_CHECKING:
    import outrider
    from outrider.runners import RunContext


class Gates:
    """Registers `gate` on an orchestrator: a task `call("gate", name=...)` reports its start,
    then blocks until the test opens its gate."""

    def __init__(self, orch: outrider.Orchestrator) -> None:
        self.started: dict[str, anyio.Event] = defaultdict(anyio.Event)
        self.opened: dict[str, anyio.Event] = defaultdict(anyio.Event)
        self.order: list[str] = []
        self.cancelled: list[str] = []
        orch.register_handler("gate", self._gate)

    async def _gate(self, ctx: RunContext, name: str, result: str = "ok") -> str:
        self.order.append(name)
        self.started[name].set()
        try:
            await self.opened[name].wait()
        except BaseException:
            self.cancelled.append(name)
            raise
        if result == "raise":
            raise RuntimeError(f"gate {name} failed")
        return f"{name}:{result}"

    async def wait_started(self, *names: str) -> None:
        with anyio.fail_after(5):
            for name in names:
                await self.started[name].wait()

    def open(self, *names: str) -> None:
        for name in names:
            self.opened[name].set()
