"""Run by test_crash_recovery in a child process that the test then kills with SIGKILL."""

from __future__ import annotations

import sys

import anyio

import outrider

CHILD = (
    f"{sys.executable} -c \"import os, time; print('pid', os.getpid(), flush=True); "
    'time.sleep(600)"'  # sleep-ok: the blocking work of a child process
)


async def main(db: str) -> None:
    async with outrider.Orchestrator(db, outrider.Settings(limits={"shell": 2})) as orch:
        a = await orch.session("s").submit(outrider.shell(CHILD), label="a")
        b = await orch.session("s").submit(outrider.shell(CHILD), label="b", max_attempts=2)
        await orch.session("s").submit(outrider.shell("echo done"), label="c")
        texts: dict[str, str] = {a.id: "", b.id: ""}
        async for event in orch.session("s").events():
            if event.type == "task.output" and event.task_id in texts:
                texts[event.task_id] += str(event.data.text)
                if all("\n" in t for t in texts.values()):
                    break
        pids = {task_id: text.split()[1] for task_id, text in texts.items()}
        print("READY", a.id, pids[a.id], b.id, pids[b.id], flush=True)
        await anyio.sleep_forever()


if __name__ == "__main__":
    anyio.run(main, sys.argv[1])
