"""Azure OpenAI for the mock provider server: the OpenAI Chat Completions wire format under
Azure's paths, key header and content-filter annotations.

* ``POST /openai/deployments/{deployment}/chat/completions?api-version=...`` (the deployment
  names the model; ``api-version`` is required) and the version-less
  ``POST /openai/v1/chat/completions`` (the model in the body);
* the key arrives in ``api-key`` (or as a bearer token, as Entra ID tokens do);
* every answer carries ``prompt_filter_results`` (a first stream chunk with no choices, as
  Azure sends it) and per-choice ``content_filter_results``, all categories ``safe``;
* request ids come in ``apim-request-id``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, ClassVar

from .._wire import (
    ChatRequest,
    Reply,
    RequestError,
    ResponseContext,
    Route,
    StreamScript,
    dumps,
)
from .openai import OpenAIDialect

__all__ = ["SAFE_FILTER_RESULTS", "AzureDialect"]

#: The filter verdict sent for every category of every prompt and completion.
SAFE_FILTER_RESULTS: dict[str, Any] = {
    category: {"filtered": False, "severity": "safe"}
    for category in ("hate", "self_harm", "sexual", "violence")
}
_PROMPT_FILTERS = [{"prompt_index": 0, "content_filter_results": SAFE_FILTER_RESULTS}]


def _annotate_chunk(event: bytes) -> bytes:
    """Add ``content_filter_results`` to each choice of one ``data:`` event."""
    if not event.startswith(b"data: {"):
        return event
    payload = json.loads(event[6:])
    for choice in payload.get("choices") or ():
        choice["content_filter_results"] = SAFE_FILTER_RESULTS
    return f"data: {dumps(payload)}\n\n".encode()


class AzureDialect(OpenAIDialect):
    """Azure OpenAI Chat Completions on the deployment and v1 paths."""

    name: ClassVar[str] = "azure"
    chat_paths: ClassVar[tuple[str, ...]] = (
        "/openai/deployments/{deployment}/chat/completions",
        "/openai/v1/chat/completions",
    )
    models_paths: ClassVar[tuple[str, ...]] = ("/openai/v1/models",)
    request_id_header: ClassVar[str] = "apim-request-id"

    def api_key(self, headers: Mapping[str, str]) -> str | None:
        """The ``api-key`` header, else the bearer token of ``Authorization``."""
        return headers.get("api-key") or super().api_key(headers)

    def route(self, body: Any, params: Mapping[str, str], query: Mapping[str, str]) -> Route:
        """The deployment names the model on the deployment path."""
        base = super().route(body, params, query)
        deployment = params.get("deployment")
        if not deployment:
            return base
        return Route(deployment, base.stream, {"api-version": query.get("api-version", "")})

    def parse_request(self, body: Any, route: Route) -> ChatRequest:
        """The OpenAI body, with the deployment as its model on the deployment path (where a
        body needs no ``model``); the path's ``api-version`` is checked first."""
        if route.options.get("api-version") == "":
            raise RequestError(
                "Missing required query parameter: api-version", param="api-version",
                code="missing_required_parameter", status=404,
                error_type="invalid_request_error")
        if route.model and isinstance(body, dict) and "model" not in body:
            body = {**body, "model": route.model}
        return super().parse_request(body, route)

    def render_response(self, ctx: ResponseContext, request: ChatRequest, reply: Reply) -> bytes:
        """OpenAI's ``chat.completion`` plus the filter results."""
        payload = json.loads(super().render_response(ctx, request, reply))
        payload["prompt_filter_results"] = _PROMPT_FILTERS
        for choice in payload["choices"]:
            choice["content_filter_results"] = SAFE_FILTER_RESULTS
        return dumps(payload).encode()

    def render_stream(
        self, ctx: ResponseContext, request: ChatRequest, reply: Reply
    ) -> StreamScript:
        """OpenAI's chunks after one carrying ``prompt_filter_results``, each choice with its
        ``content_filter_results``."""
        script = super().render_stream(ctx, request, reply)
        first = {"choices": [], "created": 0, "id": "", "model": "", "object": "",
                 "prompt_filter_results": _PROMPT_FILTERS}
        head = [f"data: {dumps(first)}\n\n".encode(), *map(_annotate_chunk, script.head)]
        return StreamScript(head, [_annotate_chunk(e) for e in script.body],
                            [_annotate_chunk(e) for e in script.tail])

