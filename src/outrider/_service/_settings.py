"""`Settings`: how an orchestrator runs, declared once with one default per knob.

The embedding program passes it to `Orchestrator`; the daemon's `Config` (`outrider.toml`)
extends it with what only the daemon has (address, tokens, providers, MCP), so the same field
means the same thing, with the same default and the same validation, in both.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from .._types._errors import user_error
from .._types._task import MAX_SECONDS, Int, Number

__all__ = ["Settings"]

_DAY = 86_400.0
_Key = Annotated[str, Field(min_length=1, max_length=200)]


class Settings(BaseModel):
    """Limits, bounds and timeouts of an orchestrator (see README "The API")."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    max_running: Int = Field(default=64, ge=1)
    """Tasks running at once, over all keys."""
    limits: dict[_Key, Annotated[Int, Field(ge=1)]] = Field(default_factory=dict)
    """Per-key concurrency limits (e.g. `{"shell": 4}`)."""
    default_limit: Int = Field(default=3, ge=1)
    """The limit of a key not in `limits`."""
    max_queued: Int = Field(default=10_000, ge=1)
    """Unfinished tasks not yet running that may be stored; beyond, `QueueFull`."""
    retention: Number = Field(default=7 * _DAY, gt=0, le=MAX_SECONDS)
    """Seconds finished tasks, their events and logs are kept."""
    shutdown_grace: Number = Field(default=10.0, ge=0, le=3600)
    """Seconds closing lets running tasks finish before stopping them."""
    default_timeout: Number | None = Field(default=None, gt=0, le=MAX_SECONDS)
    """The `timeout` of a task submitted without one (None: no limit)."""
    default_ttl: Number | None = Field(default=None, gt=0, le=MAX_SECONDS)
    """The `ttl` of a task submitted without one (None: no limit)."""
    min_free_memory_mb: Number | None = Field(default=None, ge=0)
    """Process-backed tasks wait while less memory than this is free."""
    max_cpu_percent: Number | None = Field(default=None, gt=0, le=100)
    """Process-backed tasks wait while CPU use is above this."""
    retry_backoff: Number = Field(default=1.0, gt=0, le=3600)
    """The first retry's delay in seconds (doubling, with jitter)."""
    process_workers: Int | None = Field(default=None, ge=1, le=1024)
    """Size of the worker-process pool for `isolation="process"` handlers (default: CPUs)."""

    def __init__(self, **settings: object) -> None:
        """Validate the settings.

        Raises:
            UserError: A setting is invalid; the message names it, the value and what is allowed.
        """
        try:
            super().__init__(**settings)
        except ValidationError as exc:
            raise user_error(exc.errors()) from None
