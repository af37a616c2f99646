"""The seed's facade examples, as written — only ``app.ai`` became ``llm_async`` — and the status
methods its dashboard example reads, checked against real activity."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from llm_async import CircuitBreakerOpenError, FakeClock, ServerError
from llm_async.testing import Fault

if TYPE_CHECKING:
    from conftest import ThreadedServer

KEY = "sk-seed-example-key-0123456789"


def test_facade_pattern_example(mock_env: pytest.MonkeyPatch) -> None:
    # -- the seed, "Facade Pattern" ----------------------------------------------------------
    from llm_async.facade import get_llm_client_service

    client = get_llm_client_service()
    response = client.invoke_chat(
        model="gpt-4",
        messages=[{"role": "user", "content": "Hello"}]
    )
    # -----------------------------------------------------------------------------------------
    assert response.text == "This is a mock response."
    assert get_llm_client_service() is client


def test_migration_guide_example(mock_env: pytest.MonkeyPatch) -> None:
    # -- the seed, "Migration Guide", After --------------------------------------------------
    from llm_async.facade import invoke_chat

    response = invoke_chat(
        model="gpt-4",
        messages=[{"role": "user", "content": "Hello"}],
    )
    # -----------------------------------------------------------------------------------------
    assert response.text and response.usage.output_tokens == 5


def test_programmatic_configuration_example(mock_env: pytest.MonkeyPatch) -> None:
    # -- the seed, "Programmatic Configuration" ----------------------------------------------
    from llm_async.application.circuit_breaker import CircuitBreakerConfig
    from llm_async.application.retry_strategy import RetryConfig
    from llm_async.facade import LLMClientService

    client = LLMClientService(
        provider="openai",
        circuit_breaker_config=CircuitBreakerConfig(
            failure_threshold=5,
            timeout=60.0,
        ),
        retry_config=RetryConfig(
            max_attempts=5,
            base_delay=1.0,
        ),
    )
    # -----------------------------------------------------------------------------------------
    from llm_async.application.circuit_breaker import CircuitBreakerLayer
    from llm_async.application.retry_strategy import RetryLayer

    with client:
        assert client.provider == "mock"  # LLM_FORCE_MOCK=1 wins over provider="openai"
        retry = client.call(client.client.layer, RetryLayer)
        breaker = client.call(client.client.layer, CircuitBreakerLayer)
        assert retry is not None and retry.config.max_attempts == 5
        assert retry.config.base_delay == 1.0
        assert breaker is not None and breaker.config.failure_threshold == 5
        assert breaker.config.timeout == 60.0
        assert client.invoke_chat(model="gpt-4", messages=[{"role": "user", "content": "Hi"}])


def test_dashboard_example(mock_env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
                           ) -> None:
    # -- the seed, "Dashboard Example" -------------------------------------------------------
    from llm_async.facade import get_llm_client_service

    client = get_llm_client_service()

    # Get all metrics
    cost_metrics = client.get_cost_metrics()
    circuit_status = client.get_circuit_breaker_status()
    retry_metrics = client.get_retry_metrics()

    print(f"Total cost: ${cost_metrics['total_cost']:.2f}")
    print(f"Circuit state: {circuit_status['state']}")
    print(f"Retry success rate: {retry_metrics['successful_retries']}")
    # -----------------------------------------------------------------------------------------
    assert capsys.readouterr().out.splitlines() == [
        "Total cost: $0.00", "Circuit state: closed", "Retry success rate: 0"]


def test_environment_configuration_reaches_the_layers(clean_env: pytest.MonkeyPatch) -> None:
    """The seed's "Environment Variables" block, read by get_llm_client_service()."""
    for name, value in {
        "LLM_PROVIDER": "mock",
        "LLM_FORCE_MOCK": "0",
        "LLM_DAILY_BUDGET": "100.0",
        "LLM_MONTHLY_BUDGET": "3000.0",
        "LLM_CIRCUIT_FAILURE_THRESHOLD": "7",
        "LLM_CIRCUIT_TIMEOUT": "45",
        "LLM_MAX_RETRIES": "2",
        "LLM_RETRY_BACKOFF_BASE": "3.0",
    }.items():
        clean_env.setenv(name, value)
    from llm_async.application.circuit_breaker import CircuitBreakerLayer
    from llm_async.application.retry_strategy import RetryLayer
    from llm_async.facade import get_llm_client_service

    client = get_llm_client_service()
    retry = client.call(client.client.layer, RetryLayer)
    breaker = client.call(client.client.layer, CircuitBreakerLayer)
    assert retry is not None and breaker is not None
    assert retry.config.max_attempts == 3 and retry.config.exponential_base == 3.0
    assert breaker.config.failure_threshold == 7 and breaker.config.timeout == 45.0
    budgets = client.get_cost_metrics()["budgets"]
    assert budgets["daily"]["limit"] == 100.0 and budgets["daily"]["period"] == "daily"
    assert budgets["monthly"]["limit"] == 3000.0


# -- the status methods on real activity ----------------------------------------------------


def test_retry_metrics_count_a_successful_retry(threaded_server: ThreadedServer,
                                                clean_env: pytest.MonkeyPatch) -> None:
    from llm_async.application.retry_strategy import RetryConfig
    from llm_async.facade import LLMClientService

    clock = FakeClock()  # the backoff "sleeps" without sleeping
    with LLMClientService(provider="openai", api_key=KEY, base_url=threaded_server.base_url,
                          retry_config=RetryConfig(max_attempts=3, base_delay=0.5),
                          clock=clock) as client:
        threaded_server.add_fault(Fault(status=503, times=1))
        reply = client.invoke_chat(model="gpt-4",
                                   messages=[{"role": "user", "content": "echo: ok"}])
        assert reply.text == "ok"
        metrics = client.get_retry_metrics()
        assert metrics["successful_retries"] == 1 and metrics["retry.successful"] == 1
        assert metrics["total_attempts"] == 1 and metrics["failed_retries"] == 0
        assert metrics["total_delay"] == pytest.approx(clock.total_slept)
        assert threaded_server.stats()["requests"] == 2

        threaded_server.add_fault(Fault(status=500, times=3))
        with pytest.raises(ServerError):
            client.invoke_chat(model="gpt-4", messages=[{"role": "user", "content": "x"}])
        assert client.get_retry_metrics()["failed_retries"] == 1


def test_circuit_breaker_status_follows_the_breaker(threaded_server: ThreadedServer,
                                                    clean_env: pytest.MonkeyPatch) -> None:
    from llm_async.application.circuit_breaker import CircuitBreakerConfig
    from llm_async.facade import LLMClientService

    with LLMClientService(provider="openai", api_key=KEY, base_url=threaded_server.base_url,
                          circuit_breaker_config=CircuitBreakerConfig(failure_threshold=2,
                                                                      timeout=60.0),
                          retry_config=None) as client:
        hello = [{"role": "user", "content": "Hello"}]
        assert client.get_circuit_breaker_status()["state"] == "closed"
        assert client.get_circuit_breaker_status(model="gpt-4")["state"] == "closed"
        client.invoke_chat(model="gpt-4", messages=hello)
        threaded_server.add_fault(Fault(status=500, times=2))
        for _ in range(2):
            with pytest.raises(ServerError):
                client.invoke_chat(model="gpt-4", messages=hello)
        with pytest.raises(CircuitBreakerOpenError):
            client.invoke_chat(model="gpt-4", messages=hello)
        assert threaded_server.stats()["requests"] == 3  # the rejected call was never sent

        status = client.get_circuit_breaker_status()
        assert status["state"] == "open"
        assert status["circuit.requests.rejected"] == 1
        assert status["breakers"]["openai/gpt-4"]["state"] == "open"
        assert client.get_circuit_breaker_status(model="gpt-4")["state"] == "open"
        assert client.get_circuit_breaker_status(model="gpt-4o")["state"] == "closed"
        # another model has its own breaker
        assert client.invoke_chat(model="gpt-4o", messages=hello).text
        assert client.get_retry_metrics()["enabled"] is False


def test_status_methods_with_the_features_off(clean_env: pytest.MonkeyPatch) -> None:
    from llm_async.facade import LLMClientService

    with LLMClientService(provider="mock", retry_config=None, circuit_breaker_config=None,
                          track_cost=False) as client:
        client.invoke_chat(model="m", messages=[{"role": "user", "content": "hi"}])
        assert client.get_circuit_breaker_status()["state"] == "closed"
        assert client.get_retry_metrics()["successful_retries"] == 0
        assert client.get_cost_metrics()["total_cost"] == 0.0


def test_cost_metrics_follow_the_ledger(threaded_server: ThreadedServer,
                                        clean_env: pytest.MonkeyPatch) -> None:
    from llm_async import BudgetExceededError
    from llm_async.application.cost_manager import BudgetConfig, BudgetPeriod, CostManager
    from llm_async.facade import LLMClientService

    manager = CostManager()
    with LLMClientService(provider="openai", api_key=KEY, base_url=threaded_server.base_url,
                          cost_manager=manager) as client:
        assert client.cost_manager is manager
        hello = [{"role": "user", "content": "Hello"}]
        reply = client.invoke_chat(model="gpt-4o-mini", messages=hello, max_tokens=20,
                                   user_id="user123")
        assert reply.cost is not None and reply.cost > 0
        metrics = client.get_cost_metrics()
        assert metrics["total_cost"] == pytest.approx(float(reply.cost))
        assert metrics["cost.total"] == metrics["total_cost"]
        assert metrics["requests"] == 1 and metrics["by_user"] == {"user123": metrics["total_cost"]}
        assert list(metrics["by_model"]) == ["gpt-4o-mini"]

        manager.set_budget("tight", BudgetConfig(limit=reply.cost, period=BudgetPeriod.TOTAL))
        with pytest.raises(BudgetExceededError):
            client.invoke_chat(model="gpt-4o-mini", messages=hello, max_tokens=20)
        assert threaded_server.stats()["requests"] == 1  # rejected before sending
        budget = client.get_cost_metrics()["budgets"]["tight"]
        assert budget["exceeded"] is True and budget["percentage"] == 100.0


# -- the provider when LLM_PROVIDER is unset -------------------------------------------------

_KEYS = {"openrouter": "OPENROUTER_API_KEY", "openai": "OPENAI_API_KEY",
         "anthropic": "ANTHROPIC_API_KEY"}


def _point_at(server: ThreadedServer, env: pytest.MonkeyPatch) -> None:
    env.setenv("OPENAI_BASE_URL", server.base_url)
    env.setenv("ANTHROPIC_BASE_URL", server.server.anthropic_base_url)
    env.setenv("OPENROUTER_BASE_URL", server.server.openrouter_base_url)


@pytest.mark.parametrize(("keys", "expected"), [
    (["openrouter"], "openrouter"),
    (["openai"], "openai"),
    (["anthropic"], "anthropic"),
    (["openai", "openrouter"], "openrouter"),   # OpenRouter is the default
    (["anthropic", "openai"], "openai"),
])
def test_the_provider_is_the_one_whose_key_is_set(threaded_server: ThreadedServer,
                                                  clean_env: pytest.MonkeyPatch,
                                                  keys: list[str], expected: str) -> None:
    from llm_async.facade import get_llm_client_service

    for name in keys:
        clean_env.setenv(_KEYS[name], KEY)
    if keys == ["openrouter"]:  # the seed's setup: nothing but OpenRouter's key
        clean_env.setenv("OPENROUTER_BASE_URL", threaded_server.server.openrouter_base_url)
    else:
        _point_at(threaded_server, clean_env)
    client = get_llm_client_service()
    assert client.provider == expected
    model = "openai/gpt-4" if expected == "openrouter" else "gpt-4"  # OpenRouter names vendors
    response = client.invoke_chat(model=model, messages=[{"role": "user", "content": "echo: hi"}])
    assert (response.provider, response.text) == (expected, "hi")
    assert threaded_server.stats()["requests"] == 1


def test_with_no_provider_configured_the_error_lists_what_to_set(
        clean_env: pytest.MonkeyPatch) -> None:
    from llm_async import ConfigurationError
    from llm_async.facade import get_llm_client_service

    with pytest.raises(ConfigurationError) as caught:
        get_llm_client_service()
    message = str(caught.value)
    for variable in ("OPENROUTER_API_KEY", "OPENAI_API_KEY", "ANTHROPIC_API_KEY", "LLM_PROVIDER",
                     "LLM_FORCE_MOCK=1"):
        assert variable in message
    assert caught.value.variable == "LLM_PROVIDER"


def test_an_explicit_provider_needs_its_own_key(clean_env: pytest.MonkeyPatch) -> None:
    from llm_async import ConfigurationError
    from llm_async.facade import get_llm_client_service

    clean_env.setenv("OPENROUTER_API_KEY", KEY)
    clean_env.setenv("LLM_PROVIDER", "anthropic")
    with pytest.raises(ConfigurationError, match="ANTHROPIC_API_KEY is not set") as caught:
        get_llm_client_service()
    assert KEY not in str(caught.value)


def test_settings_choose_the_provider_without_llm_provider() -> None:
    from llm_async import Settings

    assert Settings.from_env({}).effective_provider == "openrouter"
    assert Settings.from_env({"ANTHROPIC_API_KEY": "k"}).effective_provider == "anthropic"
    assert Settings.from_env({"OPENAI_BASE_URL": "http://127.0.0.1:1/v1"}).effective_provider \
        == "openai"  # a compatible server without a key
    assert Settings.from_env({"OPENAI_API_KEY": "k", "ANTHROPIC_BASE_URL": "http://127.0.0.1:1"}
                             ).effective_provider == "openai"  # a key before a base URL
    assert Settings.from_env({"LLM_PROVIDER": "openai", "OPENROUTER_API_KEY": "k"}
                             ).effective_provider == "openai"
    assert Settings.from_env({"OPENROUTER_API_KEY": "k", "LLM_FORCE_MOCK": "1"}
                             ).effective_provider == "mock"
