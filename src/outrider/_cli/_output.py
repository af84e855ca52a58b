"""What the client commands print, and how they end.

Imported inside the commands that print tasks: rich and the client are not loaded for
`--help` or a plain `submit`.

Invariants:
- Text that comes from a task or a caller (labels, messages, output) is never read as rich
  markup: a `[[task]]` in a label or an error prints as it is.
- A command ends with one exit code, taken from `outrider._errors.WIRE_ERRORS` for an error
  (`exit_code_of`): 0 success, 1 some task did not succeed or an id is unknown, 2 bad input,
  refused or no daemon, 130 interrupted.
- Errors go to stderr as one line `error: …`; results go to stdout (JSON with `--json`).
"""

from __future__ import annotations

import contextlib
import json
from typing import TYPE_CHECKING, NoReturn

import typer
from pydantic import BaseModel
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from .._client import Client
from .._core._notices import MARKS
from .._logging import format_duration
from .._types._errors import OutriderError, exit_code_of
from .._types._task import Task, TaskState
from ._options import EXIT_INTERRUPTED, fail

if TYPE_CHECKING:
    from collections.abc import Iterator, Sequence

__all__ = [
    "answering",
    "client",
    "err",
    "exit_for",
    "out",
    "print_detail",
    "print_json",
    "state_text",
    "tasks_table",
]

err = Console(stderr=True, highlight=False)
out = Console(highlight=False)
_COLOURS = {
    TaskState.SUCCEEDED: "green", TaskState.FAILED: "red", TaskState.CANCELLED: "yellow",
    TaskState.TIMED_OUT: "red", TaskState.RUNNING: "cyan", TaskState.QUEUED: "dim",
}  # fmt: skip


@contextlib.contextmanager
def answering() -> Iterator[None]:
    """End the command on an outrider error (its `exit_code_of`) or Ctrl-C (130)."""
    try:
        yield
    except OutriderError as exc:
        fail(str(exc), exit_code_of(exc))
    except KeyboardInterrupt:
        raise typer.Exit(EXIT_INTERRUPTED) from None


def client(session: str) -> Client:
    """A client of the local daemon in `session`, starting the daemon if it is not running."""

    def said(url: str) -> None:
        err.print(f"[dim]started the outrider daemon at {escape(url)}[/]")

    return Client(session=session, autostart=True, on_autostart=said)


def state_text(task: Task) -> Text:
    """The task's state with its mark, coloured."""
    return Text(f"{MARKS[task.state]} {task.state}", style=_COLOURS[task.state])


def _note(task: Task) -> str:
    if task.state is TaskState.QUEUED:
        return (f"#{task.position} " if task.position else "") + (task.waiting_for or "")
    if task.error is not None:
        return task.error.message
    if task.exit_code not in (None, 0):
        return f"exit {task.exit_code}"
    return ""


def tasks_table(tasks: Sequence[Task]) -> Table:
    """One row per task: id, state, time, label, and a note (queue place, error, exit code)."""
    table = Table(box=None, pad_edge=False)
    table.add_column("ID", no_wrap=True, min_width=20)
    table.add_column("STATE", no_wrap=True, min_width=11)
    table.add_column("TIME", no_wrap=True)
    table.add_column("LABEL", no_wrap=True, overflow="ellipsis", max_width=40)
    table.add_column("NOTE", overflow="fold")
    for task in tasks:
        elapsed = task.elapsed
        table.add_row(
            task.id, state_text(task), format_duration(elapsed) if elapsed is not None else "",
            Text(task.label or task.name), Text(_note(task)),
        )  # fmt: skip
    return table


def print_detail(task: Task, output: str | None) -> None:
    """One task, a field a line, then its result and the end of its output."""
    rows: list[tuple[str, str | Text | None]] = [
        ("id", task.id), ("state", state_text(task)), ("label", task.label or task.name),
        ("description", task.description), ("group", task.group),
        ("priority", str(task.priority)), ("keys", ", ".join(task.keys)),
        ("attempt", f"{task.attempt}/{task.max_attempts}"),
        ("retry of", task.retry_of),
        ("created", task.created_at.isoformat(timespec="seconds")),
        ("elapsed", format_duration(task.elapsed) if task.elapsed is not None else None),
        ("exit code", None if task.exit_code is None else str(task.exit_code)),
        ("error", task.error.message if task.error else None),
        ("position", None if task.position is None else str(task.position)),
        ("waiting for", task.waiting_for),
    ]  # fmt: skip
    for name, value in rows:
        if value:
            out.print(Text.assemble((f"{name:>12}", "bold"), "  ", value), soft_wrap=True)
    if task.result is not None:
        text = task.result if isinstance(task.result, str) else json.dumps(task.result, indent=2)
        out.print(Text(f"{'result':>12}", style="bold"))
        out.print(text.rstrip(), markup=False)
    if output:
        out.print(Text.assemble((f"{'output':>12}", "bold"), " (last lines)"))
        out.print(output.rstrip(), markup=False)


def print_json(value: BaseModel | Sequence[BaseModel]) -> None:
    """Print a record, or a list of records, as indented JSON on stdout."""
    if isinstance(value, BaseModel):
        print(value.model_dump_json(indent=2))
    else:
        print(json.dumps([item.model_dump(mode="json") for item in value], indent=2))


def exit_for(tasks: Sequence[Task]) -> NoReturn:
    """End with 0 if every task succeeded, else 1."""
    raise typer.Exit(0 if all(t.state is TaskState.SUCCEEDED for t in tasks) else 1)
