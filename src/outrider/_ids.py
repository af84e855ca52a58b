"""Task ids: `t_` + 10 base-32 characters of milliseconds + 8 random ones; sortable by time."""

from __future__ import annotations

import os
import time

__all__ = ["new_task_id"]

_ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"  # Crockford base 32, lower case
_PAIRS = [a + b for a in _ALPHABET for b in _ALPHABET]
"""Every two-character string, indexed by the 10 bits it encodes."""


def new_task_id() -> str:
    """A new task id, e.g. `t_01jd8k3m2q7x4fz9hw2c`."""
    millis = (time.time_ns() // 1_000_000) & (1 << 50) - 1  # 50 bits: good until year 37648
    noise = int.from_bytes(os.urandom(5), "big")  # 40 bits
    pairs = _PAIRS
    return (
        f"t_{pairs[millis >> 40]}{pairs[millis >> 30 & 1023]}{pairs[millis >> 20 & 1023]}"
        f"{pairs[millis >> 10 & 1023]}{pairs[millis & 1023]}{pairs[noise >> 30]}"
        f"{pairs[noise >> 20 & 1023]}{pairs[noise >> 10 & 1023]}{pairs[noise & 1023]}"
    )
