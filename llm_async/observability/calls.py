"""The state of one traced call: what it produced (:class:`Outcome`) and what the inner layers
reported about it (:class:`TracedCall`, the call context's listener).
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Mapping
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from ..context import CallContext
from ..errors import redact
from ..types import ChatChunk, ChatRequest, ChatResponse, StreamAssembler, Usage
from .content import ContentScrubber, output_messages
from .facade import CONTENT_PREVIEW
from .otel import HAVE_OTEL, event_attributes

if HAVE_OTEL:
    from opentelemetry import context as _otel_context

if TYPE_CHECKING:
    from opentelemetry.trace import Span

__all__ = ["COST_TYPES", "Outcome", "TracedCall", "header_request_id", "preview", "with_context"]

def _header_secrets(request: ChatRequest) -> list[str]:
    """The values of a request's extra headers (per-call keys among them), and their last
    word (the token of ``Bearer <token>``), longest first."""
    out: set[str] = set()
    for value in request.extra_headers.values():
        for secret in (value, value.rsplit(None, 1)[-1] if value.strip() else ""):
            if len(secret) >= 8:
                out.add(secret)
    return sorted(out, key=len, reverse=True)


def preview(text: str) -> str:
    """The start of a prompt or completion, for the recent-calls list (capture on only)."""
    return text if len(text) <= CONTENT_PREVIEW else text[:CONTENT_PREVIEW] + "…"


def header_request_id(headers: Mapping[str, str] | None) -> str | None:
    if not headers:
        return None
    return headers.get("x-request-id") or headers.get("request-id")


#: Types a call's cost may have (anything else is not a cost).
COST_TYPES = (Decimal, float, int)


class Outcome:
    """What a successful call produced, read from a response or from a stream's chunks."""

    __slots__ = ("assembler", "cache_hit", "cost", "finish_reason", "id", "model", "request_id",
                 "response", "usage")

    def __init__(self, *, model: str, id: str | None, finish_reason: str | None,
                 usage: Usage | None, cost: Any, cache_hit: bool, request_id: str | None,
                 response: ChatResponse | None = None,
                 assembler: StreamAssembler | None = None) -> None:
        self.model = model
        self.id = id
        self.finish_reason = finish_reason
        self.usage = usage
        self.cost = cost
        self.cache_hit = cache_hit
        self.request_id = request_id
        self.response = response
        self.assembler = assembler

    @classmethod
    def of_response(cls, response: ChatResponse) -> Outcome:
        # Once per unary call: fill the slots directly (no keyword binding).
        self = cls.__new__(cls)
        self.model = response.model
        self.id = response.id
        self.finish_reason = response.finish_reason
        self.usage = response.usage
        self.cost = response.cost
        self.cache_hit = response.cache_hit
        self.request_id = response.request_id
        self.response = response
        self.assembler = None
        return self

    def text(self) -> str:
        """The answer's text (for the recent-calls list, with content capture on)."""
        if self.response is not None:
            return self.response.content or ""
        return self.assembler.text if self.assembler is not None else ""

    def output_messages(self) -> str:
        if self.response is not None:
            return output_messages(self.response.content, self.response.tool_calls,
                                   self.finish_reason)
        assembler = self.assembler
        assert assembler is not None
        return output_messages(assembler.text, assembler.tool_calls(), self.finish_reason)


class TracedCall:
    """The state of one traced call; also its ``CallContext`` listener (``__call__``)."""

    __slots__ = ("cache_hit", "capture", "costed", "ctx", "dedup", "fallbacks", "rejections",
                 "request", "retries", "scrubber", "span", "started", "ttfc")

    def __init__(self, request: ChatRequest, ctx: CallContext, span: Span | None,
                 started: float, capture_content: bool) -> None:
        self.request = request
        self.capture = capture_content
        self.scrubber: ContentScrubber | None = None  # made on first use by scrub()
        self.costed = False  # the cost layer reported this call's cost (None: no price)
        self.ctx = ctx
        self.span = span
        self.started = started
        self.ttfc: float | None = None
        self.retries = 0
        self.fallbacks = 0
        self.rejections = 0
        self.dedup = False
        self.cache_hit = False

    def on_event(self, name: str, attributes: dict[str, Any]) -> None:
        """A ``CallContext`` listener: count the event and add it to the span."""
        if name == "retry":
            self.retries += 1
        elif name == "cache_hit":
            self.cache_hit = True
        elif name == "dedup_join":
            self.dedup = True
        elif name == "circuit_rejected":
            self.rejections += 1
        elif name == "fallback":
            self.fallbacks += 1
        elif name == "cost":
            self.costed = True
        span = self.span
        if span is not None:
            clean = event_attributes(attributes)
            if not self.capture:
                for key, value in clean.items():
                    if isinstance(value, str):
                        clean[key] = self.scrub(value)
                    elif isinstance(value, list) and value and isinstance(value[0], str):
                        clean[key] = [self.scrub(v) for v in value]
            span.add_event(name, clean)

    __call__ = on_event

    def scrub(self, text: str) -> str:
        """``text`` redacted (API keys, the values of the request's own headers), and without
        the request's texts unless content is captured."""
        text = redact(text)
        for secret in _header_secrets(self.request):
            text = text.replace(secret, "***")
        if self.capture:
            return text
        scrubber = self.scrubber
        if scrubber is None:
            scrubber = self.scrubber = ContentScrubber(self.request)
        return scrubber(text)


async def with_context(chunks: AsyncGenerator[ChatChunk, None],
                        span_context: Any) -> AsyncGenerator[ChatChunk, None]:
    """``chunks``, with ``span_context`` attached while each one is produced."""
    iterator = chunks.__aiter__()
    while True:
        token = _otel_context.attach(span_context)
        try:
            chunk = await iterator.__anext__()
        except StopAsyncIteration:
            return
        finally:
            _otel_context.detach(token)
        yield chunk
