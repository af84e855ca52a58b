"""Task ids: `t_` + 10 base-32 characters of milliseconds + 8 random ones; sortable by time."""

from __future__ import annotations

import base64
import secrets
import time

__all__ = ["new_task_id"]

_ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"  # Crockford base 32, lower case


_FROM_RFC4648 = bytes.maketrans(b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567", _ALPHABET.encode())


def new_task_id() -> str:
    """A new task id, e.g. `t_01jd8k3m2q7x4fz9hw2c`."""
    millis = (time.time_ns() // 1_000_000).to_bytes(10, "big")  # 80 bits; the last 50 are used
    raw = base64.b32encode(millis)[-10:] + base64.b32encode(secrets.token_bytes(5))
    return "t_" + raw.translate(_FROM_RFC4648).decode()
