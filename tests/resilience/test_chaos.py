"""Chaos against the embedded server over loopback, through the resilience pipeline
(retry → circuit breaker → concurrency → rate limit → transport).

Each scenario prints its figures (run ``pytest -s`` to see them): success rate, upstream
attempts per logical request (from ``server.request_count``), and leaked connections, tasks
and permits after the run — which must all be zero. Base delays are 1 ms so the runs are fast.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import pytest

from llm_async import AsyncLLMClient, MockProviderServer, Timeout
from llm_async._clock import SystemClock
from llm_async.application.circuit_breaker import (
    CircuitBreaker,
    CircuitBreakerConfig,
    CircuitBreakerLayer,
)
from llm_async.application.rate_limit import (
    ConcurrencyLimitLayer,
    RateLimitConfig,
    RateLimitLayer,
)
from llm_async.application.retry_strategy import RetryConfig, RetryLayer
from llm_async.errors import LLMError, StreamError
from llm_async.testing import Fault

MESSAGES = [{"role": "user", "content": "chaos"}]
MODEL = "gpt-4o-mini"

RETRY = RetryConfig(max_attempts=6, base_delay=0.001, max_delay=0.01)
# Tolerant of a steady 30% error rate: trips on a real outage, not on noise.
BREAKER = CircuitBreakerConfig(failure_threshold=15, failure_rate_threshold=0.6,
                               minimum_calls=100, timeout=0.05, jitter=0.0)


class RecordingClock(SystemClock):
    """The real clock, remembering every sleep it was asked for."""

    def __init__(self) -> None:
        self.sleeps: list[float] = []

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        await super().sleep(seconds)


@dataclass
class Report:
    name: str
    logical: int = 0
    ok: int = 0
    errors: dict[str, int] = field(default_factory=dict)
    upstream: int = 0
    leaked_connections: int = 0
    leaked_tasks: int = 0
    leaked_permits: int = 0

    @property
    def success_rate(self) -> float:
        return self.ok / self.logical if self.logical else 0.0

    @property
    def attempts_per_request(self) -> float:
        return self.upstream / self.logical if self.logical else 0.0

    def print(self) -> None:
        print(f"\n[chaos] {self.name}: logical={self.logical} success_rate={self.success_rate:.3f}"
              f" upstream_attempts={self.upstream}"
              f" attempts_per_request={self.attempts_per_request:.2f}"
              f" errors={self.errors or {}}"
              f" leaked_connections={self.leaked_connections}"
              f" leaked_tasks={self.leaked_tasks} leaked_permits={self.leaked_permits}")

    def assert_no_leaks(self) -> None:
        assert (self.leaked_connections, self.leaked_tasks, self.leaked_permits) == (0, 0, 0)


def _client(server: MockProviderServer, *, retry_clock: Any = None, concurrency: int = 16,
            rate: RateLimitConfig | None = None, timeout: Timeout | None = None,
            breaker: CircuitBreakerConfig = BREAKER) -> AsyncLLMClient:
    clock = SystemClock()
    layers = [
        partial(RetryLayer, config=RETRY, clock=retry_clock or clock),
        partial(CircuitBreakerLayer, config=breaker, clock=clock),
        partial(ConcurrencyLimitLayer, max_concurrency=concurrency, clock=clock),
        partial(RateLimitLayer, config=rate or RateLimitConfig(requests_per_minute=600_000),
                clock=clock),
    ]
    return AsyncLLMClient(provider="openai", api_key="sk-test-chaos-key", base_url=server.base_url,
                          layers=layers,
                          # generous: only the latency scenario is about timeouts (its own)
                          timeout=timeout or Timeout(first_chunk=20.0, idle=20.0, total=60.0))


def _client_tasks(baseline: set[asyncio.Task[Any]]) -> list[asyncio.Task[Any]]:
    """Tasks created since ``baseline`` on the client side (the server's per-connection
    handler tasks live as long as keep-alive connections and are not ours)."""
    current = asyncio.current_task()
    out = []
    for task in asyncio.all_tasks() - baseline:
        if task is current or task.done():
            continue
        code = getattr(task.get_coro(), "cr_code", None)
        if code is not None and code.co_filename.endswith("web_protocol.py"):
            continue
        out.append(task)
    return out


async def _finish_report(report: Report, client: AsyncLLMClient, server: MockProviderServer,
                         baseline: set[asyncio.Task[Any]]) -> Report:
    for _ in range(20):
        await asyncio.sleep(0)
    report.upstream = server.request_count
    connector = client.transports["openai"].connector  # type: ignore[attr-defined]
    report.leaked_connections = len(getattr(connector, "_acquired", ())) if connector else 0
    report.leaked_tasks = len(_client_tasks(baseline))
    permits = 0
    concurrency = client.layer(ConcurrencyLimitLayer)
    if concurrency is not None:
        permits += concurrency.in_use + concurrency.waiting
    rate = client.layer(RateLimitLayer)
    if rate is not None:
        permits += rate.waiting
    breakers = client.layer(CircuitBreakerLayer)
    if breakers is not None:
        for breaker in breakers.breakers.values():
            assert isinstance(breaker, CircuitBreaker)
            permits += breaker.status()["half_open_in_flight"]
    report.leaked_permits = permits
    report.print()
    return report


async def _run(name: str, server: MockProviderServer, client: AsyncLLMClient, n: int,
               call: Callable[[int], Awaitable[None]] | None = None) -> Report:
    report = Report(name, logical=n)
    baseline = set(asyncio.all_tasks())

    async def default_call(i: int) -> None:
        if i % 2:
            reply = await client.chat(model=MODEL, messages=MESSAGES)
            assert reply.text
        else:
            text = "".join([c.delta async for c in client.stream(model=MODEL, messages=MESSAGES)])
            assert len(text.split()) == 12

    async def one(i: int) -> None:
        try:
            await (call or default_call)(i)
        except LLMError as exc:
            key = type(exc).__name__
            report.errors[key] = report.errors.get(key, 0) + 1
        else:
            report.ok += 1

    await asyncio.gather(*(one(i) for i in range(n)))
    return await _finish_report(report, client, server, baseline)


async def test_chaos_random_5xx() -> None:
    async with MockProviderServer(seed=11) as server:
        server.add_fault(Fault(status=500, probability=0.3, times=None))
        async with _client(server) as client:
            report = await _run("30% random 5xx", server, client, 300)
    report.assert_no_leaks()
    # P(six 500s in a row) = 0.3^6 ≈ 0.07%: essentially every call succeeds
    assert report.success_rate >= 0.99
    # expected 1 / 0.7 ≈ 1.43 upstream attempts per logical request
    assert 1.25 <= report.attempts_per_request <= 1.65


async def test_chaos_429_storm_with_retry_after() -> None:
    clock = RecordingClock()
    async with MockProviderServer(seed=12) as server:
        server.add_fault(Fault(status=429, retry_after=0.004, times=30))
        server.add_fault(Fault(status=429, retry_after_ms=3, times=30))
        async with _client(server, retry_clock=clock, concurrency=8) as client:
            report = await _run("429 storm with Retry-After", server, client, 100)
            rate = client.layer(RateLimitLayer)
            assert rate is not None
            limiter = rate.statistics()["openai"]
            breakers = client.layer(CircuitBreakerLayer)
            assert breakers is not None
            breaker_state = breakers.status()
    report.assert_no_leaks()
    print(f"[chaos] 429 storm: 429s seen by the limiter={limiter['throttled']}, "
          f"lowest rate factor={limiter['lowest_rate_factor']:.3f}, "
          f"rate factor after={limiter['rate_factor']:.2f}, retry waits={len(clock.sleeps)}, "
          f"shortest retry wait={min(clock.sleeps) * 1000:.2f} ms")
    assert report.success_rate == 1.0
    assert report.upstream == 100 + 60  # every 429 cost exactly one extra attempt
    # the retry loop never came back before the server's Retry-After (3 or 4 ms)
    assert min(clock.sleeps) >= 0.003
    assert limiter["throttled"] == 60
    assert limiter["lowest_rate_factor"] < 0.5  # the limiter slowed down (AIMD) ...
    assert limiter["rate_factor"] > limiter["lowest_rate_factor"]  # ... and recovered
    # 429s are the caller's quota, not the provider's health: the breaker stayed closed
    assert breaker_state["state"] == "closed"
    assert breaker_state["breakers"][f"openai/{MODEL}"]["failed_requests"] == 0


async def test_chaos_connection_resets() -> None:
    async with MockProviderServer(seed=13) as server:
        server.add_fault(Fault(reset=True, probability=0.25, times=None))
        async with _client(server) as client:
            report = await _run("25% connection resets", server, client, 200)
    report.assert_no_leaks()
    assert report.success_rate >= 0.99
    assert 1.15 <= report.attempts_per_request <= 1.6


async def test_chaos_mid_stream_cuts_are_never_retried() -> None:
    async with MockProviderServer(seed=14) as server:
        # 20% cut before any content (retried), then 25% of the rest cut after 3 chunks (not)
        server.add_fault(Fault(cut_after=0, probability=0.2, times=None))
        server.add_fault(Fault(cut_after=3, probability=0.25, times=None))
        # The breaker is not the subject here. With the default one, which outcomes come
        # back before the first success is the scheduler's choice (under load, a run of
        # quick cuts can open it before any stream completes): it is set not to open.
        never_opens = CircuitBreakerConfig(failure_threshold=10_000, minimum_calls=10_000)
        async with _client(server, breaker=never_opens) as client:
            committed_cuts: list[int] = []

            async def stream_only(i: int) -> None:
                stream = client.stream(model=MODEL, messages=MESSAGES)
                try:
                    text = "".join([c.delta async for c in stream])
                except StreamError as exc:
                    committed_cuts.append(exc.chunks_received)
                    raise
                assert len(text.split()) == 12

            report = await _run("mid-stream cuts", server, client, 200, stream_only)
    report.assert_no_leaks()
    cuts = report.errors.get("StreamError", 0)
    assert set(report.errors) <= {"StreamError"}
    assert report.ok + cuts == 200
    assert all(n == 3 for n in committed_cuts)  # every failure came after the commit point
    # upstream = one committed attempt per logical stream + the pre-commit retries only;
    # a post-commit cut never caused another request
    retries = report.upstream - 200
    print(f"[chaos] mid-stream cuts: committed cuts={cuts}, pre-commit retries={retries}")
    assert 0.15 * 200 <= cuts <= 0.35 * 200
    assert 0 < retries <= 0.35 * report.upstream


async def test_chaos_latency_spikes_beyond_the_timeout() -> None:
    # handlers still sleeping in a spike are server-side tasks; they are cancelled at close
    async with MockProviderServer(seed=15, shutdown_timeout=0.01) as server:
        # A spike never answers in time, and the timeout is far above a normal answer's
        # latency even on a loaded machine: which attempts time out is the server's seeded
        # choice, not the scheduler's.
        server.add_fault(Fault(latency=60.0, probability=0.2, times=None))
        timeout = Timeout(first_chunk=4.0, idle=20.0, total=30.0)
        async with _client(server, timeout=timeout, concurrency=128) as client:
            report = await _run("latency spikes > first-chunk timeout", server, client, 120)
    report.assert_no_leaks()
    assert report.success_rate >= 0.99
    assert 1.1 <= report.attempts_per_request <= 1.5


async def test_chaos_cancelled_callers_leak_nothing() -> None:
    """A third of the callers are cancelled at random moments — queued for a permit, waiting
    for headers, or in the middle of a stream — while 20% of requests fail."""
    rng = random.Random(16)
    async with MockProviderServer(seed=16, token_delay=0.001) as server:
        server.add_fault(Fault(status=503, probability=0.2, times=None))
        async with _client(server, concurrency=4) as client:
            baseline = set(asyncio.all_tasks())
            outcomes = {"ok": 0, "cancelled": 0, "error": 0}

            async def caller(i: int) -> None:
                if i % 2:
                    await client.chat(model=MODEL, messages=MESSAGES)
                else:
                    async with client.stream(model=MODEL, messages=MESSAGES) as stream:
                        async for _ in stream:
                            pass

            async def run(i: int) -> None:
                task = asyncio.create_task(caller(i))
                if rng.random() < 0.33:
                    await asyncio.sleep(rng.uniform(0.0, 0.03))
                    task.cancel()
                try:
                    await task
                except asyncio.CancelledError:
                    outcomes["cancelled"] += 1
                except LLMError:
                    outcomes["error"] += 1
                else:
                    outcomes["ok"] += 1

            await asyncio.gather(*(run(i) for i in range(90)))
            report = Report("cancelled callers", logical=90, ok=outcomes["ok"],
                            errors={"cancelled": outcomes["cancelled"],
                                    "error": outcomes["error"]})
            await _finish_report(report, client, server, baseline)
    report.assert_no_leaks()
    assert outcomes["cancelled"] > 10 and outcomes["ok"] > 30


@pytest.mark.parametrize("outage", [True])
async def test_chaos_provider_outage_sheds_load(outage: bool) -> None:
    """Every request fails with 503: the breaker opens and most logical calls fail fast
    without reaching the provider; the retry budget keeps upstream attempts bounded."""
    async with MockProviderServer(seed=17) as server:
        server.add_fault(Fault(status=503, times=None))
        breaker = CircuitBreakerConfig(failure_threshold=5, timeout=60.0, jitter=0.0)
        async with _client(server, breaker=breaker) as client:
            report = await _run("provider outage", server, client, 200)
    report.assert_no_leaks()
    assert report.success_rate == 0.0
    assert set(report.errors) <= {"OverloadedError", "CircuitBreakerOpenError"}
    assert report.errors.get("CircuitBreakerOpenError", 0) > 150
    assert report.attempts_per_request < 0.5  # most calls never left the process
