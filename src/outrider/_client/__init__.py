"""Clients of the daemon: `AsyncClient` (hand-written), `Client` (generated from it)."""

from __future__ import annotations

from ._async import AsyncClient as AsyncClient
from ._local import start_daemon as start_daemon
from ._sync import Client as Client

__all__ = ["AsyncClient", "Client", "start_daemon"]
