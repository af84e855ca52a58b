"""A command's error or warning: one line on stderr, `error: …` (red on a terminal).

Imports nothing but `sys`, so a fast path (`_fast`) says what went wrong without loading typer.
"""

from __future__ import annotations

import sys

__all__ = ["error", "warn"]


def _say(word: str, colour: str, message: str) -> None:
    head = f"\x1b[{colour}m{word}\x1b[0m" if sys.stderr.isatty() else word
    print(f"{head} {message}", file=sys.stderr, flush=True)


def error(message: str) -> None:
    """Print `error: message` on stderr."""
    _say("error:", "31", message)


def warn(message: str) -> None:
    """Print `warning: message` on stderr."""
    _say("warning:", "33", message)
