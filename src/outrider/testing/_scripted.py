"""A handler whose steps the test controls: order tasks without sleeping."""

from __future__ import annotations

from collections import defaultdict
from typing import TYPE_CHECKING, Protocol

import anyio

if TYPE_CHECKING:
    from collections.abc import Callable

    from ..runners import RunContext

__all__ = ["ScriptedHandler"]


class _Registers(Protocol):
    def register_handler(self, name: str, fn: Callable[..., object]) -> None: ...


class ScriptedHandler:
    """A handler named `name` (default `gate`) whose runs each wait for the test to open them.

    A task `outrider.call("gate", name="a")` records that it started (`started["a"]`, `order`),
    then blocks until the test calls `open("a")`; it returns `"a:ok"`, or `"a:<result>"`, or
    raises when submitted with `result="raise"`. A run stopped while it waits is noted in
    `cancelled`. Register it with `orch.register_handler(scripted.name, scripted.run)`, or pass
    the orchestrator to the constructor.
    """

    def __init__(self, orch: _Registers | None = None, *, name: str = "gate") -> None:
        self.name = name
        self.started: defaultdict[str, anyio.Event] = defaultdict(anyio.Event)
        self.opened: defaultdict[str, anyio.Event] = defaultdict(anyio.Event)
        self.order: list[str] = []
        self.cancelled: list[str] = []
        if orch is not None:
            orch.register_handler(name, self.run)

    async def run(self, ctx: RunContext, name: str, result: str = "ok") -> str:
        """The handler: note the start, wait to be opened, answer."""
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

    async def wait_started(self, *names: str, timeout: float = 5.0) -> None:
        """Return once each named run has started; `TimeoutError` after `timeout` seconds."""
        with anyio.fail_after(timeout):
            for name in names:
                await self.started[name].wait()

    def open(self, *names: str) -> None:
        """Let the named runs return (runs not started yet return as soon as they start)."""
        for name in names:
            self.opened[name].set()
