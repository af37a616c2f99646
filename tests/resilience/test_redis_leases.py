"""Shared breaker state that cannot wedge: half-open probe slots are leases that expire, and
every key written to Redis expires. Real redis-server, real worker processes, SIGKILL."""

from __future__ import annotations

import asyncio
import signal
import sys
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest

from llm_async import FakeClock
from llm_async.application.circuit_breaker import CircuitBreakerConfig
from llm_async.application.rate_limit import BucketLimits
from llm_async.errors import CircuitBreakerOpenError, OverloadedError, ServerError, root_cause
from llm_async.infrastructure.redis_state import RedisBucketStore, RedisCircuitBreaker

pytestmark = pytest.mark.redis

CFG = CircuitBreakerConfig(failure_threshold=3, success_threshold=1, timeout=10.0, jitter=0.0,
                           half_open_max_calls=1)
LEASE = 30.0

#: A worker process: takes the half-open probe of breaker "svc" at time ARGV[3], says so,
#: then hangs in its call until it is killed.
WORKER = """
import asyncio, sys
from llm_async import FakeClock
from llm_async.application.circuit_breaker import CircuitBreakerConfig
from llm_async.infrastructure.redis_state import RedisCircuitBreaker

async def main() -> None:
    cfg = CircuitBreakerConfig(failure_threshold=3, success_threshold=1, timeout=10.0,
                               jitter=0.0, half_open_max_calls=1)
    breaker = RedisCircuitBreaker("svc", cfg, url=sys.argv[1], prefix=sys.argv[2],
                                  clock=FakeClock(start=float(sys.argv[3])), probe_lease=30.0)
    permit = await breaker.acquire_async()
    print("probe" if permit.probe else "call", flush=True)
    await asyncio.sleep(3600)

asyncio.run(main())
"""


@pytest.fixture
async def connection(redis_url: str) -> AsyncIterator[Any]:
    import redis.asyncio as aioredis

    client = aioredis.from_url(redis_url)
    yield client
    await client.aclose()


@pytest.fixture
def prefix() -> str:
    return f"lease-{uuid.uuid4().hex[:12]}"


async def _open(breaker: RedisCircuitBreaker) -> None:
    for status in (500, 502, 529):
        permit = await breaker.acquire_async()
        error = OverloadedError("busy", status=529) if status == 529 else \
            ServerError(f"HTTP {status}", status=status)
        await permit.record_async(error)


async def test_a_prober_cancelled_during_acquire_frees_its_slot_within_the_lease(
        connection: Any, prefix: str) -> None:
    clock = FakeClock(start=1000.0)
    breaker = RedisCircuitBreaker("svc", CFG, redis=connection, prefix=prefix, clock=clock,
                                  probe_lease=LEASE)
    await _open(breaker)
    clock.advance(10.0)
    # The acquire script runs in Redis, then the caller is cancelled before it sees the reply:
    # the probe slot is taken and no permit exists to give it back.
    script = breaker._acquire_script

    async def cancelled_after_running(**kwargs: Any) -> Any:
        await script(**kwargs)
        raise asyncio.CancelledError

    breaker._acquire_script = cancelled_after_running
    with pytest.raises(asyncio.CancelledError):
        await breaker.acquire_async()
    breaker._acquire_script = script
    assert (await breaker.fetch_status())["half_open_in_flight"] == 1
    with pytest.raises(CircuitBreakerOpenError):
        await breaker.acquire_async()  # the slot is leased ...
    clock.advance(LEASE)
    probe = await breaker.acquire_async()  # ... until the lease runs out
    assert probe.probe
    await probe.record_async(None)
    assert (await breaker.fetch_status())["state"] == "closed"


async def test_a_killed_prober_frees_its_slot_within_the_lease(redis_url: str, connection: Any,
                                                               prefix: str) -> None:
    clock = FakeClock(start=1000.0)
    breaker = RedisCircuitBreaker("svc", CFG, redis=connection, prefix=prefix, clock=clock,
                                  probe_lease=LEASE)
    await _open(breaker)
    clock.advance(10.0)
    worker = await asyncio.create_subprocess_exec(
        sys.executable, "-c", WORKER, redis_url, prefix, repr(clock.now()),
        stdout=asyncio.subprocess.PIPE)
    try:
        assert worker.stdout is not None
        assert (await worker.stdout.readline()).strip() == b"probe"
    finally:
        worker.send_signal(signal.SIGKILL)
        await worker.wait()
    assert worker.returncode == -signal.SIGKILL
    with pytest.raises(CircuitBreakerOpenError) as info:
        await breaker.acquire_async()  # the dead worker's lease still holds the slot
    # The rejection chains the failure that opened the breaker.
    assert isinstance(root_cause(info.value), OverloadedError)
    assert "last failure: OverloadedError" in str(info.value)
    clock.advance(LEASE - 0.001)
    with pytest.raises(CircuitBreakerOpenError):
        await breaker.acquire_async()
    clock.advance(0.001)
    probe = await breaker.acquire_async()
    assert probe.probe
    await probe.record_async(None)
    assert (await breaker.fetch_status())["state"] == "closed"


async def test_every_shared_key_expires(connection: Any, prefix: str) -> None:
    clock = FakeClock(start=1000.0)
    breaker = RedisCircuitBreaker("svc", CFG, redis=connection, prefix=prefix, clock=clock,
                                  probe_lease=LEASE)
    permit = await breaker.acquire_async("call-1")
    await permit.record_async(ServerError("500"))  # state and window
    assert len([key async for key in connection.scan_iter(match=f"{prefix}:*")]) == 2
    for call in ("call-2", "call-3"):
        permit = await breaker.acquire_async(call)
        await permit.record_async(ServerError("500"))  # opens
    clock.advance(10.0)
    await breaker.acquire_async()  # a probe lease left behind
    await breaker.force_open_async()
    store = RedisBucketStore(connection, prefix=prefix, clock=clock)
    limits = BucketLimits(requests_per_minute=60, tokens_per_minute=1000)
    await store.try_acquire("openai", limits, 10)
    await store.block("anthropic", 5.0)
    await store.observe("openrouter", limits, 3, 100)
    keys = [key.decode() async for key in connection.scan_iter(match=f"{prefix}:*")]
    assert len(keys) >= 4
    ttls = {key: await connection.pttl(key) for key in keys}
    assert all(ttl > 0 for ttl in ttls.values()), ttls


async def test_calls_in_flight_together_do_not_make_a_shared_failure_streak(
        connection: Any, prefix: str) -> None:
    clock = FakeClock(start=1000.0)
    breaker = RedisCircuitBreaker("svc", CFG, redis=connection, prefix=prefix, clock=clock)
    in_flight = [await breaker.acquire_async() for _ in range(5)]
    await in_flight[0].record_async(None)
    for permit in in_flight[1:]:
        await permit.record_async(ServerError("500"))
    assert (await breaker.fetch_status())["state"] == "closed"
    for _ in range(3):
        permit = await breaker.acquire_async()
        await permit.record_async(ServerError("500"))
    assert (await breaker.fetch_status())["state"] == "open"


async def test_the_shared_window_counts_each_logical_call_once(connection: Any,
                                                               prefix: str) -> None:
    clock = FakeClock(start=1000.0)
    config = CircuitBreakerConfig(failure_threshold=100, failure_rate_threshold=0.5,
                                  minimum_calls=4, jitter=0.0)
    breaker = RedisCircuitBreaker("rate", config, redis=connection, prefix=prefix, clock=clock)
    for call in ("a", "b", "c", "d"):
        permit = await breaker.acquire_async(call)
        await permit.record_async(ServerError("500"))
        if call != "d":
            permit = await breaker.acquire_async(call)
            await permit.record_async(None)
    assert (await breaker.fetch_status())["state"] == "closed"  # 1 of 4 calls failed
    for _ in range(3):
        permit = await breaker.acquire_async("e")
        await permit.record_async(ServerError("500"))
    assert (await breaker.fetch_status())["state"] == "closed"  # 2 of 5
    permit = await breaker.acquire_async("f")
    await permit.record_async(ServerError("500"))
    assert (await breaker.fetch_status())["state"] == "open"  # 3 of 6
