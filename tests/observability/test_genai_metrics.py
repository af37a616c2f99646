"""GenAI client metrics and the live-state instruments, on the real OpenTelemetry metrics SDK."""

from __future__ import annotations

import sys
import types
from collections.abc import AsyncGenerator
from decimal import Decimal
from typing import Any

import pytest

from llm_async import (
    AsyncLLMClient,
    ChatChunk,
    ChatRequest,
    ChatResponse,
    FakeClock,
    RateLimitError,
    Usage,
)
from llm_async.context import CallContext
from llm_async.domain.ports import Layer
from llm_async.observability import (
    DURATION_BUCKETS,
    LIVE_METRIC_NAMES,
    TOKEN_BUCKETS,
    Observability,
    TracingLayer,
)

MESSAGES = [{"role": "user", "content": "hi"}]
Otel = Any


class Timed:
    """A transport whose calls take exactly the time it says, on a fake clock."""

    def __init__(self, clock: FakeClock, *, duration: float = 0.25, first: float = 0.1,
                 error: Exception | None = None) -> None:
        self.clock = clock
        self.duration = duration
        self.first = first
        self.error = error

    async def chat(self, request: ChatRequest, ctx: CallContext) -> ChatResponse:
        self.clock.advance(self.duration)
        if self.error is not None:
            raise self.error
        return ChatResponse(id="r1", model=request.model + "-2024", provider="openai",
                            content="two words", finish_reason="stop",
                            usage=Usage(input_tokens=11, output_tokens=2))

    async def stream(self, request: ChatRequest,
                     ctx: CallContext) -> AsyncGenerator[ChatChunk, None]:
        self.clock.advance(self.first)
        yield ChatChunk(delta="two", model=request.model)
        self.clock.advance(self.duration - self.first)
        yield ChatChunk(delta=" words", finish_reason="stop")
        yield ChatChunk(usage=Usage(input_tokens=11, output_tokens=2))

    async def aclose(self) -> None:
        pass


def client_on(transport: Any, otel: Otel, obs: Observability, clock: FakeClock,
              *inner: Any) -> AsyncLLMClient:
    return AsyncLLMClient(provider="openai", transport=transport,
                          layers=[otel.layer(obs, clock=clock,
                                             endpoints={"openai": "https://api.example.com/v1"}),
                                  *inner])


BASE = {"gen_ai.operation.name": "chat", "gen_ai.provider.name": "openai",
        "gen_ai.request.model": "gpt-4o", "server.address": "api.example.com", "server.port": 443}


async def test_duration_and_token_usage_follow_the_conventions(otel: Otel, obs: Observability,
                                                              fake_clock: FakeClock) -> None:
    async with client_on(Timed(fake_clock), otel, obs, fake_clock) as client:
        await client.chat(model="gpt-4o", messages=MESSAGES)
    metrics = otel.metrics()
    duration = metrics["gen_ai.client.operation.duration"]
    assert duration.unit == "s"
    (point,) = duration.data.data_points
    assert tuple(point.explicit_bounds) == DURATION_BUCKETS
    assert point.count == 1 and point.sum == pytest.approx(0.25)
    assert dict(point.attributes) == {**BASE, "gen_ai.response.model": "gpt-4o-2024"}
    tokens = metrics["gen_ai.client.token.usage"]
    assert tokens.unit == "{token}"
    by_type = {p.attributes["gen_ai.token.type"]: p for p in tokens.data.data_points}
    assert set(by_type) == {"input", "output"}
    assert (by_type["input"].sum, by_type["output"].sum) == (11, 2)
    assert tuple(by_type["input"].explicit_bounds) == TOKEN_BUCKETS
    assert "gen_ai.client.operation.time_to_first_chunk" not in metrics
    assert obs.get_dashboard_data()["avg_duration_ms"] == pytest.approx(250.0)


async def test_stream_records_time_to_first_chunk(otel: Otel, obs: Observability,
                                                  fake_clock: FakeClock) -> None:
    async with client_on(Timed(fake_clock, duration=0.3, first=0.1), otel, obs,
                         fake_clock) as client:
        async for _ in client.stream(model="gpt-4o", messages=MESSAGES):
            pass
    (ttfc,) = otel.points("gen_ai.client.operation.time_to_first_chunk")
    assert ttfc.sum == pytest.approx(0.1) and ttfc.count == 1
    assert tuple(ttfc.explicit_bounds) == DURATION_BUCKETS
    (duration,) = otel.points("gen_ai.client.operation.duration")
    assert duration.sum == pytest.approx(0.3)
    span = otel.span()
    assert span.attributes["gen_ai.response.time_to_first_chunk"] == pytest.approx(0.1)
    data = obs.get_dashboard_data()
    assert data["avg_time_to_first_chunk_ms"] == pytest.approx(100.0)
    assert data["p50_time_to_first_chunk_ms"] == pytest.approx(100.0, rel=0.01)


async def test_errors_record_duration_with_error_type_and_no_tokens(
        otel: Otel, obs: Observability, fake_clock: FakeClock) -> None:
    transport = Timed(fake_clock, duration=0.5, error=RateLimitError("slow down", status=429))
    async with client_on(transport, otel, obs, fake_clock) as client:
        with pytest.raises(RateLimitError):
            await client.chat(model="gpt-4o", messages=MESSAGES)
    (point,) = otel.points("gen_ai.client.operation.duration")
    assert dict(point.attributes) == {**BASE, "error.type": "rate_limited"}
    assert point.sum == pytest.approx(0.5)
    assert otel.points("gen_ai.client.token.usage") == []


class CacheHit(Layer):
    """Answers from a pretend cache (as the cache layer does), without calling inner."""

    async def chat(self, request: ChatRequest, ctx: CallContext) -> ChatResponse:
        ctx.cache_hit = True
        ctx.event("cache_hit")
        return ChatResponse(model=request.model, content="cached", cache_hit=True,
                            usage=Usage(input_tokens=11, output_tokens=2))


class Joiner(Layer):
    async def chat(self, request: ChatRequest, ctx: CallContext) -> ChatResponse:
        ctx.event("dedup_join", key="k")
        return await self.inner.chat(request, ctx)


async def test_cache_hits_bill_no_tokens_and_feed_the_hit_ratio(
        otel: Otel, obs: Observability, fake_clock: FakeClock) -> None:
    transport = Timed(fake_clock)
    async with client_on(transport, otel, obs, fake_clock) as plain, \
            client_on(transport, otel, obs, fake_clock, CacheHit) as cached, \
            client_on(transport, otel, obs, fake_clock, Joiner) as joined:
        await plain.chat(model="gpt-4o", messages=MESSAGES)
        await plain.chat(model="gpt-4o", messages=MESSAGES)
        await cached.chat(model="gpt-4o", messages=MESSAGES)
        await joined.chat(model="gpt-4o", messages=MESSAGES)
    tokens = otel.points("gen_ai.client.token.usage")
    assert sorted(p.count for p in tokens) == [3, 3]  # the cache hit billed nothing
    (ratio,) = otel.points("cache.hit_ratio")
    assert ratio.value == pytest.approx(0.25)
    (joins,) = otel.points("dedup.joins")
    assert joins.value == 1
    data = obs.get_dashboard_data()
    assert data["cache_hit_rate"] == pytest.approx(0.25) and data["dedup_joins"] == 1


async def test_instruments_are_registered_once_per_provider(otel: Otel, obs: Observability,
                                                           fake_clock: FakeClock) -> None:
    other = Observability()
    async with client_on(Timed(fake_clock), otel, obs, fake_clock) as a, \
            client_on(Timed(fake_clock), otel, other, fake_clock) as b:
        await a.chat(model="gpt-4o", messages=MESSAGES)
        await b.chat(model="gpt-4o", messages=MESSAGES)
    (point,) = otel.points("gen_ai.client.operation.duration")
    assert point.count == 2
    (ratio,) = otel.points("cache.hit_ratio")  # one gauge reading both observabilities
    assert ratio.value == 0.0
    names = set(otel.metrics())
    assert {"retry.attempts", "retry.successful", "retry.failed", "retry.delay",
            "cache.hit_ratio", "dedup.joins"} <= names


def test_live_metric_names_are_the_contract_names() -> None:
    assert set(LIVE_METRIC_NAMES) >= {
        "circuit.state", "circuit.requests.total", "circuit.requests.successful",
        "circuit.requests.failed", "circuit.requests.rejected", "cost.total", "cost.by_model",
        "cost.by_user", "cost.requests", "retry.attempts", "retry.successful", "retry.failed",
        "retry.delay"}


async def test_circuit_metrics_read_the_live_breakers(otel: Otel, obs: Observability) -> None:
    from llm_async.application.circuit_breaker import (
        CircuitBreakerConfig,
        get_circuit_breaker,
        remove_circuit_breaker,
    )

    TracingLayer(object(), meter_provider=otel.meter_provider, observability=obs)  # type: ignore[arg-type]
    breaker = get_circuit_breaker("obs-metrics-test", CircuitBreakerConfig(failure_threshold=1))
    try:
        breaker.call(lambda: 1)
        with pytest.raises(ZeroDivisionError):
            breaker.call(lambda: 1 / 0)

        def mine(name: str) -> Any:
            points = [p for p in otel.points(name)
                      if p.attributes.get("circuit.name") == "obs-metrics-test"]
            assert len(points) == 1, points
            return points[0].value

        live = breaker.metrics()
        assert mine("circuit.requests.total") == live["circuit.requests.total"] >= 1
        assert mine("circuit.requests.successful") == live["circuit.requests.successful"]
        assert mine("circuit.requests.failed") == live["circuit.requests.failed"]
        assert mine("circuit.requests.rejected") == live["circuit.requests.rejected"]
        breaker.force_open()
        assert mine("circuit.state") == 2
        breaker.reset()
        assert mine("circuit.state") == 0
        data = obs.get_dashboard_data()["circuit_breakers"]["obs-metrics-test"]
        assert data["state"] == "closed" and data["raw"]["circuit.state"] == "closed"
    finally:
        remove_circuit_breaker("obs-metrics-test")


async def test_retry_metrics_read_the_live_counters(otel: Otel, obs: Observability) -> None:
    from llm_async.application.retry_strategy import get_retry_metrics

    TracingLayer(object(), meter_provider=otel.meter_provider, observability=obs)  # type: ignore[arg-type]
    exported = {name: otel.points(name)[0].value
                for name in ("retry.attempts", "retry.successful", "retry.failed", "retry.delay")}
    live = get_retry_metrics()
    assert exported == {name: pytest.approx(live[name]) for name in exported}
    assert obs.get_dashboard_data()["retry_metrics"]["retry.attempts"] == live["retry.attempts"]


async def test_cost_metrics_read_the_live_cost_manager(otel: Otel, obs: Observability,
                                                      request: pytest.FixtureRequest) -> None:
    from llm_async.application.cost_manager import CostManager, set_cost_manager

    manager = CostManager()
    previous = set_cost_manager(manager)  # the process-wide one, for this test only
    request.addfinalizer(lambda: set_cost_manager(previous))
    manager.track_usage(model="gpt-4o", input_tokens=1000, output_tokens=500,
                        user_id="obs-metrics-user")
    TracingLayer(object(), meter_provider=otel.meter_provider, observability=obs)  # type: ignore[arg-type]
    live = manager.metrics()

    def value(name: str, **attributes: str) -> float:
        points = [p for p in otel.points(name) if dict(p.attributes) == attributes]
        assert len(points) == 1, otel.points(name)
        return float(points[0].value)

    assert live["cost.total"] > 0 and live["cost.by_user"]["obs-metrics-user"] > 0
    assert value("cost.total") == pytest.approx(float(live["cost.total"]))
    assert value("cost.requests") == live["cost.requests"] >= 1
    assert value("cost.by_user", **{"user.id": "obs-metrics-user"}) == pytest.approx(
        float(live["cost.by_user"]["obs-metrics-user"]))
    assert value("cost.by_model", **{"gen_ai.request.model": "gpt-4o"}) == pytest.approx(
        float(live["cost.by_model"]["gpt-4o"]))
    assert obs.get_dashboard_data()["cost_metrics"]["cost.requests"] == live["cost.requests"]


def _fake_module(monkeypatch: pytest.MonkeyPatch, name: str, **functions: Any) -> None:
    module = types.ModuleType(name)
    for key, value in functions.items():
        setattr(module, key, value)
    monkeypatch.setitem(sys.modules, name, module)


async def test_live_metrics_from_known_values(otel: Otel, obs: Observability,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    class Manager:
        def metrics(self) -> dict[str, Any]:
            return {"cost.total": Decimal("1.25"), "cost.requests": 7,
                    "cost.by_model": {"gpt-4o": Decimal("1.0"), "gpt-4o-mini": Decimal("0.25")},
                    "cost.by_user": {"u1": Decimal("1.25")}}

    class Breaker:
        name = "fake"

        def metrics(self) -> dict[str, Any]:
            return {"circuit.state": "half_open", "circuit.requests.total": 9,
                    "circuit.requests.successful": 5, "circuit.requests.failed": 3,
                    "circuit.requests.rejected": 1}

    manager = Manager()
    _fake_module(monkeypatch, "llm_async.application.cost_manager",
                 get_cost_manager=lambda: manager)
    _fake_module(monkeypatch, "llm_async.application.retry_strategy",
                 get_retry_metrics=lambda: {"total_attempts": 4, "successful_retries": 3,
                                            "failed_retries": 1, "total_delay": 2.5})
    _fake_module(monkeypatch, "llm_async.application.circuit_breaker",
                 all_circuit_breakers=lambda: {"fake": Breaker()})
    TracingLayer(object(), meter_provider=otel.meter_provider, observability=obs)  # type: ignore[arg-type]

    def values(name: str) -> dict[tuple[tuple[str, Any], ...], float]:
        return {tuple(sorted(p.attributes.items())): p.value for p in otel.points(name)}

    assert values("cost.total") == {(): 1.25}
    assert values("cost.requests") == {(): 7}
    assert values("cost.by_model") == {(("gen_ai.request.model", "gpt-4o"),): 1.0,
                                       (("gen_ai.request.model", "gpt-4o-mini"),): 0.25}
    assert values("cost.by_user") == {(("user.id", "u1"),): 1.25}
    assert values("retry.attempts") == {(): 4}
    assert values("retry.successful") == {(): 3}
    assert values("retry.failed") == {(): 1}
    assert values("retry.delay") == {(): 2.5}
    assert values("circuit.state") == {(("circuit.name", "fake"),): 1}
    assert values("circuit.requests.total") == {(("circuit.name", "fake"),): 9}
    assert values("circuit.requests.rejected") == {(("circuit.name", "fake"),): 1}
    data = obs.get_dashboard_data()
    assert data["cost_metrics"]["cost.total"] == 1.25
    assert data["circuit_breakers"]["fake"]["state"] == "half_open"
    assert data["circuit_breakers"]["fake"]["failed"] == 3


async def test_missing_parts_export_nothing(otel: Otel, obs: Observability,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("cost_manager", "retry_strategy", "circuit_breaker"):
        monkeypatch.setitem(sys.modules, f"llm_async.application.{name}", None)
    TracingLayer(object(), meter_provider=otel.meter_provider, observability=obs)  # type: ignore[arg-type]
    names = set(otel.metrics())
    assert not any(n.startswith(("cost.", "retry.", "circuit.")) for n in names)
    data = obs.get_dashboard_data()
    assert data["circuit_breakers"] == {} and data["cost_metrics"] == {}
