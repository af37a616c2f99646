"""Azure OpenAI: the OpenAI Chat Completions wire format on an Azure resource.

* Two URL shapes. ``api_version`` set (the default, from ``OPENAI_API_VERSION`` or
  :data:`DEFAULT_API_VERSION`): the deployment path
  ``{endpoint}/openai/deployments/{deployment}/chat/completions?api-version=...``, where the
  deployment is the request's model (or what ``deployments`` maps it to). ``api_version=None``:
  the version-less v1 path ``{endpoint}/openai/v1/chat/completions``, the model in the body.
* Credentials: the ``api-key`` header (``AZURE_OPENAI_API_KEY``), or a bearer token from
  ``token_provider``, a callable returning a token (plain or awaitable) that is called for every
  request, so a provider that caches and refreshes (``azure-identity``'s) is always current;
  :func:`entra_token_provider` builds one from ``azure-identity`` (the ``azure`` extra).
* The endpoint comes from ``AZURE_OPENAI_ENDPOINT`` (``https://NAME.openai.azure.com``).
* Content filtering: a prompt refused by the filter is a
  :class:`~llm_async.errors.ContentFilterError` (HTTP 400, ``code: content_filter``, with the
  per-category verdict in ``filter_results``); a completion cut by the filter ends with
  ``finish_reason="content_filter"``. The filter verdicts of a reply, for the prompt and the
  completion, are read with :func:`content_filters`.
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, ClassVar
from urllib.parse import quote

import aiohttp
from pydantic import BaseModel, ConfigDict, Field

from ...errors import AuthenticationError, ConfigurationError, LLMError, register_secret
from ...types import ChatRequest, ChatResponse
from .openai import OpenAITransport

__all__ = [
    "DEFAULT_API_VERSION",
    "ENTRA_SCOPE",
    "AzureOpenAITransport",
    "ContentFilterReport",
    "FilterVerdict",
    "TokenProvider",
    "content_filters",
    "entra_token_provider",
]

#: The ``api-version`` sent on the deployment path when neither the constructor nor
#: ``OPENAI_API_VERSION`` names one (the current generally available version).
DEFAULT_API_VERSION = "2024-10-21"
#: The Entra ID scope of Azure OpenAI (Cognitive Services).
ENTRA_SCOPE = "https://cognitiveservices.azure.com/.default"

_FROM_ENV: Any = object()

#: A callable returning a bearer token, or an awaitable of one.
TokenProvider = Callable[[], "str | Awaitable[str]"]


class FilterVerdict(BaseModel):
    """The content filter's verdict on one category (``hate``, ``violence``, ``jailbreak``...)."""

    model_config = ConfigDict(extra="allow", frozen=True)

    filtered: bool = False
    severity: str | None = None
    detected: bool | None = None


class ContentFilterReport(BaseModel):
    """What Azure's content filter said about a reply.

    ``prompt`` holds one mapping of category → verdict per prompt (``prompt_filter_results``),
    ``completion`` the verdicts on the answer (``content_filter_results``).
    """

    model_config = ConfigDict(frozen=True)

    prompt: list[dict[str, FilterVerdict]] = Field(default_factory=list)
    completion: dict[str, FilterVerdict] = Field(default_factory=dict)

    @property
    def filtered(self) -> list[str]:
        """The categories the filter acted on, prompt and completion alike (sorted)."""
        names = {name for verdicts in self.prompt for name, v in verdicts.items() if v.filtered}
        names.update(name for name, v in self.completion.items() if v.filtered)
        return sorted(names)


def _verdicts(raw: Any) -> dict[str, FilterVerdict]:
    if not isinstance(raw, Mapping):
        return {}
    return {str(name): FilterVerdict.model_validate(value) for name, value in raw.items()
            if isinstance(value, Mapping)}


def content_filters(response: ChatResponse) -> ContentFilterReport:
    """The content-filter verdicts of an Azure reply (empty when Azure sent none)."""
    data: Any = response.raw if isinstance(response.raw, Mapping) else {}
    extras = getattr(response, "extras", None)
    if isinstance(extras, Mapping) and not data:
        data = extras
    prompt_raw = data.get("prompt_filter_results") or data.get("prompt_annotations") or []
    prompt = [_verdicts(item.get("content_filter_results")) for item in prompt_raw
              if isinstance(item, Mapping)]
    completion_raw = data.get("content_filter_results")
    choices = data.get("choices")
    if completion_raw is None and isinstance(choices, list) and choices \
            and isinstance(choices[0], Mapping):
        completion_raw = choices[0].get("content_filter_results")
    return ContentFilterReport(prompt=prompt, completion=_verdicts(completion_raw))


def entra_token_provider(credential: Any = None, *, scope: str = ENTRA_SCOPE) -> TokenProvider:
    """A bearer-token provider for Entra ID (Azure AD) through ``azure-identity``.

    ``credential`` is an ``azure.identity.aio`` credential (``DefaultAzureCredential()`` when
    omitted); the provider caches the token and refreshes it before it expires. Needs the
    ``azure`` extra (``pip install llm-async[azure]``).
    """
    try:
        from azure.identity.aio import DefaultAzureCredential, get_bearer_token_provider
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ConfigurationError(
            "Entra ID tokens need azure-identity: pip install 'llm-async[azure]'",
            variable="azure-identity") from exc
    provider: TokenProvider = get_bearer_token_provider(
        credential if credential is not None else DefaultAzureCredential(), scope)
    return provider


class AzureOpenAITransport(OpenAITransport):
    """Chat Completions on an Azure OpenAI resource, with ``api-key`` or a bearer token.

    ``api_key`` defaults to ``AZURE_OPENAI_API_KEY``, ``endpoint`` (or ``base_url``) to
    ``AZURE_OPENAI_ENDPOINT`` and ``api_version`` to ``OPENAI_API_VERSION``, then
    :data:`DEFAULT_API_VERSION`; pass ``api_version=None`` for the v1 path. ``deployments``
    maps model names to deployment names (a model without an entry is its own deployment).
    ``token_provider`` replaces the key with ``Authorization: Bearer <token>``. An
    ``aiohttp.ClientSession`` given first (or as ``session=``) is used for every call.
    """

    provider: ClassVar[str] = "azure"
    default_base_url: ClassVar[str] = ""
    env_api_key: ClassVar[str] = "AZURE_OPENAI_API_KEY"
    env_base_url: ClassVar[str] = "AZURE_OPENAI_ENDPOINT"
    env_api_version: ClassVar[str] = "OPENAI_API_VERSION"
    request_id_headers: ClassVar[tuple[str, ...]] = ("apim-request-id", "x-request-id",
                                                    "x-ms-request-id")
    def __init__(self, api_key: str | aiohttp.ClientSession | None = None,
                 base_url: str | None = None, *,
                 endpoint: str | None = None, api_version: Any = _FROM_ENV,
                 deployments: Mapping[str, str] | None = None,
                 token_provider: TokenProvider | None = None, **kwargs: Any) -> None:
        if isinstance(api_key, aiohttp.ClientSession):  # AzureOpenAITransport(session)
            if "session" in kwargs:
                raise TypeError("AzureOpenAITransport() got two aiohttp sessions")
            api_key, kwargs["session"] = None, api_key
        if endpoint is not None and base_url is not None and endpoint != base_url:
            raise TypeError("give endpoint or base_url, not both")
        base_url = endpoint if endpoint is not None else base_url
        if base_url is None:
            base_url = os.environ.get(self.env_base_url)
        if not base_url:
            raise ConfigurationError(
                f"{self.env_base_url} is not set: Azure OpenAI needs the resource endpoint "
                "(https://NAME.openai.azure.com)", variable=self.env_base_url)
        if token_provider is not None and not callable(token_provider):
            raise TypeError("token_provider must be a callable returning a token")
        if token_provider is not None:
            api_key = ""  # a bearer token replaces the key; never read the key variable then
        super().__init__(api_key, base_url.rstrip("/"), **kwargs)
        if api_version is _FROM_ENV:
            api_version = os.environ.get(self.env_api_version) or DEFAULT_API_VERSION
        self.api_version: str | None = api_version
        self.deployments = dict(deployments or {})
        self.token_provider = token_provider
        self.signs_requests = token_provider is not None
        root = self.base_url
        for suffix in ("/openai/v1", "/openai"):
            if root.endswith(suffix):
                root = root[: -len(suffix)]
                break
        self._root = root

    def deployment(self, model: str) -> str:
        """The deployment a model is served by."""
        return self.deployments.get(model, model)

    def url(self, request: ChatRequest) -> str:
        if self.api_version is None:
            return f"{self._root}/openai/v1/chat/completions"
        deployment = quote(self.deployment(request.model), safe="")
        return (f"{self._root}/openai/deployments/{deployment}/chat/completions"
                f"?api-version={quote(self.api_version, safe='')}")

    def auth_headers(self) -> dict[str, str]:
        headers = super().auth_headers()
        headers.pop("Authorization", None)
        if self._api_key:
            headers["api-key"] = self._api_key
        return headers

    async def sign(self, url: str, headers: dict[str, str], body: bytes) -> None:
        """Fetch a token from ``token_provider`` and send it as a bearer token."""
        provider = self.token_provider
        assert provider is not None
        try:
            token = provider()
            if inspect.isawaitable(token):
                token = await token
        except LLMError:
            raise
        except Exception as exc:  # the credential library's own error types
            raise AuthenticationError(
                f"the token provider failed: {type(exc).__name__}",
                provider=self.provider) from exc
        if not isinstance(token, str) or not token:
            raise AuthenticationError("the token provider returned no token",
                                      provider=self.provider)
        register_secret(token)
        headers["Authorization"] = f"Bearer {token}"

    def __repr__(self) -> str:
        version = self.api_version or "v1"
        return f"AzureOpenAITransport(endpoint={self._root!r}, api_version={version!r})"
