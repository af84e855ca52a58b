"""Run by test_open_files in a child process started under a low limit of open files.

`python open_files_script.py DB N`: runs N `sleep 0.3` shell tasks at once, then prints one
line of JSON: the open-files limit (soft, hard) the tasks ran under, and each task's end.
"""

from __future__ import annotations

import json
import resource
import sys

import anyio

import outrider


async def main(db: str, count: int) -> None:
    settings = outrider.Settings(max_running=count, limits={"shell": count})
    async with outrider.Orchestrator(db, settings) as orch:
        session = orch.session("s")
        items = [outrider.SubmitItem(spec=outrider.shell("sleep 0.3")) for _ in range(count)]
        tasks = [t for t in await session.submit_many(items) if isinstance(t, outrider.Task)]
        done = await session.wait([t.id for t in tasks], timeout=60)
        limit = resource.getrlimit(resource.RLIMIT_NOFILE)
    ends = [[t.state.value, t.error.type if t.error else None,
             t.error.message if t.error else None] for t in done]  # fmt: skip
    print(json.dumps({"limit": limit, "ends": ends}), flush=True)


if __name__ == "__main__":
    anyio.run(main, sys.argv[1], int(sys.argv[2]))
