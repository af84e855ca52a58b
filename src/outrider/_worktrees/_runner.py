"""`Isolating`: a writing runner whose tasks each run in their own git worktree.

It wraps a `WritingRunner` (the built-in agent, agent CLIs). A writing task that works in
place instead gets path leases (`_leases`). Before a run it asks the runner
where the task works and whether it writes, and `Worktrees.begin` decides (`_core._worktrees`);
the task then runs with its folder moved into its worktree (an agent's workspace, a CLI's
`cwd`, plus `OUTRIDER_WORKTREE` and `OUTRIDER_BASE` in a CLI's environment). However the run
ends, what it left is committed on its branch and its changes and merge preview recorded:
the result starts with one line saying so (which the completion notice shows), a failure's
message says where the work is kept.

Cancellation: finishing is shielded and bounded, so a stopped task still leaves its work
committed on its branch; the cancellation then propagates.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import anyio

from .._types._task import ShellSpec, TaskState
from ..runners._protocol import RunFailure, RunOutcome, Wrapping
from ._git import GitError
from ._leases import TaskLeases
from ._watch import Guarded, Nudge, Watched, watch

if TYPE_CHECKING:
    from pydantic import JsonValue

    from .._types._worktrees import Worktree
    from ..runners._protocol import RunContext, Workplace, WritingRunner
    from ._manager import Begun, Worktrees

__all__ = ["Isolating"]

_FINISH_GRACE = 60.0
"""Seconds a stopped task's worktree may take to be committed and recorded."""


class Isolating(Wrapping["WritingRunner"]):
    """`inner`, with each writing task in its own worktree (see the module doc)."""

    def __init__(self, inner: WritingRunner, worktrees: Worktrees) -> None:
        super().__init__(inner)
        self.worktrees = worktrees

    async def run(self, spec: object, ctx: RunContext) -> RunOutcome:
        """Run the task in its worktree if it gets one; finish the worktree however it ends."""
        workplace = await self.inner.workplace(spec)
        try:
            begun = await self.worktrees.begin(ctx.task_id, ctx.session, workplace)
        except GitError as exc:
            raise RunFailure(
                f"Its worktree could not be made: {exc}. Run it with isolation 'none' to work "
                "in the folder itself.",
                type="worktree",
            ) from None
        if begun.worktree is None:
            if begun.note:
                ctx.output(f"[outrider] {begun.note}\n")
            outcome = await (self._run_leased(spec, ctx) if workplace.writes else
                             self.inner.run(spec, ctx))  # fmt: skip
            return _noted(outcome, begun.note)
        return await self._in_worktree(spec, ctx, workplace, begun)

    async def _in_worktree(
        self, spec: object, ctx: RunContext, workplace: Workplace, begun: Begun
    ) -> RunOutcome:
        worktree = begun.worktree
        assert worktree is not None
        ctx.output(
            f"[outrider] working in worktree {worktree.path} on branch {worktree.branch} "
            f"(base {worktree.base[:12]})\n"
        )
        env = {"OUTRIDER_WORKTREE": worktree.path, "OUTRIDER_BASE": worktree.base}
        moved = self.inner.relocate(spec, begun.folder, env)
        try:
            if begun.new:
                await self._setup(worktree, workplace.setup or self.worktrees.setup, ctx)
            outcome = await self._run_watched(moved, ctx, worktree)
        except RunFailure as exc:
            done = await self._finish(worktree, ctx)
            if done.state == "removed":
                raise
            raise RunFailure(
                f"{exc.message} ({_where(done)})", type=exc.type, detail=exc.detail,
                exit_code=exc.exit_code, retryable=exc.retryable,
            ) from exc  # fmt: skip
        except BaseException:
            await self._finish(worktree, ctx)
            raise
        done = await self._finish(worktree, ctx)
        if workplace.merge == "auto-if-clean" and done.preview is not None and done.preview.clean:
            return await self._auto_merge(outcome, done, ctx)
        return RunOutcome(result=_with_summary(outcome, done), exit_code=outcome.exit_code)

    async def _setup(self, worktree: Worktree, command: str | None, ctx: RunContext) -> None:
        """Run the setup command in a new worktree, as a child shell task."""
        if command is None:
            return
        spec = ShellSpec(command=command, cwd=worktree.path)
        done = await ctx.spawn(spec, label=f"setup of {ctx.task_id}")
        if done.state is not TaskState.SUCCEEDED:
            code = f", exit {done.exit_code}" if done.exit_code is not None else ""
            raise RunFailure(
                f"The worktree's setup command {command!r} ended {done.state}{code} (task "
                f"{done.id}); fix it (`setup` in the agent file, `worktree_setup` in the config)",
                type="setup", detail=await ctx.tail(done.id, lines=20),
            )  # fmt: skip

    async def _auto_merge(self, outcome: RunOutcome, done: Worktree, ctx: RunContext) -> RunOutcome:
        """`merge = "auto-if-clean"`: apply the work to the folder now; kept if that fails."""
        task = await self.worktrees.store.get(ctx.task_id)
        title = task.name if task else ctx.task_id
        merged = await self.worktrees.merge(ctx.task_id, ctx.session, "apply", title)
        if not merged.merged:
            ctx.output(f"[outrider] not merged: {merged.message}\n")
            return RunOutcome(result=_with_summary(outcome, done), exit_code=outcome.exit_code)
        line = f"[its work was applied to {done.repo}: {done.changes}, from {done.branch}]"
        ctx.output(f"[outrider] {merged.message}\n")
        answer = _text(outcome.result)
        result = line if answer is None else f"{line}\n{answer}"
        return RunOutcome(result=result, exit_code=outcome.exit_code)

    async def _run_leased(self, spec: object, ctx: RunContext) -> RunOutcome:
        """Run a task writing in place: its writes claim leases, released when it ends."""
        task = await self.worktrees.store.get(ctx.task_id)
        guard = TaskLeases(self.worktrees.leases, ctx.task_id, task.name if task else ctx.task_id)
        try:
            return await self.inner.run(spec, Guarded(ctx, guard))
        finally:
            self.worktrees.leases.release(ctx.task_id)

    async def _run_watched(self, spec: object, ctx: RunContext, worktree: Worktree) -> RunOutcome:
        """Run the task with a watcher of its files beside it (for overlap warnings)."""
        nudge = Nudge()
        failure: Exception | None = None
        outcome = RunOutcome()
        async with anyio.create_task_group() as tg:
            tg.start_soon(watch, worktree, self.worktrees.overlaps, nudge)
            try:
                outcome = await self.inner.run(spec, Watched(ctx, nudge))
            except Exception as exc:  # raised as it is once the watcher stopped (not grouped)
                failure = exc
            finally:
                tg.cancel_scope.cancel()
        if failure is not None:
            raise failure
        return outcome

    async def _finish(self, worktree: Worktree, ctx: RunContext) -> Worktree:
        with anyio.move_on_after(_FINISH_GRACE, shield=True):
            try:
                done = await self.worktrees.finish(worktree)
            except GitError as exc:
                ctx.output(f"[outrider] the worktree could not be finished: {exc}\n")
                return worktree
            ctx.output(f"[outrider] {done.summary}\n")
            return done
        return worktree  # pragma: no cover - git hung for a minute; the record says `active`


def _where(worktree: Worktree) -> str:
    return f"its work is kept: {worktree.summary}; merge_task or discard_task"


def _text(result: JsonValue) -> str | None:
    if result is None:
        return None
    return result if isinstance(result, str) else repr(result)


def _with_summary(outcome: RunOutcome, worktree: Worktree) -> JsonValue:
    """The result, after a line saying where the work is kept (as is if it changed nothing)."""
    if worktree.state == "removed":
        return outcome.result
    line = f"[{_where(worktree)}]"
    answer = _text(outcome.result)
    return line if answer is None else f"{line}\n{answer}"


def _noted(outcome: RunOutcome, note: str | None) -> RunOutcome:
    answer = _text(outcome.result)
    if note is None or answer is None:
        return outcome
    return RunOutcome(result=f"[{note}]\n{answer}", exit_code=outcome.exit_code)
