"""Bearer tokens and the principals they stand for.

The local principal's token is created on the daemon's first start (0600, in the data dir) and
read by local clients. Other principals come from `[principals.NAME] token_file = ...`. Tokens
are compared in constant time; a principal acts only in its own sessions, which the daemon
keeps apart by storing them as `principal/session`.
"""

from __future__ import annotations

import hmac
import os
import secrets
from typing import TYPE_CHECKING

from .._errors import UserError

if TYPE_CHECKING:
    from pathlib import Path

    from ._config import Config

__all__ = ["LOCAL", "Tokens", "ensure_token", "read_token"]

LOCAL = "local"
"""The principal of whoever owns the daemon's data dir."""


def read_token(path: Path) -> str:
    """The token stored in `path`.

    Raises:
        UserError: The file is missing, unreadable or empty.
    """
    try:
        token = path.read_text().strip()
    except OSError as exc:
        raise UserError(f"Cannot read the token file {path}: {exc.strerror}.") from None
    if not token:
        raise UserError(f"The token file {path} is empty.")
    return token


def ensure_token(path: Path) -> str:
    """The token in `path`, created (0600, 256 random bits) if the file does not exist."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return read_token(path)
    token = secrets.token_urlsafe(32)
    with os.fdopen(fd, "w") as out:
        out.write(token + "\n")
    return token


class Tokens:
    """Maps bearer tokens to principals."""

    def __init__(self, by_principal: dict[str, str]) -> None:
        self._items = [(token.encode(), principal) for principal, token in by_principal.items()]

    @classmethod
    def from_config(cls, config: Config) -> Tokens:
        """The local token (created if needed) and every configured principal's."""
        tokens = {LOCAL: ensure_token(config.local_token_file)}
        for name, principal in config.principals.items():
            tokens[name] = read_token(principal.token_file.expanduser())
        return cls(tokens)

    def principal(self, token: str | None) -> str | None:
        """The principal `token` belongs to, or None."""
        if not token:
            return None
        given = token.encode()
        found = None
        for expected, principal in self._items:
            if hmac.compare_digest(given, expected):
                found = principal
        return found


def check_session_name(name: str) -> str:
    """`name` if it is a valid session name, else a UserError naming the rule."""
    if not (0 < len(name) <= 64) or not all(c.isalnum() or c in "._:-" for c in name):
        raise UserError(
            f"Invalid session name {name!r}: use 1-64 letters, digits and . _ : -.",
            field="session",
        )
    return name
