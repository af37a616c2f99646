"""What the dashboard's JSON holds for clients with the default pipeline: every client's own
breakers (and the ``circuit.*`` instruments reading them), unpriced models marked as such,
budgets with spend, limit and forecast, spend per user and project, and a bounded list of recent
calls. Real HTTP to the embedded server, the real OpenTelemetry metrics SDK."""

from __future__ import annotations

import gc
from decimal import Decimal
from typing import Any

import pytest

from llm_async import AsyncLLMClient, CircuitBreakerOpenError, ServerError
from llm_async.application.circuit_breaker import CircuitBreakerConfig, all_circuit_breakers
from llm_async.application.cost_manager import BudgetConfig, CostManager
from llm_async.observability import Observability
from llm_async.testing import Fault, MockProviderServer

API_KEY = "sk-observability-test-key-0123456789"
MESSAGES = [{"role": "user", "content": "hello"}]
Otel = Any


def _client(server: MockProviderServer, obs: Observability, **options: Any) -> AsyncLLMClient:
    options.setdefault("retry_config", None)
    options.setdefault("cost_manager", CostManager())  # never the process-wide one
    return AsyncLLMClient(provider="openai", api_key=API_KEY, base_url=server.base_url,
                          observability=obs, **options)


async def _open_breaker(client: AsyncLLMClient, server: MockProviderServer, model: str) -> None:
    server.add_fault(Fault(status=500, times=2, model=model))
    for _ in range(2):
        with pytest.raises(ServerError):
            await client.chat(model=model, messages=MESSAGES)
    with pytest.raises(CircuitBreakerOpenError):
        await client.chat(model=model, messages=MESSAGES)


async def test_every_clients_own_breakers_are_on_the_dashboard(mock_server: MockProviderServer,
                                                               otel: Otel) -> None:
    obs = Observability()
    config = CircuitBreakerConfig(failure_threshold=2, timeout=600.0)
    async with _client(mock_server, obs, circuit_breaker_config=config,
                       meter_provider=otel.meter_provider) as first, \
            _client(mock_server, obs, circuit_breaker_config=config) as second:
        await first.chat(model="gpt-4o-mini", messages=MESSAGES)
        await _open_breaker(second, mock_server, "gpt-4o")
        assert not any(name.startswith("openai/") for name in all_circuit_breakers())
        breakers = obs.get_dashboard_data()["circuit_breakers"]
        mini, failing = breakers["openai/gpt-4o-mini"], breakers["openai/gpt-4o"]
        assert (mini["state"], mini["provider"], mini["model"], mini["total"]) == (
            "closed", "openai", "gpt-4o-mini", 1)
        assert mini["last_failure"] is None
        assert (failing["state"], failing["failed"], failing["rejected"]) == ("open", 2, 1)
        assert 0 < failing["retry_after"] <= config.timeout * (1 + config.jitter)
        assert failing["last_failure"]["type"] == "server_error"

        # The circuit.* instruments read the same breakers.
        def points(name: str) -> dict[str, float]:
            """The points of the clients' breakers (the process registry may hold others)."""
            return {p.attributes["circuit.name"]: p.value for p in otel.points(name)
                    if p.attributes["circuit.name"].startswith("openai/")}

        assert points("circuit.state") == {"openai/gpt-4o-mini": 0, "openai/gpt-4o": 2}
        assert points("circuit.requests.rejected")["openai/gpt-4o"] == 1
        (point,) = [p for p in otel.points("circuit.state")
                    if p.attributes["circuit.name"] == "openai/gpt-4o"]
        assert point.attributes["gen_ai.provider.name"] == "openai"
        assert point.attributes["gen_ai.request.model"] == "gpt-4o"


async def test_a_dropped_client_leaves_the_dashboard(mock_server: MockProviderServer) -> None:
    obs = Observability()
    async with _client(mock_server, obs) as client:
        await client.chat(model="gpt-4o-mini", messages=MESSAGES)
    assert "openai/gpt-4o-mini" in obs.get_dashboard_data()["circuit_breakers"]
    del client
    gc.collect()
    assert "openai/gpt-4o-mini" not in obs.get_dashboard_data()["circuit_breakers"]


async def test_unpriced_models_are_marked_not_free(mock_server: MockProviderServer) -> None:
    obs = Observability()
    async with _client(mock_server, obs) as client:
        priced = await client.chat(model="gpt-4o-mini", messages=MESSAGES)
        for _ in range(2):
            reply = await client.chat(model="house-model-without-a-price", messages=MESSAGES)
            assert reply.cost is None
    data = obs.get_dashboard_data()
    assert priced.cost is not None and priced.cost > 0
    house = data["by_model"]["house-model-without-a-price"]
    assert (house["priced_requests"], house["unpriced_requests"]) == (0, 2)
    mini = data["by_model"]["gpt-4o-mini"]
    assert (mini["priced_requests"], mini["unpriced_requests"]) == (1, 0)
    assert mini["total_cost"] == pytest.approx(float(priced.cost))
    assert (data["priced_requests"], data["unpriced_requests"]) == (1, 2)
    newest = data["recent_calls"][0]
    assert newest["model"] == "house-model-without-a-price"
    assert newest["cost"] is None and newest["unpriced"] is True
    assert data["recent_calls"][-1]["unpriced"] is False


async def test_without_cost_tracking_nothing_is_called_unpriced(
        mock_server: MockProviderServer) -> None:
    obs = Observability()
    async with _client(mock_server, obs, track_cost=False) as client:
        await client.chat(model="house-model-without-a-price", messages=MESSAGES)
    data = obs.get_dashboard_data()
    assert (data["priced_requests"], data["unpriced_requests"]) == (0, 0)


async def test_budgets_and_spend_per_user_and_project(mock_server: MockProviderServer) -> None:
    obs = Observability()
    manager = CostManager()
    manager.set_budget("daily", BudgetConfig(limit=Decimal("10")))
    manager.set_budget("team", BudgetConfig(limit=Decimal("3"), period="monthly",
                                            project_id="search"))
    async with _client(mock_server, obs, cost_manager=manager) as client:
        a = await client.chat(model="gpt-4o-mini", messages=MESSAGES, user_id="alice",
                              project_id="search")
        b = await client.chat(model="gpt-4o", messages=MESSAGES, user_id="bob",
                              project_id="support")
        data = obs.get_dashboard_data()
    assert a.cost is not None and b.cost is not None
    daily, team = data["budgets"]["daily"], data["budgets"]["team"]
    assert daily["spent"] == pytest.approx(float(a.cost + b.cost)) and daily["limit"] == 10
    assert daily["scope"] == "global" and daily["period"] == "daily"
    assert daily["forecast"] is not None and daily["forecast"] >= daily["spent"]
    assert team["spent"] == pytest.approx(float(a.cost)) and team["scope"] == "project:search"
    assert data["spend"]["by_user"] == pytest.approx({"alice": float(a.cost),
                                                      "bob": float(b.cost)})
    assert data["spend"]["by_project"] == pytest.approx({"search": float(a.cost),
                                                         "support": float(b.cost)})
    assert list(data["spend"]["by_user"]) == sorted(
        data["spend"]["by_user"], key=lambda k: -data["spend"]["by_user"][k])


async def test_recent_calls_are_bounded_and_newest_first(mock_server: MockProviderServer) -> None:
    obs = Observability(recent_calls=5)
    async with _client(mock_server, obs) as client:
        for i in range(8):
            await client.chat(model=f"model-{i}", messages=MESSAGES)
        async with client.stream(model="streamed", messages=MESSAGES) as chunks:
            await chunks.get_final_response()
    calls = obs.recent_calls()
    assert [c["model"] for c in calls] == ["streamed", "model-7", "model-6", "model-5",
                                           "model-4"]
    first = calls[0]
    assert first["status"] == "ok" and first["stream"] is True
    assert first["output_tokens"] > 0 and first["latency_ms"] > 0
    assert first["time_to_first_chunk_ms"] is not None
    assert "prompt" not in first and "completion" not in first
    with pytest.raises(ValueError):
        Observability(recent_calls=-1)


async def test_a_failure_retried_away_is_still_the_breakers_last_failure(
        mock_server: MockProviderServer) -> None:
    from llm_async.application.retry_strategy import RetryConfig

    obs = Observability()
    retry = RetryConfig(max_attempts=3, base_delay=0.001, max_delay=0.002)
    async with _client(mock_server, obs, retry_config=retry) as client:
        mock_server.add_fault(Fault(status=503, times=1))
        reply = await client.chat(model="gpt-4o-mini", messages=MESSAGES)
    assert reply.content
    data = obs.get_dashboard_data()
    assert data["failed_requests"] == 0 and data["retries"] == 1
    failure = data["circuit_breakers"]["openai/gpt-4o-mini"]["last_failure"]
    assert failure["type"] == "overloaded" and failure["at"] > 0
