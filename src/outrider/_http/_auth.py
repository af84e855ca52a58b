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

from .._logging import logger
from .._paths import tighten
from .._proof import proof, token_id
from .._types._errors import UserError

if TYPE_CHECKING:
    from pathlib import Path

    from .._daemon._config import Config

__all__ = ["LOCAL", "Tokens", "ensure_token", "read_token"]

LOCAL = "local"
"""The principal of whoever owns the daemon's data dir."""


def read_token(path: Path) -> str:
    """The token stored in `path`, which is made private (0600) if others could read it.

    Raises:
        UserError: The file is missing, unreadable, empty, or readable by others and cannot
            be made private.
    """
    try:
        token = path.read_text().strip()
    except OSError as exc:
        raise UserError(f"Cannot read the token file {path}: {exc.strerror}.") from None
    try:
        if tighten(path, 0o600):
            logger.warning("the token file %s was readable by others; it is 0600 now", path)
    except OSError as exc:
        raise UserError(
            f"The token file {path} is readable by other users and cannot be made private "
            f"({exc.strerror}); run `chmod 600 {path}` as its owner, or move it."
        ) from None
    if not token:
        raise UserError(f"The token file {path} is empty.")
    return token


def ensure_token(path: Path) -> str:
    """The token in `path`, created (0600, 256 random bits) if the file does not exist.

    Raises:
        UserError: It cannot be read or created (a read-only data dir, say).
    """
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return read_token(path)
    except OSError as exc:
        raise UserError(
            f"Cannot create the token file {path}: {exc.strerror}; make its folder writable, "
            "or set OUTRIDER_HOME to one that is."
        ) from None
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

    def prove(self, nonce: str, token_hash: str, port: int) -> str | None:
        """The proof for the token named by `token_hash` (see `outrider._proof`), if known."""
        for expected, _ in self._items:
            token = expected.decode()
            if hmac.compare_digest(token_id(token), token_hash):
                return proof(token, nonce, port)
        return None

    def mac(self, principal: str, message: bytes) -> bytes | None:
        """HMAC-SHA256 of `message` keyed by `principal`'s token (None: no such principal).

        What it signs stays valid exactly as long as the principal's token does.
        """
        for token, name in self._items:
            if name == principal:
                return hmac.new(token, message, "sha256").digest()
        return None

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
