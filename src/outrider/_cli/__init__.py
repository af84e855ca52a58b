"""The `outrider` command line (typer + rich): `run` a batch file, or the offline `demo`."""

from __future__ import annotations

import signal
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, TypeVar

import anyio
import typer
from rich.console import Console

from .. import OutriderError, Task, TaskState
from .._ids import new_task_id
from ..runners._procs import contain_this_process, stop_orphans
from . import _daemon
from ._agents import agents_app
from ._batch import Batch, BatchError, load_batch, run_batch, to_json
from ._doctor import doctor

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

__all__ = ["app", "main"]

T = TypeVar("T")
app = typer.Typer(
    no_args_is_help=True,
    add_completion=False,
    help="Run shell jobs and sub-agents in parallel, in the background, durably.",
)
_EXIT_INTERRUPTED = 130
_ORPHAN_GRACE = 2.0


def _run_with_signals(fn: Callable[[], Awaitable[T]]) -> T | None:
    """Run `fn` under anyio; SIGINT/SIGTERM/SIGHUP cancel it cleanly (returns None then)."""
    outcome: list[T] = []

    async def main() -> None:
        async with anyio.create_task_group() as tg:

            async def watch() -> None:
                with anyio.open_signal_receiver(
                    signal.SIGINT, signal.SIGTERM, signal.SIGHUP
                ) as signals:
                    async for _ in signals:
                        tg.cancel_scope.cancel()
                        return

            async def work() -> None:
                outcome.append(await fn())
                tg.cancel_scope.cancel()

            tg.start_soon(watch)
            tg.start_soon(work)

    anyio.run(main)
    return outcome[0] if outcome else None


def _execute(batch: Batch, *, db: Path | None, session: str, as_json: bool) -> None:
    """Run a batch in this process, which contains its tasks' processes (see `_procs`).

    It becomes their subreaper, and a guardian stops them should it be killed; on the way out
    it stops any orphan they left. A temporary store is named, so a rerun can `--db` it.
    """
    console = Console(stderr=as_json)
    if db is None:
        db = Path(tempfile.mkdtemp(prefix="outrider-run-")) / "outrider.db"
        Console(stderr=True).print(f"[dim]store {db}[/]", highlight=False, soft_wrap=True)
    group = f"batch-{new_task_id()[2:12].lower()}"
    contain_this_process()

    async def go() -> list[Task] | OutriderError:
        try:
            return await run_batch(
                batch, db=db, session=session, console=console, as_json=as_json, group=group
            )
        except OutriderError as exc:  # the store is held by another process, or unwritable
            return exc

    try:
        tasks = _run_with_signals(go)
    finally:
        stop_orphans(_ORPHAN_GRACE)
    if isinstance(tasks, OutriderError):
        Console(stderr=True).print(f"[red]error:[/] {tasks}", highlight=False, soft_wrap=True)
        raise typer.Exit(2)
    if tasks is None:
        console.print("[yellow]interrupted: every task was stopped[/]")
        raise typer.Exit(_EXIT_INTERRUPTED)
    if as_json:
        print(to_json(tasks))
    ok = all(t.state is TaskState.SUCCEEDED for t in tasks)
    raise typer.Exit(0 if ok else 1)


@app.command()
def run(
    file: Annotated[Path, typer.Argument(help="A TOML batch file of [[task]] tables.")],
    db: Annotated[Path | None, typer.Option(help="Store file (default: a fresh one).")] = None,
    json_output: Annotated[
        bool, typer.Option("--json", help="Print one JSON document of every task's record.")
    ] = False,
    session: Annotated[str, typer.Option(help="Session that owns the tasks.")] = "cli",
) -> None:
    """Run a batch of tasks from a TOML file with a live table; exit 1 if any did not succeed."""
    try:
        batch = load_batch(file)
    except BatchError as exc:
        Console(stderr=True).print(f"[red]error:[/] {exc}", highlight=False, soft_wrap=True)
        raise typer.Exit(2) from None
    _execute(batch, db=db, session=session, as_json=json_output)


@app.command()
def demo(
    db: Annotated[Path | None, typer.Option(help="Store file (default: a fresh one).")] = None,
) -> None:
    """Lint, test and build a bundled sample project at once, then a prioritised burst."""
    from .._demo import demo_batch

    console = Console()
    console.print(
        "[bold]outrider demo[/]: lint, test and build a sample project at the same time, "
        "package it when all three succeed, and a burst of 12 tasks at priorities 1-9 on a "
        "key limited to 2.\n"
    )
    try:
        _execute(demo_batch(), db=db, session="demo", as_json=False)
    except typer.Exit as done:
        if done.exit_code == 0:
            from .._demo import demo_agent

            demo_agent(console)
            console.print("\nNext: describe your own jobs in a TOML file and `outrider run FILE`.")
        raise


_daemon.register(app)
app.add_typer(agents_app, name="agents")
app.command()(doctor)


def main() -> None:
    """Run the `outrider` command."""
    app()
