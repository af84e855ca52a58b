"""How many files a process of outrider may hold open: enough for hundreds of tasks at once.

Each running task holds a few descriptors in the process that runs it: a command's output pipe
and pidfd, its log, an agent's connection to its provider. Most systems let a process hold
1,024 (its soft limit), too few for a few hundred tasks at once, and let it raise that without
privilege up to its hard limit (often 524,288 or more).

Invariants:
- `allow_open_files` raises the soft limit to `OPEN_FILES`, or to the hard limit if that is
  lower; it never lowers it. Processes started afterwards inherit it: 65,536 rather than the
  hard limit, since some programs still close every descriptor up to their limit as they start.
- A failure for want of descriptors is told as such (`too_many_files`): the limit, and the fix.
"""

from __future__ import annotations

import errno
import resource

from .._logging import logger

__all__ = ["OPEN_FILES", "allow_open_files", "too_many_files"]

OPEN_FILES = 65_536
"""The soft limit of open files `allow_open_files` asks for (within the hard limit)."""


def allow_open_files(wanted: int = OPEN_FILES) -> int:
    """Raise this process's soft limit of open files toward `wanted`; the limit now."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(hard, wanted)
    if soft == resource.RLIM_INFINITY or soft >= target:
        return soft
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    except (OSError, ValueError) as exc:  # pragma: no cover - a kernel that caps it lower
        logger.debug("the open-files limit stays at %d: %s", soft, exc)
        return soft
    logger.debug("the open-files limit was raised from %d to %d", soft, target)
    return target


def too_many_files(exc: BaseException) -> str | None:
    """What to tell of a failure because no more files could be opened; None for any other."""
    if not isinstance(exc, OSError):
        return None
    fewer = "or run fewer tasks at once (`max_running`, `limits`)"
    if exc.errno == errno.EMFILE:
        soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
        return (
            f"Too many open files: outrider may hold {soft:,} at once (its open-files limit). "
            f"Raise the limit (`ulimit -n`; `LimitNOFILE=` for a service) {fewer}."
        )
    if exc.errno == errno.ENFILE:
        return (
            "Too many open files on this machine (its limit, `fs.file-max`, is reached). "
            f"Close other programs' files, raise `fs.file-max`, {fewer}."
        )
    return None
