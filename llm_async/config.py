"""Settings read from the environment (the ``LLM_*`` variables, provider keys and URLs).

``Settings.from_env()`` validates every variable at start-up; a bad value raises
:class:`~llm_async.errors.ConfigurationError` naming the variable and the value. API keys are
held as :class:`pydantic.SecretStr` and never printed. Programmatic arguments to
:class:`~llm_async.AsyncLLMClient` override what the environment says.

=================================  =========  =============================================
variable                           default    meaning
=================================  =========  =============================================
``LLM_PROVIDER``                   (below)    ``openrouter``, ``openai``, ``anthropic``, ``mock``,
                                              ``azure``, ``gemini``, ``bedrock``
``LLM_FORCE_MOCK``                 0          ``1`` switches any configuration to ``mock``
``LLM_MODEL``                      (none)     default model when a call names none
``LLM_DAILY_BUDGET``               (none)     hard daily budget in USD
``LLM_MONTHLY_BUDGET``             (none)     hard monthly budget in USD
``LLM_CIRCUIT_FAILURE_THRESHOLD``  5          consecutive failures that open the breaker
``LLM_CIRCUIT_TIMEOUT``            60         seconds the breaker stays open
``LLM_MAX_RETRIES``                3          retries after the first attempt
``LLM_RETRY_BACKOFF_BASE``         2.0        exponential backoff base
``LLM_CACHE_ENABLED``              0          response cache on/off
``LLM_CACHE_TTL``                  3600       cache time-to-live in seconds
``LLM_TIMEOUT``                    600        total timeout of a call in seconds
``OPENAI_API_KEY`` / ``_BASE_URL``            OpenAI (or any OpenAI-compatible server)
``ANTHROPIC_API_KEY`` / ``_BASE_URL``         Anthropic
``OPENROUTER_API_KEY`` / ``_BASE_URL``        OpenRouter
``AZURE_OPENAI_API_KEY``                      Azure OpenAI key (``api-key`` header)
``AZURE_OPENAI_ENDPOINT``                     Azure OpenAI resource, ``https://NAME.openai.azure.com``
``OPENAI_API_VERSION``             (GA)       Azure ``api-version`` (read by the Azure transport)
``GEMINI_API_KEY`` / ``_BASE_URL``            Google Gemini (``GOOGLE_API_KEY`` also works)
``AWS_BEARER_TOKEN_BEDROCK``                  Bedrock API key (else SigV4 with the AWS chain)
``AWS_ENDPOINT_URL_BEDROCK_RUNTIME``          Bedrock endpoint (default: from ``AWS_REGION``)
=================================  =========  =============================================

With ``LLM_PROVIDER`` unset the provider is OpenRouter, the default, when ``OPENROUTER_API_KEY``
is set; else the first registered provider (OpenAI, Anthropic, Azure, Gemini, Bedrock, ...)
whose API key is set, then whose base URL is set; else OpenRouter, and
:meth:`Settings.check_credentials` names every variable that would do.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator

from .errors import ConfigurationError
from .infrastructure.transports.registry import get_provider, provider_names

__all__ = ["DEFAULT", "PROVIDERS", "Settings"]


class _Default:
    """Sentinel: "use the client's default (from the environment)", unlike ``None`` ("off")."""

    _instance: _Default | None = None

    def __new__(cls) -> _Default:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "DEFAULT"

    def __bool__(self) -> bool:
        return False


#: An option left at ``DEFAULT`` takes its value from the environment (:class:`Settings`).
DEFAULT: Any = _Default()

#: The providers of the built-in registry (see :mod:`llm_async.infrastructure.transports.registry`).
PROVIDERS = provider_names()

#: The provider when ``LLM_PROVIDER`` is unset and no provider's key or base URL is.
_DEFAULT_PROVIDER = "openrouter"


def _implicit_order() -> tuple[str, ...]:
    """The order in which an unset ``LLM_PROVIDER`` looks for a configured provider: OpenRouter,
    then the other registered providers in registration order (the mock never)."""
    others = (name for name in provider_names() if name not in (_DEFAULT_PROVIDER, "mock"))
    return (_DEFAULT_PROVIDER, *others)

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


class Settings(BaseModel):
    """Validated configuration. Field aliases are the environment variable names."""

    model_config = ConfigDict(frozen=True, populate_by_name=True, extra="ignore")

    provider: str | None = Field(None, alias="LLM_PROVIDER")
    force_mock: bool = Field(False, alias="LLM_FORCE_MOCK")
    model: str | None = Field(None, alias="LLM_MODEL")
    daily_budget: float | None = Field(None, alias="LLM_DAILY_BUDGET", gt=0)
    monthly_budget: float | None = Field(None, alias="LLM_MONTHLY_BUDGET", gt=0)
    circuit_failure_threshold: int = Field(5, alias="LLM_CIRCUIT_FAILURE_THRESHOLD", ge=1)
    circuit_timeout: float = Field(60.0, alias="LLM_CIRCUIT_TIMEOUT", gt=0)
    max_retries: int = Field(6, alias="LLM_MAX_RETRIES", ge=0, le=20)
    retry_backoff_base: float = Field(2.0, alias="LLM_RETRY_BACKOFF_BASE", ge=1.0)
    cache_enabled: bool = Field(False, alias="LLM_CACHE_ENABLED")
    cache_ttl: float = Field(3600.0, alias="LLM_CACHE_TTL", gt=0)
    timeout: float = Field(600.0, alias="LLM_TIMEOUT", gt=0)
    openai_api_key: SecretStr | None = Field(None, alias="OPENAI_API_KEY")
    openai_base_url: str | None = Field(None, alias="OPENAI_BASE_URL")
    anthropic_api_key: SecretStr | None = Field(None, alias="ANTHROPIC_API_KEY")
    anthropic_base_url: str | None = Field(None, alias="ANTHROPIC_BASE_URL")
    openrouter_api_key: SecretStr | None = Field(None, alias="OPENROUTER_API_KEY")
    openrouter_base_url: str | None = Field(None, alias="OPENROUTER_BASE_URL")
    azure_api_key: SecretStr | None = Field(None, alias="AZURE_OPENAI_API_KEY")
    azure_base_url: str | None = Field(None, alias="AZURE_OPENAI_ENDPOINT")
    gemini_api_key: SecretStr | None = Field(None, alias="GEMINI_API_KEY")
    gemini_base_url: str | None = Field(None, alias="GEMINI_BASE_URL")
    bedrock_api_key: SecretStr | None = Field(None, alias="AWS_BEARER_TOKEN_BEDROCK")
    bedrock_base_url: str | None = Field(None, alias="AWS_ENDPOINT_URL_BEDROCK_RUNTIME")

    @field_validator("provider", mode="before")
    @classmethod
    def _lower(cls, value: Any) -> Any:
        value = value.strip().lower() if isinstance(value, str) else value
        if isinstance(value, str) and value not in provider_names():
            raise ValueError(f"expected one of {', '.join(provider_names())}")
        return value

    @field_validator("force_mock", "cache_enabled", mode="before")
    @classmethod
    def _flag(cls, value: Any) -> Any:
        if isinstance(value, str):
            text = value.strip().lower()
            if text in _TRUE:
                return True
            if text in _FALSE:
                return False
            raise ValueError("expected 0/1, true/false, yes/no or on/off")
        return value

    @field_validator("openai_base_url", "anthropic_base_url", "openrouter_base_url",
                     "azure_base_url", "gemini_base_url", "bedrock_base_url")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("http://", "https://")):
            raise ValueError("expected an http:// or https:// URL")
        return value or None

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Read and validate the environment (``os.environ`` by default).

        Empty variables count as unset. ``overrides`` (by field name) win over the environment.
        """
        env = os.environ if environ is None else environ
        data: dict[str, Any] = {}
        for name, info in cls.model_fields.items():
            alias = info.alias or name
            value = env.get(alias)
            if value is not None and (value.strip() or name in ("force_mock", "cache_enabled")):
                data[alias] = value.strip()
        for key, value in overrides.items():
            if key not in cls.model_fields:
                raise ConfigurationError(f"unknown setting {key!r}", variable=key)
            if value is not None:
                data[cls.model_fields[key].alias or key] = value
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            err = exc.errors(include_url=False)[0]
            variable = str(err["loc"][0]) if err["loc"] else "?"
            bad = data.get(variable)
            shown = "***" if "KEY" in variable else repr(bad)
            raise ConfigurationError(
                f"invalid environment variable {variable}={shown}: {err['msg']}",
                variable=variable,
            ) from None

    @property
    def effective_provider(self) -> str:
        """``mock`` when ``LLM_FORCE_MOCK`` is set, else ``LLM_PROVIDER``; when that is unset,
        OpenRouter if its key is set, else the first provider whose key, then whose base URL,
        is set, else OpenRouter (the default)."""
        if self.force_mock:
            return "mock"
        if self.provider is not None:
            return self.provider
        for found in (self.api_key, self.base_url):
            for name in _implicit_order():
                if found(name):
                    return name
        return _DEFAULT_PROVIDER

    def api_key(self, provider: str) -> str | None:
        secret = getattr(self, f"{provider}_api_key", None)
        return secret.get_secret_value() if isinstance(secret, SecretStr) else None

    def base_url(self, provider: str) -> str | None:
        value = getattr(self, f"{provider}_base_url", None)
        return value if isinstance(value, str) else None

    def check_credentials(self, provider: str, *, api_key: str | None = None,
                          base_url: str | None = None) -> None:
        """Fail at start-up, not at the first call, when ``provider`` has no API key.

        A provider needs a key unless it is ``mock`` or points at a custom base URL (a local
        OpenAI-compatible server may need none). The error names the variable, never a value.
        """
        if provider not in provider_names():
            raise ConfigurationError(
                f"unknown provider {provider!r}; expected one of {', '.join(provider_names())}",
                variable="LLM_PROVIDER")
        spec = get_provider(provider)
        if not spec.needs_key or api_key or self.api_key(provider):
            return
        if base_url or self.base_url(provider):
            return
        if self.provider is None and provider == self.effective_provider:
            keys = ", ".join(get_provider(name).key_env or f"{name.upper()}_API_KEY"
                             for name in _implicit_order())
            raise ConfigurationError(
                f"no provider is configured: set the API key of one ({keys}; OpenRouter is "
                f"the default), or LLM_PROVIDER with its key, or <PROVIDER>_BASE_URL for a "
                f"compatible server, or LLM_FORCE_MOCK=1 for the mock provider",
                variable="LLM_PROVIDER")
        variable = spec.key_env or f"{provider.upper()}_API_KEY"
        base_var = spec.base_url_env or f"{provider.upper()}_BASE_URL"
        raise ConfigurationError(
            f"{variable} is not set (LLM_PROVIDER={provider} needs an API key); set it, point "
            f"{base_var} at a compatible server, or set LLM_FORCE_MOCK=1",
            variable=variable)
