"""The sandbox of the built-in agent's commands: bubblewrap on Linux.

A command runs as `bwrap … -- /bin/sh -c COMMAND` with:
- the whole filesystem mounted read-only, the workspace bind-mounted read-write over it;
- a private, empty `/tmp` and `/var/tmp`, a minimal `/dev` and a fresh `/proc`;
- masked (an empty read-only folder, or an empty file, mounted over them): the paths the
  agent's policy denies inside the workspace, outrider's data and config folders and its token
  files (`hidden`), and the usual credential stores in the home folder (`CREDENTIALS`);
- without network (a new, empty network namespace, so the host's 127.0.0.1 services are out of
  reach too) unless the policy says `network: true`; without network `/run` is empty as well;
- in a new pid namespace with `--die-with-parent`: when the shell runner stops the command, or
  the daemon dies, every process the command started dies with it.

Modes (`sandbox` in config): `required` fails an agent task that has `run_command` when
bubblewrap cannot run; `auto` (default) sandboxes where it can and says in the task's first
output line when it cannot; `off` never sandboxes and says so too. `probe()` tells whether
bubblewrap works here and, when not, how to fix it (also shown by `outrider doctor`).
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence

__all__ = ["CREDENTIALS", "SandboxMode", "SandboxStatus", "bwrap_argv", "probe"]

SandboxMode = Literal["required", "auto", "off"]

CREDENTIALS = (
    ".ssh", ".gnupg", ".aws", ".azure", ".kube", ".docker", ".netrc", ".git-credentials",
    ".pypirc", ".npmrc", ".config/gcloud", ".config/gh", ".config/hub", ".claude/.credentials.json",
    ".codex/auth.json", ".local/share/opencode/auth.json", ".config/opencode/auth.json",
    ".gemini/oauth_creds.json",
)  # fmt: skip
"""Credential stores under the home folder that commands never see."""

_SOCKETS = ("/run/docker.sock", "/var/run/docker.sock", "/run/podman/podman.sock")


@dataclass(frozen=True, slots=True)
class SandboxStatus:
    """Whether commands can be sandboxed here."""

    bwrap: str | None
    """The bubblewrap executable, when it works."""
    reason: str | None = None
    """Why not, when it does not."""
    fix: str | None = None
    """How to make it work."""

    @property
    def available(self) -> bool:
        """Whether bubblewrap runs here."""
        return self.bwrap is not None


@functools.cache
def probe(executable: str | None = None) -> SandboxStatus:
    """Whether bubblewrap can sandbox a command here (cached; runs it once, synchronously)."""
    if not sys.platform.startswith("linux"):
        return SandboxStatus(
            None, f"bubblewrap needs Linux; this is {sys.platform}", "none on this system"
        )
    found = shutil.which(executable or "bwrap")
    if found is None:
        return SandboxStatus(
            None,
            "bubblewrap (`bwrap`) is not installed",
            "install it: `apt-get install bubblewrap` (Debian, Ubuntu), `dnf install "
            "bubblewrap` (Fedora) or `pacman -S bubblewrap` (Arch)",
        )
    argv = [found, "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc", "--unshare-pid",
            "--unshare-net", "--die-with-parent", "--", "/bin/true"]  # fmt: skip
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return SandboxStatus(None, f"bubblewrap does not start: {exc}", _USERNS_FIX)
    if done.returncode != 0:
        detail = (done.stderr.strip().splitlines() or ["no error message"])[-1]
        reason = f"bubblewrap cannot create its namespaces: {detail}"
        return SandboxStatus(None, reason, _USERNS_FIX)
    return SandboxStatus(found)


_USERNS_FIX = (
    "allow unprivileged user namespaces (`sysctl -w kernel.unprivileged_userns_clone=1`; on "
    "Ubuntu 24.04+ also `sysctl -w kernel.apparmor_restrict_unprivileged_userns=0`), or run "
    "outrider where namespaces are allowed"
)


_PRIVATE = ("/tmp", "/var/tmp")
"""Folders each sandbox gets empty and of its own."""


def _inside(path: Path, folder: Path) -> bool:
    return path == folder or path.is_relative_to(folder)


def _masks(paths: Iterable[Path], workspace: Path) -> list[str]:
    """The bwrap arguments that hide each existing path (a folder or a file).

    A path inside a folder already hidden is left alone (its mask could not be mounted in the
    read-only empty folder), and so is one in the private `/tmp` or `/var/tmp` outside the
    workspace, which the sandbox does not show anyway.
    """
    args: list[str] = []
    seen: set[Path] = set()
    found: list[Path] = []
    for raw in paths:
        try:
            found.append(raw.expanduser().resolve(strict=True))
        except OSError:
            continue
    for path in sorted(found, key=lambda p: len(p.parts)):  # folders before what they hold
        private = any(_inside(path, Path(t)) for t in _PRIVATE) and not _inside(path, workspace)
        if private or any(_inside(path, s) for s in seen) or path == workspace:
            continue  # the workspace itself cannot be hidden from its own command
        seen.add(path)
        if _inside(workspace, path):
            # A folder holding the workspace (a worktree in the data dir): emptied, and left
            # writable so the workspace can be bound back into it (`bwrap_argv` binds it after).
            args += ["--tmpfs", str(path)]
        elif path.is_dir():
            args += ["--tmpfs", str(path), "--remount-ro", str(path)]
        else:
            args += ["--ro-bind", "/dev/null", str(path)]
    return args


def bwrap_argv(
    bwrap: str,
    command: str,
    *,
    workspace: Path,
    hidden: Sequence[Path],
    network: bool,
) -> list[str]:
    """The argv that runs `command` with `/bin/sh -c` in the sandbox (see the module doc)."""
    home = Path.home()
    system = ["--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc",
              "--tmpfs", "/tmp", "--tmpfs", "/var/tmp"]  # fmt: skip
    if not network:
        system += ["--tmpfs", "/run"] if os.path.isdir("/run") else []
    ws = str(workspace)
    masked = [*(home / c for c in CREDENTIALS), *hidden]
    if network:
        masked += [Path(s) for s in _SOCKETS]
    return [
        bwrap, "--die-with-parent", "--unshare-pid", "--unshare-ipc", "--unshare-uts",
        *([] if network else ["--unshare-net"]), *system,
        *_masks([p for p in masked if not _inside(p.expanduser(), workspace)], workspace),
        "--bind", ws, ws,  # then what is masked inside it (a home folder as the workspace)
        *_masks([p for p in masked if _inside(p.expanduser(), workspace)], workspace),
        "--chdir", ws, "--", "/bin/sh", "-c", command,
    ]  # fmt: skip
