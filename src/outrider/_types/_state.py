"""The states of a task (the standard library only: the command line's help reads them)."""

from __future__ import annotations

from enum import StrEnum

__all__ = ["TERMINAL_STATES", "TaskState"]


class TaskState(StrEnum):
    """Where a task is in its life; the values are stored verbatim."""

    QUEUED = "queued"
    """Waiting to start: for a slot, its dependencies, resources, or a retry's backoff."""
    RUNNING = "running"
    """Started and not yet ended."""
    SUCCEEDED = "succeeded"
    """Ended with a result."""
    FAILED = "failed"
    """Ended with an error (including `interrupted` by a crash or shutdown)."""
    CANCELLED = "cancelled"
    """Ended because it was cancelled, or because a task it depends on did not succeed."""
    TIMED_OUT = "timed_out"
    """Ended because its `timeout`, `ttl` or `stall_timeout` expired."""

    @property
    def terminal(self) -> bool:
        """Whether the state is final."""
        return self in TERMINAL_STATES


TERMINAL_STATES = frozenset(
    {TaskState.SUCCEEDED, TaskState.FAILED, TaskState.CANCELLED, TaskState.TIMED_OUT}
)
