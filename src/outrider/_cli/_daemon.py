"""CLI commands that run or talk to the daemon.

`serve`, `mcp`, `submit`, `ps`, `show`, `logs`, `wait`, `cancel`, `status`, `stop`. Client
commands start the daemon in the background when it is not running (and say so on stderr).
Exit codes as `outrider run`: 0 every task succeeded, 1 some did not (or are still running
after `--timeout`), 2 bad input or no daemon, 130 interrupted.
"""

from __future__ import annotations

import contextlib
import gc
import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, NoReturn

import anyio
import typer
from pydantic import ValidationError
from rich.console import Console
from rich.table import Table

from .._agents._transcript import render_transcript
from .._client import AsyncClient, Client
from .._errors import OutriderError, TaskNotFound, UserError
from .._logging import format_duration
from .._models import HandlerSpec, ShellSpec, Task, TaskState
from .._notices import MARKS

if TYPE_CHECKING:
    from collections.abc import Iterator, Sequence

__all__ = ["register"]

_err = Console(stderr=True, highlight=False)
_out = Console(highlight=False)
SessionOpt = Annotated[
    str,
    typer.Option(envvar="OUTRIDER_SESSION", help="Session to act in (env OUTRIDER_SESSION)."),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON instead of text.")]


def _fail(message: str, code: int = 2) -> NoReturn:
    _err.print(f"[red]error:[/] {message}", soft_wrap=True)
    raise typer.Exit(code)


def _client(session: str) -> Client:
    def said(url: str) -> None:
        _err.print(f"[dim]started the outrider daemon at {url}[/]")

    return Client(session=session, autostart=True, on_autostart=said)


def _state_text(task: Task) -> str:
    color = {
        TaskState.SUCCEEDED: "green", TaskState.FAILED: "red", TaskState.CANCELLED: "yellow",
        TaskState.TIMED_OUT: "red", TaskState.RUNNING: "cyan", TaskState.QUEUED: "dim",
    }[task.state]  # fmt: skip
    return f"[{color}]{MARKS[task.state]} {task.state}[/]"


def _table(tasks: Sequence[Task]) -> Table:
    table = Table(box=None, pad_edge=False)
    table.add_column("ID", no_wrap=True, min_width=20)
    table.add_column("STATE", no_wrap=True, min_width=11)
    table.add_column("TIME", no_wrap=True)
    table.add_column("LABEL", no_wrap=True, overflow="ellipsis", max_width=40)
    table.add_column("NOTE", overflow="fold")
    for task in tasks:
        elapsed = task.elapsed
        note = ""
        if task.state is TaskState.QUEUED:
            note = f"#{task.position} " if task.position else ""
            note += task.waiting_for or ""
        elif task.error is not None:
            note = task.error.message
        elif task.exit_code not in (None, 0):
            note = f"exit {task.exit_code}"
        table.add_row(
            task.id, _state_text(task), format_duration(elapsed) if elapsed is not None else "",
            task.label or task.name, note,
        )  # fmt: skip
    return table


@contextlib.contextmanager
def _answering() -> Iterator[None]:
    """Client errors as exit codes: unknown id 1, other errors 2, Ctrl-C 130."""
    try:
        yield
    except TaskNotFound as exc:
        _fail(str(exc), 1)
    except OutriderError as exc:
        _fail(str(exc))
    except KeyboardInterrupt:
        raise typer.Exit(130) from None


def settle_collector() -> None:
    """Tune CPython's cyclic garbage collector for the daemon, a long-running process.

    What exists once the daemon is up (modules, schemas, the app) lives as long as the process,
    so it is frozen out of every later collection, and young garbage is collected less often.
    With the defaults, 1,000 submits to an idle engine spent 100-115 ms in the collector (13
    middle passes of about 2 ms and a full one of about 60 ms among them); with these settings
    27-35 ms and no full pass (`docs/PERFORMANCE.md`). Only the daemon does this; a
    program that embeds outrider keeps its own settings.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(5_000, 20, 20)


def _exit_for(tasks: Sequence[Task]) -> NoReturn:
    raise typer.Exit(0 if all(t.state is TaskState.SUCCEEDED for t in tasks) else 1)


def serve(
    host: Annotated[str | None, typer.Option(help="Interface to bind (default 127.0.0.1).")] = None,
    port: Annotated[
        int | None, typer.Option(help="Port (default 8765; 0 picks a free one).")
    ] = None,
    db: Annotated[Path | None, typer.Option(help="Store file.")] = None,
    config: Annotated[
        Path | None, typer.Option(help="Config file (default: outrider.toml).")
    ] = None,
    allow_remote: Annotated[
        bool, typer.Option(help="Allow a non-loopback --host (the token is still required).")
    ] = False,
    ready_fd: Annotated[int | None, typer.Option(hidden=True)] = None,
) -> None:
    """Run the daemon: one orchestrator behind HTTP, SSE and MCP, until SIGTERM or `stop`."""
    from .._daemon._config import load_config
    from .._daemon._serve import serve as run_serve

    try:
        settings = load_config(config, host=host, port=port, db=db)
    except UserError as exc:
        _fail(str(exc))

    def ready(url: str) -> None:
        print(
            f"outrider daemon on {url} (store {settings.db_path}; token in "
            f"{settings.local_token_file}); MCP at {url}/mcp",
            file=sys.stderr,
            flush=True,
        )
        settle_collector()
        if ready_fd is not None:
            os.write(ready_fd, f"{url}\n".encode())
            os.close(ready_fd)

    from ..runners._procs import contain_this_process, stop_orphans

    contain_this_process()  # the daemon reaps its tasks' orphans; a guardian outlives a crash
    try:
        anyio.run(lambda: run_serve(settings, allow_remote=allow_remote, on_ready=ready))
    except OutriderError as exc:
        _fail(str(exc))
    finally:
        stop_orphans(settings.shutdown_grace)


def mcp(
    session: Annotated[
        str | None,
        typer.Option(help="Session name; notices survive reconnects under it (default: new)."),
    ] = None,
    tools: Annotated[
        str | None, typer.Option(help="Comma-separated tools to offer (default from config).")
    ] = None,
    config: Annotated[Path | None, typer.Option(help="Config file.")] = None,
) -> None:
    """Serve MCP over stdio for an agent host, backed by the daemon (started if needed)."""
    from .._agents._definitions import AgentCatalog
    from .._daemon._auth import check_session_name
    from .._daemon._config import load_config
    from .._ids import new_task_id
    from .._mcp._server import build_server
    from .._mcp._tools import NoticeFeed

    try:
        settings = load_config(config, mcp_tools=tools.split(",") if tools else None)
        name = check_session_name(session) if session else f"mcp-{new_task_id()[2:14].lower()}"
    except UserError as exc:
        _fail(str(exc))

    async def main() -> None:
        def said(url: str) -> None:
            print(f"outrider: started the daemon at {url}", file=sys.stderr)

        async with AsyncClient(session=name, autostart=True, on_autostart=said) as client:

            async def resolve(_: object) -> AsyncClient:
                return client

            feed = NoticeFeed()
            server, _ = build_server(
                resolve, tools=settings.mcp_tools, max_wait=settings.mcp_wait,
                agents=AgentCatalog(), feed=feed, cwd=str(Path.cwd()),
            )  # fmt: skip
            try:
                async with anyio.create_task_group() as tg:
                    tg.start_soon(feed.follow, client)
                    await server.run_stdio_async()
                    tg.cancel_scope.cancel()
            finally:
                with anyio.CancelScope(shield=True), contextlib.suppress(OutriderError):
                    await feed.flush(client, now=True)

    anyio.run(main)


def submit(
    command: Annotated[
        list[str] | None, typer.Argument(help="The shell command (quote it, or put it after --).")
    ] = None,
    handler: Annotated[str | None, typer.Option(help="Call this registered handler.")] = None,
    params: Annotated[str | None, typer.Option(help="The handler's params as JSON.")] = None,
    label: Annotated[str | None, typer.Option(help="A short name.")] = None,
    description: Annotated[str | None, typer.Option(help="What it is for.")] = None,
    priority: Annotated[int, typer.Option(min=0, max=10, help="0-10, 10 first.")] = 5,
    timeout: Annotated[float | None, typer.Option(help="Seconds it may run.")] = None,
    key: Annotated[list[str] | None, typer.Option(help="Concurrency key (repeatable).")] = None,
    group: Annotated[str | None, typer.Option(help="Batch name.")] = None,
    cwd: Annotated[Path | None, typer.Option(help="Working directory (default: here).")] = None,
    wait: Annotated[bool, typer.Option("--wait", help="Wait for it and print its result.")] = False,
    session: SessionOpt = "default",
    json_output: JsonOpt = False,
) -> None:
    """Submit a shell command (or a handler call) to the daemon; prints the task id."""
    try:
        if handler is not None:
            if command:
                _fail("Give a command or --handler, not both.")
            spec: ShellSpec | HandlerSpec = HandlerSpec(
                handler=handler, params=json.loads(params) if params else {}
            )
        else:
            if not command:
                _fail("Give the command to run, e.g. `outrider submit -- make test`.")
            text = command[0] if len(command) == 1 else " ".join(command)
            spec = ShellSpec(command=text, cwd=str((cwd or Path.cwd()).resolve()))
    except json.JSONDecodeError as exc:
        _fail(f"Invalid `--params`: not JSON ({exc.msg}).")
    except ValidationError as exc:
        _fail(f"Invalid task: {exc.errors()[0]['msg']}.")
    with _client(session) as client:
        try:
            task = client.submit(
                spec, label=label, description=description, priority=priority, timeout=timeout,
                keys=key, group=group,
            )  # fmt: skip
            if wait:
                (task,) = client.wait([task.id])
        except OutriderError as exc:
            _fail(str(exc))
    if json_output:
        print(task.model_dump_json(indent=2))
    elif wait:
        _print_detail(task, None)
    else:
        print(task.id)
    if wait:
        _exit_for([task])


def ps(
    all_tasks: Annotated[bool, typer.Option("--all", "-a", help="Include finished tasks.")] = False,
    group: Annotated[str | None, typer.Option(help="Only this batch.")] = None,
    session: SessionOpt = "default",
    json_output: JsonOpt = False,
) -> None:
    """List the session's tasks: unfinished ones, or every one with --all."""
    states = None if all_tasks else [TaskState.QUEUED.value, TaskState.RUNNING.value]
    with _client(session) as client, _answering():
        tasks = client.list(states=states, group=group)
    if json_output:
        print(json.dumps([t.model_dump(mode="json") for t in tasks], indent=2))
    elif not tasks:
        _err.print("no tasks" + ("" if all_tasks else " running or queued (--all for every one)"))
    else:
        _out.print(_table(tasks))


def _print_detail(task: Task, output: str | None) -> None:
    rows = [
        ("id", task.id), ("state", _state_text(task)), ("label", task.label or task.name),
        ("description", task.description), ("group", task.group),
        ("priority", str(task.priority)), ("keys", ", ".join(task.keys)),
        ("attempt", f"{task.attempt}/{task.max_attempts}"),
        ("created", task.created_at.isoformat(timespec="seconds")),
        ("elapsed", format_duration(task.elapsed) if task.elapsed is not None else None),
        ("exit code", None if task.exit_code is None else str(task.exit_code)),
        ("error", task.error.message if task.error else None),
        ("position", None if task.position is None else str(task.position)),
        ("waiting for", task.waiting_for),
    ]  # fmt: skip
    for name, value in rows:
        if value:
            _out.print(f"[bold]{name:>12}[/]  {value}")
    if task.result is not None:
        text = task.result if isinstance(task.result, str) else json.dumps(task.result, indent=2)
        _out.print("[bold]      result[/]")
        _out.print(text.rstrip(), markup=False)
    if output:
        _out.print("[bold]      output[/] (last lines)")
        _out.print(output.rstrip(), markup=False)


def show(
    task_id: Annotated[str, typer.Argument(help="The task id.")],
    session: SessionOpt = "default",
    json_output: JsonOpt = False,
    transcript: Annotated[
        bool, typer.Option("--transcript", help="An agent task's whole conversation.")
    ] = False,
) -> None:
    """Show one task: state, timings, result or error, and the end of its output."""
    with _client(session) as client, _answering():
        task = client.get(task_id)
        output = client.tail(task_id, lines=20) if task.state is not TaskState.SUCCEEDED else None
        doc = client.transcript(task_id) if transcript else None
    if json_output:
        data = task.model_dump(mode="json")
        if transcript:
            data["transcript"] = doc
        print(json.dumps(data, indent=2))
        return
    _print_detail(task, output)
    if transcript:
        if isinstance(doc, dict):
            print(render_transcript(doc, clip=None))
        else:
            print("(no transcript: only agent tasks have one)")


def logs(
    task_id: Annotated[str, typer.Argument(help="The task id.")],
    follow: Annotated[bool, typer.Option("--follow", "-f", help="Follow live output.")] = False,
    lines: Annotated[int, typer.Option("--lines", "-n", min=1, help="Lines to show.")] = 100,
    session: SessionOpt = "default",
) -> None:
    """Print the end of a task's output; with -f, follow it until the task ends."""
    with _client(session) as client, _answering():
        task = client.get(task_id)
        if not follow or task.state.terminal:
            sys.stdout.write(client.tail(task_id, lines=lines))
            return
        for event in client.events():
            if event.task_id != task_id:
                continue
            if event.type == "task.output":
                sys.stdout.write(str(event.data.get("text", "")))
                sys.stdout.flush()
            elif event.type in ("task.succeeded", "task.failed", "task.cancelled",
                                "task.timed_out"):  # fmt: skip
                _err.print(f"[dim]{task_id} {event.type.removeprefix('task.')}[/]")
                return


def wait(
    task_ids: Annotated[list[str], typer.Argument(help="Task ids.")],
    any_: Annotated[bool, typer.Option("--any", help="Return when any has finished.")] = False,
    timeout: Annotated[float | None, typer.Option(help="Give up after this many seconds.")] = None,
    session: SessionOpt = "default",
    json_output: JsonOpt = False,
) -> None:
    """Wait for tasks to finish; exit 0 if all succeeded, 1 otherwise."""
    with _client(session) as client, _answering():
        tasks = client.wait(task_ids, timeout=timeout, return_when="any" if any_ else "all")
    if json_output:
        print(json.dumps([t.model_dump(mode="json") for t in tasks], indent=2))
    else:
        _out.print(_table(tasks))
    if any_:
        raise typer.Exit(0 if any(t.state is TaskState.SUCCEEDED for t in tasks) else 1)
    _exit_for(tasks)


def cancel(
    task_ids: Annotated[list[str], typer.Argument(help="Task ids.")],
    session: SessionOpt = "default",
) -> None:
    """Cancel tasks (their process trees are stopped); idempotent."""
    code = 0
    with _client(session) as client:
        for task_id in task_ids:
            try:
                task = client.cancel(task_id)
            except TaskNotFound as exc:
                _err.print(f"[red]error:[/] {exc}")
                code = 1
                continue
            except OutriderError as exc:
                _fail(str(exc))
            _out.print(f"{task.id} {_state_text(task)}")
    raise typer.Exit(code)


def status(session: SessionOpt = "default", json_output: JsonOpt = False) -> None:
    """The daemon's load: tasks per state, and per key running/limit/queued."""
    with _client(session) as client, _answering():
        snapshot = client.status()
    if json_output:
        print(snapshot.model_dump_json(indent=2))
        return
    _out.print(f"daemon {client.url}")
    _out.print(
        f"running {snapshot.running}/{snapshot.max_running}, "
        f"queued {snapshot.queued}/{snapshot.max_queued}"
        + (f" — held: {snapshot.held}" if snapshot.held else "")
    )
    counts = ", ".join(f"{s} {n}" for s, n in snapshot.states.items() if n and s.terminal)
    if counts:
        _out.print(f"finished: {counts}")
    if snapshot.keys:
        table = Table("KEY", "RUNNING", "LIMIT", "QUEUED", box=None, pad_edge=False)
        for key, load in snapshot.keys.items():
            table.add_row(key, str(load.running), str(load.limit), str(load.queued))
        _out.print(table)


def stop() -> None:
    """Stop the daemon gracefully (running tasks get the shutdown grace period)."""
    client = Client()
    try:
        client.health()
    except OutriderError:
        _err.print("no daemon is running")
        return
    try:
        client.shutdown()
    except OutriderError as exc:
        _fail(str(exc))
    _err.print(f"stopping the daemon at {client.url}")


def register(app: typer.Typer) -> None:
    """Add the daemon commands to the CLI."""
    for command in (serve, mcp, submit, ps, show, logs, wait, cancel, status, stop):
        app.command()(command)
