from __future__ import annotations

import os
from typing import TYPE_CHECKING

import anyio
import psutil

import outrider
from outrider import TaskState

from . import proc_handlers

if TYPE_CHECKING:
    from pathlib import Path

S = "alice"


async def test_process_isolation(db: Path) -> None:
    async with outrider.Orchestrator(
        db, outrider.Settings(process_workers=2, shutdown_grace=0.1)
    ) as orch:
        for fn in (proc_handlers.whoami, proc_handlers.async_whoami, proc_handlers.crash,
                   proc_handlers.fail, proc_handlers.block):  # fmt: skip
            orch.register_handler(fn.__name__, fn, isolation="process")
        ok = await orch.session(S).submit(outrider.call("whoami", greeting="hi"))
        crashed = await orch.session(S).submit(outrider.call("crash"))
        failed = await orch.session(S).submit(outrider.call("fail"))
        done = await orch.session(S).wait([ok.id, crashed.id, failed.id], timeout=30)
        assert [t.state for t in done] == [TaskState.SUCCEEDED, TaskState.FAILED, TaskState.FAILED]
        assert isinstance(done[0].result, dict)
        assert done[0].result["greeting"] == "hi"
        assert done[0].result["pid"] != os.getpid()
        assert done[0].progress is not None
        assert done[0].progress.message == "half"
        assert "from the worker" in await orch.session(S).tail(ok.id)
        assert done[1].error is not None
        assert done[1].error.type == "WorkerCrashed"
        assert "exit code 3" in done[1].error.message
        assert done[2].error is not None
        assert done[2].error.type == "ValueError"
        assert done[2].error.detail is not None
        assert "bad value" in done[2].error.detail
        again = await orch.session(S).submit(outrider.call("async_whoami"))
        assert isinstance(await orch.session(S).result(again.id, timeout=30), int)
        blocked = await orch.session(S).submit(outrider.call("block"))
        with anyio.fail_after(30):
            async for event in orch.session(S).events():
                if event.task_id == blocked.id and event.type == "task.output":
                    pid = int(str(event.data.text).split()[0])
                    break
        assert (await orch.session(S).cancel(blocked.id)).state is TaskState.CANCELLED
        assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    workers = [
        p for p in psutil.Process().children() if "spawn_main" in " ".join(p.cmdline())
    ]  # the resource tracker of `multiprocessing` may stay; no worker may
    assert workers == []
