"""The `outrider` logger: one line per lifecycle event, quiet unless asked.

Library use stays silent (a `NullHandler`) unless the program configures logging or the
environment says `OUTRIDER_LOG=info|debug|warning`.
"""

from __future__ import annotations

import logging
import os

__all__ = ["configure_from_env", "format_duration", "logger"]

logger = logging.getLogger("outrider")
logger.addHandler(logging.NullHandler())
_configured = False


def configure_from_env() -> None:
    """Send outrider's log lines to stderr at the level named by `OUTRIDER_LOG`, once."""
    global _configured
    level_name = os.environ.get("OUTRIDER_LOG", "").strip().upper()
    if _configured or not level_name:
        return
    level = logging.getLevelNamesMapping().get(level_name)
    if level is None:
        return
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s outrider %(levelname)s %(message)s"))
    logger.addHandler(handler)
    logger.setLevel(level)
    _configured = True


def format_duration(seconds: float) -> str:
    """`2m 30s`, `1h 02m`, `4.2s`, `120ms`."""
    if seconds < 1:
        return f"{seconds * 1000:.0f}ms"
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes}m {secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes:02d}m"
