"""Run by test_a_crash_leaves_the_work_on_its_branch in a child process killed with SIGKILL."""

from __future__ import annotations

import sys

import anyio

import outrider
from outrider.runners._cli_agent import CliAgentRunner, CliTemplate

# The retry finds its worktree as the crash left it, and ends.
SCRIPT = (
    "if [ -f half.py ]; then echo resumed; exit 0; fi; echo half > half.py; echo started; "
    "exec sleep 600"  # sleep-ok: the blocking work the crash interrupts
)


async def main(db: str, repo: str, worktrees: str) -> None:
    cli = CliAgentRunner({"sh": CliTemplate(("/bin/sh", "-c", "{prompt}"))})
    settings = outrider.Settings(worktrees_dir=worktrees)
    async with outrider.Orchestrator(db, settings, runners=[cli]) as orch:
        session = orch.session("s")
        once = await session.submit(outrider.cli_agent("sh", SCRIPT, cwd=repo), label="once")
        again = await session.submit(
            outrider.cli_agent("sh", SCRIPT, cwd=repo), label="again", max_attempts=2
        )
        seen: dict[str, str] = {once.id: "", again.id: ""}
        async for event in session.events():
            if event.type == "task.output" and event.task_id in seen:
                seen[event.task_id] += str(event.data.text)  # type: ignore[union-attr]
                if all("started" in text for text in seen.values()):
                    break
        print("READY", once.id, again.id, flush=True)
        await anyio.sleep_forever()


if __name__ == "__main__":
    anyio.run(main, *sys.argv[1:4])
