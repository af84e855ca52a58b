"""The commands for writing tasks' worktrees: `worktrees`, `merge`, `discard`.

Each acts in one session (`--session`, `$OUTRIDER_SESSION`). `merge` ends with 0 when the work
reached the checkout (or, with `--how patch`, the patch was written), 1 when it did not
(conflicts, or uncommitted changes in the way: nothing was changed), 2 on any other error.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from .._types._worktrees import MERGE_HOWS
from ._options import JsonOpt, SessionOpt, error
from ._output import answering, client, err, out, print_json

if TYPE_CHECKING:
    from .._types._worktrees import MergeHow, Worktree

__all__ = ["discard", "merge", "worktrees"]

TaskId = Annotated[str, typer.Argument(help="An ended writing task's id.", show_default=False)]
_MAX_WALK = 200_000


def _how(value: str) -> str:
    if value not in MERGE_HOWS:
        raise typer.BadParameter(f"{value!r} is not a way to merge; give one of "
                                 f"{', '.join(MERGE_HOWS)}.")  # fmt: skip
    return value


def merge(
    task_id: TaskId,
    how: Annotated[
        str,
        typer.Option(
            callback=_how,
            help="apply (change the files, nothing staged), squash (one commit), cherry-pick "
            "(its commits) or patch (only write the .patch).",
        ),
    ] = "apply",
    session: SessionOpt = "default",
    json_output: JsonOpt = False,
) -> None:
    """Bring an ended writing task's work from its worktree into its checkout."""
    chosen: MergeHow = how  # type: ignore[assignment]  # checked by `_how`
    with client(session) as daemon, answering():
        done = daemon.merge_task(task_id, how=chosen)
    if json_output:
        print_json(done)
    elif done.merged or done.how == "patch":
        out.print(done.message, soft_wrap=True)
    else:
        error(done.message)
    raise typer.Exit(0 if done.merged or done.how == "patch" else 1)


def discard(task_id: TaskId, session: SessionOpt = "default", json_output: JsonOpt = False) -> None:
    """Throw away an ended writing task's work: its worktree and branch (a .patch stays)."""
    with client(session) as daemon, answering():
        worktree = daemon.discard_task(task_id)
    if json_output:
        print_json(worktree)
    else:
        out.print(f"discarded {worktree.branch}; its changes stay in {worktree.patch}")


def worktrees(
    prune: Annotated[
        bool,
        typer.Option(
            "--prune",
            help="First remove what the cleanup rules allow: worktrees merged, discarded or "
            "unchanged, and the folders of kept work past the retention (branches stay).",
        ),
    ] = False,
    session: SessionOpt = "default",
    json_output: JsonOpt = False,
) -> None:
    """List the session's worktrees: state, changes, merge preview, age, size and folder."""
    with client(session) as daemon, answering():
        if prune:
            swept = daemon.prune_worktrees()
            err.print(f"pruned {len(swept)} worktree{'s' if len(swept) != 1 else ''}")
        found = daemon.worktrees()
    if json_output:
        print_json(found)
        return
    if not found:
        err.print("no worktrees")
        return
    out.print(worktrees_table(found, now=time.time()))


def worktrees_table(found: list[Worktree], *, now: float) -> Table:
    """One row per worktree."""
    table = Table(box=None, pad_edge=False)
    for name in ("TASK", "STATE", "CHANGES", "MERGE", "AGE", "SIZE", "PATH"):
        table.add_column(name, no_wrap=name in ("TASK", "PATH"))
    for w in found:
        added = sum(f.added or 0 for f in w.files)
        removed = sum(f.removed or 0 for f in w.files)
        changes = f"{len(w.files)} files +{added} -{removed}" if w.files else "-"
        merge_text = w.preview.text if w.preview is not None else "-"
        path = Path(w.path)
        size = _size(path) if w.state in ("active", "kept") else None
        table.add_row(
            w.task_id, w.state, changes, merge_text, _age(now - w.created_at.timestamp()),
            "-" if size is None else _bytes(size), w.path if path.exists() else "(removed)",
        )  # fmt: skip
    return table


def _size(path: Path) -> int | None:
    """Bytes under `path` (its `.git` link file included), bounded; None if it is gone."""
    if not path.is_dir():
        return None
    total, seen = 0, 0
    for folder, _, files in os.walk(path):
        for name in files:
            seen += 1
            if seen > _MAX_WALK:
                return total
            try:
                total += os.lstat(os.path.join(folder, name)).st_size
            except OSError:
                continue
    return total


def _bytes(size: int) -> str:
    if size < 1000:
        return f"{size} B"
    value = float(size)
    for unit in ("kB", "MB", "GB"):
        value /= 1000
        if value < 1000 or unit == "GB":
            break
    return f"{value:.1f} {unit}"


def _age(seconds: float) -> str:
    seconds = max(0.0, seconds)
    for unit, span in (("d", 86_400), ("h", 3_600), ("m", 60)):
        if seconds >= span:
            return f"{seconds / span:.0f}{unit}"
    return f"{seconds:.0f}s"
