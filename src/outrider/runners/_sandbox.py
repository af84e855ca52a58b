"""The sandbox of a process-backed task of a principal that does not own the daemon.

Such a task runs as the daemon's user, so the kernel alone would let it read what that user can:
the daemon's store (every principal's tasks, their environments and output), the token files,
and `/proc/<daemon>/environ` (the daemon's API keys). The sandbox is bubblewrap
(`bwrap`) with the whole file system bound as it is, except:

- each hidden directory (the data dir, the store's folder entries) is an empty tmpfs, and each
  hidden file (a token file elsewhere) reads as empty;
- a new PID namespace with its own `/proc`: no process outside the task is visible, so neither
  the daemon's environment nor another task's is readable, nor can they be signalled;
- `--die-with-parent`: the sandbox's processes die with it.

What it does not contain: the task can still read and write every other file the daemon's user
can, and reach the network. A principal that must not should get a daemon of its own, under a
user of its own. Without `bwrap` such a task fails at once, naming the fix.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ._protocol import RunFailure

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence
    from pathlib import Path

__all__ = ["Sandbox"]


@dataclass(frozen=True, slots=True)
class Sandbox:
    """Hides `paths` from the tasks of every session not starting with `trusted_prefix`.

    Args:
        paths: Directories (mounted over by an empty tmpfs) and files (read as empty).
        trusted_prefix: Sessions of the daemon's owner (`local/`), which run unsandboxed.
    """

    paths: tuple[Path, ...]
    trusted_prefix: str = "local/"

    def applies_to(self, session: str) -> bool:
        """Whether the tasks of `session` run sandboxed."""
        return not session.startswith(self.trusted_prefix)

    def wrap(self, argv: Sequence[str], env: Mapping[str, str]) -> list[str]:
        """`argv` run inside the sandbox.

        Raises:
            RunFailure: `bwrap` is missing, or the program is not on the task's PATH.
        """
        bwrap = shutil.which("bwrap")
        if bwrap is None:
            raise RunFailure(
                "Tasks of this principal run in a bubblewrap sandbox that hides the daemon's "
                "credentials, and `bwrap` is not installed; install bubblewrap (Debian: "
                "`apt install bubblewrap`).",
                type="sandbox",
            )
        program = shutil.which(argv[0], path=env.get("PATH"))
        if program is None:
            raise RunFailure(
                f"The executable {argv[0]!r} was not found; install it or fix `command`.",
                type="RunnerError",
            )
        args = [bwrap, "--dev-bind", "/", "/", "--unshare-pid", "--proc", "/proc",
                "--die-with-parent"]  # fmt: skip
        for path in self.paths:
            if path.is_dir():
                args += ["--tmpfs", str(path)]
            elif path.exists():
                args += ["--ro-bind", "/dev/null", str(path)]
        return [*args, "--", program, *argv[1:]]
