"""The provider registry: one entry per provider, so adding one touches one place.

A :class:`ProviderSpec` names the provider's transport (imported on first use, so an unused
provider costs nothing), the environment variables its key and base URL come from, its default
endpoint and the ``gen_ai.provider.name`` that traces report. :func:`make_transport` builds a
transport from the registry; :func:`register_provider` adds one (a plug-in provider, or a test
double)::

    register_provider(ProviderSpec(
        name="acme", transport="acme_llm.transport:AcmeTransport",
        key_env="ACME_API_KEY", base_url_env="ACME_BASE_URL",
        default_base_url="https://api.acme.example/v1", otel_name="acme"))
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ...errors import InvalidRequestError

if TYPE_CHECKING:
    from ...domain.ports import Handler

__all__ = [
    "ProviderSpec",
    "get_provider",
    "make_transport",
    "otel_provider_name",
    "provider_names",
    "register_provider",
]


@dataclass(frozen=True, slots=True)
class ProviderSpec:
    """Everything the library needs to know about a provider, besides its transport code.

    ``transport`` is ``"module:Class"``; the class takes ``(api_key, base_url, **options)``
    (``http=False``: no arguments, for in-process transports such as the mock).
    ``needs_key=False`` marks providers that authenticate without an API key variable (a cloud
    credential chain, a local server).
    """

    name: str
    transport: str
    otel_name: str
    key_env: str | None = None
    base_url_env: str | None = None
    default_base_url: str | None = None
    needs_key: bool = True
    http: bool = True

    def load(self) -> type[Any]:
        """The transport class (imported now)."""
        module, _, attr = self.transport.partition(":")
        cls: type[Any] = getattr(importlib.import_module(module), attr)
        return cls


_PACKAGE = "llm_async.infrastructure.transports"

_REGISTRY: dict[str, ProviderSpec] = {}


def register_provider(spec: ProviderSpec, *, replace: bool = False) -> None:
    """Add ``spec`` to the registry (``replace=True`` to override an existing name)."""
    if spec.name in _REGISTRY and not replace:
        raise ValueError(f"provider {spec.name!r} is already registered")
    _REGISTRY[spec.name] = spec


def get_provider(name: str) -> ProviderSpec:
    """The spec of provider ``name``; an unknown name raises an error listing the known ones."""
    spec = _REGISTRY.get(name)
    if spec is None:
        raise InvalidRequestError(
            f"unknown provider {name!r}; expected one of {', '.join(provider_names())}",
            field="provider")
    return spec


def otel_provider_name(name: str | None) -> str:
    """The ``gen_ai.provider.name`` of provider ``name`` (``_OTHER`` when unknown)."""
    spec = _REGISTRY.get(name or "")
    return spec.otel_name if spec is not None else (name or "_OTHER")


def provider_names() -> tuple[str, ...]:
    """The registered provider names, in registration order."""
    return tuple(_REGISTRY)


def make_transport(provider: str, *, api_key: str | None = None, base_url: str | None = None,
                   **options: Any) -> Handler:
    """A transport for ``provider`` from the registry (its module is imported now)."""
    spec = get_provider(provider)
    cls = spec.load()
    if not spec.http:
        transport: Handler = cls()
        return transport
    transport = cls(api_key, base_url, **options)
    return transport


for _spec in (
    ProviderSpec("openai", f"{_PACKAGE}.openai:OpenAITransport", "openai",
                 key_env="OPENAI_API_KEY", base_url_env="OPENAI_BASE_URL",
                 default_base_url="https://api.openai.com/v1"),
    ProviderSpec("anthropic", f"{_PACKAGE}.anthropic:AnthropicTransport", "anthropic",
                 key_env="ANTHROPIC_API_KEY", base_url_env="ANTHROPIC_BASE_URL",
                 default_base_url="https://api.anthropic.com"),
    ProviderSpec("openrouter", f"{_PACKAGE}.openrouter_transport:OpenRouterTransport",
                 "openrouter", key_env="OPENROUTER_API_KEY", base_url_env="OPENROUTER_BASE_URL",
                 default_base_url="https://openrouter.ai/api/v1"),
    ProviderSpec("mock", f"{_PACKAGE}.mock:MockLLMTransport", "mock", needs_key=False,
                 http=False),
    # Azure: the endpoint names the resource (no default); the key may be replaced by an Entra
    # ID token provider given to the transport.
    ProviderSpec("azure", f"{_PACKAGE}.azure_transport:AzureOpenAITransport", "azure.ai.openai",
                 key_env="AZURE_OPENAI_API_KEY", base_url_env="AZURE_OPENAI_ENDPOINT"),
    ProviderSpec("gemini", f"{_PACKAGE}.gemini:GeminiTransport", "gcp.gemini",
                 key_env="GEMINI_API_KEY", base_url_env="GEMINI_BASE_URL",
                 default_base_url="https://generativelanguage.googleapis.com/v1beta"),
    # Bedrock signs with the AWS credential chain (a Bedrock API key is optional); its endpoint
    # follows the region.
    ProviderSpec("bedrock", f"{_PACKAGE}.bedrock:BedrockTransport", "aws.bedrock",
                 key_env="AWS_BEARER_TOKEN_BEDROCK",
                 base_url_env="AWS_ENDPOINT_URL_BEDROCK_RUNTIME", needs_key=False),
):
    register_provider(_spec)
