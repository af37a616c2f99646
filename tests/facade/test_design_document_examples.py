"""The design document's facade examples, as written — only ``app.ai`` became ``llm_async`` —
and the status methods its dashboard example reads, checked against real activity."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

from llm_async import CircuitBreakerOpenError, FakeClock, ServerError
from llm_async.testing import Fault

if TYPE_CHECKING:
    from conftest import ThreadedServer

KEY = "sk-design-example-key-0123456789"


def test_facade_pattern_example(mock_env: pytest.MonkeyPatch) -> None:
    # -- the design document, "Facade Pattern" -----------------------------------------------
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
    # -- the design document, "Migration Guide", After ---------------------------------------
    from llm_async.facade import invoke_chat

    response = invoke_chat(
        model="gpt-4",
        messages=[{"role": "user", "content": "Hello"}],
    )
    # -----------------------------------------------------------------------------------------
    assert response.text and response.usage.output_tokens == 5


def test_programmatic_configuration_example(mock_env: pytest.MonkeyPatch) -> None:
    # -- the design document, "Programmatic Configuration" -----------------------------------
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
    # -- the design document, "Dashboard Example" --------------------------------------------
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
    """The design document's "Environment Variables" block, read by get_llm_client_service()."""
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
    if keys == ["openrouter"]:  # the design document's setup: nothing but OpenRouter's key
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
    for variable in ("OPENROUTER_API_KEY", "OPENAI_API_KEY", "ANTHROPIC_API_KEY", "GEMINI_API_KEY",
                     "AZURE_OPENAI_API_KEY", "LLM_PROVIDER", "LLM_FORCE_MOCK=1"):
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
    assert Settings.from_env({"GEMINI_API_KEY": "k"}).effective_provider == "gemini"
    assert Settings.from_env({"GEMINI_API_KEY": "k", "OPENAI_API_KEY": "k"}
                             ).effective_provider == "openai"  # registration order


# -- every example of the architecture document, in its order ---------------------------------

#: The document's Python examples, verbatim but for ``app.ai`` -> ``llm_async``, in its order.
#: (Its "Before" example imports the old ``app.services.llm_client``, which is not this library.)
DOCUMENT_EXAMPLES: list[tuple[str, str]] = [
    ('Facade Pattern', """\
from llm_async.facade import get_llm_client_service

client = get_llm_client_service()
response = client.invoke_chat(
    model="gpt-4",
    messages=[{"role": "user", "content": "Hello"}]
)
"""),
    ('Strategy Pattern', """\
from llm_async.application.retry_strategy import (
    ExponentialBackoffRetry,
    LinearBackoffRetry,
    FibonacciBackoffRetry,
    AdaptiveRetry,
)

# Use adaptive retry that learns from errors
strategy = AdaptiveRetry()
"""),
    ('Circuit Breaker Pattern', """\
from llm_async.application.circuit_breaker import CircuitBreaker

breaker = CircuitBreaker("llm_service")
result = breaker.call(lambda: expensive_operation())
"""),
    ('1. Circuit Breaker, Usage', """\
from llm_async.application.circuit_breaker import (
    CircuitBreaker,
    CircuitBreakerConfig,
)

config = CircuitBreakerConfig(
    failure_threshold=5,
    success_threshold=2,
    timeout=60.0,
)

breaker = CircuitBreaker("my_service", config)

try:
    result = breaker.call(my_function, arg1, arg2)
except CircuitBreakerOpenError:
    # Handle circuit open
    pass
"""),
    ('2. Cost Management, Usage', """\
from llm_async.application.cost_manager import (
    get_cost_manager,
    BudgetConfig,
    BudgetPeriod,
)

manager = get_cost_manager()

# Set budget
manager.set_budget(
    "daily_budget",
    BudgetConfig(limit=100.0, period=BudgetPeriod.DAILY)
)

# Track usage
record = manager.track_usage(
    model="gpt-4",
    input_tokens=1000,
    output_tokens=500,
    user_id="user123",
)

# Get metrics
metrics = manager.get_metrics()
print(f"Total cost: ${metrics.total_cost:.2f}")

# Get recommendations
recommendations = manager.get_optimization_recommendations()
"""),
    ('3. Retry Strategy, Usage', """\
from llm_async.application.retry_strategy import (
    ExponentialBackoffRetry,
    RetryConfig,
    RetryExecutor,
)

config = RetryConfig(
    max_attempts=5,
    base_delay=1.0,
    exponential_base=2.0,
)

strategy = ExponentialBackoffRetry(config)
executor = RetryExecutor(strategy)

result = executor.execute(my_function, arg1, arg2)
"""),
    ('4. Observability, Usage', """\
from llm_async.observability import get_observability

obs = get_observability()

# Start tracing
span = obs.trace_operation("llm_call", model="gpt-4")

try:
    result = perform_operation()
    obs.finish_operation(span, status="success")
except Exception as e:
    obs.finish_operation(span, status="error", error=str(e))
    raise

# Get metrics
dashboard = obs.get_dashboard_data()
"""),
    ('5. Performance Optimization, Usage', """\
from llm_async.optimization import (
    get_cache,
    PromptOptimizer,
    get_deduplicator,
)

# Caching
cache = get_cache()
cached_response = cache.get(request_key)
if not cached_response:
    response = call_llm()
    cache.set(request_key, response, ttl=3600)

# Prompt optimization
optimizer = PromptOptimizer()
optimized = optimizer.optimize(
    text=long_prompt,
    max_tokens=1000,
    remove_redundancy=True,
)

# Deduplication
dedup = get_deduplicator()
result = dedup.deduplicate(
    key=request_hash,
    executor=lambda: expensive_call()
)
"""),
    ('Transports: OpenRouter', """\
from llm_async.infrastructure.transports import OpenRouterTransport

transport = OpenRouterTransport(client)
response = transport.chat_completion(
    messages=[{"role": "user", "content": "Hello"}],
    model="openai/gpt-4",
)
"""),
    ('Transports: OpenAI', """\
from llm_async.infrastructure.transports.openai_transport import OpenAITransport

transport = OpenAITransport(api_key="sk-...")
response = transport.chat_completion(
    messages=[{"role": "user", "content": "Hello"}],
    model="gpt-4",
)
"""),
    ('Transports: Anthropic', """\
from llm_async.infrastructure.transports.anthropic_transport import AnthropicTransport

transport = AnthropicTransport(api_key="sk-ant-...")
response = transport.chat_completion(
    messages=[{"role": "user", "content": "Hello"}],
    model="claude-3-opus-20240229",
)
"""),
    ('Transports: Mock', """\
from llm_async.infrastructure.transports import MockLLMTransport

transport = MockLLMTransport(default_response="Test response")
response = transport.chat_completion(
    messages=[{"role": "user", "content": "Hello"}],
    model="mock-model",
)
"""),
    ('Programmatic Configuration', """\
from llm_async.facade import LLMClientService
from llm_async.application.circuit_breaker import CircuitBreakerConfig
from llm_async.application.retry_strategy import RetryConfig

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
"""),
    ('Mock Testing', """\
from llm_async.infrastructure.transports import MockLLMTransport

transport = MockLLMTransport("Mock response")
# Use in tests
"""),
    ('Dashboard Example', """\
from llm_async.facade import get_llm_client_service

client = get_llm_client_service()

# Get all metrics
cost_metrics = client.get_cost_metrics()
circuit_status = client.get_circuit_breaker_status()
retry_metrics = client.get_retry_metrics()

print(f"Total cost: ${cost_metrics['total_cost']:.2f}")
print(f"Circuit state: {circuit_status['state']}")
print(f"Retry success rate: {retry_metrics['successful_retries']}")
"""),
    ('Best Practices 1: Always Use Circuit Breaker', """\
breaker = get_circuit_breaker("external_service")
result = breaker.call(external_api_call)
"""),
    ('Best Practices 2: Set Appropriate Budgets', """\
manager = get_cost_manager()
manager.set_budget("daily", BudgetConfig(limit=100.0, period=BudgetPeriod.DAILY))
"""),
    ('Best Practices 3: Use Adaptive Retry', """\
strategy = AdaptiveRetry()
executor = RetryExecutor(strategy)
"""),
    ('Best Practices 4: Enable Caching', """\
cache = get_cache()
response = cache.get(key) or call_llm_and_cache(key)
"""),
    ('Best Practices 5: Monitor Metrics', """\
recommendations = cost_manager.get_optimization_recommendations()
for rec in recommendations:
    print(rec)
"""),
    ('Migration Guide, After', """\
from llm_async.facade import invoke_chat

response = invoke_chat(
    model="gpt-4",
    messages=[{"role": "user", "content": "Hello"}],
)
"""),
    ('Troubleshooting: Circuit Breaker Stuck Open', """\
# Manually reset
breaker.reset()

# Or adjust thresholds
config = CircuitBreakerConfig(failure_threshold=10)
"""),
    ('Troubleshooting: Budget Exceeded', """\
# Check status
status = manager.get_budget_status("daily")
print(f"Usage: {status['percentage']}%")

# Increase limit
manager.set_budget("daily", BudgetConfig(limit=200.0))
"""),
    ('Troubleshooting: High Latency', """\
# Enable caching
cache = get_cache()

# Use prompt optimization
optimizer = PromptOptimizer()
optimized = optimizer.optimize(prompt, max_tokens=1000)

# Check metrics
metrics = obs.get_dashboard_data()
print(f"Avg duration: {metrics['avg_duration_ms']}ms")
"""),
]

#: What the examples use without defining it, defined the way an application would have it.
UNDEFINED = """\
from llm_async.application.circuit_breaker import get_circuit_breaker
from llm_async.application.cost_manager import get_cost_manager

def my_function(a, b):
    return a + b

arg1, arg2 = 20, 22

def expensive_operation():
    return "expensive result"

def perform_operation():
    return "operation result"

def call_llm():
    return "a fresh answer"

def expensive_call():
    return "computed once"

def external_api_call():
    return {"status": "ok"}

def call_llm_and_cache(key):
    get_cache().set(key, "a fresh answer", ttl=60)
    return "a fresh answer"

request_key = request_hash = key = "a request fingerprint"
long_prompt = prompt = "Please, please summarise the following report carefully. " * 40
cost_manager = get_cost_manager()
"""


async def _new_session() -> Any:
    import aiohttp

    return aiohttp.ClientSession()


def test_every_example_of_the_document_runs_as_written(
        threaded_server: ThreadedServer, mock_env: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    from anyio.from_thread import start_blocking_portal

    from llm_async.optimization import get_cache

    assert len(DOCUMENT_EXAMPLES) == 24
    # The facade runs on the mock provider (LLM_FORCE_MOCK=1); the transports the examples build
    # themselves talk HTTP to the embedded server, found through the base-URL variables.
    _point_at(threaded_server, mock_env)
    mock_env.setenv("OPENROUTER_API_KEY", KEY)  # the OpenRouter example passes no key
    get_cache().clear()
    namespace: dict[str, Any] = {"__name__": "document_examples", "get_cache": get_cache}
    exec(compile(UNDEFINED, "<undefined names>", "exec"), namespace)
    after: dict[str, dict[str, Any]] = {}
    transports: list[Any] = []
    with start_blocking_portal() as portal:
        # The OpenRouter example passes "client": an aiohttp session, here on an event loop
        # that an application runs in a thread of its own.
        session = portal.call(_new_session)
        try:
            for title, source in DOCUMENT_EXAMPLES:
                if title == "Transports: OpenRouter":
                    namespace["client"] = session
                exec(compile(source, f"<{title}>", "exec"), namespace)
                after[title] = dict(namespace)
                if title.startswith(("Transports", "Mock Testing")):
                    transports.append(namespace["transport"])
            for transport in transports:
                transport.close()
            assert not session.closed  # the application's session stays the application's
        finally:
            portal.call(session.close)

    def seen(title: str, name: str) -> Any:
        return after[title][name]

    assert seen("Facade Pattern", "response").text == "This is a mock response."
    assert seen("Circuit Breaker Pattern", "result") == "expensive result"
    assert seen("1. Circuit Breaker, Usage", "result") == 42
    assert seen("2. Cost Management, Usage", "record").cost > 0
    assert seen("3. Retry Strategy, Usage", "result") == 42
    for title, provider in [("Transports: OpenRouter", "openrouter"),
                            ("Transports: OpenAI", "openai"),
                            ("Transports: Anthropic", "anthropic")]:
        response = seen(title, "response")
        assert (response.provider, bool(response.text)) == (provider, True), title
    assert threaded_server.stats()["requests"] == 3  # one HTTP call per transport example
    assert seen("Transports: Mock", "response").text == "Test response"
    assert seen("Mock Testing", "transport").default_response == "Mock response"
    assert seen("Best Practices 1: Always Use Circuit Breaker", "result") == {"status": "ok"}
    assert seen("Best Practices 4: Enable Caching", "response") == "a fresh answer"
    assert seen("Migration Guide, After", "response").text == "This is a mock response."
    printed = capsys.readouterr().out.splitlines()
    for prefix in ("Total cost: $", "Circuit state: closed", "Retry success rate: 0", "Usage: ",
                   "Avg duration: "):
        assert any(line.startswith(prefix) for line in printed), (prefix, printed)
