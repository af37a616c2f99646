"""OpenRouter's variations on the OpenAI wire format for the mock provider server
(``POST /api/v1/chat/completions``).

Differences from the OpenAI dialect it extends:

* model ids must name a vendor (``openai/gpt-4o-mini``); ``models`` (a fallback list),
  ``provider`` (routing preferences) and ``route`` are checked for shape;
* usage is always reported — in the body, and in the last stream event before ``[DONE]`` — with
  ``cost`` in credits: :data:`PROMPT_PRICE` and :data:`COMPLETION_PRICE` per million tokens;
* streams carry ``: OPENROUTER PROCESSING`` comment lines (before the first event and midway);
* error bodies are ``{"error": {"code": <status>, "message", "metadata"?}}``; 402 says the
  account has insufficient credits;
* an in-stream error is a chunk with an ``error`` object and ``finish_reason: "error"``
  (``code`` 502 unless the fault's ``error_body`` says otherwise).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from typing import Any, ClassVar

from .._wire import (
    ChatRequest,
    ErrorInfo,
    Reply,
    RequestError,
    ResponseContext,
    Route,
    StreamScript,
    Usage,
    dumps,
)
from ._common import inner_error
from .openai import MODELS as OPENAI_MODELS, OpenAIDialect, reasoning_tokens, usage_payload

__all__ = ["COMPLETION_PRICE", "PROMPT_PRICE", "OpenRouterDialect", "cost"]

#: Mock prices in credits (USD) per million prompt / completion tokens.
PROMPT_PRICE = 0.5
COMPLETION_PRICE = 1.5

_COMMENT = b": OPENROUTER PROCESSING\n\n"
_DONE = b"data: [DONE]\n\n"
_PROVIDER = "MockProvider"
_STREAM_ERROR_DEFAULT: dict[str, Any] = {
    "code": 502,
    "message": "Provider returned error",
    "metadata": {"provider_name": _PROVIDER},
}
_CREDITS_MESSAGE = ("This request requires more credits, or fewer max_tokens. "
                    "Your account or API key has insufficient credits.")


def cost(usage: Usage) -> float:
    """The credits a reply costs at the mock prices."""
    return round((usage.prompt_tokens * PROMPT_PRICE
                  + usage.completion_tokens * COMPLETION_PRICE) / 1_000_000, 12)


def _usage(reply: Reply) -> dict[str, Any]:
    usage = reply.usage
    payload = usage_payload(usage, reasoning_tokens(reply))
    payload["cost"] = cost(usage)
    payload["is_byok"] = False
    payload["cost_details"] = {"upstream_inference_cost": None}
    return payload


def _check_routing(body: Mapping[str, Any]) -> None:
    models = body.get("models")
    if models is not None and (not isinstance(models, list)
                               or not all(isinstance(m, str) and "/" in m for m in models)):
        raise RequestError("'models' must be a list of model ids", param="models",
                           code="invalid_value")
    provider = body.get("provider")
    if provider is not None and not isinstance(provider, Mapping):
        raise RequestError("'provider' must be an object", param="provider", code="invalid_value")
    route = body.get("route")
    if route is not None and route != "fallback":
        raise RequestError("'route' must be 'fallback'", param="route", code="invalid_value")


class OpenRouterDialect(OpenAIDialect):
    """OpenRouter: ``POST /api/v1/chat/completions`` with a bearer key."""

    name: ClassVar[str] = "openrouter"
    chat_paths: ClassVar[tuple[str, ...]] = ("/api/v1/chat/completions",)
    models_paths: ClassVar[tuple[str, ...]] = ("/api/v1/models",)
    request_id_header: ClassVar[str] = "x-generation-id"

    def parse_request(self, body: Any, route: Route) -> ChatRequest:
        """OpenAI's validation, plus vendor-prefixed model ids and the routing fields; usage is
        always included."""
        chat = super().parse_request(body, route)
        if "/" not in chat.model:
            raise RequestError(f"{chat.model} is not a valid model ID", param="model",
                               code="invalid_value")
        _check_routing(body)
        chat.include_usage = True
        reasoning = body.get("reasoning")
        if reasoning is not None and not isinstance(reasoning, Mapping):
            raise RequestError("'reasoning' must be an object", param="reasoning",
                               code="invalid_type")
        if (isinstance(reasoning, Mapping) and reasoning.get("enabled") is not False
                and not reasoning.get("exclude")) or body.get("include_reasoning") is True:
            chat.reasoning = True
        return chat

    def reasoning_fields(self, text: str, signature: str | None) -> dict[str, Any]:
        """``reasoning`` and ``reasoning_details`` (one ``reasoning.text`` entry; its
        signature comes with the last piece of a stream)."""
        detail: dict[str, Any] = {"type": "reasoning.text", "text": text,
                                  "format": "anthropic-claude-v1", "index": 0}
        if signature is not None:
            detail["signature"] = signature
        return {"reasoning": text, "reasoning_details": [detail]}

    def response_id(self, ctx: ResponseContext, reply: Reply) -> str:
        """``gen-`` + request-content hash + request number (hex)."""
        return f"gen-{reply.digest[:16]}{ctx.number:08x}"

    def error_payload(self, status: int, info: ErrorInfo, param: str | None = None) -> Any:
        """``{"error": {"code": status, "message", "metadata"?}}``."""
        error: dict[str, Any] = {"code": status, "message": info.message}
        if status == 402:
            error["message"] = _CREDITS_MESSAGE
            error["metadata"] = {"limit_source": "openrouter_credits"}
        return {"error": error}

    def render_response(self, ctx: ResponseContext, request: ChatRequest, reply: Reply) -> bytes:
        """OpenAI's ``chat.completion`` with ``provider`` and usage ``cost``."""
        payload = json.loads(super().render_response(ctx, request, reply))
        payload["provider"] = _PROVIDER
        payload["usage"] = _usage(reply)
        return dumps(payload).encode()

    def render_stream(
        self, ctx: ResponseContext, request: ChatRequest, reply: Reply
    ) -> StreamScript:
        """OpenAI's chunks with comment lines and a final usage event carrying ``cost``."""
        plain = dataclasses.replace(request, include_usage=False)
        script = super().render_stream(ctx, plain, reply)
        body = list(script.body)
        if body:
            middle = len(body) // 2
            body[middle] = _COMMENT + body[middle]
        usage_event = {
            "id": ctx.response_id,
            "provider": _PROVIDER,
            "model": ctx.model,
            "object": "chat.completion.chunk",
            "created": ctx.created,
            "choices": [],
            "usage": _usage(reply),
        }
        tail = [part for part in script.tail if part != _DONE]
        tail += [("data: " + dumps(usage_event) + "\n\n").encode(), _DONE]
        return StreamScript([_COMMENT, *script.head], body, tail)

    def stream_error_event(
        self, ctx: ResponseContext, reply: Reply, error: dict[str, Any] | None
    ) -> bytes:
        """A chunk with an ``error`` object and ``finish_reason: "error"``."""
        inner = inner_error(error, _STREAM_ERROR_DEFAULT)
        payload = {
            "id": ctx.response_id,
            "object": "chat.completion.chunk",
            "created": ctx.created,
            "model": ctx.model,
            "provider": _PROVIDER,
            "error": inner,
            "choices": [{"index": 0, "delta": {"content": ""}, "finish_reason": "error"}],
        }
        return ("data: " + dumps(payload) + "\n\n").encode()

    def models_body(self) -> bytes:
        """``{"data": [...]}`` of vendor-prefixed ids."""
        data = [{"id": f"openai/{name}", "name": name, "context_length": 128_000,
                 "pricing": {"prompt": str(PROMPT_PRICE / 1e6),
                             "completion": str(COMPLETION_PRICE / 1e6)}}
                for name in OPENAI_MODELS if name != "mock-model"]
        data.append({"id": "anthropic/claude-3.5-haiku", "name": "claude-3.5-haiku",
                     "context_length": 200_000,
                     "pricing": {"prompt": str(PROMPT_PRICE / 1e6),
                                 "completion": str(COMPLETION_PRICE / 1e6)}})
        return dumps({"data": data}).encode()
