"""Configuration of the facade: every environment variable of the design document is validated
at start-up, keys are never printed, programmatic configuration wins, LLM_FORCE_MOCK=1 wins over
all."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from llm_async import ConfigurationError, Settings
from llm_async.facade import LLMClientService, get_llm_client_service, invoke_chat

KEY = "sk-config-secret-key-0123456789"
HELLO = [{"role": "user", "content": "Hello"}]

DOCUMENTED_VARIABLES = {
    "LLM_PROVIDER": ("mock", "provider", "mock"),
    "LLM_FORCE_MOCK": ("0", "force_mock", False),
    "LLM_DAILY_BUDGET": ("100.0", "daily_budget", 100.0),
    "LLM_MONTHLY_BUDGET": ("3000.0", "monthly_budget", 3000.0),
    "LLM_CIRCUIT_FAILURE_THRESHOLD": ("5", "circuit_failure_threshold", 5),
    "LLM_CIRCUIT_TIMEOUT": ("60", "circuit_timeout", 60.0),
    "LLM_MAX_RETRIES": ("3", "max_retries", 3),
    "LLM_RETRY_BACKOFF_BASE": ("2.0", "retry_backoff_base", 2.0),
    "LLM_CACHE_ENABLED": ("1", "cache_enabled", True),
    "LLM_CACHE_TTL": ("3600", "cache_ttl", 3600.0),
}


def test_the_documented_configuration_block_is_read(clean_env: pytest.MonkeyPatch) -> None:
    for name, (text, _, _) in DOCUMENTED_VARIABLES.items():
        clean_env.setenv(name, text)
    with LLMClientService() as service:
        for name, (_, field, value) in DOCUMENTED_VARIABLES.items():
            assert getattr(service.settings, field) == value, name
        assert service.provider == "mock"


@pytest.mark.parametrize(("variable", "bad"), [
    ("LLM_PROVIDER", "acme"),
    ("LLM_FORCE_MOCK", "maybe"),
    ("LLM_DAILY_BUDGET", "-5"),
    ("LLM_MONTHLY_BUDGET", "lots"),
    ("LLM_CIRCUIT_FAILURE_THRESHOLD", "0"),
    ("LLM_CIRCUIT_TIMEOUT", "soon"),
    ("LLM_MAX_RETRIES", "-1"),
    ("LLM_RETRY_BACKOFF_BASE", "0.5"),
    ("LLM_CACHE_ENABLED", "perhaps"),
    ("LLM_CACHE_TTL", "0"),
    ("OPENAI_BASE_URL", "localhost:8000"),
    ("ANTHROPIC_BASE_URL", "api.anthropic.com"),
    ("LLM_TIMEOUT", "-3"),
])
def test_a_bad_variable_fails_at_start_up_naming_it(clean_env: pytest.MonkeyPatch,
                                                     variable: str, bad: str) -> None:
    clean_env.setenv("LLM_PROVIDER", "mock")
    clean_env.setenv(variable, bad)
    threads = threading.active_count()
    with pytest.raises(ConfigurationError) as failure:
        LLMClientService()
    assert failure.value.variable == variable
    assert variable in str(failure.value) and repr(bad) in str(failure.value)
    assert threading.active_count() == threads  # nothing was started
    with pytest.raises(ConfigurationError):
        get_llm_client_service()
    with pytest.raises(ConfigurationError):
        invoke_chat(model="gpt-4", messages=HELLO)


def test_the_process_wide_service_recovers_once_the_environment_is_fixed(
        clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("LLM_FORCE_MOCK", "yes please")
    with pytest.raises(ConfigurationError):
        get_llm_client_service()
    clean_env.setenv("LLM_FORCE_MOCK", "1")
    assert invoke_chat(model="gpt-4", messages=HELLO).text == "This is a mock response."


def test_keys_are_never_printed(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("OPENAI_API_KEY", KEY)
    clean_env.setenv("LLM_MAX_RETRIES", "many")
    with pytest.raises(ConfigurationError) as failure:
        LLMClientService()
    assert KEY not in str(failure.value) and KEY not in repr(failure.value)

    clean_env.setenv("LLM_MAX_RETRIES", "1")
    clean_env.setenv("LLM_FORCE_MOCK", "1")
    with LLMClientService() as service:
        shown = [repr(service), repr(service.settings), str(service.settings),
                 service.settings.model_dump_json(), repr(service.client)]
        assert all(KEY not in text for text in shown)
        assert service.settings.api_key("openai") == KEY  # held, just never shown


@pytest.mark.parametrize(("provider", "variable"), [
    ("openai", "OPENAI_API_KEY"),
    ("anthropic", "ANTHROPIC_API_KEY"),
    ("openrouter", "OPENROUTER_API_KEY"),
])
def test_a_missing_key_fails_at_start_up(clean_env: pytest.MonkeyPatch, provider: str,
                                         variable: str) -> None:
    clean_env.setenv("LLM_PROVIDER", provider)
    with pytest.raises(ConfigurationError) as failure:
        get_llm_client_service()
    assert failure.value.variable == variable and variable in str(failure.value)
    with pytest.raises(ConfigurationError):
        LLMClientService(provider=provider)


def test_an_unknown_programmatic_provider_is_a_configuration_error(
        clean_env: pytest.MonkeyPatch) -> None:
    with pytest.raises(ConfigurationError, match="unknown provider 'acme'"):
        LLMClientService(provider="acme")


def test_a_custom_base_url_needs_no_key(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("OPENAI_BASE_URL", "http://127.0.0.1:9/v1")
    with LLMClientService(provider="openai") as service:
        assert service.provider == "openai"
    with LLMClientService(provider="anthropic", base_url="http://127.0.0.1:9") as service:
        assert service.provider == "anthropic"


def test_force_mock_switches_any_configuration(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("LLM_FORCE_MOCK", "1")
    clean_env.setenv("LLM_PROVIDER", "anthropic")
    for service in (LLMClientService(), LLMClientService(provider="openai"),
                    LLMClientService(provider="openrouter", api_key=KEY)):
        with service:
            assert service.provider == "mock"
            assert service.invoke_chat(model="gpt-4", messages=HELLO).provider == "mock"


def test_programmatic_configuration_overrides_the_environment(
        clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("LLM_PROVIDER", "anthropic")  # no key: would fail if it were used
    clean_env.setenv("LLM_MAX_RETRIES", "1")
    with LLMClientService(provider="mock", model="default-model") as service:
        assert service.provider == "mock"
        assert service.invoke_chat(messages=HELLO).model == "default-model"
        assert service.settings.max_retries == 1
    settings = Settings.from_env(max_retries=7, provider="mock")
    with LLMClientService(settings=settings) as service:
        assert service.settings.max_retries == 7 and service.provider == "mock"


def test_client_keywords_pass_through(clean_env: pytest.MonkeyPatch) -> None:
    from llm_async.infrastructure.transports.mock import MockLLMTransport

    transport = MockLLMTransport("scripted")
    options: dict[str, Any] = {"transport": transport, "layers": []}
    with LLMClientService(provider="openai", **options) as service:  # a transport: no key needed
        assert service.invoke_chat(model="gpt-4", messages=HELLO).text == "scripted"
        assert transport.call_count == 1 and service.client.layers == ()
    assert transport.closed
