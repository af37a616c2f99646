"""OpenRouter: the OpenAI wire format on ``https://openrouter.ai/api/v1``, plus its extras.

* attribution headers ``HTTP-Referer`` (``site_url``) and ``X-Title`` (``app_name``), from the
  constructor or ``OPENROUTER_SITE_URL`` / ``OPENROUTER_APP_NAME``;
* model ids name the vendor (``openai/gpt-4o-mini``, ``anthropic/claude-3.5-haiku``) and go out
  as written;
* ``usage: {"include": true}`` is sent with every request, and the credits OpenRouter reports
  (``usage.cost``) are kept as ``response.provider_cost`` (and on the final stream chunk);
* SSE comment lines (``: OPENROUTER PROCESSING``) are skipped by the SSE decoder;
* 402 → :class:`~llm_async.errors.InsufficientCreditsError` (retryable only when OpenRouter sends
  ``Retry-After``, as it does for its in-flight budget); an error object in a 200 body or stream,
  or a choice finishing with ``"error"``, raises the typed error of its ``code``;
* provider routing (``provider``), model fallbacks (``models``, ``route``) and ``transforms``
  pass through ``extra_body``; ``routing=`` on the constructor sets defaults for every request;
* ``reasoning`` / ``reasoning_details`` come back as reasoning parts (with their signatures),
  and an assistant message's reasoning parts go back as ``reasoning_details``, which OpenRouter
  needs to continue a tool loop with a reasoning model.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import aiohttp

from ...errors import InvalidRequestError, LLMError
from ...types import ChatChunk, ChatRequest, ChatResponse, Message, ReasoningPart
from .openai import OpenAITransport
from .openai.stream import _OpenAIStreamParser

__all__ = ["ROUTING_FIELDS", "OpenRouterTransport"]

#: Request fields that steer OpenRouter's routing; given in ``extra_body`` or ``routing=``.
ROUTING_FIELDS = ("provider", "models", "route", "transforms")

_GENERATION_FAILED = {"code": 502, "message": "the upstream provider failed mid-generation"}


def _cost(usage: Any) -> float | None:
    if not isinstance(usage, Mapping):
        return None
    cost = usage.get("cost")
    if isinstance(cost, int | float) and not isinstance(cost, bool):
        return float(cost)
    return None


class OpenRouterTransport(OpenAITransport):
    """``POST {base_url}/chat/completions`` on OpenRouter with a bearer key.

    ``api_key`` defaults to ``OPENROUTER_API_KEY``, ``base_url`` to ``OPENROUTER_BASE_URL`` and
    then ``https://openrouter.ai/api/v1``. ``routing`` holds default routing fields
    (``{"provider": {"sort": "price"}}``, ``{"models": [...]}``), which a request's
    ``extra_body`` overrides field by field.
    """

    provider: ClassVar[str] = "openrouter"
    default_base_url: ClassVar[str] = "https://openrouter.ai/api/v1"
    env_api_key: ClassVar[str] = "OPENROUTER_API_KEY"
    env_base_url: ClassVar[str] = "OPENROUTER_BASE_URL"
    request_id_headers: ClassVar[tuple[str, ...]] = ("x-generation-id", "x-request-id")

    def __init__(self, api_key: str | aiohttp.ClientSession | None = None,
                 base_url: str | None = None, *,
                 site_url: str | None = None, app_name: str | None = None,
                 routing: Mapping[str, Any] | None = None, **kwargs: Any) -> None:
        super().__init__(api_key, base_url, **kwargs)
        self.site_url = site_url if site_url is not None else os.environ.get("OPENROUTER_SITE_URL")
        self.app_name = app_name if app_name is not None else os.environ.get("OPENROUTER_APP_NAME")
        routing = dict(routing or {})
        unknown = sorted(set(routing) - set(ROUTING_FIELDS))
        if unknown:
            raise ValueError(f"unknown routing field(s) {unknown}; expected {ROUTING_FIELDS}")
        _check_routing(routing, "routing")
        self.routing = routing

    def auth_headers(self) -> dict[str, str]:
        headers = super().auth_headers()
        if self.site_url:
            headers["HTTP-Referer"] = self.site_url
        if self.app_name:
            headers["X-Title"] = self.app_name
        return headers

    def build_payload(self, request: ChatRequest, *, stream: bool) -> dict[str, Any]:
        """OpenAI's body plus ``usage.include``, the default routing and the routing fields of
        ``extra_body`` (checked for shape before anything is sent)."""
        _check_routing(request.extra_body, "extra_body")
        body = super().build_payload(request, stream=stream)
        for key, value in self.routing.items():
            body.setdefault(key, value)
        body.setdefault("usage", {"include": True})
        return body

    def message_payload(self, message: Message) -> dict[str, Any]:
        """OpenAI's message shape, plus the assistant's reasoning as ``reasoning_details``."""
        out = super().message_payload(message)
        if message.role == "assistant" and isinstance(message.content, list):
            details: list[dict[str, Any]] = []
            for part in message.content:
                if not isinstance(part, ReasoningPart):
                    continue
                entry: dict[str, Any]
                if part.encrypted is not None:
                    entry = {"type": "reasoning.encrypted", "data": part.encrypted}
                else:
                    entry = {"type": "reasoning.text", "text": part.text}
                if part.signature is not None:
                    entry["signature"] = part.signature
                if part.format is not None:
                    entry["format"] = part.format
                entry["index"] = len(details)
                details.append(entry)
            if details:
                out["reasoning_details"] = details
        return out

    def map_error(self, status: int, body: Any, headers: Mapping[str, str]) -> LLMError:
        """OpenAI's mapping; a 402 that comes with ``Retry-After`` is marked retryable."""
        error = super().map_error(status, body, headers)
        if status == 402 and getattr(error, "retry_after", None) is not None:
            error.retryable = True  # the in-flight budget frees up; a credit limit does not
        return error

    def parse_response(self, data: Any, request: ChatRequest) -> ChatResponse:
        """OpenAI's parse, plus ``finish_reason: "error"`` raised and ``usage.cost`` kept as
        ``provider_cost``."""
        if isinstance(data, Mapping):
            choices = data.get("choices")
            if isinstance(choices, list) and choices and isinstance(choices[0], Mapping) \
                    and choices[0].get("finish_reason") == "error":
                raise self.in_stream_error(choices[0].get("error") or data.get("error")
                                           or _GENERATION_FAILED)
        response = super().parse_response(data, request)
        response.provider_cost = _cost(data.get("usage"))
        return response

    def in_stream_error(self, error: Any) -> Exception:
        """The typed error of an OpenRouter error object: its numeric ``code`` is the status
        (502 when it has none)."""
        if isinstance(error, Mapping) and not isinstance(error.get("code"), int):
            error = {**error, "code": 502}
        elif not isinstance(error, Mapping):
            error = {"code": 502, "message": str(error or "generation failed")}
        return super().in_stream_error(error)

    def stream_parser(self, request: ChatRequest) -> _OpenRouterStreamParser:
        return _OpenRouterStreamParser(self)


def _check_routing(fields: Mapping[str, Any], where: str) -> None:
    """Reject routing fields of the wrong shape before they reach the wire."""
    models = fields.get("models")
    if models is not None and (
            isinstance(models, str) or not isinstance(models, Sequence)
            or not all(isinstance(m, str) and m for m in models)):
        raise InvalidRequestError("models must be a list of model ids",
                                  field=f"{where}.models", provider="openrouter")
    provider = fields.get("provider")
    if provider is not None and not isinstance(provider, Mapping):
        raise InvalidRequestError("provider must be an object of routing preferences",
                                  field=f"{where}.provider", provider="openrouter")
    route = fields.get("route")
    if route is not None and route != "fallback":
        raise InvalidRequestError("route must be 'fallback'", field=f"{where}.route",
                                  provider="openrouter")


class _OpenRouterStreamParser(_OpenAIStreamParser):
    """OpenAI's chunk parser, plus the reported cost on the usage chunk and ``finish_reason:
    "error"`` raised as a typed error."""

    __slots__ = ()

    def chunks(self, obj: dict[str, Any]) -> list[ChatChunk]:
        for choice in obj.get("choices") or ():
            if isinstance(choice, Mapping) and choice.get("finish_reason") == "error":
                raise self.transport.in_stream_error(choice.get("error") or _GENERATION_FAILED)
        out = super().chunks(obj)
        cost = _cost(obj.get("usage"))
        if cost is not None and out:
            out[-1].provider_cost = cost  # the usage chunk, which OpenAI's parser appends last
        return out
