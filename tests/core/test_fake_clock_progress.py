"""FakeClock moves time by at least what was asked, however small next to the current time."""

from __future__ import annotations

import asyncio
import math

import pytest

from llm_async.application.rate_limit import RateLimitConfig, RateLimitLayer
from llm_async.context import CallContext
from llm_async.infrastructure.transports.mock import MockLLMTransport
from llm_async.testing import FakeClock
from llm_async.types import build_request


@pytest.mark.parametrize("start", [0.0, 25.92, 1e6, 1.7e9])
async def test_a_sub_ulp_sleep_still_moves_time(start: float) -> None:
    clock = FakeClock(start)
    tiny = math.ulp(start) / 3 if start else 5e-324
    before = clock.now()
    await clock.sleep(tiny)
    assert clock.now() > before
    assert clock.now() - before >= tiny


@pytest.mark.parametrize("seconds", [1e-15, 1.7053025658242404e-15, 0.1, 0.3, 7.0])
def test_advance_moves_by_at_least_the_requested_time(seconds: float) -> None:
    clock = FakeClock(25.919999999999995)
    for _ in range(50):
        before = clock.now()
        clock.advance(seconds)
        assert clock.now() - before >= seconds


async def test_a_manual_sleeper_with_a_sub_ulp_deadline_wakes_on_the_next_advance() -> None:
    clock = FakeClock(1e6, auto_advance=False)
    sleeper = asyncio.create_task(clock.sleep(math.ulp(1e6) / 4))
    await asyncio.sleep(0)
    assert not sleeper.done()
    clock.advance(math.ulp(1e6))
    await asyncio.sleep(0)
    assert sleeper.done()


async def test_token_limiter_admits_every_call_on_a_fake_clock() -> None:
    # TPM 1,000 and 200-token answers: after the burst, every call waits for the bucket to
    # refill; one of those waits comes out below half an ulp of the clock's time.
    clock = FakeClock()
    layer = RateLimitLayer(MockLLMTransport(" ".join(["word"] * 200)),
                           RateLimitConfig(tokens_per_minute=1000), clock=clock)
    admitted = 0
    for _ in range(12):
        request = build_request(model="m", messages=[{"role": "user", "content": "hi"}],
                                max_tokens=200)
        await asyncio.wait_for(layer.chat(request, CallContext()), 60)
        admitted += 1
    assert admitted == 12
    # each paced call needed a handful of sleeps, not hundreds of thousands
    assert len(clock.sleeps) < 40
    await layer.aclose()
