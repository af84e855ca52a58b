"""Where outrider keeps its files: the per-user data and config directories."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["config_dir", "daemon_file", "data_dir", "token_file"]


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
