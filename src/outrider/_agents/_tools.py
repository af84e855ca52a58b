"""The built-in agent's tools, built once per process: each finds its run in pydantic-ai's context.

Building a tool parses its signature and docstring into a JSON schema (about 1 ms each); built
per run, the seven of them cost every agent task 7-9 ms of the event loop. Here they are built
at import and shared: a tool reads the run it serves from `ctx.deps`.

Invariants:
- File tools run in a worker thread (their I/O and regexes never block the event loop); a
  refusal is the tool's answer to the model, never an exception.
- Commands and sub-agents are child tasks of the run's task (limits, logs, kill), made by the
  run's loop.
"""

# ruff: noqa: D417  # `ctx` is pydantic-ai's, left out of the schema; the docstrings are for the model

from __future__ import annotations

from typing import TYPE_CHECKING

import anyio
import anyio.to_thread
from pydantic_ai import RunContext, Tool

from .._text import clip
from .._types._task import AgentSpec, ShellSpec
from ..runners._protocol import GuardedContext
from ._run import AgentRun  # noqa: TC001  # pydantic-ai reads the tools' hints at run time
from ._workspace import ToolRefused

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ["TOOLS"]


async def read_file(
    ctx: RunContext[AgentRun], path: str, offset: int = 0, limit: int | None = None
) -> str:
    """Read a text file in the workspace.

    Args:
        path: The file, relative to the workspace.
        offset: The first line to return (0-based).
        limit: How many lines to return (default: all).
    """
    ws = ctx.deps.workspace
    return await _guard(lambda: ws.read(path, offset, limit))


async def list_files(ctx: RunContext[AgentRun], pattern: str = "**/*") -> str:
    """List files and directories in the workspace matching a glob (directories end in /).

    Args:
        pattern: A glob relative to the workspace, like `**/*.py` or `src/*`.
    """
    ws = ctx.deps.workspace
    return await _guard(lambda: ws.list(pattern))


async def grep(ctx: RunContext[AgentRun], pattern: str, glob: str = "**/*") -> str:
    """Search file contents with a regular expression; answers `file:line: text`.

    Args:
        pattern: A Python regular expression.
        glob: Which files to search, as a glob relative to the workspace.
    """
    ws = ctx.deps.workspace
    return await _guard(lambda: ws.grep(pattern, glob))


async def write_file(ctx: RunContext[AgentRun], path: str, content: str) -> str:
    """Create or replace a file in the workspace.

    Args:
        path: The file, relative to the workspace.
        content: The whole new content.
    """
    if (refusal := await _claim(ctx.deps, path)) is not None:
        return refusal
    ws = ctx.deps.workspace
    return await _guard(lambda: ws.write(path, content))


async def edit_file(ctx: RunContext[AgentRun], path: str, old: str, new: str) -> str:
    """Replace one exact occurrence of `old` by `new` in a file.

    Args:
        path: The file, relative to the workspace.
        old: The exact text to replace; it must occur exactly once.
        new: The replacement.
    """
    if (refusal := await _claim(ctx.deps, path)) is not None:
        return refusal
    ws = ctx.deps.workspace
    return await _guard(lambda: ws.edit(path, old, new))


async def run_command(ctx: RunContext[AgentRun], command: str) -> str:
    """Run a shell command in the workspace; answers its exit code and output's end.

    Args:
        command: The command line, run by /bin/sh.
    """
    run = ctx.deps
    try:
        argv = await anyio.to_thread.run_sync(run.loop.command_argv, run, command)
    except ToolRefused as exc:
        return str(exc)
    spec = ShellSpec(command=argv, cwd=str(run.workspace.root))
    return await run.loop.child(run, spec, f"{run.definition.name}$ {clip(command, 40)}")


async def delegate(ctx: RunContext[AgentRun], agent: str, prompt: str) -> str:
    """Hand a sub-task to another sub-agent and wait for its answer.

    Several delegate calls in one turn run in parallel.

    Args:
        agent: The sub-agent's name.
        prompt: Everything it needs to know to do the sub-task.
    """
    run = ctx.deps
    if refusal := run.loop.delegation_refusal(run, agent):
        return refusal
    spec = AgentSpec(
        agent=agent, prompt=prompt, workspace=str(run.workspace.root), depth=run.spec.depth + 1,
        tree=run.tree_id, budget_tokens=run.tree.tokens_left, budget_cost=run.tree.cost_left,
    )  # fmt: skip
    run.tree.live += 1
    try:
        return await run.loop.child(run, spec, f"{agent} ← {run.definition.name}")
    finally:
        run.tree.live -= 1


TOOLS: dict[str, Tool[AgentRun]] = {
    fn.__name__: Tool(fn, takes_ctx=True)
    for fn in (read_file, list_files, grep, write_file, edit_file, run_command, delegate)
}
"""Every tool, by name (a run gets those its definition allows)."""


def _answer(fn: Callable[[], str]) -> str:
    try:
        return fn()
    except ToolRefused as exc:
        return str(exc)
    except OSError as exc:
        return f"error: {exc.strerror or exc}"


async def _claim(run: AgentRun, path: str) -> str | None:
    """Where the task writes in place beside others: a lease on `path`, or why not."""
    ctx = run.ctx
    if not isinstance(ctx, GuardedContext):
        return None
    try:
        real = await anyio.to_thread.run_sync(lambda: run.workspace.path(path, write=True))
    except ToolRefused:
        return None  # the write itself says why
    return await ctx.path_guard.claim(str(real))


async def _guard(fn: Callable[[], str]) -> str:
    """Run a file tool in a worker thread: its I/O never blocks the event loop."""
    return await anyio.to_thread.run_sync(_answer, fn)
