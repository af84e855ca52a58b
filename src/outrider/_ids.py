"""Task ids: `t_` + 10 base-32 characters of milliseconds + 8 random ones; sortable by time."""

from __future__ import annotations

import secrets
import time

__all__ = ["new_task_id"]

_ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"  # Crockford base 32, lower case


def _encode(value: int, width: int) -> str:
    chars = []
    for _ in range(width):
        value, digit = divmod(value, 32)
        chars.append(_ALPHABET[digit])
    return "".join(reversed(chars))


def new_task_id() -> str:
    """A new task id, e.g. `t_01jd8k3m2q7x4fz9hw2c`."""
    return "t_" + _encode(time.time_ns() // 1_000_000, 10) + _encode(secrets.randbits(40), 8)
