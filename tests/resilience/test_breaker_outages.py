"""The default stack's breaker opens for outages, not for noise.

Real parts: the default pipeline of :class:`AsyncLLMClient` over loopback to the embedded
server; only time is fake (``FakeClock``: back-off waits and the breaker's window run on it).
Each scenario prints its figures (``pytest -s``).
"""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

from llm_async import AsyncLLMClient, FakeClock, MockProviderServer
from llm_async.application.circuit_breaker import CircuitBreakerLayer, CircuitState
from llm_async.errors import CircuitBreakerOpenError, LLMError, ServerError, root_cause
from llm_async.testing import Fault
from llm_async.types import build_request

MODEL = "gpt-4o-mini"
MESSAGES = [{"role": "user", "content": "noise"}]
CALLERS = 50


async def _run(seed: int, fault: Fault, calls: int) -> dict[str, Any]:
    """``calls`` chat calls, ``CALLERS`` at a time, through the default stack."""
    clock = FakeClock()
    opened: list[float] = []
    errors: Counter[str] = Counter()
    rejections: list[CircuitBreakerOpenError] = []
    async with MockProviderServer(seed=seed) as server:
        server.add_fault(fault)
        async with AsyncLLMClient(provider="openai", api_key="sk-test-outage-key",
                                  base_url=server.base_url, clock=clock) as client:
            layer = client.layer(CircuitBreakerLayer)
            assert layer is not None, "the default stack has a circuit breaker"
            breaker: Any = layer.breaker_for(build_request(model=MODEL, messages=MESSAGES,
                                                           provider="openai"))
            breaker.subscribe(lambda _n, _old, new: opened.append(clock.now())
                              if new is CircuitState.OPEN else None)
            pending = iter(range(calls))
            ok = 0

            async def caller() -> None:
                nonlocal ok
                for _ in pending:
                    try:
                        await client.chat(model=MODEL, messages=MESSAGES)
                    except LLMError as exc:
                        errors[type(exc).__name__] += 1
                        if isinstance(exc, CircuitBreakerOpenError):
                            rejections.append(exc)
                    else:
                        ok += 1

            await asyncio.gather(*(caller() for _ in range(CALLERS)))
            window = breaker.config.window
        upstream = server.request_count
    return {"ok": ok, "errors": errors, "opened": opened, "rejections": rejections,
            "upstream": upstream, "window": window}


async def test_thirty_percent_random_500s_never_trip_the_default_breaker() -> None:
    calls, tripped, succeeded = 400, 0, 0
    for seed in range(10):
        run = await _run(seed, Fault(status=500, probability=0.3, times=None), calls)
        tripped += bool(run["opened"])
        succeeded += run["ok"]
        print(f"\n[noise] seed={seed} ok={run['ok']}/{calls} errors={dict(run['errors'])} "
              f"opened={len(run['opened'])} upstream={run['upstream']}")
    rate = succeeded / (10 * calls)
    print(f"[noise] breaker tripped in {tripped} of 10 runs; {rate:.4%} of calls succeeded")
    assert tripped == 0
    assert rate >= 0.999


async def test_a_full_outage_opens_the_default_breaker_within_its_window() -> None:
    calls = 400
    run = await _run(7, Fault(status=500, times=None), calls)
    print(f"\n[outage] ok={run['ok']} errors={dict(run['errors'])} "
          f"opened at t={run['opened'][:1]} upstream={run['upstream']}")
    assert run["ok"] == 0
    assert run["opened"] and run["opened"][0] < run["window"]
    # Once open, calls fail fast: most never reach the provider.
    assert run["errors"]["CircuitBreakerOpenError"] > calls // 2
    assert run["upstream"] < calls
    # Every rejection names and chains the failure behind it.
    for exc in run["rejections"]:
        assert isinstance(exc.__cause__, ServerError) and exc.__cause__.status == 500
        assert isinstance(root_cause(exc), ServerError)
        assert "last failure: ServerError" in str(exc)


async def test_the_bench_counts_failures_by_root_cause() -> None:
    from llm_async._bench import format_table, run_bench

    async with MockProviderServer(seed=3) as server:
        server.add_fault(Fault(status=500, times=None))
        async with AsyncLLMClient(provider="openai", api_key="sk-test-outage-key",
                                  base_url=server.base_url, clock=FakeClock()) as client:
            result = await run_bench(client, model=MODEL, requests=60, concurrency=10)
    print(f"\n[bench] {result.summary()}")
    # Rejections by the open breaker count as the 500s behind them, not as "circuit open".
    assert result.errors == {"ServerError": 60}
    assert 0 < result.failed_fast <= 60  # the first calls' retries were rejected too
    assert result.summary()["failed_fast"] == result.failed_fast
    failed = dict(format_table(result))["failed"]
    assert failed.startswith("60 (ServerError: 60)") and "failed fast" in failed
