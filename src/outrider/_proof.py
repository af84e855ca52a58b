"""How a client knows it talks to the daemon that holds its token, before it sends the token.

The client sends a fresh random challenge and the token's id (a hash that reveals nothing of
the token) to `/health`; the daemon answers the HMAC-SHA256, keyed by that token, of the
challenge and the port it serves on. Only a daemon holding the token can answer, and an
answer relayed from another port does not match. A program that took over a dead daemon's
address (a stale `daemon.json`) gets nothing.
"""

from __future__ import annotations

import hashlib
import hmac
import os

__all__ = ["challenge", "proof", "token_id", "valid"]


def token_id(token: str) -> str:
    """A name for a token that reveals nothing of it (the start of its SHA-256)."""
    return hashlib.sha256(token.encode()).hexdigest()[:32]


def challenge() -> str:
    """A fresh random challenge (128 bits, hex)."""
    return os.urandom(16).hex()  # what `secrets.token_hex` does, without importing `random`


def proof(token: str, nonce: str, port: int) -> str:
    """The answer to `nonce` of a daemon holding `token` and serving on `port`."""
    message = f"outrider-daemon|{nonce}|{port}".encode()
    return hmac.new(token.encode(), message, hashlib.sha256).hexdigest()


def valid(answer: object, token: str, nonce: str, port: int) -> bool:
    """Whether `answer` is the right proof (compared in constant time)."""
    return isinstance(answer, str) and hmac.compare_digest(answer, proof(token, nonce, port))
