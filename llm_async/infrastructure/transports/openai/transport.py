"""The Chat Completions transport: ``POST {base_url}/chat/completions`` with a bearer key.

Message shapes come from :mod:`.encode`, the answer is read by :mod:`.decode` and a stream by
:mod:`.stream`; this class holds the endpoint, the headers, the body's assembly and the error
of an ``error`` object sent with HTTP 200.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any, ClassVar

import aiohttp

from ....errors import InvalidRequestError, ProtocolError, error_from_body
from ....types import ChatRequest, ChatResponse, Message, Usage
from ..base import HTTPTransport
from .decode import _RESPONSE_FIELDS, _extras, _plain_response, openai_usage, parse_choice
from .encode import _REASONING_PREFIXES, message_payload, response_format_payload
from .stream import _OpenAIStreamParser

__all__ = ["OpenAITransport"]


class OpenAITransport(HTTPTransport):
    """``POST {base_url}/chat/completions`` with a bearer key.

    ``max_tokens_field`` chooses between ``max_tokens`` and ``max_completion_tokens``; by default
    reasoning models (o1/o3/o4/gpt-5) get the latter and everything else the former, which every
    OpenAI-compatible server understands. Every stream asks for ``stream_options.include_usage``.
    """

    provider: ClassVar[str] = "openai"
    default_base_url: ClassVar[str] = "https://api.openai.com/v1"
    env_api_key: ClassVar[str] = "OPENAI_API_KEY"
    env_base_url: ClassVar[str] = "OPENAI_BASE_URL"

    def __init__(self, api_key: str | aiohttp.ClientSession | None = None,
                 base_url: str | None = None, *,
                 max_tokens_field: str | None = None, organization: str | None = None,
                 **kwargs: Any) -> None:
        if api_key is None:
            api_key = os.environ.get(self.env_api_key)
        if base_url is None:
            base_url = os.environ.get(self.env_base_url)
        super().__init__(api_key, base_url, **kwargs)
        self.max_tokens_field = max_tokens_field
        self.organization = organization
        self._url = f"{self.base_url}/chat/completions"

    def url(self, request: ChatRequest) -> str:
        return self._url

    def auth_headers(self) -> dict[str, str]:
        headers: dict[str, str] = {}
        if self._api_key:
            headers["Authorization"] = f"Bearer {self._api_key}"
        if self.organization:
            headers["OpenAI-Organization"] = self.organization
        return headers

    def build_payload(self, request: ChatRequest, *, stream: bool) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": request.model,
            "messages": [self.message_payload(m) for m in request.messages],
        }
        if request.temperature is not None:
            body["temperature"] = request.temperature
        if request.top_p is not None:
            body["top_p"] = request.top_p
        if request.max_tokens is not None:
            field = self.max_tokens_field or (
                "max_completion_tokens" if request.model.startswith(_REASONING_PREFIXES)
                else "max_tokens"
            )
            body[field] = request.max_tokens
        if request.stop:
            body["stop"] = request.stop
        if request.seed is not None:
            body["seed"] = request.seed
        if request.presence_penalty is not None:
            body["presence_penalty"] = request.presence_penalty
        if request.frequency_penalty is not None:
            body["frequency_penalty"] = request.frequency_penalty
        if request.tools:
            body["tools"] = [t.model_dump(exclude_none=True) for t in request.tools]
        if request.tool_choice is not None:
            body["tool_choice"] = request.tool_choice
        if request.n is not None:
            body["n"] = request.n
        if request.logprobs is not None:
            body["logprobs"] = request.logprobs
        if request.top_logprobs is not None:
            if not request.logprobs:
                raise InvalidRequestError("top_logprobs needs logprobs=True",
                                          field="top_logprobs", provider=self.provider)
            body["top_logprobs"] = request.top_logprobs
        fmt = response_format_payload(request.response_format)
        if fmt is not None:
            body["response_format"] = fmt
        if stream:
            body["stream"] = True
            body["stream_options"] = {"include_usage": True}
        if request.extra_body:
            body.update(request.extra_body)
        return body

    def message_payload(self, message: Message) -> dict[str, Any]:
        """The wire shape of one message (providers with extra message fields override it)."""
        return message_payload(message)

    def parse_response(self, data: Any, request: ChatRequest) -> ChatResponse:
        plain = _plain_response(data, request)
        return plain if plain is not None else self.parse_any_response(data, request)

    def parse_any_response(self, data: Any, request: ChatRequest) -> ChatResponse:
        """Any chat completion (what :meth:`parse_response` falls back to when the answer is
        not the usual one-choice text)."""
        if not isinstance(data, Mapping):
            raise ProtocolError("response is not a JSON object", provider=self.provider)
        if "error" in data and not data.get("choices"):
            raise self.in_stream_error(data["error"])
        choices = data.get("choices")
        if not isinstance(choices, list) or not choices or not isinstance(choices[0], Mapping):
            raise ProtocolError("response has no choices", provider=self.provider)
        extras: dict[str, Any] = {}
        _extras(data, _RESPONSE_FIELDS, extras)
        parsed = [parse_choice(choice, self.provider, extras if i == 0 else None)
                  for i, choice in enumerate(choices) if isinstance(choice, Mapping)]
        parsed.sort(key=lambda c: c.index)
        first = parsed[0]
        return ChatResponse.model_construct(
            id=str(data.get("id") or ""),
            model=str(data.get("model") or request.model),
            content=first.content,
            tool_calls=first.tool_calls,
            finish_reason=first.finish_reason,
            usage=openai_usage(data.get("usage")) or Usage(),
            parts=first.parts,
            refusal=first.refusal,
            logprobs=first.logprobs,
            other_choices=parsed[1:],
            extras=extras,
            raw=data,
        )

    def in_stream_error(self, error: Any) -> Exception:
        """A typed error from an error object sent with HTTP 200 (in a body or an SSE event),
        classified by its content like the same error with its HTTP status
        (``insufficient_quota`` is a :class:`~llm_async.errors.QuotaExceededError`)."""
        return error_from_body({"error": error}, provider=self.provider)

    def stream_parser(self, request: ChatRequest) -> _OpenAIStreamParser:
        return _OpenAIStreamParser(self)
