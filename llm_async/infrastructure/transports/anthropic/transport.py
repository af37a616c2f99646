"""The Anthropic Messages API transport: ``POST {base_url}/v1/messages``.

The body comes from :mod:`.encode`, the answer is read by :mod:`.decode` and a stream by
:mod:`.stream`; this class holds the endpoint, the headers and the error of an ``error`` object
sent with HTTP 200.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any, ClassVar

import aiohttp

from ....errors import LLMError, ProtocolError, error_from_response
from ....types import ChatRequest, ChatResponse
from ..base import HTTPTransport
from .decode import ERROR_STATUS, parse_message
from .encode import messages_body
from .stream import AnthropicStreamParser

__all__ = ["ANTHROPIC_VERSION", "DEFAULT_MAX_TOKENS", "AnthropicTransport"]

#: The ``anthropic-version`` header sent with every request.
ANTHROPIC_VERSION = "2023-06-01"
#: ``max_tokens`` sent when the caller gives none (Anthropic requires the field).
DEFAULT_MAX_TOKENS = 4096


class AnthropicTransport(HTTPTransport):
    """``POST {base_url}/v1/messages`` with ``x-api-key`` and ``anthropic-version``.

    ``api_key`` defaults to ``ANTHROPIC_API_KEY`` and ``base_url`` to ``ANTHROPIC_BASE_URL``, then
    ``https://api.anthropic.com`` (a base URL that already ends in ``/v1`` is accepted too).
    ``default_max_tokens`` is sent when a request sets no ``max_tokens``. ``beta`` lists
    ``anthropic-beta`` feature flags.
    """

    provider: ClassVar[str] = "anthropic"
    default_base_url: ClassVar[str] = "https://api.anthropic.com"
    env_api_key: ClassVar[str] = "ANTHROPIC_API_KEY"
    env_base_url: ClassVar[str] = "ANTHROPIC_BASE_URL"
    request_id_headers: ClassVar[tuple[str, ...]] = ("request-id", "x-request-id")

    def __init__(self, api_key: str | aiohttp.ClientSession | None = None,
                 base_url: str | None = None, *,
                 default_max_tokens: int = DEFAULT_MAX_TOKENS,
                 anthropic_version: str = ANTHROPIC_VERSION,
                 beta: list[str] | tuple[str, ...] | None = None,
                 **kwargs: Any) -> None:
        if api_key is None:
            api_key = os.environ.get(self.env_api_key)
        if base_url is None:
            base_url = os.environ.get(self.env_base_url)
        super().__init__(api_key, base_url, **kwargs)
        if isinstance(default_max_tokens, bool) or not isinstance(default_max_tokens, int) \
                or default_max_tokens < 1:
            raise ValueError(f"default_max_tokens must be a positive integer, "
                             f"got {default_max_tokens!r}")
        self.default_max_tokens = default_max_tokens
        self.anthropic_version = anthropic_version
        self.beta = tuple(beta or ())
        root = self.base_url[:-3] if self.base_url.endswith("/v1") else self.base_url
        self._url = f"{root}/v1/messages"

    # -- HTTP ---------------------------------------------------------------------------------

    def url(self, request: ChatRequest) -> str:
        return self._url

    def auth_headers(self) -> dict[str, str]:
        headers = {"anthropic-version": self.anthropic_version}
        if self._api_key:
            headers["x-api-key"] = self._api_key
        if self.beta:
            headers["anthropic-beta"] = ",".join(self.beta)
        return headers

    # -- request and response -----------------------------------------------------------------

    def build_payload(self, request: ChatRequest, *, stream: bool) -> dict[str, Any]:
        """The Messages API body for ``request`` (raises
        :class:`~llm_async.errors.InvalidRequestError` for input Anthropic cannot take, before
        anything is sent)."""
        return messages_body(request, stream=stream, default_max_tokens=self.default_max_tokens,
                             provider=self.provider)

    def parse_response(self, data: Any, request: ChatRequest) -> ChatResponse:
        if not isinstance(data, Mapping):
            raise ProtocolError("response is not a JSON object", provider=self.provider)
        if data.get("type") == "error":
            raise self.stream_error(data.get("error"))
        return parse_message(data, request, self.provider)

    def stream_error(self, error: Any, headers: Mapping[str, str] | None = None) -> LLMError:
        """The typed error for an Anthropic error object received with HTTP 200 (an ``error``
        event in a stream): its ``type`` picks the status (``overloaded_error`` → 529)."""
        etype = error.get("type") if isinstance(error, Mapping) else None
        status = ERROR_STATUS.get(str(etype), 500)
        return error_from_response(status, {"type": "error", "error": error}, headers=headers,
                                   provider=self.provider,
                                   request_id=self._request_id(headers) if headers else None)

    def stream_parser(self, request: ChatRequest) -> AnthropicStreamParser:
        return AnthropicStreamParser(self, request)
