"""Where outrider keeps its files, and how they are kept private.

Everything outrider writes holds tasks' commands, environments, output or credentials, so its
directories are 0700 and its files 0600, whatever the umask; an existing one with looser modes
is tightened (an `OSError` says when it cannot be, e.g. another user owns it).
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

__all__ = [
    "config_dir",
    "find_config_file",
    "daemon_file",
    "data_dir",
    "open_private",
    "private_dir",
    "tighten",
    "token_file",
]


def tighten(path: Path, mode: int) -> bool:
    """Take group and other access away from `path` if it has any; whether it had.

    Raises:
        OSError: It cannot be changed (another user owns it, a read-only disk).
    """
    current = stat.S_IMODE(path.stat().st_mode)
    if not current & 0o077:
        return False
    os.chmod(path, mode)
    return True


def private_dir(path: Path) -> Path:
    """`path` as a directory only its owner may enter: created 0700, tightened if looser.

    Raises:
        OSError: It cannot be created or tightened.
    """
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    tighten(path, 0o700)
    return path


def open_private(path: Path, flags: int) -> int:
    """`os.open(path, flags)` creating it 0600 and tightening it if it exists looser."""
    fd = os.open(path, flags, 0o600)
    if stat.S_IMODE(os.fstat(fd).st_mode) & 0o077:
        os.fchmod(fd, 0o600)
    return fd


def data_dir() -> Path:
    """`$OUTRIDER_HOME`, else `$XDG_DATA_HOME/outrider` (default `~/.local/share/outrider`)."""
    home = os.environ.get("OUTRIDER_HOME")
    if home:
        return Path(home)
    data = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(data) / "outrider"


def config_dir() -> Path:
    """`$OUTRIDER_HOME`, else `$XDG_CONFIG_HOME/outrider` (default `~/.config/outrider`)."""
    home = os.environ.get("OUTRIDER_HOME")
    if home:
        return Path(home)
    config = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(config) / "outrider"


def token_file() -> Path:
    """The local principal's bearer token (created 0600 by the daemon's first start)."""
    return data_dir() / "token"


def daemon_file() -> Path:
    """Where a running daemon records its URL and pid."""
    return data_dir() / "daemon.json"


def find_config_file(explicit: Path | None = None) -> Path | None:
    """The config file in effect: `explicit`, else `./outrider.toml`, else the user's."""
    if explicit is not None:
        return explicit
    for candidate in (Path.cwd() / "outrider.toml", config_dir() / "outrider.toml"):
        if candidate.is_file():
            return candidate
    return None
