"""The processes of tasks, found on this machine by the marker each task's processes carry."""

from __future__ import annotations

from typing import TYPE_CHECKING

import psutil

if TYPE_CHECKING:
    from collections.abc import Iterable

__all__ = ["task_processes"]


def task_processes(task_ids: Iterable[str]) -> list[psutil.Process]:
    """The live processes on this machine started by any of these tasks (any attempt).

    Every process a task starts carries `OUTRIDER_TASK` (its id and attempt) in its environment;
    a process this user may not read, or that ends while it is read, is passed over.
    """
    wanted = tuple(task_ids)
    found = []
    for process in psutil.process_iter():
        try:
            if process.environ().get("OUTRIDER_TASK", "").startswith(wanted):
                found.append(process)
        except psutil.Error:
            continue
    return found
