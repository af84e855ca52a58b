"""The per-model limiter's arithmetic, with an injected clock (HTTP is in the runner tests)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import anyio
import httpx2
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from outrider._agents._limits import ModelLimiter, RateLimit, retry_after, stated_limits


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _limiter(
    limit: RateLimit, *, max_concurrency: int = 8
) -> tuple[ModelLimiter, Clock, list[int]]:
    clock, seen = Clock(), list[int]()
    limiter = ModelLimiter(
        "p/m", limit, max_concurrency=max_concurrency, on_concurrency=seen.append, clock=clock
    )
    return limiter, clock, seen


def test_a_burst_of_throttles_halves_concurrency_once_per_second() -> None:
    limiter, clock, seen = _limiter(RateLimit(rpm=600))
    limiter.throttled(None)
    limiter.throttled(2.0)  # same burst: counted, pauses, but no second cut
    assert (limiter.concurrency, limiter.throttles, seen) == (4, 2, [4])
    assert limiter._paused_until == clock.now + 2.0
    clock.now += 1.5
    limiter.throttled(None)
    assert seen == [4, 2]
    for _ in range(5):
        clock.now += 2
        limiter.throttled(None)
    assert limiter.concurrency == 1


def test_successes_win_concurrency_back_one_at_a_time_up_to_the_maximum() -> None:
    limiter, _, seen = _limiter(RateLimit(rpm=600), max_concurrency=4)
    limiter.throttled(None)
    assert limiter.concurrency == 2
    for _ in range(2 + 3 + 4 + 4):
        limiter.succeeded()
    assert seen == [2, 3, 4]
    assert limiter.concurrency == 4


def test_without_a_configured_rate_the_pace_is_learned_from_throttles() -> None:
    limiter, clock, _ = _limiter(RateLimit())
    assert limiter._interval == 0.0
    limiter.throttled(None)
    assert limiter._interval == 0.05
    clock.now += 2
    limiter.throttled(None)
    assert limiter._interval == 0.1
    limiter.succeeded()
    assert limiter._interval == pytest.approx(0.098)
    limiter._interval = 0.00101
    limiter.succeeded()
    assert limiter._interval == 0.0  # below a millisecond: no pacing at all


def test_a_configured_rate_is_kept_whatever_happens() -> None:
    limiter, _, _ = _limiter(RateLimit(rpm=60))
    assert limiter._interval == pytest.approx(1.03)
    limiter.throttled(None)
    limiter.succeeded()
    assert limiter._interval == pytest.approx(1.03)


def test_limits_a_provider_states_pace_it_unless_configured() -> None:
    limiter, clock, _ = _limiter(RateLimit())
    limiter.throttled(None)
    limiter.stated(120, 60_000)  # from the answer's headers
    assert (limiter.rpm, limiter.tpm) == (120, 60_000)
    assert limiter._interval == pytest.approx(0.515)
    clock.now += 2
    limiter.throttled(None)  # a throttle no longer slows a stated pace,
    limiter.succeeded()  # nor does a success speed it up
    assert limiter._interval == pytest.approx(0.515)
    configured, _, _ = _limiter(RateLimit(rpm=60, tpm=1000))
    configured.stated(120, 60_000)
    assert (configured.rpm, configured.tpm) == (60, 1000)
    assert configured._interval == pytest.approx(1.03)


def test_stated_limits_are_read_from_openai_and_anthropic_headers() -> None:
    openai = httpx2.Response(
        200, headers={"x-ratelimit-limit-requests": "500", "x-ratelimit-limit-tokens": "30000"}
    )
    anthropic = httpx2.Response(
        429, headers={"anthropic-ratelimit-requests-limit": "50",
                      "anthropic-ratelimit-tokens-limit": "bogus"},
    )  # fmt: skip
    assert stated_limits(openai) == (500.0, 30_000.0)
    assert stated_limits(anthropic) == (50.0, None)
    assert stated_limits(httpx2.Response(200)) == (None, None)


async def test_tokens_per_minute_reserve_time_for_each_call() -> None:
    limiter, clock, _ = _limiter(RateLimit(tpm=6_000_000))  # 100,000 tokens a second
    await limiter.acquire(tokens=100)
    assert limiter._next_token_slot == pytest.approx(clock.now + 0.001)
    await limiter.release()
    clock.now += 10
    await limiter.acquire(tokens=50)
    assert limiter._next_token_slot == pytest.approx(clock.now + 0.0005)
    await limiter.release()
    assert limiter.in_flight == 0


async def test_a_free_slot_is_taken_and_given_back_without_a_turn_of_the_loop() -> None:
    limiter, _, _ = _limiter(RateLimit(), max_concurrency=2)
    others_ran = anyio.Event()
    async with anyio.create_task_group() as tg:
        tg.start_soon(_set, others_ran)  # runs at the first turn the loop gets
        await limiter.acquire()
        await limiter.release()
        assert not others_ran.is_set()
        await others_ran.wait()
    assert limiter.in_flight == 0


async def test_a_call_stopped_as_it_waits_or_as_it_is_handed_a_slot_holds_none() -> None:
    limiter, _, _ = _limiter(RateLimit(), max_concurrency=1)
    got: list[str] = []
    scopes: dict[str, anyio.CancelScope] = {}

    async def call(name: str) -> None:
        with anyio.CancelScope() as scopes[name]:
            await limiter.acquire()
            got.append(name)

    await limiter.acquire()
    async with anyio.create_task_group() as tg:
        for name in ("handed", "stopped", "next"):
            tg.start_soon(call, name)
        await anyio.wait_all_tasks_blocked()
        scopes["stopped"].cancel()  # stopped while it waits: it leaves the line
        await anyio.wait_all_tasks_blocked()
        await limiter.release()  # the slot goes to the call waiting longest...
        scopes["handed"].cancel()  # ...which is stopped before it runs: it passes it on
        await anyio.wait_all_tasks_blocked()
    assert got == ["next"]
    assert limiter.in_flight == 1


async def _set(event: anyio.Event) -> None:
    event.set()


_STEP = st.one_of(
    st.tuples(st.just("call"), st.integers(0, 0)),
    st.tuples(st.just("end"), st.integers(0, 20)),
    st.tuples(st.just("throttled"), st.integers(0, 0)),
    st.tuples(st.just("succeeded"), st.integers(0, 0)),
)


@settings(max_examples=60, deadline=None)
@given(max_concurrency=st.integers(1, 4), steps=st.lists(_STEP, max_size=40))
def test_calls_get_slots_in_arrival_order_never_beyond_the_limit(
    max_concurrency: int, steps: list[tuple[str, int]]
) -> None:
    """Whatever calls come and go and however the limit moves: a call gets a slot only while
    fewer than the limit are in flight, in the order the calls came, and no call waits while
    a slot is free."""

    async def scenario() -> None:
        limiter, clock, _ = _limiter(RateLimit(), max_concurrency=max_concurrency)
        granted: list[int] = []
        holding: list[int] = []
        arrived = 0

        async def call(number: int) -> None:
            await limiter.acquire()
            assert limiter.in_flight <= limiter.concurrency
            granted.append(number)
            holding.append(number)

        async with anyio.create_task_group() as tg:
            for kind, index in steps:
                if kind == "call":
                    tg.start_soon(call, arrived)
                    arrived += 1
                elif kind == "end" and holding:
                    holding.pop(index % len(holding))
                    await limiter.release()
                elif kind == "throttled":
                    clock.now += 1.1  # a new burst: it halves the limit
                    limiter.throttled(None)
                    limiter._paused_until = limiter._interval = 0.0  # pacing is not under test
                elif kind == "succeeded":
                    limiter.succeeded()
                    limiter._interval = 0.0
                await anyio.wait_all_tasks_blocked()
                assert granted == sorted(granted) == list(range(len(granted)))
                assert limiter.in_flight == len(holding)
                waiting = arrived - len(granted)
                assert not waiting or limiter.in_flight >= limiter.concurrency
            tg.cancel_scope.cancel()

    anyio.run(scenario)


def _response(**headers: str) -> httpx2.Response:
    return httpx2.Response(429, headers=headers)


def test_retry_after_in_every_form() -> None:
    assert retry_after(_response(**{"retry-after-ms": "1500"})) == 1.5
    assert retry_after(_response(**{"retry-after-ms": "soon", "retry-after": "3"})) == 3.0
    assert retry_after(_response(**{"retry-after": "-4"})) == 0.0
    when = format_datetime(datetime.now(UTC) + timedelta(seconds=30), usegmt=True)
    assert 25 < (retry_after(_response(**{"retry-after": when})) or 0) <= 30
    assert retry_after(_response(**{"retry-after": "not a date"})) is None
    assert retry_after(_response()) is None
