"""The daemon's commands: `serve` and `mcp` run it or bridge to it; the rest ask it.

Client commands start the daemon in the background when it is not running (and say so on
stderr); `stop` never starts one. Only the daemon's owner (the local token) may change limits
or stop it; another principal gets the refusal and exit 2.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path  # noqa: TC003  # typer reads the annotations at run time
from typing import TYPE_CHECKING, Annotated

import typer

from .._collector import settle_collector
from .._types._errors import OutriderError, UserError
from ._options import ConfigOpt, JsonOpt, SessionOpt, fail

if TYPE_CHECKING:
    from .._client import Client
    from .._daemon._cluster import Head

__all__ = [
    "dashboard",
    "limit",
    "mcp",
    "open_dashboard",
    "serve",
    "status",
    "stop",
]


def serve(
    host: Annotated[str | None, typer.Option(help="Interface to bind (default 127.0.0.1).")] = None,
    port: Annotated[
        int | None, typer.Option(help="Port (default 8765; 0 picks a free one).")
    ] = None,
    db: Annotated[Path | None, typer.Option(help="Store file.")] = None,
    config: ConfigOpt = None,
    allow_remote: Annotated[
        bool, typer.Option(help="Allow a non-loopback --host (the token is still required).")
    ] = False,
    cluster: Annotated[
        bool, typer.Option(help="Start a Ray head beside it; tasks run on the cluster's nodes.")
    ] = False,
    bind: Annotated[
        str, typer.Option(help="With --cluster: the address the cluster listens on.")
    ] = "127.0.0.1",
    cluster_port: Annotated[int, typer.Option(help="With --cluster: the head's port.")] = 6380,
    slots: Annotated[
        int | None,
        typer.Option(min=0, help="With --cluster: attempts this machine runs (default: CPUs)."),
    ] = None,
    ready_fd: Annotated[int | None, typer.Option(hidden=True)] = None,
) -> None:
    """Run the daemon: one orchestrator behind HTTP, SSE and MCP, until SIGTERM or `stop`."""
    import anyio

    from .._daemon._config import load_config
    from .._daemon._serve import serve as run_serve

    try:
        settings = load_config(config, host=host, port=port, db=db)
    except UserError as exc:
        fail(str(exc))
    head = _start_head(bind, cluster_port, slots) if cluster else None
    if head is not None:
        settings = settings.model_copy(update={"cluster": head.address})

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

    from .._asynclib import pidfd_child_watcher
    from ..runners._procs import contain_this_process, stop_orphans

    async def main() -> None:
        with pidfd_child_watcher():
            await run_serve(settings, allow_remote=allow_remote, on_ready=ready)

    contain_this_process()  # the daemon reaps its tasks' orphans; a guardian outlives a crash
    try:
        anyio.run(main)
    except OutriderError as exc:
        fail(str(exc))
    finally:
        stop_orphans(settings.shutdown_grace)
        if head is not None:
            head.stop()


def _start_head(bind: str, port: int, slots: int | None) -> Head:
    """The cluster's head, its join line printed; it dies with the daemon (see `_cluster`)."""
    from .._daemon._cluster import Head
    from .._paths import data_dir

    try:
        head = Head.start(data_dir(), bind=bind, port=port,
                          slots=os.cpu_count() or 1 if slots is None else slots)  # fmt: skip
    except UserError as exc:
        fail(str(exc))
    print(f"outrider cluster head on {head.address}; on each other machine run:\n  "
          f"{head.join_command()}", file=sys.stderr, flush=True)  # fmt: skip
    return head


def mcp(
    session: Annotated[
        str | None,
        typer.Option(
            help="Session name (default: the host window's own, else one per bridge process)."
        ),
    ] = None,
    tools: Annotated[
        str | None, typer.Option(help="Comma-separated tools to offer (default from config).")
    ] = None,
    config: ConfigOpt = None,
) -> None:
    """Serve MCP over stdio for an agent host, relayed to the daemon (started if needed)."""
    from .._hosts._bridge import main as bridge

    raise typer.Exit(bridge(session, tools, config))


def status(session: SessionOpt = "default", json_output: JsonOpt = False) -> None:
    """The daemon's load: tasks per state, per key running/limit/queued, and its cluster's nodes."""
    from rich.table import Table
    from rich.text import Text

    from ._output import answering, client, out

    with client(session) as daemon, answering():
        snapshot = daemon.status()
    if json_output:
        print(snapshot.model_dump_json(indent=2))
        return
    out.print(f"daemon {daemon.url}", markup=False)
    out.print(
        f"running {snapshot.running}/{snapshot.max_running}, "
        f"queued {snapshot.queued}/{snapshot.max_queued}"
        + (f" — held: {snapshot.held}" if snapshot.held else ""),
        markup=False,
    )
    counts = ", ".join(f"{s} {n}" for s, n in snapshot.states.items() if n and s.terminal)
    if counts:
        out.print(f"finished: {counts}")
    if snapshot.keys:
        table = Table("KEY", "RUNNING", "LIMIT", "QUEUED", box=None, pad_edge=False)
        for key, load in snapshot.keys.items():
            table.add_row(Text(key), str(load.running), str(load.limit), str(load.queued))
        out.print(table)
    if snapshot.nodes:
        table = Table("NODE", "ADDRESS", "RUNNING", "SLOTS", "HEALTH", "LABELS", box=None,
                      pad_edge=False)  # fmt: skip
        for node in snapshot.nodes:
            labels = ",".join(f"{k}={v}" for k, v in node.labels.items()) or "-"
            health = "alive" if node.alive else "lost"
            table.add_row(Text(node.node_id[:12]), Text(node.address), str(node.running),
                          str(node.slots), health, Text(labels))  # fmt: skip
        out.print(table)


def limit(
    key: Annotated[
        str, typer.Argument(help="The concurrency key: shell, agent:NAME, …", show_default=False)
    ],
    value: Annotated[
        int, typer.Argument(min=1, metavar="N", help="Tasks of the key that may run at once.")
    ],
    session: SessionOpt = "default",
    json_output: JsonOpt = False,
) -> None:
    """Change a key's limit on the running daemon until it restarts (the daemon's owner only)."""
    from ._output import answering, client, out, print_json

    with client(session) as daemon, answering():
        load = daemon.set_limit(key, value)
    if json_output:
        print_json(load)
    else:
        out.print(
            f"{key}: running {load.running}, limit {load.limit}, queued {load.queued}",
            markup=False,
        )


def open_dashboard(daemon: Client, *, show: bool) -> str:
    """A one-time login link to the dashboard, opened in a browser if `show`."""
    from ._output import answering, err

    with answering():
        url = daemon.dashboard_login()
    if show:
        import webbrowser

        if not webbrowser.open(url):
            err.print("no browser found here: open the link yourself")
    return url


def dashboard(
    open_browser: Annotated[
        bool, typer.Option("--open", help="Open the link in the default browser.")
    ] = False,
    session: SessionOpt = "default",
) -> None:
    """Print a one-time login link to the web dashboard (it works once, for 5 minutes)."""
    from ._output import client

    with client(session) as daemon:
        print(open_dashboard(daemon, show=open_browser))


def stop() -> None:
    """Stop the daemon gracefully (running tasks get the shutdown grace period)."""
    from .._client import Client
    from ._output import answering, err

    daemon = Client()
    try:
        daemon.health()
    except OutriderError:
        err.print("no daemon is running")
        return
    with answering():
        daemon.shutdown()
    err.print(f"stopping the daemon at {daemon.url}", markup=False)
