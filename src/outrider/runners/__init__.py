"""The runner extension point: the protocol every task kind implements, and the built-ins."""

from __future__ import annotations

from ._protocol import RunContext as RunContext
from ._protocol import RunFailure as RunFailure
from ._protocol import Runner as Runner
from ._protocol import RunnerHost as RunnerHost
from ._protocol import RunOutcome as RunOutcome

__all__ = ("RunContext", "RunFailure", "RunOutcome", "Runner", "RunnerHost")
