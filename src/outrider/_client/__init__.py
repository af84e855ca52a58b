"""Clients of the daemon: `AsyncClient` (hand-written), `Client` (generated from it).

The names are imported when first used: the fast commands (`outrider mcp`, the hooks) import
`_local` and `_light` from this package without the HTTP stack the clients need.
"""

from __future__ import annotations

import importlib

TYPE_CHECKING = False  # as `typing`'s: the commands that must start fast do not import typing
if TYPE_CHECKING:
    from typing import Any

    from ._async import AsyncClient as AsyncClient
    from ._local import start_daemon as start_daemon
    from ._sync import Client as Client

__all__ = ["AsyncClient", "Client", "start_daemon"]

_WHERE = {"AsyncClient": "._async", "Client": "._sync", "start_daemon": "._local"}


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(_WHERE[name], __name__), name)
    globals()[name] = value
    return value
