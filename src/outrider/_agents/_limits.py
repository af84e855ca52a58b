"""Provider rate limits: pace calls before they are made, and adapt when the provider throttles.

Per model, one `ModelLimiter`:
- Pacing: with a requests-per-minute limit, calls are sent one after another at least
  `60/rpm` seconds apart (plus 3% headroom for jitter), in arrival order, measured from the
  real send time; with a tokens-per-minute limit, a call's estimated tokens (request bytes / 4)
  reserve time the same way.
- Concurrency: at most `concurrency` calls in flight (from sending until the response's
  headers; a streamed body no longer counts). A throttle (429/529) halves it (at most
  once per second, so one burst of 429s counts once); `concurrency` successes in a row raise it by
  one, up to `max_concurrency`. Changes are reported (the daemon sets the `model:` key's limit
  from them, so fewer tasks of that model start). Calls wait for a slot in arrival order and
  each is handed one as soon as one is given back or the limit rises. A call that finds a
  slot free, no call waiting and nothing to pace takes it without a turn of the event loop
  (the locks' turns cost each agent 6-8% more CPU).
- A throttle with Retry-After pauses every call of the model until then, and, when the
  provider's rate is not configured, slows the pacing (the interval doubles; successes shrink it
  by 2% each), so throughput settles near the provider's real limit.
- A provider that states its limits in response headers (OpenAI's `x-ratelimit-limit-requests`
  and `-tokens`, Anthropic's `anthropic-ratelimit-requests-limit` and `-tokens-limit`, per
  minute) is paced by them from its first answer on, as if they were configured; configured
  limits win over stated ones.

`LimitedTransport` puts every HTTP call of a provider client through the limiter of the model
named in its JSON body and retries there: throttles up to `throttle_retries` times honouring
Retry-After (else exponential backoff with jitter), 5xx and connection errors up to
`error_retries` times. What retries do not fix is returned or raised to the SDK as is, so the
task ends with the real error.
"""

from __future__ import annotations

import json
import math
import random
import time
from collections import deque
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING

import anyio
import httpx2
from pydantic import BaseModel, ConfigDict, Field

if TYPE_CHECKING:
    from collections.abc import Callable

    from .._executors._protocol import CallLimiter

__all__ = ["LimitedTransport", "ModelLimiter", "RateLimit"]

_THROTTLE = frozenset({429, 529})
_RETRY_5XX = frozenset({500, 502, 503, 504})


class RateLimit(BaseModel):
    """A model's rate limits."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    rpm: float | None = Field(default=None, gt=0)
    tpm: float | None = Field(default=None, gt=0)


class ModelLimiter:
    """Paces and bounds the calls of one model (see the module doc)."""

    def __init__(
        self,
        name: str,
        limit: RateLimit,
        *,
        max_concurrency: int = 8,
        on_concurrency: Callable[[int], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.name = name
        self.limit = limit
        self.max_concurrency = max_concurrency
        self.concurrency = max_concurrency
        self.in_flight = 0
        self.throttles = 0
        self._on_concurrency = on_concurrency
        self._clock = clock
        self.rpm = limit.rpm
        """The requests-per-minute pacing: configured, else stated by the provider, else None."""
        self.tpm = limit.tpm
        """The tokens-per-minute pacing, the same way."""
        self._interval = _interval(limit.rpm) if limit.rpm else 0.0
        self._last_sent = float("-inf")
        self._pacing = anyio.Lock()
        self._next_token_slot = 0.0
        self._paused_until = 0.0
        self._last_cut = float("-inf")
        self._successes = 0
        self._waiting: deque[anyio.Event] = deque()
        """Calls waiting for a slot, in arrival order: each is handed one by `_hand_out`."""

    async def acquire(self, tokens: int = 0) -> None:
        """Wait for a free call slot and this call's turn in the pacing."""
        now = self._clock()
        free = self.in_flight < self.concurrency and not self._waiting
        if (
            free
            and not self._pacing.locked()
            and max(self._paused_until, self._last_sent + self._interval) <= now
            and not (self.tpm and tokens)
        ):  # a free slot, nobody ahead of it and nothing to pace: taken at once
            self.in_flight += 1
            self._last_sent = now
            return
        if free:
            self.in_flight += 1
        else:
            handed = anyio.Event()
            self._waiting.append(handed)
            try:
                await handed.wait()
            except BaseException:
                if handed.is_set():  # handed a slot as it was stopped: give it back
                    self._give_back()
                else:
                    self._waiting.remove(handed)
                raise
        try:
            async with self._pacing:  # FIFO: calls are sent in arrival order
                now = self._clock()
                start = max(now, self._paused_until, self._last_sent + self._interval)
                if self.tpm and tokens:
                    start = max(start, self._next_token_slot)
                    self._next_token_slot = max(self._next_token_slot, start) + (
                        tokens * 60 / self.tpm
                    )
                if start > now:
                    await anyio.sleep(start - now)
                # Spacing is measured from the real send time, so a late wake-up never lets
                # the next call follow too closely.
                self._last_sent = self._clock()
        except BaseException:
            self._give_back()
            raise

    async def release(self) -> None:
        """End a call started by `acquire`."""
        self._give_back()

    def _give_back(self) -> None:
        self.in_flight -= 1
        self._hand_out()

    def _hand_out(self) -> None:
        """Hand free slots to the calls waiting longest."""
        while self._waiting and self.in_flight < self.concurrency:
            self.in_flight += 1
            self._waiting.popleft().set()

    def stated(self, rpm: float | None, tpm: float | None) -> None:
        """The provider stated its per-minute limits (response headers); pace by them."""
        if rpm and rpm > 0 and not self.limit.rpm and rpm != self.rpm:
            self.rpm = rpm
            self._interval = _interval(rpm)
        if tpm and tpm > 0 and not self.limit.tpm:
            self.tpm = tpm

    def succeeded(self) -> None:
        """A call went through."""
        if not self.rpm and self._interval:
            self._interval *= 0.98
            if self._interval < 1e-3:
                self._interval = 0.0
        self._successes += 1
        if self._successes >= self.concurrency and self.concurrency < self.max_concurrency:
            self._successes = 0
            self._set_concurrency(self.concurrency + 1)

    def throttled(self, retry_after: float | None) -> None:
        """The provider answered 429/529."""
        self.throttles += 1
        now = self._clock()
        if retry_after:
            self._paused_until = max(self._paused_until, now + retry_after)
        if now - self._last_cut < 1.0:
            return
        self._last_cut = now
        self._successes = 0
        if not self.rpm:
            self._interval = max(self._interval * 2, 0.05)
        self._set_concurrency(max(1, self.concurrency // 2))

    def _set_concurrency(self, value: int) -> None:
        if value == self.concurrency:
            return
        self.concurrency = value
        self._hand_out()  # a raised limit serves the calls waiting at once
        if self._on_concurrency is not None:
            self._on_concurrency(value)


def _interval(rpm: float) -> float:
    # 3% headroom: requests paced exactly at the limit arrive a little early or late.
    return 60.0 / rpm * 1.03


def stated_limits(response: httpx2.Response) -> tuple[float | None, float | None]:
    """The per-minute request and token limits a provider states in its response headers."""

    def number(*names: str) -> float | None:
        for name in names:
            try:
                return float(response.headers[name])
            except (KeyError, ValueError):
                continue
        return None

    return (
        number("x-ratelimit-limit-requests", "anthropic-ratelimit-requests-limit"),
        number("x-ratelimit-limit-tokens", "anthropic-ratelimit-tokens-limit"),
    )


def retry_after(response: httpx2.Response) -> float | None:
    """The wait a response asks for (`retry-after-ms`, `retry-after` seconds or date)."""
    ms = response.headers.get("retry-after-ms")
    if ms:
        try:
            return max(0.0, float(ms) / 1000)
        except ValueError:
            pass
    value = response.headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        try:
            return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
        except (TypeError, ValueError):
            return None


def _backoff(attempt: int, rng: random.Random) -> float:
    return float(min(30.0, 0.5 * 2**attempt) * (0.5 + rng.random()))


class LimitedTransport(httpx2.AsyncBaseTransport):
    """An HTTP transport that paces, bounds and retries calls per model (see the module doc)."""

    def __init__(
        self,
        inner: httpx2.AsyncBaseTransport,
        limiter_for: Callable[[str], CallLimiter],
        *,
        throttle_retries: int = 8,
        error_retries: int = 3,
        rng: random.Random | None = None,
    ) -> None:
        self._inner = inner
        self._limiter_for = limiter_for
        self.throttle_retries = throttle_retries
        self.error_retries = error_retries
        self._rng = rng or random.Random()

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        body = await request.aread()
        try:
            model = str(json.loads(body).get("model") or "")
        except (ValueError, AttributeError):
            model = ""
        if not model:
            return await self._inner.handle_async_request(request)
        limiter = self._limiter_for(model)
        tokens = math.ceil(len(body) / 4)
        throttles = errors = 0
        while True:
            await limiter.acquire(tokens)
            try:
                response = await self._inner.handle_async_request(request)
            except (httpx2.ConnectError, httpx2.ConnectTimeout, httpx2.RemoteProtocolError):
                await limiter.release()
                if errors >= self.error_retries:
                    raise
                errors += 1
                await anyio.sleep(_backoff(errors - 1, self._rng) / 2)
                continue
            except BaseException:
                await limiter.release()
                raise
            await limiter.release()
            limiter.stated(*stated_limits(response))
            status = response.status_code
            if status in _THROTTLE and throttles < self.throttle_retries:
                wait = retry_after(response)
                limiter.throttled(wait)
                await response.aclose()
                throttles += 1
                if wait is None:
                    await anyio.sleep(_backoff(throttles - 1, self._rng))
                else:
                    await anyio.sleep(wait * (1 + 0.1 * self._rng.random()))
                continue
            if status in _RETRY_5XX and errors < self.error_retries:
                await response.aclose()
                errors += 1
                await anyio.sleep(_backoff(errors - 1, self._rng))
                continue
            if status < 400:
                limiter.succeeded()
            return response

    async def aclose(self) -> None:
        await self._inner.aclose()
