"""A batch in an orchestrator of its own, shown live (`outrider run FILE`, `outrider demo`).

The batch runs in this process (no daemon), in a store of its own, as one group. Agent tasks
run through the runners the daemon would compose (`outrider._daemon._runners`) from the
config's providers and the agents defined beside the batch file.

Cancellation: SIGINT or SIGTERM stops every task of the batch, records it, and exits 130.
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

import anyio
import typer
from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

import outrider
from outrider import OutriderError, Task, TaskState

from .._asynclib import next_stop_signal, pidfd_child_watcher
from .._ids import new_task_id
from .._logging import format_duration
from ..runners._procs import contain_this_process, stop_orphans
from ._options import EXIT_INTERRUPTED, fail, warn
from ._output import state_text

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Mapping, Sequence

    from .._executors._protocol import Executor
    from .._types._api import Tasks
    from ..runners import Runner
    from ._batch import Batch

__all__ = [
    "Plan",
    "demo_end",
    "demo_in_daemon",
    "execute",
    "run_batch",
    "run_with_signals",
    "watch",
]

T = TypeVar("T")
_REFRESH = 0.25
_ORPHAN_GRACE = 2.0
"""Seconds the orphans a batch's tasks left get between SIGTERM and SIGKILL on the way out."""
"""Seconds between two redraws of the live table."""


def _row(table: Table, task: Task, last_line: str) -> None:
    elapsed = task.elapsed
    detail = last_line
    if task.state is TaskState.QUEUED:
        detail = f"#{task.position} · waits for {task.waiting_for}" if task.position else "queued"
    elif task.error is not None and task.state.terminal:
        detail = task.error.message
    progress = ""
    if task.progress is not None and task.progress.total:
        progress = f"{task.progress.completed:g}/{task.progress.total:g}"
    table.add_row(
        Text(task.label or task.id), str(task.priority), state_text(task),
        format_duration(elapsed) if elapsed is not None else "", progress,
        Text(detail[-70:], overflow="ellipsis", no_wrap=True),
    )  # fmt: skip


async def _view(tasks: Tasks, shown: Sequence[Task]) -> Group:
    status = await tasks.status()
    table = Table(box=None, pad_edge=False, header_style="bold")
    for column in ("task", "prio", "state", "elapsed", "progress", "output"):
        table.add_column(column)
    for task in shown:
        last = ""
        if task.state is TaskState.RUNNING:
            last = (await tasks.tail(task.id, lines=1)).strip()
        _row(table, task, last)
    keys = "  ".join(f"{k} {v.running}/{v.limit}" for k, v in status.keys.items())
    header = Text.assemble(
        ("outrider ", "bold"),
        f"running {status.running}/{status.max_running} · queued {status.queued} · keys: {keys}",
    )
    return Group(header, table)


def _summary(tasks: Sequence[Task]) -> Table:
    table = Table(title="summary", header_style="bold")
    for column in ("task", "state", "exit", "duration"):
        table.add_column(column)
    for task in tasks:
        elapsed = task.elapsed
        table.add_row(
            Text(task.label or task.id), state_text(task),
            "" if task.exit_code is None else str(task.exit_code),
            format_duration(elapsed) if elapsed is not None else "-",
        )  # fmt: skip
    return table


@dataclass(frozen=True, slots=True)
class Plan:
    """How a batch runs: each task's spec and timeout, the runners beyond shell, key limits."""

    specs: Sequence[tuple[outrider.TaskSpec, float | None]]
    runners: Sequence[Runner] = ()
    limits: Mapping[str, int] = field(default_factory=dict)
    """Limits the batch's own `[limits]` override (its agents' keys)."""
    executors: Mapping[str, Executor] = field(default_factory=dict)
    """Where tasks of a kind run (built-in agents: in worker processes, as in the daemon)."""

    @classmethod
    def of(cls, batch: Batch, file: Path | None = None, config: Path | None = None) -> Plan:
        """The plan of `batch`; agent tasks get the agents defined beside `file` (else here).

        Raises:
            BatchError: A task names an unknown agent (or gives a built-in one `env`).
            UserError: The config is invalid.
        """
        if not batch.has_agents:
            return cls(batch.specs({}))
        from .._agents._definitions import load_agents
        from .._daemon._config import load_config
        from .._daemon._runners import agent_limits, executors, runners

        found = load_agents(file.resolve().parent if file else None)
        for problem in (*found.warnings, *found.errors):
            warn(f"agents: {problem}")
        settings = load_config(config)
        specs = batch.specs(found.agents, source=file or "batch")
        composed = runners(settings, found.agents)
        pools = executors(settings, found.agents, composed)
        return cls(specs, composed, agent_limits(found.agents), pools)


async def _submit_all(
    orch: outrider.Orchestrator, batch: Batch, plan: Plan, *, session: str, group: str
) -> list[str]:
    ids: dict[str, str] = {}
    for item, (spec, timeout) in zip(batch.task, plan.specs, strict=True):
        task = await orch.session(session).submit(
            spec, priority=item.priority, keys=item.keys, timeout=timeout,
            ttl=item.ttl, max_attempts=item.max_attempts, label=item.label,
            description=item.description, group=group,
            depends_on=[ids[d] for d in item.depends_on])  # fmt: skip
        ids[item.label] = task.id
    return list(ids.values())


async def watch(
    tasks: Tasks,
    ids: Sequence[str],
    shown: Callable[[], Awaitable[list[Task]]],
    *,
    console: Console,
) -> list[Task]:
    """Draw `shown()` live until the tasks `ids` ended, then a summary; returns `shown()`."""
    with Live(console=console, refresh_per_second=8, transient=False) as live:
        done = False
        while not done:
            live.update(await _view(tasks, await shown()))
            with anyio.move_on_after(_REFRESH):
                await tasks.wait(ids)
                done = True
        live.update(await _view(tasks, await shown()))
    found = await shown()
    console.print()
    console.print(_summary(found))
    return found


async def run_batch(
    batch: Batch,
    *,
    db: Path,
    session: str,
    console: Console,
    as_json: bool,
    plan: Plan | None = None,
    group: str = "batch",
    max_running: int = 8,
) -> list[Task]:
    """Submit the batch as one group, show it live until every task ends, return the records.

    `plan` says how it runs (default: `Plan.of(batch)`, for a batch of shell tasks); with
    `as_json` nothing is drawn on `console`.

    Cancellation: cancelling the caller stops every task (the orchestrator shuts down).
    """
    plan = plan or Plan.of(batch)
    own = {k: v for k, v in batch.limits.items() if k != "max_running"}
    settings = outrider.Settings(
        limits={**plan.limits, **own}, shutdown_grace=0.0,
        max_running=batch.limits.get("max_running", max_running),
    )  # fmt: skip
    async with outrider.Orchestrator(
        db, settings, runners=plan.runners, executors=plan.executors
    ) as orch:
        try:
            ids = await _submit_all(orch, batch, plan, session=session, group=group)
            if as_json:
                return await orch.session(session).wait(ids)
            mine = orch.session(session)
            return await watch(mine, ids, lambda: mine.list(group=group), console=console)
        except BaseException:
            with anyio.CancelScope(shield=True):
                await orch.cancel_session(session)
            raise


def run_with_signals(fn: Callable[[], Awaitable[T]]) -> T | None:
    """Run `fn` under anyio; SIGINT/SIGTERM/SIGHUP cancel it cleanly (returns None then)."""
    outcome: list[T] = []

    async def main() -> None:
        async with anyio.create_task_group() as tg:

            async def watch() -> None:
                await next_stop_signal()
                tg.cancel_scope.cancel()

            async def work() -> None:
                outcome.append(await fn())
                tg.cancel_scope.cancel()

            tg.start_soon(watch)
            tg.start_soon(work)

    anyio.run(main)
    return outcome[0] if outcome else None


def execute(
    batch: Batch,
    *,
    db: Path | None,
    session: str,
    as_json: bool,
    plan: Plan | None = None,
) -> None:
    """Run a batch in this process, which contains its tasks' processes (see `_procs`).

    It becomes their subreaper, and a guardian stops them should it be killed; on the way out
    it stops any orphan they left. A temporary store is named, so a rerun can `--db` it.
    """
    console = Console(stderr=as_json)
    if db is None:
        db = Path(tempfile.mkdtemp(prefix="outrider-run-")) / "outrider.db"
        warn(f"store {db}")
    group = f"batch-{new_task_id()[2:12].lower()}"
    contain_this_process()

    async def go() -> list[Task] | OutriderError:
        try:
            with pidfd_child_watcher():
                return await run_batch(
                    batch, db=db, session=session, console=console, as_json=as_json, plan=plan,
                    group=group,
                )  # fmt: skip
        except OutriderError as exc:  # the store is held by another process, or unwritable
            return exc

    try:
        tasks = run_with_signals(go)
    finally:
        stop_orphans(_ORPHAN_GRACE)
    if isinstance(tasks, OutriderError):
        fail(str(tasks))
    if tasks is None:
        console.print("[yellow]interrupted: every task was stopped[/]")
        raise typer.Exit(EXIT_INTERRUPTED)
    if as_json:
        print(json.dumps({"tasks": [t.model_dump(mode="json") for t in tasks]}, indent=2))
    raise typer.Exit(0 if all(t.state is TaskState.SUCCEEDED for t in tasks) else 1)


async def demo_in_daemon(console: Console) -> tuple[list[Task], str] | OutriderError:
    """The demo's tasks in the daemon, shown live; the records and a dashboard link."""
    from .._client import AsyncClient
    from ._demo import SESSION, prepare, submit_demo, this_run

    def said(url: str) -> None:
        console.print(f"[dim]started the outrider daemon at {url}[/]")

    cwd = prepare()
    try:
        async with AsyncClient(session=SESSION, autostart=True, on_autostart=said) as tasks:
            top = await submit_demo(tasks, cwd, f"demo-{new_task_id()[2:12].lower()}")
            roots = {t.id for t in top}

            async def shown() -> list[Task]:
                return this_run(await tasks.list(limit=500), roots)

            try:
                found = await watch(tasks, sorted(roots), shown, console=console)
            except BaseException:
                with anyio.CancelScope(shield=True):
                    for task_id in roots:
                        await tasks.cancel(task_id)  # and the tasks it started
                raise
            return found, await tasks.dashboard_login()
    except OutriderError as exc:
        return exc


def demo_end(console: Console, tasks: list[Task], url: str, *, show: bool) -> None:
    """What the demo did, its agent team's answer and cost, and the dashboard link."""
    lead = next((t for t in tasks if t.kind == "agent" and t.parent is None), None)
    if lead is not None:
        answer = lead.result if lead.error is None else lead.error.message
        console.print(f"\n[bold]The agent team[/] (scripted model) {lead.state.value}:")
        console.print(Text(str(answer)))
        used = [t.usage for t in tasks if t.usage is not None]
        tokens = sum(u.input_tokens + u.output_tokens for u in used)
        cost = sum(u.cost or 0.0 for u in used)
        console.print(
            f"{tokens} tokens, ${cost:.4f} at the scripted model's made-up price, over "
            f"{sum(t.kind == 'agent' for t in tasks)} agents and {len(tasks)} tasks."
        )
    console.print(
        f"\n[bold]Dashboard[/]: {url}\n(the link works once, for 5 minutes; "
        "`outrider dashboard --open` gives a new one)",
        soft_wrap=True,
    )
    if show:
        import webbrowser

        webbrowser.open(url)
    console.print("\nNext: describe your own jobs in a TOML file and `outrider run FILE`.")
