"""The Gemini transport: ``models/{model}:generateContent`` and
``:streamGenerateContent?alt=sse`` with the ``x-goog-api-key`` header.

The body comes from :mod:`.encode`, the answer is read by :mod:`.decode`, a stream by
:mod:`.stream` and an error body by :mod:`.errors`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any, ClassVar
from urllib.parse import quote

import aiohttp

from ....errors import LLMError, ProtocolError
from ....types import ChatRequest, ChatResponse
from ..base import HTTPTransport
from .decode import parse_generate
from .encode import generate_body
from .errors import event_status, google_error
from .stream import GeminiStreamParser

__all__ = ["GeminiTransport"]


class GeminiTransport(HTTPTransport):
    """``POST {base_url}/models/{model}:generateContent`` (streams:
    ``:streamGenerateContent?alt=sse``) with ``x-goog-api-key``.

    ``api_key`` defaults to ``GEMINI_API_KEY`` (then ``GOOGLE_API_KEY``) and ``base_url`` to
    ``GEMINI_BASE_URL``, then ``https://generativelanguage.googleapis.com/v1beta``. An
    ``aiohttp.ClientSession`` given first (or as ``session=``) is used for every call.
    """

    provider: ClassVar[str] = "gemini"
    default_base_url: ClassVar[str] = "https://generativelanguage.googleapis.com/v1beta"
    env_api_key: ClassVar[str] = "GEMINI_API_KEY"
    env_base_url: ClassVar[str] = "GEMINI_BASE_URL"
    request_id_headers: ClassVar[tuple[str, ...]] = ("x-request-id", "x-goog-request-id")

    def __init__(self, api_key: str | aiohttp.ClientSession | None = None,
                 base_url: str | None = None, **kwargs: Any) -> None:
        if isinstance(api_key, aiohttp.ClientSession):  # GeminiTransport(session)
            if "session" in kwargs:
                raise TypeError("GeminiTransport() got two aiohttp sessions")
            api_key, kwargs["session"] = None, api_key
        if api_key is None:
            api_key = os.environ.get(self.env_api_key) or os.environ.get("GOOGLE_API_KEY")
        if base_url is None:
            base_url = os.environ.get(self.env_base_url)
        super().__init__(api_key, base_url, **kwargs)

    # -- HTTP ---------------------------------------------------------------------------------

    def _model_url(self, request: ChatRequest) -> str:
        return f"{self.base_url}/models/{quote(request.model.removeprefix('models/'), safe='')}"

    def url(self, request: ChatRequest) -> str:
        return f"{self._model_url(request)}:generateContent"

    def stream_url(self, request: ChatRequest) -> str:
        return f"{self._model_url(request)}:streamGenerateContent?alt=sse"

    def auth_headers(self) -> dict[str, str]:
        return {"x-goog-api-key": self._api_key} if self._api_key else {}

    # -- request and response -----------------------------------------------------------------

    def build_payload(self, request: ChatRequest, *, stream: bool) -> dict[str, Any]:
        """The ``GenerateContentRequest`` body for ``request`` (raises
        :class:`~llm_async.errors.InvalidRequestError` for input Gemini cannot take)."""
        return generate_body(request, self.provider)

    def parse_response(self, data: Any, request: ChatRequest) -> ChatResponse:
        if not isinstance(data, Mapping):
            raise ProtocolError("response is not a JSON object", provider=self.provider)
        if "error" in data and not data.get("candidates"):
            raise self.error_event(data)
        return parse_generate(data, request, self.provider)

    def map_error(self, status: int, body: Any, headers: Mapping[str, str]) -> LLMError:
        """Gemini's error body, typed: ``status`` as ``error_type``, the ``ErrorInfo`` reason as
        ``code``; an invalid key (``API_KEY_INVALID``, sent with 400) is an
        :class:`~llm_async.errors.AuthenticationError`, a per-day quota a
        :class:`~llm_async.errors.QuotaExceededError`."""
        error = body.get("error") if isinstance(body, Mapping) else None
        if not isinstance(error, Mapping):
            return super().map_error(status, body, headers)
        return google_error(status, error, body, headers, provider=self.provider,
                            request_id=self._request_id(headers))

    def error_event(self, data: Mapping[str, Any]) -> LLMError:
        """The typed error of an error object sent with HTTP 200 (in a body or a stream
        event): its ``code``, else its ``status``, gives the HTTP status it stands for."""
        return self.map_error(event_status(data), dict(data), {})

    def stream_parser(self, request: ChatRequest) -> GeminiStreamParser:
        return GeminiStreamParser(self)
