"""Run by test_containment in a child process that the test then kills with SIGKILL.

Usage: leftover_script.py DB SPEC_JSON. SPEC_JSON is a list of `{"command", "max_attempts",
"grace_period"}`; each task runs once its start is stored, and the script prints
`READY <task id> <first output line>` per task, then blocks until killed.
"""

from __future__ import annotations

import json
import sys

import anyio

import outrider


async def main(db: str, spec: str) -> None:
    items = json.loads(spec)
    async with outrider.Orchestrator(
        db, outrider.Settings(max_running=64, limits={"shell": 64})
    ) as orch:
        ids = []
        for item in items:
            shell = outrider.shell(item["command"], grace_period=item.get("grace_period", 5.0))
            task = await orch.session("s").submit(shell, max_attempts=item.get("max_attempts", 1))
            ids.append(task.id)
        texts = dict.fromkeys(ids, "")
        async for event in orch.session("s").events():
            if event.type == "task.output" and event.task_id in texts:
                texts[event.task_id] += str(event.data.text)
                if all("\n" in t for t in texts.values()):
                    break
        for task_id in ids:
            print("READY", task_id, texts[task_id].split("\n")[0], flush=True)
        await anyio.sleep_forever()


if __name__ == "__main__":
    anyio.run(main, sys.argv[1], sys.argv[2])
