"""`outrider worker` and `outrider nodes`: the machines of a cluster (`cluster` extra).

`outrider serve --cluster` starts the Ray head beside the daemon and prints the line that joins
another machine; that line is `outrider worker --join HOST:PORT --token TOKEN`, which runs a
node there until SIGTERM or Ctrl-C. `outrider nodes` lists the nodes with their slots, running
tasks, labels and health.
"""

from __future__ import annotations

import os
from pathlib import Path  # noqa: TC003  # typer reads the annotations at run time
from typing import Annotated, Any

import typer

from .._types._errors import OutriderError, UserError
from ._options import ConfigOpt, JsonOpt, fail

__all__ = ["nodes", "parse_labels", "worker"]


def parse_labels(text: str | None) -> dict[str, str]:
    """`gpu=a100,zone=b` as a mapping.

    Raises:
        UserError: An entry is not `key=value` (the message names it).
    """
    labels: dict[str, str] = {}
    for entry in (text or "").split(","):
        if not entry.strip():
            continue
        key, sep, value = entry.partition("=")
        if not sep or not key.strip() or not value.strip():
            raise UserError(
                f"labels: {entry!r} is not key=value; give e.g. --labels gpu=a100,zone=b",
                field="labels",
            )
        labels[key.strip()] = value.strip()
    return labels


def _token(token: str | None, token_file: Path | None) -> str:
    from .._daemon._cluster import load_token

    if token_file is not None:
        return load_token(token_file)
    found = token or os.environ.get("OUTRIDER_CLUSTER_TOKEN")
    if not found:
        raise UserError(
            "give the head's token: --token TOKEN, --token-file FILE or OUTRIDER_CLUSTER_TOKEN "
            "(`outrider serve --cluster` prints it)",
            field="token",
        )
    return found


def worker(
    join: Annotated[str, typer.Option(help="The head's HOST:PORT (as `serve --cluster` says).")],
    token: Annotated[
        str | None, typer.Option(help="The cluster's token (or OUTRIDER_CLUSTER_TOKEN).")
    ] = None,
    token_file: Annotated[Path | None, typer.Option(help="A file holding the token.")] = None,
    labels: Annotated[
        str | None, typer.Option(help="Labels tasks can ask for: key=value,key=value.")
    ] = None,
    slots: Annotated[
        int | None, typer.Option(min=1, help="Attempts it runs at once (default: its CPUs).")
    ] = None,
    bind: Annotated[
        str | None, typer.Option(help="The address it listens on (default: Ray's choice).")
    ] = None,
) -> None:
    """Run a node of a cluster on this machine until SIGTERM or Ctrl-C."""
    import anyio
    import anyio.to_thread

    from .._asynclib import next_stop_signal
    from .._daemon._cluster import Node
    from .._paths import data_dir
    from ..runners._procs import contain_this_process

    contain_this_process()  # should this process be killed, its guardian stops the node
    try:
        node = Node.join(join, _token(token, token_file), folder=data_dir(), bind=bind,
                         slots=slots, labels=parse_labels(labels))  # fmt: skip
    except UserError as exc:
        fail(str(exc))
    typer.echo(f"outrider node joined {join}; Ctrl-C or SIGTERM leaves", err=True)

    async def until_stopped() -> None:
        async with anyio.create_task_group() as tg:

            async def on_signal() -> None:
                await next_stop_signal()
                tg.cancel_scope.cancel()

            tg.start_soon(on_signal)
            # Ray ending by itself (its head gone for good) ends the command too.
            await anyio.to_thread.run_sync(node.ray.process.wait, abandon_on_cancel=True)
            tg.cancel_scope.cancel()

    try:
        anyio.run(until_stopped)
    finally:
        node.stop()


def nodes(
    address: Annotated[
        str | None, typer.Option(help="The head's HOST:PORT (default: the config's `cluster`).")
    ] = None,
    config: ConfigOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """List the cluster's nodes: their slots, running tasks, labels and health.

    The running daemon says what runs where; without one (or with --address), Ray lists the
    nodes and their running tasks are not known (`-`).
    """
    import json

    rows = _from_daemon() if address is None else None
    if rows is None:
        rows = _from_ray(address, config)
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    for row in rows:
        labels = ",".join(f"{k}={v}" for k, v in row["labels"].items()) or "-"
        health = "alive" if row["alive"] else "lost"
        running = "-" if row["running"] is None else row["running"]
        typer.echo(f"{row['node_id'][:12]}  {row['address']:<15}  {running:>3}/{row['slots']:<3} "
                   f"running  {health:<5}  {labels}")  # fmt: skip


def _from_daemon() -> list[dict[str, Any]] | None:
    """The nodes the running daemon places tasks on; None if no daemon runs on a cluster."""
    from .._client import Client

    try:
        with Client(session="default") as daemon:
            found = daemon.status().nodes
    except OutriderError:
        return None
    return [n.model_dump(mode="json") for n in found] or None


def _from_ray(address: str | None, config: Path | None) -> list[dict[str, Any]]:
    import anyio

    from .._daemon._config import load_config
    from .._executors._ray import list_nodes

    try:
        settings = load_config(config)
    except UserError as exc:
        fail(str(exc))
    head = address or settings.cluster
    if head is None:
        fail("no cluster: give --address HOST:PORT, or set `cluster` in the config")
    found = anyio.run(list_nodes, head, str(settings.cluster_token_file))
    return [{**n.as_json(), "running": None} for n in found]
