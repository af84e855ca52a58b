"""Handlers run in worker processes by test_process_handlers (importable by spawn)."""

from __future__ import annotations

import os
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from outrider.runners import RunContext


def whoami(ctx: RunContext, greeting: str) -> dict[str, object]:
    ctx.progress(1, 2, "half")
    ctx.output("from the worker\n")
    return {"pid": os.getpid(), "greeting": greeting}


async def async_whoami(ctx: RunContext) -> int:
    return os.getpid()


def crash(ctx: RunContext) -> None:
    os._exit(3)


def fail(ctx: RunContext) -> None:
    raise ValueError("bad value")


def block(ctx: RunContext) -> None:
    ctx.output(f"{os.getpid()}\n")
    time.sleep(600)  # sleep-ok: the blocking work of a child process
