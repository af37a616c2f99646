"""The interface a provider wire format implements in the embedded server.

A dialect translates between its provider's HTTP shape and the neutral wire model of
:mod:`llm_async.testing._wire`: it names its paths, reads the API key and the route (model,
stream) of a request, parses the body into a neutral :class:`~llm_async.testing._wire.ChatRequest`
and renders a neutral :class:`~llm_async.testing._wire.Reply` as a response body, a stream
script, an error body, an in-stream error and a garbled event.  The server applies faults,
authentication and counting around it, the same for every dialect.

A new dialect is one module under :mod:`llm_async.testing.dialects` and one entry in its
``DIALECTS`` tuple.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from typing import Any, ClassVar

from ._wire import (
    ChatRequest,
    ErrorInfo,
    RateLimitSnapshot,
    Reply,
    ResponseContext,
    Route,
    StreamScript,
)

__all__ = ["Dialect"]


class Dialect(ABC):
    """A provider wire format."""

    #: Short name (used in logs and stats).
    name: ClassVar[str] = "base"
    #: POST paths served by the generic chat handler (aiohttp route patterns).
    chat_paths: ClassVar[tuple[str, ...]] = ()
    #: GET paths that list models.
    models_paths: ClassVar[tuple[str, ...]] = ()
    #: Header carrying the request id.
    request_id_header: ClassVar[str] = "x-request-id"
    #: Content type of a streamed answer.
    stream_content_type: ClassVar[str] = "text/event-stream"

    @abstractmethod
    def api_key(self, headers: Mapping[str, str]) -> str | None:
        """The API key a request presents, or ``None``."""

    def route(self, body: Any, params: Mapping[str, str], query: Mapping[str, str]) -> Route:
        """The model and stream flag of a request, read before it is validated.

        ``params`` are the path's placeholders, ``query`` its query string.  By default both
        come from the JSON body's ``model`` and ``stream`` fields.
        """
        if type(body) is not dict:
            return Route(None, False)
        model = body.get("model")
        return Route(model if isinstance(model, str) else None, body.get("stream") is True)

    @abstractmethod
    def parse_request(self, body: Any, route: Route) -> ChatRequest:
        """Validate a parsed JSON body; raise :class:`~llm_async.testing._wire.RequestError`
        if invalid."""

    @abstractmethod
    def response_id(self, ctx: ResponseContext, reply: Reply) -> str:
        """The id of the completion returned for this request."""

    @abstractmethod
    def error_payload(self, status: int, info: ErrorInfo, param: str | None = None) -> Any:
        """The JSON error body for ``status`` described by ``info``."""

    @abstractmethod
    def render_response(self, ctx: ResponseContext, request: ChatRequest, reply: Reply) -> bytes:
        """The encoded non-streaming response body."""

    @abstractmethod
    def render_stream(
        self, ctx: ResponseContext, request: ChatRequest, reply: Reply
    ) -> StreamScript:
        """The encoded stream events."""

    @abstractmethod
    def stream_error_event(
        self, ctx: ResponseContext, reply: Reply, error: dict[str, Any] | None
    ) -> bytes:
        """An in-stream error event (``error`` is the fault's ``error_body`` or ``None``)."""

    @abstractmethod
    def malformed_event(self, ctx: ResponseContext, reply: Reply) -> bytes:
        """A stream event whose data is truncated, unparsable JSON."""

    def error_headers(self, status: int, info: ErrorInfo) -> dict[str, str]:
        """Headers that come with an error answer (none by default; AWS names the exception in
        one)."""
        return {}

    def keepalive_event(self) -> bytes:
        """What the provider sends to keep an idle stream open (an SSE comment by default)."""
        return b": keep-alive\n\n"

    def rate_limit_headers(self, snapshot: RateLimitSnapshot) -> dict[str, str]:
        """Rate-limit response headers for ``snapshot`` (none by default)."""
        return {}

    @abstractmethod
    def models_body(self) -> bytes:
        """Encoded body of the models listing."""
